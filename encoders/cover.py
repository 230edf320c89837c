"""Key-invariant version embeddings for cover detection.

Baseline: the 2D Fourier transform magnitude (2D-FTM) of beat-synchronous chroma patches, after
Bertin-Mahieux & Ellis (ISMIR 2012). The magnitude of the 2D DFT is invariant to circular shifts along
the chroma axis (transposition) and to time shifts within a patch; the median over patches summarises the
whole track.
"""

from __future__ import annotations

import librosa
import numpy as np

PATCH_BEATS = 75
CHROMA_POWER = 1.96  # Bertin-Mahieux & Ellis' contrast exponent
FALLBACK_BEAT_S = 0.5


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


def ftm2d_embedding(chroma: np.ndarray, frame_rate: float, beat_times: np.ndarray | None = None,
                    patch_beats: int = PATCH_BEATS) -> np.ndarray:
    """(n_frames, 12) chroma -> L2-normalised key- and shift-invariant 2D-FTM vector (patch_beats * 12,)."""
    beats = beat_chroma(chroma, frame_rate, beat_times)
    beats = beats / (beats.max(axis=1, keepdims=True) + 1e-9)
    beats = beats ** CHROMA_POWER
    if len(beats) < patch_beats:
        beats = np.concatenate([beats, np.zeros((patch_beats - len(beats), 12), beats.dtype)])
    windows = np.lib.stride_tricks.sliding_window_view(beats, (patch_beats, 12))[:, 0]
    stride = max(1, len(windows) // 64)  # bound the work on long tracks
    magnitudes = np.abs(np.fft.fft2(windows[::stride], axes=(1, 2)))
    magnitudes[:, 0, 0] = 0.0  # the DC term only measures loudness, and dominates every vector
    embedding = np.median(magnitudes, axis=0).ravel().astype(np.float32)
    return embedding / (np.linalg.norm(embedding) + 1e-9)
