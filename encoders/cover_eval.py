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
    fam = np.asarray(families)
    skip = np.asarray(exclude) if exclude is not None else np.arange(len(x)).astype(str)
    sims = x @ x.T
    aps, firsts, hits = [], [], []
    for q in range(len(x)):
        others = np.flatnonzero(skip != skip[q]) if exclude is not None else np.delete(np.arange(len(x)), q)
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


def clustering_ari(embeddings: np.ndarray, families: Sequence[str], min_similarity: float, k: int = 10) -> float:
    """Adjusted Rand index of ``cluster_labels`` at ``min_similarity`` against the true families."""
    ids = [f"{i:08d}" for i in range(len(families))]
    labels = cluster_labels(ids, np.asarray(embeddings, dtype=np.float32), (), k=k, min_similarity=min_similarity)
    return float(adjusted_rand_score(list(families), [labels[i] for i in ids]))


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
