"""Version embeddings (2D-FTM baseline and the learned network) and version clustering."""

from __future__ import annotations

import numpy as np
import pytest

from encoders.versions.baseline import ftm2d_embedding
from encoders.versions.chroma import fixed_steps
from encoders.versions.embedding import DEFAULT_WEIGHTS, cover_embedding, embed_steps, load_model
from hashing.clustering import cluster_labels


def test_transposition_invariant_and_discriminative(rng):
    beats = np.arange(0, 40, 0.5)
    piece = rng.random((860, 12)).astype(np.float32) ** 4
    other = rng.random((860, 12)).astype(np.float32) ** 4
    e = ftm2d_embedding(piece, 21.5, beats)
    assert e.shape == (900,) and abs(np.linalg.norm(e) - 1) < 1e-5
    transposed = ftm2d_embedding(np.roll(piece, 5, axis=1), 21.5, beats)
    assert float(e @ transposed) > 0.999
    assert float(e @ ftm2d_embedding(other, 21.5, beats)) < float(e @ transposed) - 0.05


def test_short_track_without_beats(rng):
    e = ftm2d_embedding(rng.random((40, 12)).astype(np.float32), 21.5, None)
    assert np.isfinite(e).all() and e.shape == (900,)
    learned = cover_embedding(rng.random((5, 12)).astype(np.float32), 21.5, None)
    assert np.isfinite(learned).all() and abs(np.linalg.norm(learned) - 1) < 1e-5


def test_learned_embedding_is_key_invariant_by_construction(rng):
    beats = np.arange(0, 30, 0.45)
    piece = rng.random((650, 12)).astype(np.float32) ** 4
    e = cover_embedding(piece, 21.5, beats)
    assert e.shape == (256,) and abs(np.linalg.norm(e) - 1) < 1e-5
    for shift in range(1, 12):
        assert float(e @ cover_embedding(np.roll(piece, shift, axis=1), 21.5, beats)) > 0.9999
    other = cover_embedding(rng.random((650, 12)).astype(np.float32) ** 4, 21.5, beats)
    assert float(e @ other) < 0.999


def test_fixed_rate_half_does_not_depend_on_beats(rng):
    piece = rng.random((650, 12)).astype(np.float32) ** 4
    steps = fixed_steps(piece, 21.5)
    assert abs(len(steps) - 650 / 21.5 / 0.093) <= 2 and np.allclose(steps.max(axis=1), 1, atol=1e-4)
    with_beats, without = cover_embedding(piece, 21.5, np.arange(0, 30, 0.45)), cover_embedding(piece, 21.5, None)
    assert np.allclose(with_beats[128:], without[128:], atol=1e-6)  # the fixed-rate network's half
    assert not np.allclose(with_beats[:128], without[:128], atol=1e-3)


def test_batched_embeddings_do_not_depend_on_padding(rng):
    steps = [rng.random((n, 12)).astype(np.float32) for n in (20, 75, 140)]
    model = load_model(DEFAULT_WEIGHTS)
    together = embed_steps(model, steps)
    alone = np.concatenate([embed_steps(model, [s]) for s in steps])
    assert np.allclose(together, alone, atol=1e-5)


@pytest.fixture(scope="module")
def rendered_versions():
    """Six real chorales of held-out families, each rendered twice (other key, tempo, GM program, soundfont)."""
    from encoders.soundfonts import available_soundfonts
    from encoders.training.music21_scores import music21_corpus_dir
    from encoders.training.splits import version_family_split
    from encoders.training.versions_data import RenderPlan, arrange_tune, chorale_tune, render_and_analyse

    fonts = available_soundfonts()
    tunes, bases = [], set()
    for path in sorted((music21_corpus_dir() / "bach").glob("bwv*.mxl")):
        tune = chorale_tune(path)
        if tune is not None and tune.name not in bases and version_family_split(tune.family) == "heldout":
            tunes.append(tune)
            bases.add(tune.name)
        if len(tunes) == 6:
            break
    rng = np.random.default_rng(0)
    plans = {font: [] for font in fonts}
    for i, tune in enumerate(tunes):
        for v, (shift, program, bpm) in enumerate(((0, 0, 72.0), (3 + i % 5, 52 if i % 2 else 48, 90.0))):
            font = fonts[(i + v) % len(fonts)]
            plans[font].append(RenderPlan(tune, "test", font, program, shift, bpm,
                                          arrange_tune(tune, shift, bpm, 32.0, rng)))
    return [item for reel in plans.values() if reel for item in render_and_analyse(reel)]


def _rank_of_other_rendering(e: np.ndarray, names: list[str]) -> list[int]:
    sims = e @ e.T
    np.fill_diagonal(sims, -np.inf)
    return [int(np.sum(sims[q] > max(sims[q, j] for j in range(len(names)) if j != q and names[j] == names[q]))) + 1
            for q in range(len(names))]


def test_learned_embedding_retrieves_rendered_versions(rendered_versions):
    items = rendered_versions
    assert len(items) == 12
    names = [it.name for it in items]
    chromas = [it.chroma.astype(np.float32) for it in items]
    learned = np.stack([cover_embedding(c, 21.533, it.tracked_beats) for c, it in zip(chromas, items, strict=True)])
    ftm = np.stack([ftm2d_embedding(c, 21.533, it.tracked_beats) for c, it in zip(chromas, items, strict=True)])
    ranks = _rank_of_other_rendering(learned, names)
    assert np.mean(ranks) <= 3.0 and max(ranks) <= 6, ranks
    assert np.mean(ranks) < np.mean(_rank_of_other_rendering(ftm, names))  # beats tracked on the audio



def test_verified_clusters_join_renderings_and_nothing_else(rendered_versions):
    """The pipeline's clustering (20-NN candidates and reference pairs verified by alignment, edges z-scored
    against both tracks' nulls, hashing.decisions) on real renderings: no cluster mixes two chorales, and more
    renderings are joined than by the embedding's kNN graph alone (these 32-beat excerpts are harder than whole
    pieces; the decision favours precision)."""
    from encoders.versions.chroma import version_sequence
    from hashing.clustering import guarded_clusters
    from hashing.decisions import REFERENCE_TRACKS, VersionSettings
    from hashing.version_align import verified_similarity
    from pipelines.pipeline import RunConfig
    from pipelines.versions import decided_edges, version_candidates

    items = rendered_versions
    x = np.stack([cover_embedding(it.chroma.astype(np.float32), 21.533, it.tracked_beats) for it in items])
    sequences = [version_sequence(it.chroma, 21.533, it.tracked_beats) for it in items]
    cfg = RunConfig(audio=[], midi=[], out="")
    ids = [f"{i:02d}" for i in range(len(items))]
    tracks = [(ids[i], f"{i}.wav", "audio", x[i]) for i in range(len(items))]
    pairs_to_verify = version_candidates(tracks, cfg.version_candidates, cfg.version_min_cosine, REFERENCE_TRACKS)
    verified = [(a, b, verified_similarity(cos, sequences[int(a)], sequences[int(b)]), ref)
                for a, (b, cos, ref) in pairs_to_verify]
    labels = guarded_clusters(ids, decided_edges(verified, VersionSettings()), (), VersionSettings().link)
    members: dict[str, set[str]] = {}
    for i, it in zip(ids, items, strict=True):
        members.setdefault(labels[i], set()).add(it.name)
    assert all(len(names) == 1 for names in members.values()), members
    pairs = [(i, j) for i in range(len(items)) for j in range(i + 1, len(items)) if items[i].name == items[j].name]
    joined = sum(labels[ids[i]] == labels[ids[j]] for i, j in pairs)
    plain = cluster_labels(ids, x, k=10, min_similarity=0.71)  # the embedding alone, validation threshold
    assert len(pairs) == 6 and joined >= 2 and joined > sum(plain[ids[i]] == plain[ids[j]] for i, j in pairs)


def _two_groups_with_bridge(rng, n: int = 6) -> tuple[list[str], np.ndarray]:
    centres = np.eye(16, dtype=np.float32)[:2]
    x = np.concatenate([c + 0.02 * rng.standard_normal((n, 16)).astype(np.float32) for c in centres])
    x[n - 1] = 0.5 * (x[0] + x[n])  # one track halfway between the groups joins both in the kNN graph
    x /= np.linalg.norm(x, axis=1, keepdims=True)
    return [f"t{i:02d}" for i in range(2 * n)], x


def test_communities_split_groups_joined_by_a_bridge(rng):
    ids, x = _two_groups_with_bridge(rng)
    labels = cluster_labels(ids, x, k=6, min_similarity=0.6)
    assert sorted(labels) == sorted(ids)  # every track exactly once
    assert len({labels[i] for i in ids[:5]}) == 1 and len({labels[i] for i in ids[6:]}) == 1
    assert labels["t00"] != labels["t06"]  # connected components would give one cluster
    assert all(labels[i] == min(j for j in ids if labels[j] == labels[i]) for i in ids)


def test_clusters_are_deterministic_and_keep_match_edges_together(rng):
    ids, x = _two_groups_with_bridge(rng)
    edges = [("t01", "t08"), ("t03", "missing")]
    labels = cluster_labels(ids, x, edges, k=6, min_similarity=0.6)
    assert labels["t01"] == labels["t08"]
    order = rng.permutation(len(ids))
    shuffled = cluster_labels([ids[i] for i in order], x[order], edges, k=6, min_similarity=0.6)
    assert shuffled == labels
    assert cluster_labels([], np.zeros((0, 16), np.float32)) == {}
    assert cluster_labels(["a"], x[:1], [("a", "a")]) == {"a": "a"}
