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
