"""Sizes and packing of the binary codes, shared by every hash encoder (learned or not).

A frame code is ``FRAME_BITS`` bits per ``DOWNSAMPLE`` CQT frames (Raffel's 8x downsampling), stored as one
uint32; a track code is ``TRACK_BITS`` bits per track, stored as packed uint8 (``np.packbits``).
"""

from __future__ import annotations

import numpy as np

FRAME_BITS = 32
TRACK_BITS = 256
DOWNSAMPLE = 8


def pack_uint32(bits: np.ndarray) -> np.ndarray:
    """(n, 32) bool -> (n,) uint32, bit k of the code = column k."""
    weights = (np.uint64(1) << np.arange(32, dtype=np.uint64))
    return (bits.astype(np.uint64) @ weights).astype(np.uint32)


def pad_frames(x: np.ndarray, min_codes: int = 0) -> np.ndarray:
    """(n, d) frames -> (8 * max(min_codes, ceil(n / 8)), d) float32: zero frames appended so that every
    frame code covers ``DOWNSAMPLE`` whole frames (``min_codes=1``: an empty input still gets one code)."""
    n = len(x)
    padded = np.zeros((max(min_codes, -(-n // DOWNSAMPLE)) * DOWNSAMPLE, x.shape[1]), np.float32)
    padded[:n] = x
    return padded
