"""Version verification by Qmax alignment of beat chroma (hashing.version_align) and verified clustering."""

from __future__ import annotations

import numpy as np

from encoders.versions.chroma import version_sequence
from hashing.clustering import cluster_graph, verified_edges
from hashing.version_align import qmax, qmax_score, verified_similarity


def _unit(x: np.ndarray) -> np.ndarray:
    return (x / np.linalg.norm(x, axis=1, keepdims=True)).astype(np.float32)


def _piece(rng, n: int = 120) -> np.ndarray:
    return _unit(rng.random((n, 12)) ** 4)


def test_qmax_is_the_longest_path_with_tempo_steps():
    diagonal = np.eye(20, dtype=bool)
    assert qmax(diagonal) == 20
    stretched = np.zeros((40, 20), dtype=bool)
    stretched[np.arange(0, 40, 2), np.arange(20)] = True  # the same passage at half the tempo
    assert qmax(stretched) == 20
    broken = diagonal.copy()
    broken[10] = False  # one missing recurrence costs the gap-open penalty, not the whole path
    assert 19 - 5 <= qmax(broken) < 20
    assert qmax(np.zeros((5, 7), dtype=bool)) == 0


def test_qmax_score_finds_a_transposed_retimed_excerpt(rng):
    piece, other = _piece(rng), _piece(rng)
    excerpt = np.roll(np.repeat(piece[30:90], 2, axis=0), 5, axis=1)  # transposed, half tempo
    same = qmax_score(piece, excerpt)
    assert same > 2 * qmax_score(other, excerpt)
    assert abs(same - qmax_score(excerpt, piece)) < 0.5  # (nearly) symmetric
    long = np.tile(piece, (30, 1))  # 3,600 steps are pooled to at most 1,024 before aligning
    assert np.isfinite(qmax_score(long, piece)) and qmax_score(np.zeros((0, 12), np.float32), piece) == 0.0


def test_verification_separates_versions_that_the_embedding_confuses(rng):
    """Four pieces with nearly identical embeddings: alignment keeps each piece's two renderings together."""
    pieces = [_piece(rng) for _ in range(4)]
    sequences = [s for p in pieces for s in (p, _unit(np.roll(p, 3, axis=1) + 0.05 * rng.random(p.shape)))]
    x = _unit(1.0 + 0.01 * rng.standard_normal((8, 16)))
    a, b, w = verified_edges(x, sequences, k=7, min_cosine=0.5)
    assert len(a) == 28  # every pair is a candidate
    same = (a // 2) == (b // 2)
    assert w[same].min() > w[~same].max()
    ids = [f"t{i}" for i in range(8)]
    threshold = (w[same].min() + w[~same].max()) / 2
    labels = cluster_graph(ids, [(ids[i], ids[j], s) for i, j, s in zip(a, b, w, strict=True)], (), threshold)
    assert [labels[i] for i in ids] == ["t0", "t0", "t2", "t2", "t4", "t4", "t6", "t6"]
    assert cluster_graph(ids, [], [("t1", "t7")])["t7"] == "t1"  # match edges still merge
    assert verified_similarity(0.9, sequences[0], sequences[1]) > verified_similarity(0.9, sequences[0], sequences[2])


def test_version_sequence_is_unit_norm_and_bounded(rng):
    chroma = rng.random((2000, 12)).astype(np.float32)
    beats = np.arange(0.0, 90.0, 0.7)
    seq = version_sequence(chroma, 21.533, beats)
    assert seq.dtype == np.float16 and seq.shape[1] == 12 and 0 < len(seq) <= len(beats) + 1
    assert np.allclose(np.linalg.norm(seq.astype(np.float32), axis=1), 1.0, atol=1e-2)
    assert len(version_sequence(chroma, 21.533, beats, max_steps=16)) <= 16
    assert len(version_sequence(chroma, 21.533, None)) > 0  # no beats: a fixed grid


def test_beam_verification_equals_the_in_memory_edges(rng):
    """The pipeline's distributed verification (two joins, then VerifyVersions) gives verified_edges' edges."""
    import apache_beam as beam
    from apache_beam.testing.test_pipeline import TestPipeline
    from apache_beam.testing.util import assert_that, equal_to

    from pipelines.versions import VerifyVersions, attach_sequence, version_candidates

    pieces = [_piece(rng, 40) for _ in range(5)]
    sequences = [s.astype(np.float16) for p in pieces for s in (p, np.roll(p, 2, axis=1))]
    x = _unit(1.0 + 0.1 * rng.standard_normal((10, 16)))
    ids = [f"id{i}" for i in range(10)]
    a, b, w = verified_edges(x, sequences, k=4, min_cosine=0.0)
    expected = [(ids[i], ids[j], float(s)) for i, j, s in zip(a, b, w, strict=True)]
    tracks = [(ids[i], f"file{i}.wav", "audio", x[i]) for i in range(10)]
    with TestPipeline() as p:
        seqs = p | "Sequences" >> beam.Create([(ids[i], sequences[i]) for i in range(10)])
        pairs = p | "Tracks" >> beam.Create([None]) | beam.FlatMap(lambda _: version_candidates(tracks, 4, 0.0))
        first = {"pairs": pairs, "seq": seqs} | "Join 1" >> beam.CoGroupByKey() | beam.FlatMap(attach_sequence)
        edges = {"pairs": first, "seq": seqs} | "Join 2" >> beam.CoGroupByKey() | beam.ParDo(VerifyVersions())
        assert_that(edges | beam.Map(lambda e: (e[0], e[1], round(e[2], 5))),
                    equal_to([(u, v, round(s, 5)) for u, v, s in expected]))
