"""The non-learned baseline of the version embedding, for evaluations (the pipeline uses ``embedding``).

The 2D Fourier transform magnitude (2D-FTM) of beat-synchronous chroma patches, after
Bertin-Mahieux & Ellis (ISMIR 2012). The magnitude of the 2D DFT is invariant to circular shifts along
the chroma axis (transposition) and to time shifts within a patch; the median over patches summarises the
whole track.
"""

from __future__ import annotations

import numpy as np

from encoders.versions.chroma import beat_chroma

PATCH_BEATS = 75
CHROMA_POWER = 1.96  # Bertin-Mahieux & Ellis' contrast exponent


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
