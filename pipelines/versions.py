"""Version clusters: nearest neighbours by version embedding, verified by alignment, decided, then clustered.

The per-track sequences travel to the two ends of each candidate pair through two key joins; a pair that
cannot be verified is counted and gets an `errors` row, and ``pipelines.invariants`` checks at the end of
the run that every proposed pair was verified.
"""

from __future__ import annotations

from collections.abc import Iterator

import apache_beam as beam
import numpy as np
from apache_beam.metrics import Metrics
from apache_beam.pvalue import TaggedOutput

from pipelines.schemas import error_row

VERIFY_STAGE = "verify"
ERRORS = "errors"


def version_candidates(tracks: list[tuple[str, str, str, np.ndarray]], k: int, min_cosine: float,
                       n_references: int = 0) -> list[tuple[str, tuple[str, float, bool]]]:
    """(id, (other id, cosine, is_reference)) for each track's ``k`` nearest neighbours by version embedding
    (faiss), the pairs to verify by alignment, and ``n_references`` reference pairs per track
    (``hashing.decisions.reference_tracks``) whose similarities are the track's null; one pair per two ids."""
    from hashing.clustering import knn_graph
    from hashing.decisions import reference_tracks

    by_id = _tracks_by_id(tracks)
    ids = sorted(by_id)
    if len(ids) < 2:
        return []
    x = np.stack([by_id[i][2] for i in ids]).astype(np.float32)
    a, b, cos = knn_graph(x, k, min_cosine)
    pairs = {(ids[i], ids[j]): (float(c), False) for i, j, c in zip(a, b, cos, strict=True)}
    position = {track_id: i for i, track_id in enumerate(ids)}
    for track_id in ids if n_references else ():
        for other in reference_tracks(ids, track_id, n_references):
            key = (min(track_id, other), max(track_id, other))
            if key not in pairs:
                pairs[key] = (float(x[position[track_id]] @ x[position[other]]), True)
    Metrics.counter("mirmatch", "version_candidates").inc(len(a))
    return [(one, (other, cos, ref)) for (one, other), (cos, ref) in sorted(pairs.items())]


def attach_sequence(element: tuple[str, dict]) -> Iterator[tuple[str, tuple]]:
    """Join step of version verification: (id, {'pairs': [(other, ...)], 'seq': [sequence]}) -> for each pair,
    (other, (id, ..., sequence)); the sequence travels to the other end of each pair."""
    track_id, grouped = element
    sequences, pairs = list(grouped["seq"]), list(grouped["pairs"])
    if pairs and not sequences:
        yield _dropped(track_id, len(pairs))
        return
    for other, *rest in pairs:
        yield other, (track_id, *rest, sequences[0])


def _dropped(track_id: str, n_pairs: int) -> TaggedOutput:
    """The `errors` row (and count) of pairs that met a track id with no version sequence: this cannot happen
    for ids of the same analysis, and is accounted for all the same, never silent."""
    Metrics.counter("mirmatch", "version_pairs_dropped").inc(n_pairs)
    return TaggedOutput(ERRORS, error_row(f"track:{track_id}", VERIFY_STAGE, "MissingSequence",
                                          f"{n_pairs} version candidate pairs dropped: no version sequence"))


class VerifyVersions(beam.DoFn):
    """(id b, {'pairs': [(id a, cosine, is_reference, sequence a)], 'seq': [sequence b]}) -> (a, b, verified
    similarity, is_reference)."""

    def __init__(self):
        self.verified = Metrics.counter("mirmatch", "version_pairs_verified")

    def setup(self) -> None:
        from pipelines.progress import StageTimer

        self.timer = StageTimer("verify")

    def process(self, element: tuple[str, dict]) -> Iterator:
        from hashing.version_align import verified_similarity

        b, grouped = element
        sequences, pairs = list(grouped["seq"]), list(grouped["pairs"])
        if pairs and not sequences:
            yield _dropped(b, len(pairs))
            return
        for a, cosine, is_reference, seq_a in pairs:
            self.verified.inc()
            with self.timer.time():  # one pair
                similarity = verified_similarity(cosine, seq_a, sequences[0])
            yield a, b, similarity, is_reference


def _tracks_by_id(tracks: list[tuple[str, str, str, np.ndarray]]) -> dict[str, tuple[str, str, np.ndarray]]:
    """id -> (uri, modality, embedding), the first uri in order where one content has several."""
    by_id: dict[str, tuple[str, str, np.ndarray]] = {}
    for track_id, uri, modality, embedding in sorted(tracks, key=lambda t: (t[0], t[1])):
        by_id.setdefault(track_id, (uri, modality, embedding))
    return by_id


def edge_rows(verified: list[tuple[str, str, float, bool]], settings, min_similarity: float | None = None,
              durations: dict[str, float] | None = None) -> list[dict]:
    """One `version_edges` row per verified pair, with its decision (``hashing.decisions.decide_version_edges``):
    each track's null is its reference pairs' similarities, and a candidate edge counts (``accepted``) when it
    stands ``settings.min_z`` robust deviations above the nulls of both its ends and passes the ratio test (and
    reaches ``min_similarity`` when one is given), between two tracks of at least ``settings.min_duration_s``
    (``durations``)."""
    from hashing.decisions import decide_version_edges

    return decide_version_edges(verified, durations, settings, min_similarity)


def decided_edges(verified: list[tuple[str, str, float, bool]], settings, min_similarity: float | None = None,
                  durations: dict[str, float] | None = None) -> list[tuple[str, str, float]]:
    """The verified candidate edges that count as versions (``edge_rows``), as (a, b, z)."""
    return [(r["track_a"], r["track_b"], r["z"]) for r in edge_rows(verified, settings, min_similarity, durations)
            if r["accepted"]]


CLUSTER_IDS_FILE = "cluster_ids.parquet"


def read_cluster_ids(path: str | None) -> dict[str, str]:
    """The cluster ids a previous run kept (track id -> cluster id); empty when there are none."""
    if not path:
        return {}
    import io

    import pyarrow.parquet as pq
    from apache_beam.io.filesystem import CompressionTypes
    from apache_beam.io.filesystems import FileSystems

    try:
        with FileSystems.open(path, compression_type=CompressionTypes.UNCOMPRESSED) as f:
            table = pq.read_table(io.BytesIO(f.read()), columns=["track_id", "cluster_id"])
    except Exception:  # missing (a first run) or unreadable: ids start afresh from the smallest members
        return {}
    return dict(zip(table.column("track_id").to_pylist(), table.column("cluster_id").to_pylist(), strict=True))


def write_cluster_ids(path: str | None, labels: dict[str, str]) -> None:
    """Keep this run's cluster ids for the next run (written whole, then renamed into place)."""
    if not path:
        return
    import uuid

    import pyarrow as pa
    import pyarrow.parquet as pq
    from apache_beam.io.filesystem import CompressionTypes
    from apache_beam.io.filesystems import FileSystems

    ids = sorted(labels)
    sink = pa.BufferOutputStream()
    pq.write_table(pa.table({"track_id": ids, "cluster_id": [labels[i] for i in ids]}), sink, compression="zstd")
    temp = f"{path}.{uuid.uuid4().hex}.tmp"
    with FileSystems.create(temp, compression_type=CompressionTypes.UNCOMPRESSED) as f:
        f.write(sink.getvalue().to_pybytes())
    if FileSystems.exists(path):
        FileSystems.delete([path])
    FileSystems.rename([temp], [path])


def cluster_rows(tracks: list[tuple[str, str, str, np.ndarray]], version_edges: list[dict],
                 match_edges: list[tuple[str, str]], ids_path: str | None = None, settings=None) -> list[dict]:
    """One `clusters` row per distinct track id, from the `version_edges` rows (``edge_rows``: the accepted ones
    join tracks under the guard against chaining, ``hashing.clustering.guarded_clusters`` with
    ``settings.link``; the candidate ones name each track's nearest version) and the match edges; cluster ids carry
    over from the previous run's (``ids_path``, in the state folder)."""
    from hashing.clustering import guarded_clusters, nearest_versions, stable_labels
    from hashing.decisions import VersionSettings

    by_id = _tracks_by_id(tracks)
    ids = sorted(by_id)
    if not ids:
        return []
    accepted = [(r["track_a"], r["track_b"], r["z"]) for r in version_edges if r["accepted"]]
    link = (settings or VersionSettings()).link
    labels = stable_labels(guarded_clusters(ids, accepted, match_edges, link), read_cluster_ids(ids_path))
    write_cluster_ids(ids_path, labels)
    nearest = nearest_versions([(r["track_a"], r["track_b"], r["similarity"]) for r in version_edges
                                if not r["is_reference"]])
    sizes: dict[str, int] = {}
    for label in labels.values():
        sizes[label] = sizes.get(label, 0) + 1
    Metrics.counter("mirmatch", "clusters").inc(len(sizes))
    Metrics.counter("mirmatch", "clusters_with_versions").inc(sum(n > 1 for n in sizes.values()))
    return [{"track_id": i, "uri": by_id[i][0], "modality": by_id[i][1], "cluster_id": labels[i],
             "cluster_size": sizes[labels[i]], "nearest_version_id": nearest[i][1] if i in nearest else None,
             "nearest_version_similarity": nearest[i][0] if i in nearest else None} for i in ids]


class ClusterVersions(beam.PTransform):
    """Analysed tracks (and the matches' edges) -> one `clusters` row per distinct track, the `version_edges`
    rows, ``errors`` rows of pairs that could not be verified, and the counts of proposed and verified pairs.

    Three steps gather everything on one worker, by design: the nearest-neighbour search over all version
    embeddings (faiss), the decision on every verified pair (each track's null needs all its reference pairs, the
    ratio test each track's best edge), and the clustering of the accepted edges. Each holds one small vector or
    a few edges per track; verification, the costly part, runs in parallel.
    """

    def __init__(self, k: int, min_cosine: float, min_similarity: float | None, settings=None,
                 ids_path: str | None = None):
        from hashing.decisions import REFERENCE_TRACKS, VersionSettings

        super().__init__()
        self.ids_path = ids_path
        self.k, self.min_cosine, self.min_similarity = k, min_cosine, min_similarity
        self.settings = settings or VersionSettings()
        self.n_references = REFERENCE_TRACKS

    def expand(self, inputs: tuple[beam.PCollection, beam.PCollection]) -> dict[str, beam.PCollection]:
        features, match_edges = inputs
        k, min_cosine, similarity, settings = self.k, self.min_cosine, self.min_similarity, self.settings
        n_references = self.n_references if k else 0
        ids_path = self.ids_path
        embeddings = features | "Version embeddings" >> beam.Map(
            lambda t: (t.track_id, t.uri, t.modality, t.cover_embedding))
        sequences = features | "Version sequences" >> beam.Map(lambda t: (t.track_id, t.version_sequence))
        durations = beam.pvalue.AsDict(features | "Durations" >> beam.Map(lambda t: (t.track_id, t.duration_s)))
        to_verify = (
            features.pipeline
            | "Version trigger" >> beam.Create([None])
            | "Version candidates" >> beam.FlatMap(
                lambda _, tracks: version_candidates(tracks, k, min_cosine, n_references),
                beam.pvalue.AsList(embeddings))
        )
        first_sent = (
            {"pairs": to_verify, "seq": sequences}
            | "Join first sequence" >> beam.CoGroupByKey()
            | "Send first sequence" >> beam.FlatMap(attach_sequence).with_outputs(ERRORS, main="pairs")
        )
        verified = (
            {"pairs": first_sent.pairs, "seq": sequences}
            | "Join second sequence" >> beam.CoGroupByKey()
            | "Verify versions" >> beam.ParDo(VerifyVersions()).with_outputs(ERRORS, main="edges")
        )
        edges = (
            features.pipeline
            | "Edges trigger" >> beam.Create([None])
            | "Version edges" >> beam.FlatMap(lambda _, edges, lengths: edge_rows(edges, settings, similarity, lengths),
                                              beam.pvalue.AsList(verified.edges), durations)
        )
        clusters = (
            features.pipeline
            | "Cluster trigger" >> beam.Create([None])
            | "Cluster" >> beam.FlatMap(
                lambda _, tracks, rows, matches: cluster_rows(tracks, rows, matches, ids_path, settings),
                beam.pvalue.AsList(embeddings), beam.pvalue.AsList(edges), beam.pvalue.AsList(match_edges))
        )
        errors = (first_sent[ERRORS], verified[ERRORS]) | "Verification errors" >> beam.Flatten()
        return {"clusters": clusters, "errors": errors, "version_edges": edges,
                "proposed": to_verify | "Count proposed pairs" >> beam.combiners.Count.Globally(),
                "verified": verified.edges | "Count verified pairs" >> beam.combiners.Count.Globally()}
