"""Bulk Hamming-distance k-nearest-neighbour search over packed binary codes with faiss."""

from __future__ import annotations

import faiss
import numpy as np


def gpu_available() -> bool:
    """Whether this faiss build (faiss-gpu) sees a GPU."""
    return hasattr(faiss, "GpuIndexBinaryFlat") and faiss.get_num_gpus() > 0


class HammingIndex:
    """Exact Hamming kNN over packed codes (uint8 rows, bits = 8 * row width), faiss IndexBinaryFlat.

    With ``use_gpu=None`` (default) the search runs on a GPU when faiss-gpu sees one
    (``GpuIndexBinaryFlat``, same results), on the CPU otherwise.
    """

    def __init__(self, codes: np.ndarray, use_gpu: bool | None = None):
        codes = np.ascontiguousarray(codes, dtype=np.uint8)
        if codes.ndim != 2:
            raise ValueError(f"codes must be a 2-D uint8 array, got shape {codes.shape}")
        self.n_bits = codes.shape[1] * 8
        self.index = faiss.IndexBinaryFlat(self.n_bits)
        if use_gpu or (use_gpu is None and gpu_available()):
            self.index = faiss.GpuIndexBinaryFlat(faiss.StandardGpuResources(), self.n_bits)
        if len(codes):
            self.index.add(codes)

    def __len__(self) -> int:
        return self.index.ntotal

    def to_bytes(self) -> bytes:
        """The faiss index, serialised (``faiss.serialize_index_binary``; a GPU index is copied to the CPU)."""
        index = self.index
        if not isinstance(index, faiss.IndexBinaryFlat):
            cpu = faiss.IndexBinaryFlat(self.n_bits)
            index.copyTo(cpu)
            index = cpu
        return faiss.serialize_index_binary(index).tobytes()

    @classmethod
    def from_bytes(cls, data: bytes) -> HammingIndex:
        """Load an index written by :meth:`to_bytes`."""
        index = faiss.deserialize_index_binary(np.frombuffer(data, dtype=np.uint8))
        self = cls.__new__(cls)
        self.index, self.n_bits = index, index.d
        return self

    def search(self, queries: np.ndarray, k: int) -> tuple[np.ndarray, np.ndarray]:
        """Return (distances (q, k') int32, indices (q, k') int64) with k' = min(k, len(self)).

        Ties are ordered by database position, so results are deterministic.
        """
        queries = np.ascontiguousarray(queries, dtype=np.uint8)
        k = min(k, len(self))
        if k == 0 or len(queries) == 0:
            return np.zeros((len(queries), 0), np.int32), np.zeros((len(queries), 0), np.int64)
        distances, indices = self.index.search(queries, k)
        order = np.lexsort((indices, distances), axis=1)
        return np.take_along_axis(distances, order, 1), np.take_along_axis(indices, order, 1)


def best_per_track(distances: np.ndarray, rows: np.ndarray, owner: np.ndarray, k: int) -> tuple[np.ndarray, np.ndarray]:
    """Merge row hits into track hits: each track's distance is its least over every (query row, database row)
    pair found, and the ``k`` closest tracks are kept.

    Parameters
    ----------
    distances, rows : np.ndarray, shape (r, K)
        Hamming distances and database rows found for each of the query's ``r`` codes (rows < 0: none).
    owner : np.ndarray, shape (n_rows,), int64
        The track each database row belongs to.
    k : int

    Returns
    -------
    (distances (k',) int32, tracks (k',) int64), closest first; ties by track position.
    """
    d, i = np.asarray(distances).ravel(), np.asarray(rows).ravel()
    keep = i >= 0
    d, tracks = d[keep].astype(np.int32), owner[i[keep]]
    order = np.lexsort((d, tracks))  # by track, closest first
    first = np.ones(len(order), bool)
    first[1:] = tracks[order][1:] != tracks[order][:-1]
    d, tracks = d[order][first], tracks[order][first]
    best = np.lexsort((tracks, d))[:k]
    return d[best], tracks[best]


class MultiCodeIndex:
    """Exact Hamming kNN of tracks that have several codes each (a whole-track code and window codes,
    ``encoders.codes.bits.code_windows``): a track's distance to a query track is the least Hamming distance
    over every pair of their codes, so that a 30-second excerpt finds the window of the whole track it is from.

    Every row is one faiss entry (``HammingIndex``). Each of a query's rows fetches its ``K`` nearest rows,
    ``K`` from ``2 k``, doubled until the result is certain: the ``k``-th closest track found is strictly closer
    than the farthest row fetched for every query row, so no row left unfetched could change it (ties included).
    One long track with many windows does not make every search fetch ``k`` times its rows.
    """

    def __init__(self, codes: np.ndarray | list[np.ndarray], use_gpu: bool | None = None):
        """``codes``: each track's (32,) or (r_i, 32) uint8 codes, or one code per track as an (n, 32) array."""
        if isinstance(codes, np.ndarray) and codes.ndim == 2:  # one code per track
            rows, counts = codes, np.ones(len(codes), np.int64)
        else:
            blocks = [np.atleast_2d(np.asarray(c, dtype=np.uint8)) for c in codes]
            counts = np.array([len(b) for b in blocks], dtype=np.int64)
            if (counts == 0).any():
                raise ValueError("every track needs at least one code")
            rows = np.concatenate(blocks) if blocks else np.zeros((0, 32), np.uint8)
        self.owner = np.repeat(np.arange(len(counts), dtype=np.int64), counts)
        self.rows = HammingIndex(rows, use_gpu)
        self.n_tracks = len(counts)

    def __len__(self) -> int:
        return self.n_tracks

    def search(self, query: np.ndarray, k: int) -> tuple[np.ndarray, np.ndarray]:
        """The ``k`` closest tracks to one query track's codes ((32,) or (r, 32) uint8): (distances (k',) int32,
        track positions (k',) int64), closest first, ties by position; k' = min(k, len(self))."""
        query = np.atleast_2d(np.asarray(query, dtype=np.uint8))
        k = min(k, self.n_tracks)
        if k == 0:
            return np.zeros(0, np.int32), np.zeros(0, np.int64)
        n_rows = len(self.rows)
        fetch = min(n_rows, 2 * k)
        while True:
            distances, rows = self.rows.search(query, fetch)
            best, tracks = best_per_track(distances, rows, self.owner, k)
            if fetch == n_rows or (len(best) == k and best[-1] < distances[:, -1].min()):
                return best, tracks
            fetch = min(n_rows, 4 * fetch)
