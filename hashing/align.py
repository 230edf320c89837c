"""Refining candidate MIDI-audio pairs: CQT DTW, a confidence in [0, 1] and the time map."""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np

from hashing.dtw import cosine_cost, dtw

#: Raffel-normalised DTW distance at which confidence is 0.5, and the logistic slope around it.
#: Set on the development corpus (correct pairs score ~0.3-0.5, unrelated pairs ~0.85-1.0).
SCORE_THRESHOLD = 0.70
SCORE_SCALE = 0.04
MAX_MAP_POINTS = 512


@dataclass
class PairAlignment:
    """The DTW refinement of one (MIDI, audio) pair."""

    score: float  # normalised DTW distance, lower is better
    confidence: float  # in [0, 1]; > 0.5 means a match
    midi_times_s: np.ndarray  # monotonic time map, MIDI side
    audio_times_s: np.ndarray  # monotonic time map, audio side


def confidence_from_score(score: float, threshold: float = SCORE_THRESHOLD, scale: float = SCORE_SCALE) -> float:
    """Logistic map of a normalised DTW distance to a confidence in [0, 1]."""
    return float(1.0 / (1.0 + np.exp(np.clip((score - threshold) / scale, -60, 60))))


def thin_path(path: np.ndarray, max_points: int = MAX_MAP_POINTS) -> np.ndarray:
    """Keep at most ``max_points`` evenly spaced rows of a DTW path, always the first and the last."""
    if len(path) <= max_points:
        return path
    keep = np.unique(np.linspace(0, len(path) - 1, max_points).round().astype(int))
    return path[keep]


def standardise_bins(features: np.ndarray) -> np.ndarray:
    """Zero mean, unit variance per feature dimension over the track (removes timbre and level offsets)."""
    return ((features - features.mean(axis=0)) / (features.std(axis=0) + 1e-6)).astype(np.float32)


def align_pair(midi_cqt: np.ndarray, audio_cqt: np.ndarray, frame_rate: float) -> PairAlignment:
    """Subsequence DTW of the shorter sequence inside the longer one.

    Cost: cosine distance between per-track standardised log-CQT frames; non-diagonal steps pay the
    median cost (Raffel & Ellis); the score is the path's mean cost over the mean of the spanned cost
    submatrix.
    """
    midi_first = len(midi_cqt) <= len(audio_cqt)
    midi_z, audio_z = standardise_bins(midi_cqt), standardise_bins(audio_cqt)
    short, long_ = (midi_z, audio_z) if midi_first else (audio_z, midi_z)
    result = dtw(cosine_cost(short, long_), subsequence=True)
    path = thin_path(result.path)
    midi_idx, audio_idx = (path[:, 0], path[:, 1]) if midi_first else (path[:, 1], path[:, 0])
    return PairAlignment(
        score=float(result.score),
        confidence=confidence_from_score(result.score),
        midi_times_s=midi_idx / frame_rate,
        audio_times_s=audio_idx / frame_rate,
    )
