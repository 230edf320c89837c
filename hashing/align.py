"""Refining candidate MIDI-audio pairs: CQT DTW, a confidence in [0, 1] and the time map."""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np
from scipy.ndimage import median_filter

from hashing.dtw import cosine_cost, dtw

#: Calibration of the cohort-normalised DTW score (``tests/bench/eval_matching.py`` fits it on the
#: development corpus): confidence is 0.5 at SCORE_THRESHOLD, logistic with slope 1 / SCORE_SCALE.
SCORE_THRESHOLD = -0.32
SCORE_SCALE = 0.05
#: Typical median raw score of an audio track against unrelated MIDI files, used when an audio track
#: has too few MIDI candidates to estimate its own (development corpus).
DEFAULT_COHORT_MEDIAN = 0.76
MIN_COHORT = 3
SMOOTHING_FRAMES = 9  # median filter along time (~0.4 s): keeps sustained pitches, drops transients
MAX_MAP_POINTS = 512


@dataclass
class PairAlignment:
    """The DTW refinement of one (MIDI, audio) pair."""

    score: float  # normalised DTW distance, lower is better (~1 for unrelated tracks)
    midi_times_s: np.ndarray  # monotonic time map, MIDI side
    audio_times_s: np.ndarray  # monotonic time map, audio side


def confidence_from_score(score: float | np.ndarray, threshold: float = SCORE_THRESHOLD,
                          scale: float = SCORE_SCALE) -> np.ndarray:
    """Logistic map of a cohort-normalised DTW score to a confidence in [0, 1]."""
    return 1.0 / (1.0 + np.exp(np.clip((np.asarray(score, dtype=np.float64) - threshold) / scale, -60, 60)))


def cohort_normalise(scores: np.ndarray) -> np.ndarray:
    """Scores of one audio track against several MIDI files, minus their median.

    Some recordings score well against everything (noisy, sustained, sparse); measuring each score
    against the same track's typical score removes that bias.
    """
    scores = np.asarray(scores, dtype=np.float64)
    median = np.median(scores) if len(scores) >= MIN_COHORT else DEFAULT_COHORT_MEDIAN
    return scores - median


def thin_path(path: np.ndarray, max_points: int = MAX_MAP_POINTS) -> np.ndarray:
    """Keep at most ``max_points`` evenly spaced rows of a DTW path, always the first and the last."""
    if len(path) <= max_points:
        return path
    keep = np.unique(np.linspace(0, len(path) - 1, max_points).round().astype(int))
    return path[keep]


def alignment_features(cqt: np.ndarray) -> np.ndarray:
    """Log-CQT smoothed along time, then standardised per bin over the track (removes timbre and level)."""
    smooth = median_filter(cqt, size=(SMOOTHING_FRAMES, 1), mode="nearest")
    return ((smooth - smooth.mean(axis=0)) / (smooth.std(axis=0) + 1e-6)).astype(np.float32)


def align_pair(midi_cqt: np.ndarray, audio_cqt: np.ndarray, frame_rate: float) -> PairAlignment:
    """Subsequence DTW of the shorter sequence inside the longer one.

    Cost: cosine distance between alignment features; non-diagonal steps pay the median cost (Raffel &
    Ellis); the score is the path's mean cost over the mean of the spanned cost submatrix.
    """
    midi_first = len(midi_cqt) <= len(audio_cqt)
    midi_f, audio_f = alignment_features(midi_cqt), alignment_features(audio_cqt)
    short, long_ = (midi_f, audio_f) if midi_first else (audio_f, midi_f)
    result = dtw(cosine_cost(short, long_), subsequence=True)
    path = thin_path(result.path)
    midi_idx, audio_idx = (path[:, 0], path[:, 1]) if midi_first else (path[:, 1], path[:, 0])
    return PairAlignment(score=float(result.score), midi_times_s=midi_idx / frame_rate,
                         audio_times_s=audio_idx / frame_rate)
