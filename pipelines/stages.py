"""Beam transforms wiring the per-track analysis, the matching cascade and clustering together.

Algorithms live in ``encoders`` and ``hashing``; this module only moves data between them.
"""

from __future__ import annotations

import logging
from collections.abc import Iterable, Iterator
from dataclasses import dataclass, replace

import apache_beam as beam
import numpy as np
from apache_beam.io.filesystem import CompressionTypes
from apache_beam.io.filesystems import FileSystems
from apache_beam.metrics import Metrics
from apache_beam.pvalue import TaggedOutput

log = logging.getLogger("mirmatch")

TRACKS, ERRORS, SEGMENTS, FEATURES = "tracks", "errors", "segments", "features"


@dataclass
class Candidate:
    """A MIDI track proposed for one audio track by the Hamming search."""

    midi: object  # encoders.analyze.TrackAnalysis
    hamming_distance: int


def error_row(uri: str, stage: str, error_type: str, message: str, severity: str = "error") -> dict:
    return {"uri": uri, "stage": stage, "error_type": error_type, "message": message, "severity": severity}


@dataclass
class TrackFailure:
    """Why a track could not be analysed (kept in the state folder like a successful analysis)."""

    stage: str
    error_type: str
    message: str


class AnalyzeTrack(beam.DoFn):
    """(uri, modality) -> a `tracks` row, plus segments and features, or an `errors` row.

    With a state folder, a file whose content (and the analysis version) was seen before is not analysed
    again: its stored result is reused (``pipelines.state``).
    """

    def __init__(self, model: str | None, state_root: str | None = None, analysis_key: str | None = None,
                 total: int | None = None):
        self.model, self.state_root, self.analysis_key, self.total = model, state_root, analysis_key, total
        self.ok = Metrics.counter("mirmatch", "tracks_ok")
        self.failed = Metrics.counter("mirmatch", "tracks_error")
        self.analyzed = Metrics.counter("mirmatch", "tracks_analyzed")
        self.reused = Metrics.counter("mirmatch", "tracks_reused")
        self.warned = Metrics.counter("mirmatch", "track_warnings")
        self.segments = Metrics.counter("mirmatch", "segments")

    def setup(self) -> None:
        from encoders.codes import load_hasher
        from pipelines.progress import Progress
        from pipelines.state import StateStore

        self.hasher = load_hasher(self.model)
        self.store = StateStore(self.state_root, self.analysis_key) if self.state_root else None
        self.progress = Progress("analyse", self.total)

    def process(self, element: tuple[str, str]) -> Iterator:
        uri, modality = element
        track = {"track_id": None, "uri": uri, "modality": modality, "duration_s": None, "status": "error"}
        try:
            f = FileSystems.open(uri, compression_type=CompressionTypes.UNCOMPRESSED)
        except Exception as exc:
            outcome = TrackFailure("read", "UnreadablePath", _read_error(uri, exc))
        else:
            with f:
                try:
                    outcome, track["track_id"] = self._outcome(f, uri, modality)
                except OSError as exc:  # the file went away or broke while being read
                    outcome = TrackFailure("read", "ReadError", f"reading the file failed: {exc}; retry the run")
        self.progress.step()
        if isinstance(outcome, TrackFailure):
            self.failed.inc()
            yield TaggedOutput(ERRORS, error_row(uri, outcome.stage, outcome.error_type, outcome.message))
            yield TaggedOutput(TRACKS, track)
            return
        result = replace(outcome, uri=uri)  # the same content may have moved or been copied
        self.ok.inc()
        track.update(duration_s=result.duration_s, status="ok")
        yield TaggedOutput(TRACKS, track)
        for warning in result.warnings:
            self.warned.inc()
            yield TaggedOutput(ERRORS, error_row(uri, "check", warning.error_type, warning.message, "warning"))
        self.segments.inc(len(result.segments))
        for i, seg in enumerate(result.segments):
            yield TaggedOutput(SEGMENTS, {"track_id": result.track_id, "uri": uri, "segment_index": i,
                                          "start_s": seg.start_s, "end_s": seg.end_s, "label": seg.label})
        yield result

    def _outcome(self, f, uri: str, modality: str) -> tuple[object, str]:
        """(TrackAnalysis or TrackFailure, track id) of an open file: kept from an earlier run, or computed.

        Small files are read whole; big ones are hashed and decoded block by block."""
        from encoders.analyze import IN_MEMORY_BYTES
        from encoders.media import content_id, content_id_of_file

        size = f.seek(0, 2)
        f.seek(0)
        source = f.read() if size <= IN_MEMORY_BYTES else f
        track_id = content_id(source) if isinstance(source, bytes) else content_id_of_file(f)
        outcome = self.store.load_track(track_id, modality) if self.store else None
        if outcome is not None:
            self.reused.inc()
            return outcome, track_id
        outcome = self._analyze(source, uri, modality, track_id)
        self.analyzed.inc()
        unexpected = isinstance(outcome, TrackFailure) and outcome.stage == "analyze"
        if self.store and not unexpected:  # a bug or a passing fault is retried by the next run
            self.store.save_track(track_id, modality, outcome)
        return outcome, track_id

    def _analyze(self, source, uri: str, modality: str, track_id: str):
        """A TrackAnalysis, or a TrackFailure for unusable input (or an unexpected error: the run goes on)."""
        from encoders.analyze import analyze_source
        from encoders.media import MediaError

        try:
            return analyze_source(source, uri, modality, self.hasher, track_id)
        except MediaError as exc:
            return TrackFailure("decode" if modality == "audio" else "parse", exc.error_type, str(exc))
        except MemoryError:
            return TrackFailure("analyze", "OutOfMemory", "ran out of memory analysing this track; give the "
                                "workers more memory or split the file")
        except Exception as exc:  # a bug or an input no check anticipated: keep the run going
            log.exception("analysis of %s failed", uri)
            return TrackFailure("analyze", type(exc).__name__, f"{exc} (please report this as a bug)")


def _read_error(uri: str, exc: Exception) -> str:
    """A one-line reason a path could not be read, and what to do."""
    if isinstance(exc, IsADirectoryError):
        return f"cannot read file: {uri} is a directory; pass the files inside it (e.g. '{uri}/*')"
    reason = str(exc).splitlines()[0] if str(exc) else type(exc).__name__
    return f"cannot read file: {reason}; check that the path exists and is readable"


class ProposeCandidates(beam.DoFn):
    """Batches of MIDI analyses -> (audio uri, Candidate) for the audio tracks that survive the cascade.

    The audio database (uri, track code, frame codes) arrives once per worker as a side input; each batch
    of MIDI queries runs the track-code Hamming search (``n_candidates`` survivors) and then hash-sequence
    DTW (``n_refine`` survivors), ``hashing.cascade.HashCascade``.
    """

    def __init__(self, n_candidates: int, n_refine: int):
        self.n_candidates, self.n_refine = n_candidates, n_refine
        self.queries = Metrics.counter("mirmatch", "midi_queries")
        self.proposed = Metrics.counter("mirmatch", "candidates_proposed")
        self.searched = Metrics.counter("mirmatch", "stage1_candidates")
        self._cascade_key = None

    def process(self, batch: list, audio_db: list[tuple[str, np.ndarray, np.ndarray, str]]) -> Iterator:
        from hashing.cascade import HashCascade

        if not audio_db:
            return
        key = id(audio_db)
        if self._cascade_key != key:  # build the index once per side-input instance, not per batch
            ordered = sorted(audio_db, key=lambda item: item[0])
            self._uris = [uri for uri, _, _, _ in ordered]
            self._cascade = HashCascade(np.stack([code for _, code, _, _ in ordered]),
                                        [frames for _, _, frames, _ in ordered],
                                        stage1_k=self.n_candidates, stage2_k=self.n_refine)
            self._cascade_key = key
        for midi in batch:
            result = self._cascade.query(midi.track_code, midi.frame_codes)
            self.queries.inc()
            self.searched.inc(min(self.n_candidates, len(self._cascade)))
            for i, d in zip(result.indices, result.hamming, strict=True):
                self.proposed.inc()
                yield self._uris[i], Candidate(midi=midi, hamming_distance=int(d))


INDEX_DIR = "index"
INDEX_FILE = "audio_track_codes.faissindex"
DATABASE_FILE = "audio_database.parquet"


def write_audio_index(folder: str, audio_db: list[tuple]) -> Iterator[str]:
    """Persist the stage-1 index and the audio database into ``folder`` (published as ``OUT/index/``).

    ``audio_track_codes.faissindex`` is a faiss IndexBinaryFlat whose row i is row i of
    ``audio_database.parquet`` (track_id, uri, track_code, frame_codes as little-endian uint32).
    """
    import pyarrow as pa
    import pyarrow.parquet as pq
    from apache_beam.io.filesystems import FileSystems

    from hashing.search import HammingIndex

    ordered = sorted(audio_db, key=lambda item: item[0])
    width = ordered[0][1].shape[0] if ordered else 32
    index = HammingIndex(np.stack([code for _, code, _, _ in ordered]) if ordered else np.zeros((0, width), np.uint8))
    table = pa.table({
        "position": pa.array(range(len(ordered)), pa.int64()),
        "track_id": pa.array([tid for _, _, _, tid in ordered], pa.string()),
        "uri": pa.array([uri for uri, _, _, _ in ordered], pa.string()),
        "track_code": pa.array([code.tobytes() for _, code, _, _ in ordered], pa.binary()),
        "frame_codes": pa.array([frames.astype("<u4").tobytes() for _, _, frames, _ in ordered], pa.binary()),
    })
    sink = pa.BufferOutputStream()
    pq.write_table(table, sink)
    for name, data in ((INDEX_FILE, index.to_bytes()), (DATABASE_FILE, sink.getvalue().to_pybytes())):
        path = FileSystems.join(folder, name)
        with FileSystems.create(path) as f:
            f.write(data)
        yield path


class RefineCandidates(beam.DoFn):
    """(audio uri, {audio: [analysis], candidates: [...]}) -> (midi uri, pair result) by CQT DTW.

    All MIDI candidates of one audio track meet here, so their scores are normalised against each other
    (``hashing.align.cohort_normalise``) before they become confidences. With a state folder, the DTW of
    a pair aligned in an earlier run is reused; only the cheap normalisation is redone, so the result is
    the same as a full rebuild even when new candidates join the cohort.
    """

    def __init__(self, state_root: str | None = None, analysis_key: str | None = None):
        self.state_root, self.analysis_key = state_root, analysis_key
        self.aligned = Metrics.counter("mirmatch", "pairs_aligned")
        self.reused = Metrics.counter("mirmatch", "pairs_reused")

    def setup(self) -> None:
        from pipelines.progress import Progress
        from pipelines.state import StateStore

        self.store = StateStore(self.state_root, self.analysis_key) if self.state_root else None
        self.progress = Progress("align", unit="audio tracks")

    def process(self, element: tuple[str, dict]) -> Iterator:
        from hashing.align import REFINE_MIN_CONFIDENCE, cohort_normalise, confidence_from_score

        _, grouped = element
        audios = list(grouped["audio"])
        candidates = sorted(grouped["candidates"], key=lambda c: c.midi.uri)
        if not audios or not candidates:
            return
        audio = audios[0]
        pairs = [self._pair(c.midi, audio) for c in candidates]
        normalised = cohort_normalise(np.array([p.alignment.score for p in pairs]))
        confidences = confidence_from_score(normalised)
        for cand, pair, conf in zip(candidates, pairs, confidences, strict=True):
            midi = cand.midi
            midi_times, audio_times = pair.alignment.midi_times_s, pair.alignment.audio_times_s
            if conf >= REFINE_MIN_CONFIDENCE:
                midi_times, audio_times = self._refined(pair, midi, audio)
            yield midi.uri, {
                "midi_id": midi.track_id, "midi_uri": midi.uri, "audio_id": audio.track_id,
                "audio_uri": audio.uri, "confidence": float(conf), "dtw_score": pair.alignment.score,
                "hamming_distance": cand.hamming_distance,
                "midi_times_s": midi_times.tolist(), "audio_times_s": audio_times.tolist(),
            }
        self.progress.step()

    def _pair(self, midi, audio) -> PairResult:
        from encoders.features import FRAME_RATE
        from hashing.align import align_pair

        cached = self.store.load_pair(midi.track_id, audio.track_id) if self.store else None
        if cached is not None:
            self.reused.inc()
            return cached
        self.aligned.inc()
        pair = PairResult(align_pair(midi.cqt, audio.cqt, FRAME_RATE))
        if self.store:
            self.store.save_pair(midi.track_id, audio.track_id, pair)
        return pair

    def _refined(self, pair: PairResult, midi, audio) -> tuple[np.ndarray, np.ndarray]:
        from encoders.features import FRAME_RATE
        from hashing.align import refine_time_map

        if pair.refined is None:
            pair.refined = refine_time_map(midi.cqt, audio.cqt, FRAME_RATE)
            if self.store:
                self.store.save_pair(midi.track_id, audio.track_id, pair)
        return pair.refined


@dataclass
class PairResult:
    """The CQT DTW of one (MIDI, audio) pair, and its sharper time map once it has been needed."""

    alignment: object  # hashing.align.PairAlignment
    refined: tuple[np.ndarray, np.ndarray] | None = None


class RankMatches(beam.DoFn):
    """(midi uri, pair results) -> the top-K `matches` rows, and `alignments` rows for the matches."""

    def __init__(self, top_k: int):
        self.top_k = top_k
        self.matched = Metrics.counter("mirmatch", "matches")

    def process(self, element: tuple[str, Iterable[dict]]) -> Iterator:
        _, pairs = element
        ranked = sorted(pairs, key=lambda p: (-p["confidence"], p["audio_uri"]))[: self.top_k]
        for rank, p in enumerate(ranked, start=1):
            is_match = p["confidence"] > 0.5
            mt, at = p["midi_times_s"], p["audio_times_s"]
            yield {
                "midi_id": p["midi_id"], "midi_uri": p["midi_uri"], "audio_id": p["audio_id"],
                "audio_uri": p["audio_uri"], "rank": rank, "confidence": p["confidence"], "is_match": is_match,
                "midi_start_s": mt[0], "midi_end_s": mt[-1], "audio_start_s": at[0], "audio_end_s": at[-1],
                "dtw_score": p["dtw_score"], "hamming_distance": p["hamming_distance"],
            }
            if is_match:
                self.matched.inc()
                yield TaggedOutput("alignments", {
                    "midi_id": p["midi_id"], "audio_id": p["audio_id"], "midi_times_s": mt,
                    "audio_times_s": at, "midi_uri": p["midi_uri"], "audio_uri": p["audio_uri"],
                })


def version_candidates(tracks: list[tuple[str, str, str, np.ndarray]], k: int,
                       min_cosine: float) -> list[tuple[str, tuple[str, float]]]:
    """(id, (other id, cosine)) for each track's ``k`` nearest neighbours by version embedding (faiss), the
    pairs to verify by alignment; one pair per two distinct track ids."""
    from hashing.clustering import knn_graph

    by_id = _tracks_by_id(tracks)
    ids = sorted(by_id)
    if len(ids) < 2:
        return []
    a, b, cos = knn_graph(np.stack([by_id[i][2] for i in ids]), k, min_cosine)
    Metrics.counter("mirmatch", "version_candidates").inc(len(a))
    return [(ids[i], (ids[j], float(c))) for i, j, c in zip(a, b, cos, strict=True)]


def attach_sequence(element: tuple[str, dict]) -> Iterator[tuple[str, tuple]]:
    """Join step of version verification: (id, {'pairs': [(other, ...)], 'seq': [sequence]}) -> for each pair,
    (other, (id, ..., sequence)); the sequence travels to the other end of each pair."""
    track_id, grouped = element
    sequences = list(grouped["seq"])
    if not sequences:  # cannot happen for ids from the same analysis; skip rather than fail the run
        return
    for other, *rest in grouped["pairs"]:
        yield other, (track_id, *rest, sequences[0])


class VerifyVersions(beam.DoFn):
    """(id b, {'pairs': [(id a, cosine, sequence a)], 'seq': [sequence b]}) -> (a, b, verified similarity)."""

    def __init__(self):
        self.verified = Metrics.counter("mirmatch", "version_pairs_verified")

    def process(self, element: tuple[str, dict]) -> Iterator[tuple[str, str, float]]:
        from hashing.version_align import verified_similarity

        b, grouped = element
        sequences = list(grouped["seq"])
        if not sequences:
            return
        for a, cosine, seq_a in grouped["pairs"]:
            self.verified.inc()
            yield a, b, verified_similarity(cosine, seq_a, sequences[0])


def _tracks_by_id(tracks: list[tuple[str, str, str, np.ndarray]]) -> dict[str, tuple[str, str, np.ndarray]]:
    """id -> (uri, modality, embedding), the first uri in order where one content has several."""
    by_id: dict[str, tuple[str, str, np.ndarray]] = {}
    for track_id, uri, modality, embedding in sorted(tracks, key=lambda t: (t[0], t[1])):
        by_id.setdefault(track_id, (uri, modality, embedding))
    return by_id


def cluster_rows(tracks: list[tuple[str, str, str, np.ndarray]], version_edges: list[tuple[str, str, float]],
                 match_edges: list[tuple[str, str]], min_similarity: float) -> list[dict]:
    """One `clusters` row per distinct track id, from verified version edges and match edges."""
    from hashing.clustering import cluster_graph

    by_id = _tracks_by_id(tracks)
    ids = sorted(by_id)
    if not ids:
        return []
    labels = cluster_graph(ids, version_edges, match_edges, min_similarity)
    nearest: dict[str, tuple[float, str]] = {}
    for a, b, similarity in version_edges:
        for one, other in ((a, b), (b, a)):
            if one not in nearest or (-similarity, other) < (-nearest[one][0], nearest[one][1]):
                nearest[one] = (similarity, other)
    sizes: dict[str, int] = {}
    for label in labels.values():
        sizes[label] = sizes.get(label, 0) + 1
    Metrics.counter("mirmatch", "clusters").inc(len(sizes))
    Metrics.counter("mirmatch", "clusters_with_versions").inc(sum(n > 1 for n in sizes.values()))
    return [{"track_id": i, "uri": by_id[i][0], "modality": by_id[i][1], "cluster_id": labels[i],
             "cluster_size": sizes[labels[i]], "nearest_version_id": nearest[i][1] if i in nearest else None,
             "nearest_version_similarity": nearest[i][0] if i in nearest else None} for i in ids]
