"""Tests for encoders.structure.laplacian (Laplacian structural segmentation)."""

from __future__ import annotations

import librosa
import mir_eval
import numpy as np
import pytest

from encoders.structure.laplacian import Segment, beat_sync, laplacian_segments
from tests.conftest import synthetic_form

FPS = 21.5
N_BINS = 48


def _synthetic(form: str, section_s: float = 15.0, seed: int = 0, noise_db: float = 2.0):
    """Log-CQT-like frames with a known form: each section type loops its own 4 random 'chords' (1 s each)."""
    feats, times, duration = synthetic_form(form, section_s, np.random.default_rng(seed), FPS, -60.0, (-12.0, 0.0),
                                            noise_db)
    ref_intervals = np.array([[i * section_s, (i + 1) * section_s] for i in range(len(form))])
    return feats, times, duration, ref_intervals, list(form)


def _assert_covers(segs: list[Segment], duration: float) -> None:
    assert segs, "no segments"
    assert segs[0].start_s == 0.0
    assert segs[-1].end_s == duration
    for seg, nxt in zip(segs[:-1], segs[1:], strict=True):
        assert seg.end_s == nxt.start_s
    assert all(s.end_s > s.start_s for s in segs)
    # labels are "A", "B", ... in order of first appearance
    first_seen = list(dict.fromkeys(s.label for s in segs))
    assert first_seen == [chr(ord("A") + i) for i in range(len(first_seen))]


def _scores(
    segs: list[Segment], ref_intervals: np.ndarray, ref_labels: list[str]
) -> tuple[float, float, float]:
    est = np.array([[s.start_s, s.end_s] for s in segs])
    labels = [s.label for s in segs]
    f_15 = mir_eval.segment.detection(ref_intervals, est, window=1.5, trim=True)[2]
    f_3 = mir_eval.segment.detection(ref_intervals, est, window=3.0, trim=True)[2]
    pair_f = mir_eval.segment.pairwise(ref_intervals, ref_labels, est, labels)[2]
    return f_15, f_3, pair_f


@pytest.mark.parametrize("seed", [0, 1, 2])
def test_synthetic_ababc_boundaries_and_labels(seed: int) -> None:
    feats, times, duration, ref, ref_labels = _synthetic("ABABC", seed=seed)
    segs = laplacian_segments(feats, times, duration, np.arange(0.0, duration, 0.5))
    _assert_covers(segs, duration)
    f_15, f_3, pair_f = _scores(segs, ref, ref_labels)
    assert f_15 >= 0.8, (f_15, segs)  # boundaries within +-1.5 s
    assert f_3 >= 0.8, (f_3, segs)
    assert pair_f >= 0.8, (pair_f, segs)
    assert [s.label for s in segs] == ref_labels


def test_synthetic_without_beats_uses_fixed_windows() -> None:
    feats, times, duration, ref, ref_labels = _synthetic("ABACABA", seed=3)
    segs = laplacian_segments(feats, times, duration, None)
    _assert_covers(segs, duration)
    f_15, _, pair_f = _scores(segs, ref, ref_labels)
    assert f_15 >= 0.8 and pair_f >= 0.8, (f_15, pair_f, segs)


def test_fixed_n_sections_and_min_segment() -> None:
    feats, times, duration, _, _ = _synthetic("ABABC", seed=4)
    beats = np.arange(0.0, duration, 0.5)
    two = laplacian_segments(feats, times, duration, beats, n_sections=2)
    _assert_covers(two, duration)
    assert len({s.label for s in two}) <= 2
    long_only = laplacian_segments(feats, times, duration, beats, min_segment_s=20.0)
    _assert_covers(long_only, duration)
    assert all(s.end_s - s.start_s >= 20.0 for s in long_only) or len(long_only) == 1


def test_duration_not_matching_frames_still_covers() -> None:
    feats, times, duration, _, _ = _synthetic("ABAB", seed=5)
    for dur in (duration - 7.3, duration + 4.1):
        _assert_covers(laplacian_segments(feats, times, dur, np.arange(0.0, duration, 0.5)), dur)


@pytest.mark.parametrize(
    ("n_frames", "duration", "fill"),
    [
        (int(60 * FPS), 60.0, 0.0),  # silent: all zeros
        (int(60 * FPS), 60.0, -42.0),  # constant
        (int(3 * FPS), 3.0, None),  # 3 s track: too few beats
        (1, 0.05, None),  # single frame
    ],
)
def test_degenerate_inputs_give_one_segment(n_frames: int, duration: float, fill: float | None) -> None:
    rng = np.random.default_rng(0)
    feats = rng.normal(-40.0, 10.0, (n_frames, N_BINS)) if fill is None else np.full((n_frames, N_BINS), fill)
    times = np.arange(n_frames) / FPS
    for beats in (np.arange(0.0, duration, 0.5), None):
        assert laplacian_segments(feats, times, duration, beats) == [Segment(0.0, duration, "A")]


def test_non_finite_features_and_bad_duration() -> None:
    feats, times, duration, _, _ = _synthetic("ABAB", seed=6)
    feats[::7, :10] = -np.inf
    _assert_covers(laplacian_segments(feats, times, duration, np.arange(0.0, duration, 0.5)), duration)
    with pytest.raises(ValueError):
        laplacian_segments(feats, times, 0.0)


def test_deterministic() -> None:
    feats, times, duration, _, _ = _synthetic("ABCABD", seed=7, noise_db=5.0)
    beats = np.arange(0.0, duration, 0.5)
    first = laplacian_segments(feats, times, duration, beats)
    second = laplacian_segments(feats.copy(), times.copy(), duration, beats.copy())
    assert first == second


def test_beat_sync_median_and_fallback() -> None:
    times = np.arange(100) / 10.0  # 10 frames/s, 10 s
    feats = np.stack([np.arange(100.0), -np.arange(100.0)], axis=1)
    beat_feats, starts = beat_sync(feats, times, np.array([1.0, 2.0, 3.0, 4.0, 5.0]))
    assert beat_feats.shape == (6, 2) and starts.shape == (6,)
    np.testing.assert_allclose(starts, [0.0, 1.0, 2.0, 3.0, 4.0, 5.0])
    np.testing.assert_allclose(beat_feats[1], [14.5, -14.5])  # median of frames 10..19
    np.testing.assert_allclose(beat_feats[-1], [74.5, -74.5])  # frames 50..99
    for beats in (None, np.array([2.0, 5.0])):  # no / too few beats -> 0.5 s windows
        fb_feats, fb_starts = beat_sync(feats, times, beats)
        assert len(fb_feats) == len(fb_starts) == 20
        np.testing.assert_allclose(np.diff(fb_starts), 0.5)


def _render(form: str, section_s: float, sr: int) -> np.ndarray:
    """Decaying chord loops (root + triad, 3 harmonics each), one 4-chord progression per section type."""
    progressions = {
        "A": [[48, 52, 55, 60], [45, 52, 57, 60], [41, 53, 57, 60], [43, 55, 59, 62]],  # C Am F G
        "B": [[39, 51, 55, 58], [46, 50, 53, 58], [44, 51, 56, 60], [42, 54, 58, 61]],  # Eb Bb Ab Gb
    }
    n = sr  # 1 s chords
    env = np.exp(-np.arange(n) / (0.4 * sr))
    chords = []
    for name in form:
        for i in range(int(section_s)):
            notes = progressions[name][i % 4]
            tone = sum(
                librosa.tone(librosa.midi_to_hz(m) * h, sr=sr, length=n) / h for m in notes for h in (1, 2, 3)
            )
            chords.append(tone * env)
    return 0.1 * np.concatenate(chords)


def test_real_audio_cqt_aba() -> None:
    sr, hop, section_s = 22050, 1024, 15.0
    y = _render("ABA", section_s, sr)
    cqt = np.abs(librosa.cqt(y, sr=sr, hop_length=hop, fmin=librosa.midi_to_hz(36), n_bins=N_BINS))
    feats = librosa.amplitude_to_db(cqt, ref=np.max).T
    times = librosa.frames_to_time(np.arange(len(feats)), sr=sr, hop_length=hop)
    duration = len(y) / sr
    true_bounds = np.array([section_s, 2 * section_s])
    for beats in (np.arange(0.0, duration, 0.5), None):
        segs = laplacian_segments(feats, times, duration, beats)
        _assert_covers(segs, duration)
        est_bounds = np.array([s.start_s for s in segs[1:]])
        assert est_bounds.size, segs
        assert np.abs(est_bounds[:, None] - true_bounds[None, :]).min() <= 3.0, segs
