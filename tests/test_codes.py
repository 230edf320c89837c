"""Baseline binary codes, faiss Hamming search and clustering."""

from __future__ import annotations

import numpy as np
import pytest

from encoders.codes import load_hasher
from encoders.codes.baseline import RandomProjectionHasher
from encoders.codes.bits import pack_uint32
from hashing.clustering import cluster_labels, knn_graph
from hashing.search import HammingIndex


def test_pack_uint32_bit_order():
    bits = np.zeros((2, 32), bool)
    bits[0, 0] = True
    bits[1, [1, 31]] = True
    assert pack_uint32(bits).tolist() == [1, 2 + 2**31]


def test_codes_shapes_and_determinism(rng):
    cqt = rng.random((203, 48), dtype=np.float32)
    a, b = RandomProjectionHasher(seed=3), RandomProjectionHasher(seed=3)
    assert a.frame_codes(cqt).shape == (26,) and a.frame_codes(cqt).dtype == np.uint32
    assert a.track_code(cqt).shape == (32,) and a.track_code(cqt).dtype == np.uint8
    assert np.array_equal(a.frame_codes(cqt), b.frame_codes(cqt))
    assert not np.array_equal(a.track_code(cqt), RandomProjectionHasher(seed=4).track_code(cqt))


def test_similar_tracks_get_closer_codes(rng):
    hasher = RandomProjectionHasher()
    base = rng.random((400, 48), dtype=np.float32)
    near = base + 0.05 * rng.standard_normal(base.shape).astype(np.float32)
    far = rng.random((400, 48), dtype=np.float32) ** 3

    def ham(x, y):
        return int(np.unpackbits(np.bitwise_xor(hasher.track_code(x), hasher.track_code(y))).sum())

    assert ham(base, near) < ham(base, far)
    frame_diff = np.bitwise_xor(hasher.frame_codes(base), hasher.frame_codes(near))
    assert np.mean([bin(int(v)).count("1") for v in frame_diff]) < 8


def test_load_hasher_names():
    assert load_hasher("random-projection").seed == 0
    assert load_hasher("random-projection:7").seed == 7
    assert load_hasher("learned+windows").windows and not load_hasher(None).windows
    assert load_hasher("random-projection:7+windows").windows and load_hasher("random-projection:7+windows").seed == 7
    assert load_hasher(None).name.startswith("learned:")  # the shipped learned encoders are the default
    with pytest.raises(ValueError, match="unknown model"):
        load_hasher("nonsense")


def test_hamming_index_matches_brute_force(rng):
    db = rng.integers(0, 256, (500, 32), dtype=np.uint8)
    queries = rng.integers(0, 256, (20, 32), dtype=np.uint8)
    distances, indices = HammingIndex(db).search(queries, 10)
    brute = np.unpackbits(queries[:, None, :] ^ db[None, :, :], axis=2).sum(axis=2)
    for q in range(len(queries)):
        order = np.lexsort((np.arange(len(db)), brute[q]))[:10]
        assert indices[q].tolist() == order.tolist()
        assert distances[q].tolist() == brute[q, order].tolist()


def test_hamming_index_small_database():
    index = HammingIndex(np.zeros((3, 32), np.uint8))
    distances, indices = index.search(np.zeros((2, 32), np.uint8), 100)
    assert indices.shape == (2, 3)
    assert HammingIndex(np.zeros((0, 32), np.uint8)).search(np.zeros((1, 32), np.uint8), 5)[1].shape == (1, 0)


def test_clusters_from_similarity_and_extra_edges(rng):
    centres = rng.standard_normal((3, 16)).astype(np.float32)
    x = np.concatenate([c + 0.01 * rng.standard_normal((3, 16)).astype(np.float32) for c in centres])
    x /= np.linalg.norm(x, axis=1, keepdims=True)
    ids = [f"t{i}" for i in range(9)] + ["lonely"]
    lonely = rng.standard_normal((1, 16)).astype(np.float32)
    x = np.concatenate([x, lonely / np.linalg.norm(lonely)])
    a, b, _ = knn_graph(x, k=3, min_similarity=0.95)
    assert len(a) > 0 and all(i // 3 == j // 3 for i, j in zip(a, b, strict=True))
    labels = cluster_labels(ids, x, k=3, min_similarity=0.95)
    assert labels["t0"] == labels["t1"] == labels["t2"] == "t0"
    assert len({labels[f"t{i}"] for i in range(9)}) == 3
    assert labels["lonely"] == "lonely"
    merged = cluster_labels(ids, x, [("t0", "t3"), ("lonely", "t8")], k=3, min_similarity=0.95)
    assert merged["t4"] == merged["t0"] and merged["lonely"] == merged["t6"]
