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


#: Stage-1 window codes: a track longer than ``WINDOW_MIN_CODES`` frame codes also gets a track code for each
#: window of ``WINDOW_CODES`` frame codes (30.1 s: 81 codes of 8 frames at 22050 / 1024 frames per second),
#: every ``WINDOW_HOP_CODES`` (50% overlap), so that a 30-second excerpt finds the whole track it comes from.
WINDOW_CODES = 81
WINDOW_HOP_CODES = 40
WINDOW_MIN_CODES = 101  # ~37.5 s: shorter tracks are about one window long, their whole-track code serves


def code_windows(n_codes: int, window: int = WINDOW_CODES, hop: int = WINDOW_HOP_CODES,
                 min_codes: int = WINDOW_MIN_CODES) -> list[tuple[int, int]]:
    """(start, end) in frame codes of the overlapping windows of a sequence of ``n_codes`` frame codes: every
    ``hop`` from 0, and one more ending at the last code when the hops do not reach it; none when the
    sequence is shorter than ``min_codes``."""
    if n_codes < max(min_codes, window):
        return []
    starts = list(range(0, n_codes - window + 1, hop))
    if starts[-1] + window < n_codes:
        starts.append(n_codes - window)
    return [(s, s + window) for s in starts]
