"""Grouping tracks into version clusters from embedding similarity and match edges."""

from __future__ import annotations

from collections.abc import Iterable, Sequence

import faiss
import numpy as np
from scipy.sparse import coo_matrix
from scipy.sparse.csgraph import connected_components


def knn_edges(embeddings: np.ndarray, k: int, min_similarity: float) -> tuple[np.ndarray, np.ndarray]:
    """Mutual k-nearest-neighbour pairs (i < j) with inner-product similarity >= min_similarity.

    ``embeddings`` should be L2-normalised so the inner product is the cosine similarity.
    """
    x = np.ascontiguousarray(embeddings, dtype=np.float32)
    n = len(x)
    if n < 2:
        return np.zeros(0, np.int64), np.zeros(0, np.int64)
    index = faiss.IndexFlatIP(x.shape[1])
    index.add(x)
    sims, nbrs = index.search(x, min(k + 1, n))
    rows = np.repeat(np.arange(n), nbrs.shape[1])
    cols, keep = nbrs.ravel(), (sims.ravel() >= min_similarity) & (nbrs.ravel() != rows) & (nbrs.ravel() >= 0)
    pairs = set(zip(rows[keep].tolist(), cols[keep].tolist(), strict=True))
    mutual = sorted((i, j) for i, j in pairs if i < j and (j, i) in pairs)
    if not mutual:
        return np.zeros(0, np.int64), np.zeros(0, np.int64)
    a, b = np.array(mutual, dtype=np.int64).T
    return a, b


def cluster_labels(ids: Sequence[str], embeddings: np.ndarray, extra_edges: Iterable[tuple[str, str]] = (),
                   *, k: int = 10, min_similarity: float = 0.95) -> dict[str, str]:
    """Connected components of the mutual-kNN similarity graph plus ``extra_edges`` (e.g. matches).

    Returns {id: cluster_id}; a cluster's id is its smallest member id, so labels are deterministic.
    """
    position = {track_id: i for i, track_id in enumerate(ids)}
    a, b = knn_edges(embeddings, k, min_similarity)
    extra = [(position[u], position[v]) for u, v in extra_edges if u in position and v in position]
    if extra:
        ea, eb = np.array(extra, dtype=np.int64).T
        a, b = np.concatenate([a, ea]), np.concatenate([b, eb])
    n = len(ids)
    graph = coo_matrix((np.ones(len(a)), (a, b)), shape=(n, n))
    _, component = connected_components(graph, directed=False)
    representative: dict[int, str] = {}
    for track_id, c in zip(ids, component, strict=True):
        if c not in representative or track_id < representative[c]:
            representative[c] = track_id
    return {track_id: representative[c] for track_id, c in zip(ids, component, strict=True)}
