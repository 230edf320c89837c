"""Refining candidate MIDI-audio pairs: CQT DTW, its null alignments and the time map.

The decisions made from them are ``hashing.decisions``'s. ``cohort_normalise`` and ``confidence_from_score``
are the previous decision (the DTW score against the median of the recording's other candidates, with cuts
fitted on soundfont renderings), kept as the baseline ``tests/bench/eval_decisions.py`` measures against.
"""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np
from scipy.ndimage import median_filter

from hashing.calibration import Calibration
from hashing.dtw import cosine_cost, dtw

#: Calibration of the cohort-normalised DTW score (``tests/bench/eval_matching.py`` fits it on the
#: development corpus): confidence is 0.5 at SCORE_THRESHOLD, logistic with slope 1 / SCORE_SCALE.
SCORE_THRESHOLD = -0.32
SCORE_SCALE = 0.05
#: Typical median raw score of an audio track against unrelated MIDI files, used when an audio track
#: has too few MIDI candidates to estimate its own (development corpus).
DEFAULT_COHORT_MEDIAN = 0.88
MIN_COHORT = 3
SMOOTHING_FRAMES = 9  # median filter along time (~0.4 s): keeps sustained pitches, drops transients
MAX_MAP_POINTS = 512
#: Pairs with more DTW cells than this (e.g. a score against a three-hour recording) are aligned on frames
#: averaged k at a time on both sides, so memory stays bounded (~0.3 GB); tempo ratios are unchanged.
MAX_DTW_CELLS = 24_000_000


@dataclass
class PairAlignment:
    """The DTW refinement of one (MIDI, audio) pair."""

    score: float  # normalised DTW distance, lower is better (~1 for unrelated tracks)
    midi_times_s: np.ndarray  # monotonic time map, MIDI side
    audio_times_s: np.ndarray  # monotonic time map, audio side
    #: scores of the same alignment with the MIDI side's order destroyed (``null_features``): what this pair
    #: scores by chance, at its own lengths and timbres (``hashing.decisions.match_margin``)
    null_scores: tuple[float, ...] = ()
    aligned_s: float = 0.0  # seconds of music aligned on the shorter side


def confidence_from_score(score: float | np.ndarray, threshold: float = SCORE_THRESHOLD,
                          scale: float = SCORE_SCALE) -> np.ndarray:
    """Logistic map of a cohort-normalised DTW score to a confidence in [0, 1]."""
    return Calibration(threshold, scale).confidence(score)


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


def alignment_features(cqt: np.ndarray, smoothing: int = SMOOTHING_FRAMES) -> np.ndarray:
    """Log-CQT smoothed along time, then standardised per bin over the track (removes timbre and level)."""
    smooth = median_filter(cqt, size=(smoothing, 1), mode="nearest") if smoothing > 1 else cqt
    return ((smooth - smooth.mean(axis=0)) / (smooth.std(axis=0) + 1e-6)).astype(np.float32)


def pooling_factor(n: int, m: int, max_cells: int | None = None) -> int:
    """The smallest k such that (n / k) * (m / k) DTW cells fit in ``max_cells`` (default MAX_DTW_CELLS)."""
    return max(1, int(np.ceil(np.sqrt(n * m / (max_cells or MAX_DTW_CELLS)))))


def pool_frames(x: np.ndarray, k: int) -> np.ndarray:
    """Average consecutive groups of ``k`` frames (the last group may be shorter)."""
    if k <= 1:
        return x
    n = -(-len(x) // k)
    padded = np.concatenate([x, np.repeat(x[-1:], n * k - len(x), axis=0)])
    return padded.reshape(n, k, x.shape[1]).mean(axis=1).astype(x.dtype)


def _subsequence_path(midi_f: np.ndarray, audio_f: np.ndarray):
    """Subsequence DTW of the shorter sequence inside the longer; returns (result, midi_idx, audio_idx)
    in frames of the inputs (pooled when the pair is too big, ``pooling_factor``)."""
    k = pooling_factor(len(midi_f), len(audio_f))
    if k > 1:
        result, midi_idx, audio_idx = _subsequence_path(pool_frames(midi_f, k), pool_frames(audio_f, k))
        return result, midi_idx * k + (k - 1) / 2, audio_idx * k + (k - 1) / 2
    midi_first = len(midi_f) <= len(audio_f)
    short, long_ = (midi_f, audio_f) if midi_first else (audio_f, midi_f)
    result = dtw(cosine_cost(short, long_), subsequence=True)
    path = result.path
    midi_idx, audio_idx = (path[:, 0], path[:, 1]) if midi_first else (path[:, 1], path[:, 0])
    return result, midi_idx, audio_idx


def time_map(midi_idx: np.ndarray, audio_idx: np.ndarray, frame_rate: float) -> tuple[np.ndarray, np.ndarray]:
    """A DTW path as a time map with one point per audio frame (the mean MIDI frame where the path runs
    vertically), thinned to at most MAX_MAP_POINTS points. Returns (midi_times_s, audio_times_s)."""
    audio_frames, starts, counts = np.unique(audio_idx, return_index=True, return_counts=True)
    midi_frames = np.add.reduceat(midi_idx.astype(np.float64), starts) / counts
    keep = thin_path(np.arange(len(audio_frames))[:, None])[:, 0]
    return midi_frames[keep] / frame_rate, audio_frames[keep] / frame_rate


#: Null surrogates of a pair, in the order they are aligned: (kind, amount). "reverse": the MIDI side's features
#: reversed in time and rotated by that share of their length (keeps register, instruments and key, not the order
#: of the music); "shift": transposed by that many semitones, wrapping round (keeps the rhythm and percussion, not
#: the pitches). Percussive pairs fool the first kind and sustained ones the second; together they bound what a
#: pair scores by chance at its own lengths (the fit collection: unrelated pairs' margin at most 0.11 with all six,
#: 0.24 with reversals only).
NULLS = (("reverse", 0.0), ("shift", 6), ("reverse", 1 / 3), ("shift", 3), ("reverse", 2 / 3), ("shift", 9))
#: Null alignment stops once a pair scores worse than one of its nulls (margin below this): it is no match
#: under any calibration, and most candidate pairs stop after one null.
NULL_STOP_MARGIN = 0.0


def null_features(midi_f: np.ndarray, kind: str, amount: float) -> np.ndarray:
    """One null surrogate (``NULLS``) of a MIDI file's alignment features."""
    if kind == "reverse":
        reversed_f = midi_f[::-1]
        return np.ascontiguousarray(np.roll(reversed_f, int(amount * len(reversed_f)), axis=0))
    return np.ascontiguousarray(np.roll(midi_f, int(amount), axis=1))


def null_scores(midi_f: np.ndarray, audio_f: np.ndarray, score: float,
                stop_margin: float = NULL_STOP_MARGIN) -> tuple[float, ...]:
    """The scores of the pair's null alignments, in ``NULLS`` order, stopping once one scores better than
    ``score + stop_margin``."""
    scores: list[float] = []
    for kind, amount in NULLS:
        scores.append(float(_subsequence_path(null_features(midi_f, kind, amount), audio_f)[0].score))
        if scores[-1] - score < stop_margin:
            break
    return tuple(scores)


def align_pair(midi_cqt: np.ndarray, audio_cqt: np.ndarray, frame_rate: float, nulls: bool = True) -> PairAlignment:
    """Subsequence DTW of the shorter sequence inside the longer one, and of the MIDI side's null surrogates.

    Cost: cosine distance between alignment features; non-diagonal steps pay the median cost (Raffel &
    Ellis); the score is the path's mean cost over the mean of the spanned cost submatrix.
    """
    midi_f, audio_f = alignment_features(midi_cqt), alignment_features(audio_cqt)
    result, midi_idx, audio_idx = _subsequence_path(midi_f, audio_f)
    midi_times, audio_times = time_map(midi_idx, audio_idx, frame_rate)
    nulls_found = null_scores(midi_f, audio_f, float(result.score)) if nulls else ()
    shorter = audio_idx if len(audio_f) <= len(midi_f) else midi_idx
    aligned_s = float(np.ptp(shorter) + 1) / frame_rate if len(shorter) else 0.0
    return PairAlignment(score=float(result.score), midi_times_s=midi_times, audio_times_s=audio_times,
                         null_scores=nulls_found, aligned_s=aligned_s)


def refine_time_map(midi_cqt: np.ndarray, audio_cqt: np.ndarray, frame_rate: float) -> tuple[np.ndarray, np.ndarray]:
    """The time map of a likely match, re-aligned on unsmoothed features. Returns (midi_times_s, audio_times_s)."""
    _, midi_idx, audio_idx = _subsequence_path(alignment_features(midi_cqt, 1), alignment_features(audio_cqt, 1))
    return time_map(midi_idx, audio_idx, frame_rate)

