"""Tests for the learned segmentation embedding (encoders.structure.embedding, encoders.structure.learned, and
its training, encoders.training.structure).

Synthetic inputs only (no .cache data); the shipped weights are loaded where a trained model is needed.
"""

from __future__ import annotations

from types import SimpleNamespace

import librosa
import mir_eval
import numpy as np
import pytest
import torch

from encoders.features import FRAME_RATE, log_cqt
from encoders.structure.embedding import (
    DEFAULT_WEIGHTS,
    EmbeddingConfig,
    SegmentEmbeddingNet,
    embed_beats,
    load_segment_model,
)
from encoders.structure.laplacian import Segment, beat_sync, laplacian_segments
from encoders.structure.learned import FEATURES, learned_segments
from encoders.training.structure import sample_triplets, train_segment_embedding
from tests.conftest import synthetic_form


def _synthetic(form: str, section_s: float = 12.0, seed: int = 0, noise: float = 0.03):
    """[0, 1] log-CQT-like frames: each section type loops its own 4 random 'chords' (1 s each)."""
    feats, times, duration = synthetic_form(form, section_s, np.random.default_rng(seed), FRAME_RATE, 0.1, (0.7, 1.0),
                                            noise, clip=(0.0, 1.0))
    return feats, times, duration, np.arange(0.0, duration, 0.5)


def _assert_covers(segs: list[Segment], duration: float) -> None:
    assert segs and segs[0].start_s == 0.0 and segs[-1].end_s == duration
    for seg, nxt in zip(segs[:-1], segs[1:], strict=True):
        assert seg.end_s == nxt.start_s and seg.end_s > seg.start_s
    first_seen = list(dict.fromkeys(s.label for s in segs))
    assert first_seen == [chr(ord("A") + i) for i in range(len(first_seen))]


def test_network_shapes_and_unit_norm() -> None:
    torch.manual_seed(0)
    for cfg in (EmbeddingConfig(), EmbeddingConfig(context_beats=16, sub_beats=2, width=4, dim=8)):
        net = SegmentEmbeddingNet(cfg).eval()
        x = torch.rand(5, cfg.context_beats * cfg.sub_beats, cfg.n_bins)
        with torch.no_grad():
            y = net(x)
        assert y.shape == (5, cfg.dim)
        np.testing.assert_allclose(y.norm(dim=1).numpy(), 1.0, atol=1e-5)


def test_shipped_weights_small_and_loadable() -> None:
    assert DEFAULT_WEIGHTS.stat().st_size < 2 * 1024 * 1024
    model = load_segment_model()
    assert not model.training
    feats, times, _, beats = _synthetic("AB", seed=1)
    emb, starts = embed_beats(feats, beats, model, frame_times=times)
    ref_feats, ref_starts = beat_sync(feats, times, beats)
    assert emb.shape == (len(ref_feats), model.config.dim) and emb.dtype == np.float32
    np.testing.assert_allclose(starts, ref_starts)  # rows line up with the baseline's beat features
    np.testing.assert_allclose(np.linalg.norm(emb, axis=1), 1.0, atol=1e-5)
    # a second call gives the same numbers (eval mode, no dropout / batch statistics)
    np.testing.assert_array_equal(emb, embed_beats(feats, beats, model, frame_times=times)[0])


def test_triplet_sampler_positive_near_negative_far() -> None:
    rng = np.random.default_rng(0)
    n_beats = np.array([10, 40, 200, 17])  # the 10-beat track is too short for neg_min=16
    trip = sample_triplets(n_beats, 5000, rng, pos_max=4, neg_min=16)
    track, anchor, pos, neg = trip.T
    assert set(np.unique(track)) == {1, 2, 3}
    n = n_beats[track]
    for idx in (anchor, pos, neg):
        assert (idx >= 0).all() and (idx < n).all()
    assert ((np.abs(pos - anchor) >= 1) & (np.abs(pos - anchor) <= 4)).all()
    assert (np.abs(neg - anchor) >= 16).all()
    # negatives reach both sides of the anchor and the far ends of long tracks
    long = track == 2
    assert (neg[long] < anchor[long]).any() and (neg[long] > anchor[long]).any()
    assert neg[long].min() < 5 and neg[long].max() > 194
    np.testing.assert_array_equal(trip, sample_triplets(n_beats, 5000, np.random.default_rng(0), pos_max=4,
                                                        neg_min=16))
    with pytest.raises(ValueError):
        sample_triplets(np.array([5, 16]), 10, rng, neg_min=16)


@pytest.mark.parametrize("feature", FEATURES)
def test_learned_segments_cover_with_valid_labels(feature: str) -> None:
    feats, times, duration, beats = _synthetic("ABACB", seed=2)
    for dur, bts in ((duration, beats), (duration - 5.3, beats), (duration + 3.0, None)):
        _assert_covers(learned_segments(feats, times, dur, bts, feature=feature), dur)
    segs = learned_segments(feats, times, duration, beats, feature=feature, n_sections=2)
    assert len({s.label for s in segs}) <= 2


def test_cqt_feature_is_the_baseline() -> None:
    for seed, form in ((3, "ABAB"), (4, "AABAC")):
        feats, times, duration, beats = _synthetic(form, seed=seed, noise=0.1)
        for bts in (beats, None):
            assert learned_segments(feats, times, duration, bts, feature="cqt") == \
                laplacian_segments(feats, times, duration, bts)


def test_degenerate_and_bad_inputs() -> None:
    n = int(40 * FRAME_RATE)
    times = np.arange(n) / FRAME_RATE
    for fill in (0.0, 0.4):
        segs = learned_segments(np.full((n, 48), fill, np.float32), times, 40.0, np.arange(0, 40, 0.5))
        assert segs == [Segment(0.0, 40.0, "A")]
    short = np.random.default_rng(0).random((int(2 * FRAME_RATE), 48)).astype(np.float32)
    assert learned_segments(short, np.arange(len(short)) / FRAME_RATE, 2.0) == [Segment(0.0, 2.0, "A")]
    feats, times, duration, beats = _synthetic("AB", seed=5)
    with pytest.raises(ValueError):
        learned_segments(feats, times, 0.0, beats)
    with pytest.raises(ValueError):
        learned_segments(feats, times, duration, beats, feature="mfcc")
    with pytest.raises(ValueError):
        learned_segments(feats, times[:-3], duration, beats)


def _chord_audio(form: str, section_s: int, sr: int = 22050) -> np.ndarray:
    """Decaying chord loops (triads + octave, 3 harmonics), one 4-chord progression per section type, 1 s each."""
    progressions = {
        "A": [[48, 52, 55, 60], [45, 52, 57, 60], [41, 53, 57, 60], [43, 55, 59, 62]],  # C Am F G
        "B": [[51, 55, 58, 63], [46, 50, 53, 58], [44, 51, 56, 60], [42, 54, 58, 61]],  # Eb Bb Ab Gb
    }
    env = np.exp(-np.arange(sr) / (0.4 * sr))
    tones = {}
    out = []
    for name in form:
        for i in range(section_s):
            key = (name, i % 4)
            if key not in tones:
                tones[key] = env * sum(librosa.tone(librosa.midi_to_hz(m) * h, sr=sr, length=sr) / h
                                       for m in progressions[name][i % 4] for h in (1, 2, 3))
            out.append(tones[key])
    return 0.1 * np.concatenate(out)


def test_synthetic_aaba_audio_boundaries_near_truth() -> None:
    section_s = 12
    cqt, _ = log_cqt(_chord_audio("AABA", section_s))
    times = np.arange(len(cqt)) / FRAME_RATE
    duration = 4.0 * section_s
    beats = np.arange(0.0, duration, 0.5)
    ref = np.array([[i * section_s, (i + 1) * section_s] for i in range(4)], dtype=float)
    for feature in ("fused", "learned"):
        segs = learned_segments(cqt, times, duration, beats, feature=feature)
        _assert_covers(segs, duration)
        est = np.array([[s.start_s, s.end_s] for s in segs])
        f3 = mir_eval.segment.detection(ref, est, window=3.0, trim=True)[2]
        pair_f = mir_eval.segment.pairwise(ref, list("AABA"), est, [s.label for s in segs])[2]
        # the A -> B and B -> A changes are found (the A A repeat has no boundary cue but repetition)
        found = [s.start_s for s in segs[1:]]
        for true_bound in (2 * section_s, 3 * section_s):
            assert min(abs(b - true_bound) for b in found) <= 3.0, (feature, segs)
        assert f3 >= 0.66 and pair_f >= 0.6, (feature, f3, pair_f, segs)


def _toy_pieces(n: int = 6) -> list[SimpleNamespace]:
    pieces = []
    for i in range(n):
        feats, times, duration, beats = _synthetic("ABCD", section_s=8.0, seed=10 + i, noise=0.05)
        pieces.append(SimpleNamespace(cqt=feats, frame_times=times, beat_times=beats, tracked_beats=beats[::2]))
    return pieces


def test_tiny_training_lowers_triplet_loss_and_is_deterministic() -> None:
    cfg = EmbeddingConfig(width=4, dim=8)
    kwargs = dict(steps=120, batch=16, lr=5e-3, config=cfg, log_every=30, progress=False, seed=3)
    first = train_segment_embedding(_toy_pieces(), **kwargs)
    assert first.n_tracks == 12  # one track per piece and beat source
    assert len(first.losses) == 4
    assert first.losses[-1] < 0.6 * first.losses[0], first.losses
    second = train_segment_embedding(_toy_pieces(), **kwargs)
    assert first.losses == second.losses
    for a, b in zip(first.model.state_dict().values(), second.model.state_dict().values(), strict=True):
        assert torch.equal(a, b)
