"""Tests for hashing.dtw: paths, warp recovery, subsequence crops, scores, Hamming cost, librosa agreement."""

from __future__ import annotations

import librosa
import numpy as np
import pytest

from hashing.dtw import DTWResult, cosine_cost, dtw, fast_median, hamming_cost, hash_dtw_distance

D = 48  # feature dimension, CQT-like


def _assert_valid_steps(path: np.ndarray) -> None:
    assert path.ndim == 2 and path.shape[1] == 2 and path.dtype == np.int64
    steps = np.diff(path, axis=0)
    ok = {(1, 1), (1, 0), (0, 1)}
    assert all(tuple(s) in ok for s in steps), "path has steps outside (1,1), (1,0), (0,1)"


def _warp(n: int, m: int, power: float = 1.3) -> np.ndarray:
    """A monotonic, non-linear resampling of range(n) to length m."""
    return np.round(np.linspace(0.0, 1.0, m) ** power * (n - 1)).astype(np.int64)


@pytest.fixture
def rng() -> np.random.Generator:
    return np.random.default_rng(1234)


def test_full_path_endpoints_and_monotonic(rng):
    cost = rng.random((50, 70))
    for kwargs in ({}, {"penalty": 0.0}, {"band": 0.1}, {"penalty": 0.3, "band": 0.0}):
        res = dtw(cost, **kwargs)
        assert isinstance(res, DTWResult)
        assert tuple(res.path[0]) == (0, 0) and tuple(res.path[-1]) == (49, 69)
        _assert_valid_steps(res.path)
        assert res.mean_cost == pytest.approx(cost[res.path[:, 0], res.path[:, 1]].mean())


def test_subsequence_path_covers_axis0(rng):
    res = dtw(rng.random((30, 90)), subsequence=True)
    assert res.path[0, 0] == 0 and res.path[-1, 0] == 29
    _assert_valid_steps(res.path)


def test_cost_includes_penalties(rng):
    cost = rng.random((40, 55))
    p = 0.25
    res = dtw(cost, penalty=p)
    n_nondiag = int((np.diff(res.path, axis=0).sum(axis=1) == 1).sum())
    raw = cost[res.path[:, 0], res.path[:, 1]].sum()
    assert res.cost == pytest.approx(raw + p * n_nondiag)
    assert res.cost >= dtw(cost, penalty=0.0).cost


def test_default_penalty_is_median(rng):
    cost = rng.random((30, 40))
    assert dtw(cost).cost == pytest.approx(dtw(cost, penalty=float(np.median(cost))).cost)


def test_fast_median_is_exact(rng):
    big = rng.random((400, 300))
    cases = [
        big,
        big.astype(np.float32),
        np.round(big * 4) / 4,
        np.sort(big, axis=None).reshape(big.shape),
        rng.random((301, 301)),
        rng.random((7, 9)),
    ]
    for x in cases:
        assert fast_median(x) == pytest.approx(float(np.median(x)), rel=1e-7, abs=0)


def test_recovers_known_warp(rng):
    n, m = 200, 260
    a = rng.standard_normal((n, D))
    idx = _warp(n, m)
    b = a[idx] + 0.05 * rng.standard_normal((m, D))
    res = dtw(cosine_cost(a, b))
    i, j = res.path.T
    assert np.abs(i - idx[j]).max() <= 2
    # The transposed problem recovers the same warp.
    res_t = dtw(cosine_cost(b, a))
    assert np.abs(res_t.path[:, 1] - idx[res_t.path[:, 0]]).max() <= 2


def test_band_constrains_path(rng):
    cost = rng.random((60, 90))
    free = dtw(cost, penalty=0.0)
    for band in (0.0, 0.05, 0.2):
        res = dtw(cost, penalty=0.0, band=band)
        i, j = res.path.T
        assert tuple(res.path[-1]) == (59, 89)
        _assert_valid_steps(res.path)
        # Within the band (plus the one-cell widening that keeps it connected).
        assert np.abs(j - i * 89 / 59).max() <= band * 90 + 2
        assert res.cost >= free.cost - 1e-9
    assert dtw(cost, penalty=0.0, band=2.0).cost == pytest.approx(free.cost)
    # Very unequal lengths with a narrow band still give a connected path.
    res = dtw(rng.random((10, 500)), band=0.001)
    assert tuple(res.path[-1]) == (9, 499)
    _assert_valid_steps(res.path)


def test_subsequence_finds_crop(rng):
    b = rng.standard_normal((500, D))
    a = b[100:300] + 0.05 * rng.standard_normal((200, D))
    res = dtw(cosine_cost(a, b), subsequence=True, band=0.01)  # band is ignored in subsequence mode
    assert abs(res.path[0, 1] - 100) <= 2 and abs(res.path[-1, 1] - 299) <= 2
    assert np.abs(res.path[:, 1] - (res.path[:, 0] + 100)).max() <= 2
    assert res.score < 0.5


def test_score_separates_match_from_unrelated(rng):
    n, m = 200, 260
    a = rng.standard_normal((n, D))
    warped = a[_warp(n, m)] + 0.3 * rng.standard_normal((m, D))
    unrelated = rng.standard_normal((m, D))
    match = dtw(cosine_cost(a, warped)).score
    other = dtw(cosine_cost(a, unrelated)).score
    assert match < 0.5
    assert other > 0.8
    assert dtw(cosine_cost(a, unrelated), subsequence=True).score > 0.8


def test_cosine_cost_reference_and_zero_rows(rng):
    a = rng.standard_normal((7, 5))
    b = rng.standard_normal((9, 5))
    a[3] = 0.0
    c = cosine_cost(a, b)
    assert c.dtype == np.float32 and c.shape == (7, 9)
    ref = np.array(
        [[1 - x @ y / (np.linalg.norm(x) * np.linalg.norm(y)) if x.any() else 1.0 for y in b] for x in a]
    )
    np.testing.assert_allclose(c, ref, atol=1e-5)
    np.testing.assert_array_equal(c[3], 1.0)
    with pytest.raises(ValueError):
        cosine_cost(a, rng.standard_normal((4, 6)))


def test_hamming_cost_matches_unpackbits(rng):
    a = rng.integers(0, 2**32, size=37, dtype=np.uint32)
    b = rng.integers(0, 2**32, size=23, dtype=np.uint32)
    b[:3] = [0, 2**32 - 1, a[0]]
    c = hamming_cost(a, b)
    xor = np.ascontiguousarray(a[:, None] ^ b[None, :])
    ref = np.unpackbits(xor.view(np.uint8), axis=-1).reshape(37, 23, 32).sum(-1)
    assert c.dtype == np.float32 and c.shape == (37, 23)
    np.testing.assert_array_equal(c, ref)
    assert c[0, 2] == 0 and c[0, 0] + c[0, 1] == 32


def test_hash_dtw_distance_matches_dtw_reference(rng):
    a = rng.integers(0, 2**32, size=60, dtype=np.uint32)
    for m, p in ((60, 4.0), (85, 0.0), (41, 16.0)):
        b = rng.integers(0, 2**32, size=m, dtype=np.uint32)
        b[::3] = a[np.linspace(0, 59, len(b[::3])).astype(int)]  # partly matching
        ref = dtw(hamming_cost(a, b), penalty=p).cost / (60 + m)
        assert hash_dtw_distance(a, b, p) == pytest.approx(ref, rel=1e-12)
        assert hash_dtw_distance(a, b, p, abandon_above=ref + 1e-6) == pytest.approx(ref, rel=1e-12)
        assert hash_dtw_distance(a, b, p, abandon_above=1e-6) == np.inf
    assert hash_dtw_distance(a, a, 8.0) == 0.0


def test_agrees_with_librosa(rng):
    cost = rng.random((30, 45))
    D_lib, wp = librosa.sequence.dtw(C=cost)
    res = dtw(cost, penalty=0.0)
    assert res.cost == pytest.approx(D_lib[-1, -1], rel=1e-12)
    assert res.cost == pytest.approx(cost[wp[:, 0], wp[:, 1]].sum(), rel=1e-12)
    D_sub, _ = librosa.sequence.dtw(C=cost, subseq=True)
    assert dtw(cost, penalty=0.0, subsequence=True).cost == pytest.approx(D_sub[-1].min(), rel=1e-12)


def test_rejects_empty_and_bad_input():
    with pytest.raises(ValueError, match="non-empty"):
        dtw(np.zeros((0, 5)))
    with pytest.raises(ValueError, match="non-empty"):
        dtw(np.zeros((5, 0)))
    with pytest.raises(ValueError, match="non-empty"):
        hash_dtw_distance(np.zeros(0, np.uint32), np.ones(4, np.uint32), 1.0)
    with pytest.raises(ValueError):
        dtw(np.full((3, 3), np.nan))
    with pytest.raises(ValueError):
        dtw(np.ones((3, 3)), band=-0.1)


def test_single_row_and_column():
    cost = np.arange(5, dtype=np.float64)[None, :]
    res = dtw(cost, penalty=1.0)
    np.testing.assert_array_equal(res.path, [[0, j] for j in range(5)])
    assert res.cost == pytest.approx(10.0 + 4.0)
    res = dtw(cost, penalty=1.0, subsequence=True)
    np.testing.assert_array_equal(res.path, [[0, 0]])
    assert res.cost == 0.0
    res = dtw(cost.T.copy(), penalty=0.5)
    assert tuple(res.path[-1]) == (4, 0) and res.cost == pytest.approx(10.0 + 2.0)
