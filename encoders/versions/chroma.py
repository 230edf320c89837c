"""Chroma on beats: the inputs of the version embedding and the sequences that verify version candidates.

Every function takes (n_frames, 12) frame chroma (``encoders.features``) at ``frame_rate`` frames per second
and beat times in seconds (None, or fewer than 4 beats: fixed 0.5 s windows), and returns one row of 12
pitch classes per step:

* ``beat_chroma``: median chroma between beats (Bertin-Mahieux & Ellis's beat-synchronous chroma);
* ``beat_steps``: two steps per beat on beats brought into one tempo octave, each step max-normalised
  (the "beat" network's input);
* ``fixed_steps``: chroma averaged over fixed windows (the "fixed" network's input, no beats needed);
* ``version_sequence``: unit-norm chroma on the canonical-tempo beats, float16, what
  ``hashing.version_align`` aligns.
"""

from __future__ import annotations

import librosa
import numpy as np

from hashing.version_align import pool_steps

STEPS_PER_BEAT = 2
MIN_STEPS = 8
CANONICAL_BEAT_S = 0.5  # beats are brought into [0.5, 1.0) s (60-120 per minute)
FIXED_HOP_S = 0.093  # hop of the fixed-rate input (about two feature frames)
FALLBACK_BEAT_S = 0.5
#: Alignment steps kept per track for version verification (hashing.version_align): longer tracks are pooled.
MAX_SEQUENCE_STEPS = 1024


def beat_chroma(chroma: np.ndarray, frame_rate: float, beat_times: np.ndarray | None) -> np.ndarray:
    """Median-aggregate (n_frames, 12) chroma between beats (or 0.5 s windows without beats)."""
    n = len(chroma)
    if beat_times is None or len(beat_times) < 4:
        step = max(1, int(round(FALLBACK_BEAT_S * frame_rate)))
        boundaries = np.arange(0, n, step)
    else:
        boundaries = np.unique(np.clip(np.round(np.asarray(beat_times) * frame_rate).astype(int), 0, n - 1))
    synced = librosa.util.sync(chroma.T, boundaries, aggregate=np.median, pad=True)
    return synced.T


def subdivide(beat_times: np.ndarray | None, steps: int = STEPS_PER_BEAT) -> np.ndarray | None:
    """Beat times with ``steps - 1`` evenly spaced times inserted between consecutive beats."""
    if beat_times is None or len(beat_times) < 2 or steps == 1:
        return beat_times
    b = np.asarray(beat_times, dtype=np.float64)
    frac = np.arange(steps) / steps
    inner = (b[:-1, None] + np.diff(b)[:, None] * frac[None, :]).ravel()
    return np.concatenate([inner, b[-1:]])


def canonical_beats(beat_times: np.ndarray | None, shortest_s: float = CANONICAL_BEAT_S) -> np.ndarray | None:
    """Beats in one tempo octave: every other beat while the median beat is shorter than ``shortest_s``,
    beats split in two while it is ``2 * shortest_s`` or longer (beat trackers often double a tempo)."""
    if beat_times is None or len(beat_times) < 4:
        return beat_times
    b = np.asarray(beat_times, dtype=np.float64)
    period = float(np.median(np.diff(b)))
    while period < shortest_s and len(b) >= 8:
        b, period = b[::2], 2 * period
    while period >= 2 * shortest_s:
        b, period = subdivide(b, 2), period / 2
    return b


def scaled_beats(beat_times: np.ndarray | None, ratio: float) -> np.ndarray | None:
    """Beat times at ``ratio`` times the beat period (1.5: every one and a half beats), interpolated."""
    if beat_times is None or len(beat_times) < 4 or ratio == 1.0:
        return beat_times
    b = np.asarray(beat_times, dtype=np.float64)
    return np.interp(np.arange(0.0, len(b) - 1 + 1e-9, ratio), np.arange(len(b)), b)


def beat_steps(chroma: np.ndarray, frame_rate: float, beat_times: np.ndarray | None) -> np.ndarray:
    """(n_frames, 12) chroma -> (n_steps, 12) float32 sub-beat chroma (tempo octave canonicalised), each
    step max-normalised."""
    steps = beat_chroma(np.asarray(chroma, dtype=np.float32), frame_rate, subdivide(canonical_beats(beat_times)))
    return _max_normalised(steps)


def version_sequence(chroma: np.ndarray, frame_rate: float, beat_times: np.ndarray | None,
                     max_steps: int = MAX_SEQUENCE_STEPS) -> np.ndarray:
    """(n_frames, 12) chroma -> (n_beats, 12) float16 unit-norm chroma on the canonical-tempo beats: the
    sequence ``hashing.version_align`` aligns to verify version candidates (at most ``max_steps`` steps)."""
    steps = beat_chroma(np.asarray(chroma, dtype=np.float32), frame_rate, canonical_beats(beat_times))
    return pool_steps(steps, max_steps).astype(np.float16)


def fixed_steps(chroma: np.ndarray, frame_rate: float, hop_s: float = FIXED_HOP_S) -> np.ndarray:
    """(n_frames, 12) chroma -> (n_steps, 12) float32 chroma averaged over windows of ``hop_s``, each step
    max-normalised (no beats needed)."""
    c = np.asarray(chroma, dtype=np.float32)
    n = len(c)
    if n == 0:
        return np.zeros((MIN_STEPS, 12), np.float32)
    starts = np.unique(np.round(np.arange(0.0, n / frame_rate, hop_s) * frame_rate).astype(int))
    starts = starts[starts < n]
    steps = np.add.reduceat(c, starts, axis=0) / np.diff(np.append(starts, n))[:, None]
    return _max_normalised(steps)


def _max_normalised(steps: np.ndarray) -> np.ndarray:
    """Each step divided by its largest pitch class, zero steps appended up to MIN_STEPS; float32."""
    steps = steps / (steps.max(axis=1, keepdims=True) + 1e-6)
    if len(steps) < MIN_STEPS:
        steps = np.concatenate([steps, np.zeros((MIN_STEPS - len(steps), 12), np.float32)])
    return steps.astype(np.float32)
