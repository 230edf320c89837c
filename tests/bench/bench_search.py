"""Stage-1 search: the project's HammingIndex against raw faiss, 1,000 queries over 1,000,000 codes.

    python tests/bench/bench_search.py [--n-db 1000000] [--n-queries 1000] [--k 100]
"""

from __future__ import annotations

import argparse

import faiss
import numpy as np
from _common import best_times, peak_rss_mb, report

from hashing.search import HammingIndex


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--n-db", type=int, default=1_000_000)
    parser.add_argument("--n-queries", type=int, default=1_000)
    parser.add_argument("--k", type=int, default=100)
    parser.add_argument("--bits", type=int, default=256)
    args = parser.parse_args()
    rng = np.random.default_rng(0)
    db = rng.integers(0, 256, (args.n_db, args.bits // 8), dtype=np.uint8)
    queries = rng.integers(0, 256, (args.n_queries, args.bits // 8), dtype=np.uint8)
    rss_before = peak_rss_mb()

    raw = faiss.IndexBinaryFlat(args.bits)
    raw.add(db)
    ours = HammingIndex(db)
    t_raw, t_ours = best_times([lambda: raw.search(queries, args.k), lambda: ours.search(queries, args.k)])
    d_raw, _ = raw.search(queries, args.k)
    d_ours, _ = ours.search(queries, args.k)
    assert np.array_equal(np.sort(d_raw, 1), d_ours), "the project's search must return faiss' distances"

    threads = faiss.omp_get_max_threads()
    report("stage1 search throughput ratio (project / raw faiss)", t_raw / t_ours, "x",
           f"project {args.n_queries / t_ours:,.0f} q/s, faiss {args.n_queries / t_raw:,.0f} q/s, "
           f"{args.n_queries} queries x {args.n_db:,} {args.bits}-bit codes, k={args.k}, {threads} threads")
    report("stage1 index memory", db.nbytes / 2**20, "MiB", f"codes; process peak {peak_rss_mb():.0f} MiB, "
           f"{peak_rss_mb() - rss_before:.0f} MiB above the data")


if __name__ == "__main__":
    main()
