"""The matching cascade of Raffel & Ellis (ISMIR 2015): prune with track codes, rank with hash-sequence DTW.

Stage 1 finds the ``stage1_k`` nearest database tracks of a query by Hamming distance between track codes
(faiss, :class:`hashing.search.MultiCodeIndex`: a track may have several codes, its whole-track code and codes
of overlapping windows, and its distance is the least over all pairs of codes). Stage 2 aligns the query's
frame-code sequence with each survivor by DTW on the Hamming cost, many candidates at once
(:func:`hash_dtw_batch`), and keeps the ``stage2_k`` best. The pipeline then aligns those few on CQT
features (``hashing.align``).
"""

from __future__ import annotations

from dataclasses import dataclass

import numba
import numpy as np

from hashing.search import MultiCodeIndex

__all__ = ["CascadeResult", "HashCascade", "RaggedCodes", "hash_dtw_batch", "pack_sequences", "refine_by_frame_codes"]

#: Additive penalty on non-diagonal steps for 32-bit codes: a quarter of the bits (unrelated codes
#: differ in 16 bits on average, matching codes in few).
DEFAULT_PENALTY = 8.0
_ABANDON_EVERY = 16  # rows between early-abandoning checks


@numba.njit(cache=True, inline="always")
def _popcount_u32(x):
    x = x - ((x >> np.uint32(1)) & np.uint32(0x55555555))
    x = (x & np.uint32(0x33333333)) + ((x >> np.uint32(2)) & np.uint32(0x33333333))
    x = (x + (x >> np.uint32(4))) & np.uint32(0x0F0F0F0F)
    x = x + (x >> np.uint32(8))
    x = x + (x >> np.uint32(16))
    return np.float32(x & np.uint32(0x3F))


@numba.njit(cache=True)
def _batch_kernel(a, codes, lengths, query_inside, penalty, threshold):
    """Lane-parallel DTW of ``a`` against the columns of ``codes``; the loop over candidates is innermost
    so that it vectorises. Returns the best accumulated cost per candidate (inf when abandoned)."""
    n = a.shape[0]
    m, k_total = codes.shape
    prev = np.empty((m, k_total), np.float32)
    cur = np.empty((m, k_total), np.float32)
    best_end = np.full(k_total, np.inf, np.float32)  # candidate inside the query: best over rows
    alive = np.ones(k_total, np.bool_)
    p = np.float32(penalty)
    inside = np.empty(k_total, np.float32)  # 1 where the query is the shorter side, as a float mask
    for k in range(k_total):
        inside[k] = 1.0 if query_inside[k] else 0.0
    # One loop nest with the row-0 and column-0 cases inside: LLVM unswitches them and vectorises the
    # innermost loop across candidates (~4x faster than separate loops over the edges).
    for i in range(n):
        ai = a[i]
        for j in range(m):
            for k in range(k_total):
                c = _popcount_u32(ai ^ codes[j, k])
                if i == 0:  # the query may start anywhere along a longer candidate
                    best = c if j == 0 else c + (np.float32(1.0) - inside[k]) * (cur[j - 1, k] + p)
                elif j == 0:  # a shorter candidate may start at any row of the query
                    best = c + inside[k] * (prev[0, k] + p)
                else:
                    best = prev[j - 1, k] + c
                    up = prev[j, k] + c + p
                    left = cur[j - 1, k] + c + p
                    if up < best:
                        best = up
                    if left < best:
                        best = left
                cur[j, k] = best
        for k in range(k_total):  # a shorter candidate may end at any row
            if not query_inside[k]:
                v = cur[lengths[k] - 1, k]
                if v < best_end[k]:
                    best_end[k] = v
        prev, cur = cur, prev
        if threshold < np.inf and (i + 1) % _ABANDON_EVERY == 0 and i + 1 < n:
            any_alive = False
            for k in range(k_total):
                if alive[k] and query_inside[k]:  # rows only grow when the query is fully covered
                    lo = np.inf
                    for j in range(lengths[k]):
                        if prev[j, k] < lo:
                            lo = prev[j, k]
                    if lo > threshold * n:
                        alive[k] = False
                any_alive = any_alive or alive[k]
            if not any_alive:
                break
    out = np.empty(k_total, np.float64)
    for k in range(k_total):
        if not alive[k]:
            out[k] = np.inf
        elif query_inside[k]:
            lo = np.inf
            for j in range(lengths[k]):
                if prev[j, k] < lo:
                    lo = prev[j, k]
            out[k] = lo
        else:
            out[k] = best_end[k]
    return out


def pack_sequences(sequences: list[np.ndarray]) -> tuple[np.ndarray, np.ndarray]:
    """Stack code sequences as the columns of a zero-padded (max_len, k) uint32 matrix; also their lengths."""
    lengths = np.array([len(s) for s in sequences], dtype=np.int64)
    if (lengths == 0).any():
        raise ValueError("every sequence needs at least one code")
    packed = np.zeros((int(lengths.max(initial=1)), len(sequences)), dtype=np.uint32)
    for k, seq in enumerate(sequences):
        packed[: len(seq), k] = seq
    return packed, lengths


def hash_dtw_batch(query: np.ndarray, candidates: list[np.ndarray], penalty: float = DEFAULT_PENALTY,
                   abandon_above: float = np.inf) -> np.ndarray:
    """Subsequence DTW distance between a sequence of 32-bit codes and each of many candidate sequences.

    The shorter sequence of each pair must be covered whole; it may start and end anywhere along the
    longer one (a MIDI file may transcribe part of a recording, and a clip may be part of a piece).
    Cost is the Hamming distance, non-diagonal steps pay ``penalty``.

    Parameters
    ----------
    query : np.ndarray, shape (n,), uint32
    candidates : list of np.ndarray, shapes (m_k,), uint32
    penalty : float, >= 0
    abandon_above : float
        Early abandoning: candidates whose best partial path already exceeds ``abandon_above`` per query
        frame are dropped (their distance is ``inf``); only possible where the query is the shorter side.

    Returns
    -------
    np.ndarray, shape (k,), float64: accumulated cost per code of the shorter sequence; lower is closer.
    """
    query = np.ascontiguousarray(query, dtype=np.uint32)
    if query.ndim != 1 or len(query) == 0:
        raise ValueError(f"query must be a non-empty 1-d code sequence, got shape {query.shape}")
    if not (np.isfinite(penalty) and penalty >= 0):
        raise ValueError(f"penalty must be finite and >= 0, got {penalty}")
    if not candidates:
        return np.zeros(0, dtype=np.float64)
    packed, lengths = pack_sequences([np.asarray(c, dtype=np.uint32) for c in candidates])
    query_inside = lengths >= len(query)
    total = _batch_kernel(query, packed, lengths, query_inside, float(penalty), float(abandon_above))
    return total / np.minimum(lengths, len(query))


def refine_by_frame_codes(query: np.ndarray, candidates: list[np.ndarray], k: int,
                          penalty: float = DEFAULT_PENALTY) -> tuple[np.ndarray, np.ndarray]:
    """Stage 2: the ``k`` candidates nearest ``query`` by hash-sequence DTW (:func:`hash_dtw_batch`).

    Parameters
    ----------
    query : np.ndarray, shape (n,), uint32: the query's frame codes
    candidates : list of np.ndarray (m_i,) uint32, in database order (ties go to the earlier one)
    k : int

    Returns
    -------
    (positions (k',) int64 into ``candidates``, best first; their DTW distances (k',) float64), k' = min(k, len)
    """
    distances = hash_dtw_batch(query, candidates, penalty)
    order = np.lexsort((np.arange(len(candidates)), distances))[:k]
    return order, distances[order]


class RaggedCodes:
    """Many code sequences in one flat uint32 array: sequence i is ``flat[offsets[i]:offsets[i + 1]]``.

    A million 30-second clips take ~0.3 GB this way, without a Python object per clip.
    """

    def __init__(self, flat: np.ndarray, offsets: np.ndarray):
        self.flat = np.ascontiguousarray(flat, dtype=np.uint32)
        self.offsets = np.asarray(offsets, dtype=np.int64)
        if self.offsets.ndim != 1 or self.offsets[0] != 0 or self.offsets[-1] != len(self.flat):
            raise ValueError("offsets must start at 0 and end at len(flat)")
        if np.any(np.diff(self.offsets) <= 0):
            raise ValueError("every sequence needs at least one code")

    @classmethod
    def from_sequences(cls, sequences: list[np.ndarray]) -> RaggedCodes:
        offsets = np.concatenate([[0], np.cumsum([len(s) for s in sequences])])
        flat = np.concatenate(sequences) if sequences else np.zeros(0, np.uint32)
        return cls(flat, offsets)

    def __len__(self) -> int:
        return len(self.offsets) - 1

    def __getitem__(self, i: int) -> np.ndarray:
        return self.flat[self.offsets[i]:self.offsets[i + 1]]

    @property
    def nbytes(self) -> int:
        return self.flat.nbytes + self.offsets.nbytes


@dataclass
class CascadeResult:
    """Survivors of the cascade for one query, best first."""

    indices: np.ndarray  # (k,) int64 database positions
    hamming: np.ndarray  # (k,) int32 track-code Hamming distances (stage 1)
    dtw_distance: np.ndarray  # (k,) float64 hash-sequence DTW distances (stage 2)


class HashCascade:
    """Track-code search then hash-sequence DTW over a database of (track code, frame codes) pairs.

    >>> cascade = HashCascade(track_codes, frame_code_sequences)
    >>> result = cascade.query(query_track_code, query_frame_codes)
    """

    def __init__(self, track_codes: np.ndarray | list[np.ndarray], frame_codes: list[np.ndarray] | RaggedCodes, *,
                 stage1_k: int = 100, stage2_k: int = 10, penalty: float = DEFAULT_PENALTY):
        """``track_codes``: one (32,) uint8 code per track as a (n, 32) array, or a list of each track's codes,
        (32,) or (r_i, 32) (``LearnedHasher.all_codes``: the whole-track code and its window codes)."""
        if len(track_codes) != len(frame_codes):
            raise ValueError(f"{len(track_codes)} track codes but {len(frame_codes)} frame-code sequences")
        self.index = MultiCodeIndex(track_codes)
        self.frame_codes = frame_codes
        self.stage1_k, self.stage2_k, self.penalty = stage1_k, stage2_k, penalty

    def __len__(self) -> int:
        return len(self.index)

    def query(self, track_code: np.ndarray, frame_codes: np.ndarray) -> CascadeResult:
        """``track_code``: the query's (32,) code or its (r, 32) codes."""
        distances, indices = self.index.search(track_code, self.stage1_k)
        if len(indices) == 0:
            return CascadeResult(indices, distances, np.zeros(0))
        by_position = np.argsort(indices, kind="stable")  # ties by database position
        order, dtw_distance = refine_by_frame_codes(frame_codes, [self.frame_codes[i] for i in indices[by_position]],
                                                    self.stage2_k, self.penalty)
        chosen = by_position[order]
        return CascadeResult(indices[chosen], distances[chosen], dtw_distance)
