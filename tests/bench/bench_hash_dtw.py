"""Hash-sequence DTW: the project's numba kernels against librosa.sequence.dtw on the same cost matrices.

Cells per second over pairs of 32-bit code sequences the length of a 3-minute track at Raffel's rate
(hop 1024 at 22050 Hz, one code per 8 frames: ~480 codes). librosa gets the Hamming cost matrix
precomputed; the project's kernels compute it on the fly.

    python tests/bench/bench_hash_dtw.py [--pairs 64] [--length 480]
"""

from __future__ import annotations

import argparse
import tracemalloc

import librosa
import numpy as np
from _common import best_times, report

from hashing.cascade import DEFAULT_PENALTY, hash_dtw_batch
from hashing.dtw import hamming_cost, hash_dtw_distance


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--pairs", type=int, default=64)
    parser.add_argument("--length", type=int, default=480)
    args = parser.parse_args()
    rng = np.random.default_rng(0)
    n = args.length
    query = rng.integers(0, 2**32, n, dtype=np.uint64).astype(np.uint32)
    lengths = rng.integers(int(0.8 * n), int(1.2 * n), args.pairs)
    candidates = [rng.integers(0, 2**32, m, dtype=np.uint64).astype(np.uint32) for m in lengths]
    costs = [hamming_cost(query, c).astype(np.float64) for c in candidates]
    cells = float(sum(n * len(c) for c in candidates))
    weights_add = np.array([0.0, DEFAULT_PENALTY, DEFAULT_PENALTY])

    # Compile every kernel before timing.
    hash_dtw_batch(query, candidates[:2])
    hash_dtw_distance(query, candidates[0], DEFAULT_PENALTY)
    librosa.sequence.dtw(C=costs[0], weights_add=weights_add)

    def librosa_path():
        for c in costs:
            librosa.sequence.dtw(C=c, weights_add=weights_add)

    def librosa_cost_only():
        for c in costs:
            librosa.sequence.dtw(C=c, weights_add=weights_add, backtrack=False)

    def ours_single():
        for c in candidates:
            hash_dtw_distance(query, c, DEFAULT_PENALTY)

    t_lib, t_lib_nb, t_single, t_batch = best_times(
        [librosa_path, librosa_cost_only, ours_single, lambda: hash_dtw_batch(query, candidates)])
    detail = f"{args.pairs} pairs of ~{n} codes"
    report("hash DTW batched vs librosa.sequence.dtw (cells/s ratio)", t_lib / t_batch, "x",
           f"{cells / t_batch:.3g} vs {cells / t_lib:.3g} cells/s, {detail}")
    report("hash DTW batched vs librosa.sequence.dtw backtrack=False (cells/s ratio)", t_lib_nb / t_batch, "x",
           f"{cells / t_lib_nb:.3g} cells/s for librosa without the path")
    report("hash DTW single pair vs librosa.sequence.dtw (cells/s ratio)", t_lib / t_single, "x",
           f"{cells / t_single:.3g} cells/s")

    tracemalloc.start()
    hash_dtw_batch(query, candidates)
    _, peak_batch = tracemalloc.get_traced_memory()
    tracemalloc.reset_peak()
    librosa.sequence.dtw(C=costs[0], weights_add=weights_add)
    _, peak_lib = tracemalloc.get_traced_memory()
    tracemalloc.stop()
    report("hash DTW peak memory per pair, librosa / batched", (peak_lib) / (peak_batch / args.pairs), "x",
           f"batched {peak_batch / args.pairs / 1024:.0f} KiB per pair, librosa {peak_lib / 1024:.0f} KiB per pair "
           f"(without its precomputed cost matrix)")


if __name__ == "__main__":
    main()
