"""The whole matching cascade per MIDI query against a synthetic database of 1,000,000 audio clips.

Database: 30-second clips (~80 frame codes each, 32-bit; a 256-bit track code each). Queries: 3-minute
MIDI files (~480 frame codes); each has one planted true clip in the database, a crop of its own code
sequence with ~10% of the bits flipped, whose track code differs from the query's in ~12% of the bits.
The reference is exhaustive hash-sequence DTW against every clip (the approach the cascade prunes),
timed on a slice of the database in the same run and scaled to its full size. Raffel & Ellis report
109 s per query on one core for their system (ISMIR 2015).

    python tests/bench/bench_cascade.py [--n-db 1000000] [--queries 20]
"""

from __future__ import annotations

import argparse
import time

import faiss
import numpy as np
from _common import flip_bits, peak_rss_mb, report
from threadpoolctl import threadpool_limits

from hashing.align import align_pair
from hashing.cascade import HashCascade, RaggedCodes, hash_dtw_batch

CLIP_CODES = (70, 95)  # 30-s clips: 646 frames / 8
QUERY_CODES = 480  # a 3-minute MIDI file
FRAMES_PER_CODE = 8
FRAME_RATE = 22050 / 1024


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--n-db", type=int, default=1_000_000)
    parser.add_argument("--queries", type=int, default=20)
    parser.add_argument("--stage1-k", type=int, default=100)
    parser.add_argument("--stage2-k", type=int, default=10)
    parser.add_argument("--reference-slice", type=int, default=10_000)
    args = parser.parse_args()
    faiss.omp_set_num_threads(1)  # figures per core
    rng = np.random.default_rng(0)

    started = time.perf_counter()
    lengths = rng.integers(*CLIP_CODES, args.n_db)
    offsets = np.concatenate([[0], np.cumsum(lengths)])
    flat = rng.integers(0, 2**32, int(offsets[-1]), dtype=np.uint64).astype(np.uint32)
    track_codes = rng.integers(0, 256, (args.n_db, 32), dtype=np.uint8)
    query_frames = [rng.integers(0, 2**32, QUERY_CODES, dtype=np.uint64).astype(np.uint32)
                    for _ in range(args.queries)]
    query_tracks = rng.integers(0, 256, (args.queries, 32), dtype=np.uint8)
    planted = rng.choice(args.n_db, args.queries, replace=False)
    for q, target in enumerate(planted):  # the true clip: a noisy crop of the query
        n = int(lengths[target])
        start = int(rng.integers(0, QUERY_CODES - n))
        flat[offsets[target]:offsets[target + 1]] = flip_bits(query_frames[q][start:start + n], 0.1, rng)
        track_codes[target] = flip_bits(query_tracks[q], 0.12, rng)
    database = RaggedCodes(flat, offsets)
    cascade = HashCascade(track_codes, database, stage1_k=args.stage1_k, stage2_k=args.stage2_k)
    build_s = time.perf_counter() - started
    cascade.query(query_tracks[0], query_frames[0])  # compile

    times, found_stage1, found_top1 = [], 0, 0
    for q in range(args.queries):
        t = time.perf_counter()
        result = cascade.query(query_tracks[q], query_frames[q])
        times.append(time.perf_counter() - t)
        found_stage1 += int(planted[q] in result.indices)
        found_top1 += int(len(result.indices) and result.indices[0] == planted[q])
    per_query_hash = float(np.median(times))

    # Stage 3: the pipeline aligns the stage-2 survivors on 48-bin CQT frames (hashing.align).
    midi_cqt = rng.random((QUERY_CODES * FRAMES_PER_CODE, 48), dtype=np.float32)
    clip_cqts = [rng.random((int(n) * FRAMES_PER_CODE, 48), dtype=np.float32) for n in lengths[:args.stage2_k]]
    with threadpool_limits(1):  # one BLAS thread: figures per core
        t = time.perf_counter()
        for clip in clip_cqts:
            align_pair(midi_cqt, clip, FRAME_RATE)
        per_query_cqt = time.perf_counter() - t
    per_query = per_query_hash + per_query_cqt

    sl = min(args.reference_slice, args.n_db)
    t = time.perf_counter()
    hash_dtw_batch(query_frames[0], [database[i] for i in range(sl)])
    exhaustive = (time.perf_counter() - t) * args.n_db / sl

    report("cascade seconds per MIDI query per core", per_query, "s",
           f"{args.n_db:,} clips; stages 1+2 (Hamming search k={args.stage1_k}, hash DTW k={args.stage2_k}) "
           f"{per_query_hash * 1000:.1f} ms median of {args.queries}, stage 3 (CQT DTW of {args.stage2_k}) "
           f"{per_query_cqt * 1000:.0f} ms")
    report("stages 1+2 speed-up vs exhaustive hash DTW (same run)", exhaustive / per_query_hash, "x",
           f"exhaustive {exhaustive:.1f} s per query, timed on {sl:,} clips and scaled")
    report("cascade speed-up vs Raffel & Ellis 2015 (109 s per query, their machine)", 109.0 / per_query, "x")
    report("cascade planted match kept / ranked first", found_stage1 / args.queries, "",
           f"top-1 {found_top1 / args.queries:.2f}")
    report("cascade database memory", (database.nbytes + track_codes.nbytes) / 2**20, "MiB",
           f"process peak {peak_rss_mb():.0f} MiB; built in {build_s:.0f} s")


if __name__ == "__main__":
    main()
