"""Sharded exact search (hashing.shards), without Beam: the merged per-shard top-K equal one search over all."""

from __future__ import annotations

import random

import numpy as np
import pytest

from hashing.cascade import HashCascade, RaggedCodes, refine_by_frame_codes
from hashing.search import HammingIndex
from hashing.shards import Hit, merge_top_k, search_shard, shard_count, shard_of


def test_shard_of_is_deterministic_and_even():
    ids = [f"{i:032x}" for i in range(20000)]
    shards = [shard_of(i, 8) for i in ids]
    assert shards == [shard_of(i, 8) for i in ids]  # no per-process salt (unlike hash())
    assert (shard_of("abc", 8), shard_of("abc", 3)) == (0, 1)  # fixed across runs and versions (blake2b)
    assert shard_of("0123456789abcdef0123456789abcdef", 10) == 6
    counts = np.bincount(shards, minlength=8)
    assert counts.min() > 0.9 * len(ids) / 8 and counts.max() < 1.1 * len(ids) / 8
    assert {shard_of(i, 1) for i in ids[:100]} == {0}
    with pytest.raises(ValueError):
        shard_of("a", 0)


def test_shard_count_by_database_size():
    assert shard_count(0) == 1 and shard_count(100_000) == 1 and shard_count(100_001) == 2
    assert shard_count(1_000_000) == 10 and shard_count(5, shards=3) == 3
    with pytest.raises(ValueError):
        shard_count(10, shards=0)


@pytest.mark.parametrize("n_bytes,n_values", [(32, 6), (1, 4)])
def test_sharded_search_equals_one_index_with_ties(n_bytes, n_values):
    """Codes drawn from a few values, so that most distances tie, also at the K-th place: ties must go to the
    smallest key in every shard and in the merge, as in one index over the database in key order."""
    rng = np.random.default_rng(n_bytes)
    n, k = 3000, 50
    values = rng.integers(0, 256, (n_values, n_bytes), dtype=np.uint8)
    codes = values[rng.integers(0, n_values, n)]
    keys = sorted(f"file:///audio/{rng.integers(1 << 40):012x}-{i}.wav" for i in range(n))
    ids = [f"{i:032x}" for i in rng.permutation(n)]
    queries = values[rng.integers(0, n_values, 40)] ^ rng.integers(0, 2, (40, n_bytes), dtype=np.uint8)
    d, i = HammingIndex(codes).search(queries, k)
    expected = [[Hit(int(dd), keys[ii], ids[ii]) for dd, ii in zip(dr, ir, strict=True)]
                for dr, ir in zip(d, i, strict=True)]
    for n_shards in (1, 3, 7):
        per_shard = []
        for s in range(n_shards):
            rows = [r for r in range(n) if shard_of(ids[r], n_shards) == s]
            per_shard.append(search_shard(codes[rows], [keys[r] for r in rows], [ids[r] for r in rows], queries, k))
        for q in range(len(queries)):
            lists = [hits[q] for hits in per_shard]
            random.Random(q).shuffle(lists)  # a combiner merges in any order, also partial merges
            partial = merge_top_k(lists[: len(lists) // 2], k)
            assert merge_top_k([partial, *lists[len(lists) // 2:]], k) == expected[q], (n_shards, q)


def test_search_shard_needs_sorted_keys_and_handles_empty():
    codes = np.zeros((2, 32), np.uint8)
    with pytest.raises(ValueError):
        search_shard(codes, ["b", "a"], ["1", "2"], codes[:1], 1)
    assert search_shard(codes[:0], [], [], codes, 5) == [[], []]


def test_refine_breaks_ties_by_database_order_as_the_cascade():
    rng = np.random.default_rng(1)
    frames = [rng.integers(0, 4, 30, dtype=np.uint32) for _ in range(300)]  # tiny code space: DTW ties
    tracks = rng.integers(0, 2, (300, 32), dtype=np.uint8)
    query = rng.integers(0, 4, 20, dtype=np.uint32)
    cascade = HashCascade(tracks, RaggedCodes.from_sequences(frames), stage1_k=80, stage2_k=10)
    result = cascade.query(tracks[0], query)
    stage1 = sorted(cascade.index.search(tracks[0], 80)[1].tolist())  # database order, as the pipeline's
    order, dist = refine_by_frame_codes(query, [frames[i] for i in stage1], 10)
    assert [stage1[i] for i in order] == result.indices.tolist() and np.allclose(dist, result.dtw_distance)
    _, all_dist = refine_by_frame_codes(query, [frames[i] for i in stage1], 80)
    assert len(np.unique(all_dist[:11])) < 11  # ties around the cut: the order above is the tie-breaking's


def test_sharded_search_with_window_codes_equals_one_multi_code_index():
    """Tracks with several codes (whole-track and 30-s window codes): each shard searches them as
    ``MultiCodeIndex`` does, and the merged lists equal one multi-code search over the whole database."""
    from hashing.search import MultiCodeIndex

    rng = np.random.default_rng(7)
    n, k, n_bytes = 400, 20, 4
    codes = [rng.integers(0, 256, (int(rng.integers(1, 5)), n_bytes), dtype=np.uint8) for _ in range(n)]
    keys = sorted(f"file:///audio/{i:05d}.wav" for i in range(n))
    ids = [f"{i:032x}" for i in rng.permutation(n)]
    queries = [rng.integers(0, 256, (int(rng.integers(1, 4)), n_bytes), dtype=np.uint8) for _ in range(15)]
    queries[0] = codes[123][-1:].copy()  # an excerpt one bit from the last window of track 123
    queries[0][0, 0] ^= 1
    whole = MultiCodeIndex(codes)
    for q, query in enumerate(queries):
        d, i = whole.search(query, k)
        expected = [Hit(int(dd), keys[ii], ids[ii]) for dd, ii in zip(d, i, strict=True)]
        lists = []
        for s in range(3):
            rows = [r for r in range(n) if shard_of(ids[r], 3) == s]
            lists.append(search_shard([codes[r] for r in rows], [keys[r] for r in rows], [ids[r] for r in rows],
                                      [query], k)[0])
        assert merge_top_k(lists, k) == expected, q
    found = search_shard(codes, keys, ids, queries[:1], 1)[0][0]
    assert (found.key, found.distance) == (keys[123], 1)
