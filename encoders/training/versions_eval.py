"""Version-retrieval and clustering figures for cover embeddings (MAP, MR1, top-10, ARI) and threshold calibration."""

from __future__ import annotations

from collections.abc import Sequence

import numpy as np
from sklearn.metrics import adjusted_rand_score

from hashing.clustering import cluster_labels

THRESHOLDS = tuple(np.round(np.arange(0.50, 0.995, 0.01), 2))


def retrieval_metrics(embeddings: np.ndarray, families: Sequence[str],
                      exclude: Sequence[str] | None = None) -> dict[str, float]:
    """Each item with a version elsewhere queries all others: MAP, mean rank of the first version, top-10 hits.

    With ``exclude`` (e.g. the piece each item renders), items sharing the query's value are left out of
    its candidates: only versions of another arrangement count.
    """
    x = np.asarray(embeddings, dtype=np.float64)
    return similarity_metrics(x @ x.T, families, exclude)


def similarity_metrics(sims: np.ndarray, families: Sequence[str],
                       exclude: Sequence[str] | None = None) -> dict[str, float]:
    """``retrieval_metrics`` from an (n, n) similarity matrix (higher is closer)."""
    fam = np.asarray(families)
    skip = np.asarray(exclude) if exclude is not None else np.arange(len(fam)).astype(str)
    aps, firsts, hits = [], [], []
    for q in range(len(fam)):
        others = np.flatnonzero(skip != skip[q]) if exclude is not None else np.delete(np.arange(len(fam)), q)
        relevant = fam[others] == fam[q]
        if not relevant.any():
            continue
        order = np.lexsort((others, -sims[q, others]))  # ties broken by position: deterministic
        rel = relevant[order]
        ranks = np.flatnonzero(rel) + 1
        aps.append(float(np.mean(np.arange(1, len(ranks) + 1) / ranks)))
        firsts.append(int(ranks[0]))
        hits.append(ranks[0] <= 10)
    if not aps:
        return {"map": float("nan"), "mean_first_rank": float("nan"), "top10": float("nan"), "queries": 0}
    return {"map": float(np.mean(aps)), "mean_first_rank": float(np.mean(firsts)), "top10": float(np.mean(hits)),
            "queries": len(aps)}


def verified_similarities(embeddings: np.ndarray, sequences: Sequence[np.ndarray], k: int = 20) -> np.ndarray:
    """Similarities after verification: each item's ``k`` nearest neighbours by cosine are re-scored with
    ``hashing.version_align.verified_similarity`` and ranked above every unverified item."""
    from hashing.version_align import verified_similarity

    x = np.asarray(embeddings, dtype=np.float64)
    sims = x @ x.T
    out, done = sims.copy(), set()
    for q in range(len(x)):
        for j in np.argsort(-sims[q], kind="stable")[: k + 1]:
            a, b = min(q, int(j)), max(q, int(j))
            if a != b and (a, b) not in done:
                done.add((a, b))
                out[a, b] = out[b, a] = 10.0 + verified_similarity(sims[a, b], sequences[a], sequences[b])
    return out


def clustering_ari(embeddings: np.ndarray, families: Sequence[str], min_similarity: float, k: int = 10) -> float:
    """Adjusted Rand index of ``cluster_labels`` at ``min_similarity`` against the true families."""
    ids = [f"{i:08d}" for i in range(len(families))]
    labels = cluster_labels(ids, np.asarray(embeddings, dtype=np.float32), (), k=k, min_similarity=min_similarity)
    return float(adjusted_rand_score(list(families), [labels[i] for i in ids]))


def verified_clustering_ari(embeddings: np.ndarray, sequences: Sequence[np.ndarray], families: Sequence[str],
                            min_similarity: float, edges: tuple | None = None) -> float:
    """ARI of the pipeline's clusters: ``verified_edges`` above ``min_similarity`` and Leiden communities."""
    from hashing.clustering import cluster_graph, verified_edges

    a, b, w = edges if edges is not None else verified_edges(embeddings, sequences)
    ids = [f"{i:08d}" for i in range(len(families))]
    labels = cluster_graph(ids, [(ids[i], ids[j], float(s)) for i, j, s in zip(a, b, w, strict=True)], (),
                           min_similarity)
    return float(adjusted_rand_score(list(families), [labels[i] for i in ids]))


def calibrate_verified_threshold(embeddings: np.ndarray, sequences: Sequence[np.ndarray], families: Sequence[str],
                                 thresholds: Sequence[float] = tuple(np.round(np.arange(0.5, 1.3, 0.05), 2)),
                                 ) -> tuple[float, float]:
    """The verified-similarity threshold with the best ARI on a calibration set: (threshold, ari)."""
    from hashing.clustering import verified_edges

    edges = verified_edges(embeddings, sequences)
    scores = [(verified_clustering_ari(embeddings, sequences, families, float(t), edges), -float(t))
              for t in thresholds]
    ari, neg_t = max(scores)
    return -neg_t, ari


def calibrate_threshold(embeddings: np.ndarray, families: Sequence[str],
                        thresholds: Sequence[float] = THRESHOLDS) -> tuple[float, float]:
    """The similarity threshold with the best ARI on a calibration set: (threshold, ari)."""
    scores = [(clustering_ari(embeddings, families, float(t)), -float(t)) for t in thresholds]
    ari, neg_t = max(scores)
    return -neg_t, ari


def precision_threshold(embeddings: np.ndarray, families: Sequence[str], target: float = 0.9,
                        thresholds: Sequence[float] = THRESHOLDS) -> float:
    """The lowest similarity at which pairs above it are versions of each other with precision >= ``target``
    on a calibration set (the pipeline's default: false merges of unrelated recordings cost more)."""
    x = np.asarray(embeddings, dtype=np.float64)
    fam = np.asarray(families)
    upper = np.triu_indices(len(fam), 1)
    sims, same = (x @ x.T)[upper], (fam[:, None] == fam[None, :])[upper]
    for t in sorted(thresholds):
        above = sims >= t
        if above.any() and same[above].mean() >= target:
            return float(t)
    return float(max(thresholds))
