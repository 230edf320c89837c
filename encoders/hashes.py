"""Non-learned binary codes: signs of fixed random projections (the baseline for learned encoders).

Frame codes: one 32-bit code per 8 CQT frames (Raffel's 8x downsampling); track code: one 256-bit code
per track from pooled CQT statistics, for the first, cheapest pruning stage.
"""

from __future__ import annotations

from dataclasses import dataclass, field

import numpy as np

from encoders.features import N_BINS

FRAME_BITS = 32
TRACK_BITS = 256
DOWNSAMPLE = 8


def pack_uint32(bits: np.ndarray) -> np.ndarray:
    """(n, 32) bool -> (n,) uint32, bit k of the code = column k."""
    weights = (np.uint64(1) << np.arange(32, dtype=np.uint64))
    return (bits.astype(np.uint64) @ weights).astype(np.uint32)


def _standardise(x: np.ndarray) -> np.ndarray:
    x = x - x.mean(axis=-1, keepdims=True)
    return x / (x.std(axis=-1, keepdims=True) + 1e-6)


@dataclass
class RandomProjectionHasher:
    """Sign-of-random-projection hashes, identical for both modalities; deterministic from ``seed``."""

    seed: int = 0
    name: str = "random-projection-v1"
    frame_projection: np.ndarray = field(init=False, repr=False)
    track_projection: np.ndarray = field(init=False, repr=False)

    def __post_init__(self) -> None:
        rng = np.random.default_rng(self.seed)
        self.frame_projection = rng.standard_normal((DOWNSAMPLE * N_BINS, FRAME_BITS)).astype(np.float32)
        self.track_projection = rng.standard_normal((2 * N_BINS, TRACK_BITS)).astype(np.float32)

    def frame_codes(self, cqt: np.ndarray, modality: str = "audio") -> np.ndarray:
        """(n_frames, 48) log-CQT -> (ceil(n_frames / 8),) uint32 codes."""
        n = len(cqt)
        padded = np.zeros((-(-n // DOWNSAMPLE) * DOWNSAMPLE, cqt.shape[1]), dtype=np.float32)
        padded[:n] = cqt
        windows = _standardise(padded.reshape(-1, DOWNSAMPLE * cqt.shape[1]))
        return pack_uint32(windows @ self.frame_projection > 0)

    def track_code(self, cqt: np.ndarray, modality: str = "audio") -> np.ndarray:
        """(n_frames, 48) log-CQT -> (32,) uint8, a 256-bit code of the whole track."""
        pooled = _standardise(np.concatenate([cqt.mean(axis=0), cqt.std(axis=0)]))
        return np.packbits(pooled @ self.track_projection > 0)


def load_hasher(model: str | None = None):
    """The hash model named by ``--model``: the shipped learned encoders by default (``None``, "default",
    "learned"), a path to trained weights (``mirmatch train``), or the non-learned baseline
    ("random-projection" or "random-projection:SEED")."""
    if model in ("random-projection",):
        return RandomProjectionHasher()
    if model and model.startswith("random-projection:"):
        return RandomProjectionHasher(seed=int(model.split(":", 1)[1]))
    from encoders.learned import LearnedHasher  # torch is imported only when needed

    if model in (None, "", "default", "learned"):
        return LearnedHasher()
    if model.endswith(".pt"):
        return LearnedHasher(model)
    raise ValueError(f"unknown model {model!r}; use 'learned', a .pt weights file, 'random-projection' or "
                     f"'random-projection:SEED'")
