"""The beat grid structural segmentation runs on.

``structure_grid`` picks the beats (at most ``MAX_STRUCTURE_UNITS``, whatever the track's length);
``beat_bounds`` turns them into frame intervals. Both the beat-synchronous CQT of the Laplacian method
(``laplacian.beat_sync``) and the learned per-beat embeddings (``embedding.embed_beats``) are computed on
``beat_bounds``'s intervals, so their rows line up beat for beat.
"""

from __future__ import annotations

import librosa
import numpy as np

#: Structural segmentation compares every beat with every other: long tracks use a coarser grid.
MAX_STRUCTURE_UNITS = 2048
FALLBACK_HOP_S = 0.5  # window length used when no usable beat grid is given
MIN_GRID_BEATS = 4  # fewer beats than this -> fixed windows


def structure_grid(beats: np.ndarray, duration_s: float, max_units: int = MAX_STRUCTURE_UNITS) -> np.ndarray:
    """The beat grid the segmentation runs on: the beats, or every k-th beat (or evenly spaced times when
    there are too few beats) so that there are at most ``max_units`` units, whatever the track's length."""
    beats = np.asarray(beats, dtype=np.float64)
    if len(beats) > max_units:
        return beats[:: -(-len(beats) // max_units)]
    if len(beats) < MIN_GRID_BEATS and duration_s / FALLBACK_HOP_S > max_units:  # too many fallback windows
        return np.linspace(0.0, duration_s, max_units, endpoint=False)
    return beats


def beat_bounds(n_frames: int, frame_times: np.ndarray, beat_times: np.ndarray | None) -> np.ndarray:
    """Frame index of the start of each beat interval, then ``n_frames``: (n_beats + 1,) int.

    ``frame_times`` (n_frames,) seconds, increasing; ``beat_times`` seconds (non-finite ones dropped). With
    None or fewer than MIN_GRID_BEATS beats, fixed FALLBACK_HOP_S windows from the first frame to the last.
    """
    times = np.asarray(frame_times, dtype=np.float64).ravel()
    beats = None if beat_times is None else np.asarray(beat_times, dtype=np.float64).ravel()
    if beats is not None:
        beats = beats[np.isfinite(beats)]
    if beats is None or beats.size < MIN_GRID_BEATS:
        beats = np.arange(times[0], times[-1], FALLBACK_HOP_S)
    return librosa.util.fix_frames(np.searchsorted(times, np.sort(beats)), x_min=0, x_max=n_frames, pad=True)
