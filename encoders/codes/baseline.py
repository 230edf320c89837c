"""Non-learned binary codes: signs of fixed random projections (the baseline for the learned encoders).

Frame codes: one 32-bit code per 8 CQT frames (Raffel's 8x downsampling); track code: one 256-bit code
per track from pooled CQT statistics, for the first, cheapest pruning stage. ``--model random-projection``.
"""

from __future__ import annotations

from dataclasses import dataclass, field

import numpy as np

from encoders.codes.bits import DOWNSAMPLE, FRAME_BITS, TRACK_BITS, code_windows, pack_uint32, pad_frames
from encoders.features import N_BINS


def _standardise(x: np.ndarray) -> np.ndarray:
    x = x - x.mean(axis=-1, keepdims=True)
    return x / (x.std(axis=-1, keepdims=True) + 1e-6)


@dataclass
class RandomProjectionHasher:
    """Sign-of-random-projection hashes, identical for both modalities; deterministic from ``seed``."""

    seed: int = 0
    name: str = "random-projection-v1"
    windows: bool = False  # ``all_codes`` also gives the codes of 30-second windows
    frame_projection: np.ndarray = field(init=False, repr=False)
    track_projection: np.ndarray = field(init=False, repr=False)

    def __post_init__(self) -> None:
        rng = np.random.default_rng(self.seed)
        self.frame_projection = rng.standard_normal((DOWNSAMPLE * N_BINS, FRAME_BITS)).astype(np.float32)
        self.track_projection = rng.standard_normal((2 * N_BINS, TRACK_BITS)).astype(np.float32)

    def frame_codes(self, cqt: np.ndarray, modality: str = "audio") -> np.ndarray:
        """(n_frames, 48) log-CQT -> (ceil(n_frames / 8),) uint32 codes."""
        windows = _standardise(pad_frames(cqt).reshape(-1, DOWNSAMPLE * cqt.shape[1]))
        return pack_uint32(windows @ self.frame_projection > 0)

    def track_code(self, cqt: np.ndarray, modality: str = "audio") -> np.ndarray:
        """(n_frames, 48) log-CQT -> (32,) uint8, a 256-bit code of the whole track."""
        pooled = _standardise(np.concatenate([cqt.mean(axis=0), cqt.std(axis=0)]))
        return np.packbits(pooled @ self.track_projection > 0)

    def all_codes(self, cqt: np.ndarray, modality: str = "audio") -> tuple[np.ndarray, np.ndarray, np.ndarray]:
        """(frame codes, track code, window codes (w, 32) uint8): a track code of each window of
        ``bits.code_windows``, counted in frame codes of ``DOWNSAMPLE`` frames."""
        spans = code_windows(-(-len(cqt) // DOWNSAMPLE)) if self.windows else []
        windows = [self.track_code(cqt[s * DOWNSAMPLE:e * DOWNSAMPLE], modality) for s, e in spans]
        window = np.stack(windows) if windows else np.zeros((0, TRACK_BITS // 8), np.uint8)
        return self.frame_codes(cqt, modality), self.track_code(cqt, modality), window

