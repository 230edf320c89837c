"""Dynamic time warping in numba: cost matrices, DTW with backtracking, and an O(m)-memory hash distance.

The step set is the classic one with equal weights, ``(1, 1)``, ``(1, 0)`` and ``(0, 1)``; non-diagonal steps
pay an additive ``penalty`` (Raffel & Ellis, ISMIR 2015). Accumulation is in float64 and ties are broken
deterministically, preferring the diagonal, then ``(1, 0)``, then ``(0, 1)``.

``dtw`` aligns a (MIDI, audio) pair on the CQT (``hashing.align``); ``fast_median`` is its default penalty.
``hash_dtw_distance`` is the single-pair reference of stage 2: the pipeline runs the batched kernel
``hashing.cascade.hash_dtw_batch``, and this function, simpler and unbatched, is what the tests and
``tests/bench/bench_hash_dtw.py`` check that kernel against.
"""

from __future__ import annotations

from dataclasses import dataclass

import numba
import numpy as np

__all__ = ["DTWResult", "cosine_cost", "dtw", "fast_median", "hamming_cost", "hash_dtw_distance"]

# Backtracking codes stored per cell.
_DIAG, _UP, _LEFT, _START = 0, 1, 2, 3


@dataclass(frozen=True)
class DTWResult:
    """The optimal warping path of :func:`dtw` and its costs."""

    path: np.ndarray  # (k, 2) int64, rows (i, j), non-decreasing in both columns
    cost: float  # total accumulated cost along the path, penalties included
    mean_cost: float  # mean of the raw cost-matrix entries along the path, no penalties
    score: float  # mean_cost / mean of the cost submatrix spanned by the path; lower is better, ~1 unrelated


# --------------------------------------------------------------------------------------------- kernels


@numba.njit(cache=True, inline="always")
def _popcount32(v):
    """SWAR popcount of a value in [0, 2**32), in int64 arithmetic (uint64 mixes badly with literals)."""
    x = np.int64(v)
    x = x - ((x >> 1) & 0x55555555)
    x = (x & 0x33333333) + ((x >> 2) & 0x33333333)
    x = (x + (x >> 4)) & 0x0F0F0F0F
    x = x + (x >> 8)
    x = x + (x >> 16)
    return x & 0x3F


@numba.njit(cache=True)
def _hamming_kernel(a, b):
    n, m = a.shape[0], b.shape[0]
    out = np.empty((n, m), np.float32)
    for i in range(n):
        ai = a[i]
        for j in range(m):
            out[i, j] = _popcount32(ai ^ b[j])
    return out


@numba.njit(cache=True)
def _dtw_kernel(cost, penalty, subsequence, lo, hi):
    """Accumulate row by row; return the int8 backtracking matrix and the last row of accumulated cost.

    Two float64 rows, shifted by one (``row[j + 1]`` is column ``j``; ``row[0]`` stays infinite). Cells
    outside ``[lo[i], hi[i]]`` are unreachable: infinite cost, step -1.
    """
    n, m = cost.shape
    inf = np.inf
    steps = np.full((n, m), -1, np.int8)
    prev = np.full(m + 1, inf)
    cur = np.full(m + 1, inf)
    for j in range(lo[0], hi[0] + 1):
        c = np.float64(cost[0, j])
        step = _LEFT
        best = cur[j] + penalty + c
        if (j == 0 or subsequence) and c <= best:
            best = c
            step = _START
        cur[j + 1] = best
        steps[0, j] = step
    for i in range(1, n):
        prev, cur = cur, prev
        if i >= 2:  # cur held row i - 2: make the cells left of this row's band unreachable again
            cur[lo[i - 2] + 1 : lo[i] + 1] = inf
        for j in range(lo[i], hi[i] + 1):
            best = prev[j]
            step = _DIAG
            v = prev[j + 1] + penalty
            if v < best:
                best = v
                step = _UP
            v = cur[j] + penalty
            if v < best:
                best = v
                step = _LEFT
            cur[j + 1] = best + cost[i, j]
            steps[i, j] = step
    return steps, cur[1:]


@numba.njit(cache=True)
def _backtrack(steps, i, j):
    path = np.empty((i + j + 1, 2), np.int64)
    k = 0
    while True:
        path[k, 0] = i
        path[k, 1] = j
        k += 1
        s = steps[i, j]
        if s == _DIAG:
            i -= 1
            j -= 1
        elif s == _UP:
            i -= 1
        elif s == _LEFT:
            j -= 1
        else:
            break
    return path[:k][::-1].copy()


@numba.njit(cache=True)
def _hash_dtw_kernel(a, b, penalty, threshold):
    n, m = a.shape[0], b.shape[0]
    prev = np.empty(m)
    cur = np.empty(m)
    for i in range(n):
        ai = a[i]
        row_min = np.inf
        for j in range(m):
            c = np.float64(_popcount32(ai ^ b[j]))
            if i == 0:
                best = c if j == 0 else cur[j - 1] + c + penalty
            else:
                best = prev[j] + c + penalty
                if j > 0:
                    d = prev[j - 1] + c
                    if d <= best:
                        best = d
                    v = cur[j - 1] + c + penalty
                    if v < best:
                        best = v
            cur[j] = best
            if best < row_min:
                row_min = best
        if row_min > threshold:
            return np.inf
        prev, cur = cur, prev
    return prev[m - 1]


# --------------------------------------------------------------------------------------------- wrappers


def _as_codes(x: np.ndarray, name: str) -> np.ndarray:
    x = np.asarray(x)
    if x.ndim != 1 or not (np.issubdtype(x.dtype, np.integer) or x.dtype == np.bool_):
        raise TypeError(f"{name} must be a 1-d integer (uint32) array, got shape {x.shape} dtype {x.dtype}")
    return np.ascontiguousarray(x, dtype=np.uint32)


def cosine_cost(a: np.ndarray, b: np.ndarray) -> np.ndarray:
    """Cosine distance matrix ``1 - <a_i, b_j> / (|a_i| |b_j|)``.

    Parameters
    ----------
    a, b : np.ndarray, shapes (n, d) and (m, d)

    Returns
    -------
    np.ndarray, shape (n, m), float32, values in [0, 2]. Rows of zero norm are at distance 1 from everything.
    """
    a = np.asarray(a, dtype=np.float64)
    b = np.asarray(b, dtype=np.float64)
    if a.ndim != 2 or b.ndim != 2 or a.shape[1] != b.shape[1]:
        raise ValueError(f"cosine_cost needs (n, d) and (m, d) arrays, got {a.shape} and {b.shape}")

    def unit(x: np.ndarray) -> np.ndarray:
        norm = np.linalg.norm(x, axis=1, keepdims=True)
        return x / np.where(norm > 0, norm, 1.0)

    # float64 products rounded to float32: BLAS results can depend on memory alignment in their last
    # bits, and rounding hides that so reruns in other processes give the same costs.
    out = (1.0 - unit(a) @ unit(b).T).astype(np.float32)
    return np.clip(out, 0.0, 2.0, out=out)


def hamming_cost(a: np.ndarray, b: np.ndarray) -> np.ndarray:
    """Hamming distance matrix between two sequences of 32-bit codes.

    Parameters
    ----------
    a, b : np.ndarray, shapes (n,) and (m,), uint32 (other integer types are cast)

    Returns
    -------
    np.ndarray, shape (n, m), float32: ``popcount(a_i XOR b_j)``.
    """
    return _hamming_kernel(_as_codes(a, "a"), _as_codes(b, "b"))


def _band_limits(n: int, m: int, band: float | None) -> tuple[np.ndarray, np.ndarray]:
    """Per-row inclusive column range ``[lo[i], hi[i]]``, widened so that the band stays connected."""
    if band is None:
        return np.zeros(n, np.int64), np.full(n, m - 1, np.int64)
    if not np.isfinite(band) or band < 0:
        raise ValueError(f"band must be a non-negative fraction, got {band}")
    slope = (m - 1) / (n - 1) if n > 1 else 0.0
    centre = np.arange(n) * slope
    width = band * max(n, m)
    lo = np.clip(np.ceil(centre - width - 1e-9), 0, m - 1).astype(np.int64)
    hi = np.clip(np.floor(centre + width + 1e-9), 0, m - 1).astype(np.int64)
    # Row i must reach lo[i + 1] with a diagonal step; the path must end in the last column.
    hi[:-1] = np.maximum(hi[:-1], lo[1:] - 1)
    lo[0], hi[-1] = 0, m - 1
    return lo, hi


def fast_median(cost: np.ndarray) -> float:
    """Exact median, usually ~4x faster than ``np.median`` on large matrices.

    A strided sample brackets the median; only the values inside the bracket are partitioned. Falls back to
    ``np.median`` when the bracket misses (possible only on adversarially ordered data).
    """
    flat = cost.ravel()
    size = flat.size
    if size < 1 << 16:
        return float(np.median(flat))
    sample = np.sort(flat[:: size // 16384])
    half, r = len(sample) // 2, int(2.5 * np.sqrt(len(sample))) + 1  # ~5 sigma of the sample median's rank
    lo, hi = sample[max(half - r, 0)], sample[min(half + r, len(sample) - 1)]
    k1, k2 = (size - 1) // 2, size // 2
    below = int(np.count_nonzero(flat < lo))
    inside = flat[(flat >= lo) & (flat <= hi)]
    if not (below <= k1 and below + len(inside) > k2):
        return float(np.median(flat))
    part = np.partition(inside, [k1 - below, k2 - below])
    return 0.5 * (float(part[k1 - below]) + float(part[k2 - below]))


def dtw(
    cost: np.ndarray, *, penalty: float | None = None, subsequence: bool = False, band: float | None = None
) -> DTWResult:
    """Dynamic time warping over a precomputed cost matrix.

    Parameters
    ----------
    cost : np.ndarray, shape (n, m)
        Local costs, float32 or float64 (others are cast to float64).
    penalty : float or None
        Additive cost of the non-diagonal steps ``(1, 0)`` and ``(0, 1)``. ``None`` uses the median of
        ``cost`` (Raffel & Ellis); ``0`` disables it.
    subsequence : bool
        If True, the path covers all of axis 0 but may start and end anywhere on axis 1 (put the shorter or
        cropped sequence on axis 0).
    band : float or None
        Sakoe-Chiba-like band half-width, as a fraction of ``max(n, m)``, around the diagonal rescaled from
        ``(0, 0)`` to ``(n - 1, m - 1)``. ``None`` means no band. Ignored when ``subsequence`` is True.

    Returns
    -------
    DTWResult
        The optimal path (found by backtracking), its accumulated cost, its mean raw cost and its
        normalised score.
    """
    cost = np.asarray(cost)
    if cost.ndim != 2:
        raise ValueError(f"cost must be a 2-d (n, m) matrix, got shape {cost.shape}")
    n, m = cost.shape
    if n == 0 or m == 0:
        raise ValueError(f"dtw needs a non-empty cost matrix, got shape {cost.shape}")
    if cost.dtype not in (np.float32, np.float64):
        cost = cost.astype(np.float64)
    cost = np.ascontiguousarray(cost)
    if np.isnan(cost).any():
        raise ValueError("cost matrix contains NaN")
    penalty = fast_median(cost) if penalty is None else float(penalty)
    if not np.isfinite(penalty):
        raise ValueError(f"penalty must be finite, got {penalty}")

    lo, hi = _band_limits(n, m, None if subsequence else band)
    steps, last_row = _dtw_kernel(cost, penalty, bool(subsequence), lo, hi)
    j_end = int(np.argmin(last_row)) if subsequence else m - 1
    total = float(last_row[j_end])
    if not np.isfinite(total):
        raise ValueError("no finite-cost warping path (infinite costs block every path)")
    path = _backtrack(steps, n - 1, j_end)

    mean_cost = float(cost[path[:, 0], path[:, 1]].mean(dtype=np.float64))
    (i0, j0), (i1, j1) = path[0], path[-1]
    block_mean = float(cost[i0 : i1 + 1, j0 : j1 + 1].mean(dtype=np.float64))
    score = mean_cost / block_mean if block_mean > 0 else (0.0 if mean_cost == 0 else np.inf)
    return DTWResult(path=path, cost=total, mean_cost=mean_cost, score=float(score))


def hash_dtw_distance(a: np.ndarray, b: np.ndarray, penalty: float, abandon_above: float = np.inf) -> float:
    """Length-normalised DTW distance between two sequences of 32-bit hash codes.

    The Hamming cost is computed on the fly (O(m) memory, no cost matrix). Full path from ``(0, 0)`` to
    ``(n - 1, m - 1)``, steps as in :func:`dtw` with ``penalty`` on non-diagonal steps.

    Parameters
    ----------
    a, b : np.ndarray, shapes (n,) and (m,), uint32
    penalty : float, >= 0
    abandon_above : float
        Early abandoning: once every cell of a row of the accumulated matrix exceeds
        ``abandon_above * (n + m)``, no path can end below it and ``np.inf`` is returned.

    Returns
    -------
    float
        Accumulated cost of the best path divided by ``n + m``, or ``np.inf`` if abandoned.
    """
    a, b = _as_codes(a, "a"), _as_codes(b, "b")
    n, m = len(a), len(b)
    if n == 0 or m == 0:
        raise ValueError(f"hash_dtw_distance needs non-empty sequences, got lengths {n} and {m}")
    penalty = float(penalty)
    if not (np.isfinite(penalty) and penalty >= 0):
        raise ValueError(f"penalty must be finite and >= 0 (early abandoning relies on it), got {penalty}")
    threshold = float(abandon_above) * (n + m)
    total = _hash_dtw_kernel(a, b, penalty, threshold)
    return float(total / (n + m))
