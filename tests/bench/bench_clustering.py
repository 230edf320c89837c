"""Version clustering at scale: cluster_labels on 100,000 synthetic embeddings, against raw faiss kNN search.

Synthetic clustered structure: families of 1-8 versions around random centres on the unit sphere (dim
128), with noise giving version similarities of about 0.8-0.9, plus 1 % of match edges.

    python tests/bench/bench_clustering.py [--n 100000] [--dim 128] [--k 10]
"""

from __future__ import annotations

import argparse
import time

import faiss
import numpy as np
from _common import peak_rss_mb, report
from sklearn.metrics import adjusted_rand_score

from hashing.clustering import EXACT_MAX, cluster_graph, cluster_labels, knn_graph, knn_search

PIPELINE_K = 20  # pipelines.pipeline.RunConfig.version_candidates


def synthetic(n: int, dim: int, rng: np.random.Generator) -> tuple[np.ndarray, np.ndarray]:
    """(n, dim) L2-normalised embeddings in families of 1-8 and the family of each."""
    sizes = rng.integers(1, 9, size=n)
    family = np.repeat(np.arange(n), sizes)[:n]
    centres = rng.standard_normal((family.max() + 1, dim)).astype(np.float32)
    centres /= np.linalg.norm(centres, axis=1, keepdims=True)
    x = centres[family] + 0.045 * rng.standard_normal((n, dim)).astype(np.float32)
    return x / np.linalg.norm(x, axis=1, keepdims=True), family


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--n", type=int, default=100_000)
    parser.add_argument("--dim", type=int, default=128)
    parser.add_argument("--k", type=int, default=10)
    parser.add_argument("--similarity", type=float, default=0.7)
    args = parser.parse_args()
    rng = np.random.default_rng(0)
    x, family = synthetic(args.n, args.dim, rng)
    ids = [f"{i:09d}" for i in range(args.n)]
    pick = rng.choice(args.n, size=args.n // 100, replace=False)
    edges = [(ids[i], ids[j]) for i in pick for j in np.flatnonzero(family == family[i])[:1] if j != i]

    started = time.perf_counter()
    index = faiss.IndexFlatIP(args.dim)
    index.add(x)
    sims, exact = index.search(x, args.k + 1)
    t_knn = time.perf_counter() - started
    _, found = knn_search(x, args.k + 1)
    wanted = [set(e[s >= args.similarity]) for e, s in zip(exact, sims, strict=True)]
    recall = sum(len(w & set(f)) for w, f in zip(wanted, found, strict=True)) / max(1, sum(map(len, wanted)))

    started = time.perf_counter()
    labels = cluster_labels(ids, x, edges, k=args.k, min_similarity=args.similarity)
    t_cluster = time.perf_counter() - started
    assert all(labels[u] == labels[v] for u, v in edges), "match edges must share a cluster"
    ari = adjusted_rand_score(family, [labels[i] for i in ids])

    # The pipeline's path: 20 neighbours per track as candidates, then Leiden on the (here unverified) edges;
    # verifying the pairs is distributed and measured by bench_verification.py.
    started = time.perf_counter()
    a, b, w = knn_graph(x, PIPELINE_K, 0.5)
    pipeline_labels = cluster_graph(ids, [(ids[i], ids[j], float(s)) for i, j, s in zip(a, b, w, strict=True)],
                                    edges, args.similarity)
    t_pipeline = time.perf_counter() - started
    pipeline_ari = adjusted_rand_score(family, [pipeline_labels[i] for i in ids])

    threads = faiss.omp_get_max_threads()
    report("clustering time", t_cluster, "s", f"{args.n:,} embeddings, dim {args.dim}, k={args.k}, "
           f"{len(edges)} match edges, {threads} threads, {len(set(labels.values())):,} clusters")
    report("clustering time ratio (cluster_labels / raw faiss kNN search)", t_cluster / t_knn, "x",
           f"faiss exact kNN search alone {t_knn:.1f} s")
    report("recall of the exact kNN edges above the threshold", recall, "",
           "exact search" if args.n <= EXACT_MAX else "IVF index above EXACT_MAX")
    report("clustering ARI on the synthetic families", ari, "", f"process peak {peak_rss_mb():.0f} MiB")
    report("pipeline path time ratio (20-NN candidates + cluster_graph / raw faiss kNN search)", t_pipeline / t_knn,
           "x", f"{t_pipeline:.1f} s, {len(a):,} candidate pairs to verify, ARI {pipeline_ari:.4f}")


if __name__ == "__main__":
    main()
