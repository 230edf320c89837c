"""The 2D-FTM version embedding: key invariance and discrimination."""

from __future__ import annotations

import numpy as np

from encoders.cover import ftm2d_embedding


def test_transposition_invariant_and_discriminative(rng):
    beats = np.arange(0, 40, 0.5)
    piece = rng.random((860, 12)).astype(np.float32) ** 4
    other = rng.random((860, 12)).astype(np.float32) ** 4
    e = ftm2d_embedding(piece, 21.5, beats)
    assert e.shape == (900,) and abs(np.linalg.norm(e) - 1) < 1e-5
    transposed = ftm2d_embedding(np.roll(piece, 5, axis=1), 21.5, beats)
    assert float(e @ transposed) > 0.999
    assert float(e @ ftm2d_embedding(other, 21.5, beats)) < float(e @ transposed) - 0.05


def test_short_track_without_beats(rng):
    e = ftm2d_embedding(rng.random((40, 12)).astype(np.float32), 21.5, None)
    assert np.isfinite(e).all() and e.shape == (900,)
