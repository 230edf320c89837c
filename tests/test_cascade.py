"""The matching cascade: batched hash-sequence DTW and stage-1/stage-2 pruning."""

import numpy as np
import pytest

from hashing.cascade import HashCascade, hash_dtw_batch, pack_sequences
from hashing.dtw import dtw, hamming_cost


def random_codes(rng, n):
    return rng.integers(0, 2**32, n, dtype=np.uint64).astype(np.uint32)


def reference_subsequence(query, cand, penalty):
    """hash_dtw_batch's definition, from the generic DTW on an explicit cost matrix."""
    short, long_ = (query, cand) if len(query) <= len(cand) else (cand, query)
    result = dtw(hamming_cost(short, long_), penalty=penalty, subsequence=True)
    return result.cost / len(short)


def test_batch_matches_generic_subsequence_dtw_both_ways():
    rng = np.random.default_rng(0)
    query = random_codes(rng, 40)
    candidates = [random_codes(rng, m) for m in (25, 40, 71, 3)]
    got = hash_dtw_batch(query, candidates, penalty=5.0)
    want = [reference_subsequence(query, c, 5.0) for c in candidates]
    np.testing.assert_allclose(got, want, rtol=1e-6)


def test_embedded_copy_scores_zero_and_ranks_first():
    rng = np.random.default_rng(1)
    piece = random_codes(rng, 200)
    query = piece[50:120]  # a MIDI file covering part of the recording
    candidates = [random_codes(rng, 200) for _ in range(20)] + [piece]
    distances = hash_dtw_batch(query, candidates)
    assert distances[-1] == 0.0
    assert np.argmin(distances) == len(candidates) - 1
    assert distances[:-1].min() > 4.0


def test_early_abandoning_drops_only_hopeless_candidates():
    rng = np.random.default_rng(2)
    query = random_codes(rng, 64)
    near = query.copy()
    near[::7] ^= np.uint32(1)  # one bit off in every 7th code
    candidates = [near] + [random_codes(rng, 80) for _ in range(5)]
    full = hash_dtw_batch(query, candidates)
    pruned = hash_dtw_batch(query, candidates, abandon_above=2.0)
    assert pruned[0] == pytest.approx(full[0])
    assert np.isinf(pruned[1:]).all()


def test_pack_sequences_pads_and_rejects_empty():
    packed, lengths = pack_sequences([np.array([1, 2, 3], np.uint32), np.array([7], np.uint32)])
    assert packed.shape == (3, 2) and lengths.tolist() == [3, 1]
    assert packed[:, 1].tolist() == [7, 0, 0]
    with pytest.raises(ValueError, match="at least one code"):
        pack_sequences([np.array([], np.uint32)])


def test_cascade_finds_the_true_track_among_many():
    rng = np.random.default_rng(3)
    n_db = 2000
    track_codes = rng.integers(0, 256, (n_db, 32), dtype=np.uint8)
    frames = [random_codes(rng, int(rng.integers(30, 90))) for _ in range(n_db)]
    target = 1234
    query_track = track_codes[target].copy()
    query_track[:3] ^= 0xFF  # 24 bits off: still far closer than a random code (~128 bits)
    query_frames = frames[target][5:-5]
    cascade = HashCascade(track_codes, frames, stage1_k=50, stage2_k=5)
    result = cascade.query(query_track, query_frames)
    assert result.indices[0] == target
    assert result.dtw_distance[0] == 0.0
    assert len(result.indices) == 5 and np.all(np.diff(result.dtw_distance) >= 0)


def test_ragged_codes_round_trip_and_feed_the_cascade():
    from hashing.cascade import RaggedCodes

    rng = np.random.default_rng(4)
    seqs = [random_codes(rng, int(m)) for m in rng.integers(1, 40, 50)]
    ragged = RaggedCodes.from_sequences(seqs)
    assert len(ragged) == 50 and all(np.array_equal(ragged[i], s) for i, s in enumerate(seqs))
    track_codes = rng.integers(0, 256, (50, 32), dtype=np.uint8)
    a = HashCascade(track_codes, seqs, stage1_k=20, stage2_k=5).query(track_codes[7], seqs[7])
    b = HashCascade(track_codes, ragged, stage1_k=20, stage2_k=5).query(track_codes[7], seqs[7])
    assert a.indices.tolist() == b.indices.tolist() and a.indices[0] == 7
    with pytest.raises(ValueError, match="at least one code"):
        RaggedCodes(np.zeros(3, np.uint32), np.array([0, 0, 3]))
