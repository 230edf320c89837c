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


def _hamming(a, b):
    return int(np.unpackbits(np.bitwise_xor(a, b)).sum())


def test_multi_code_index_equals_brute_force_least_distance_per_track():
    from hashing.search import MultiCodeIndex

    rng = np.random.default_rng(5)
    tracks = [rng.integers(0, 256, (int(r), 32), dtype=np.uint8) for r in rng.integers(1, 6, 300)]
    index = MultiCodeIndex(tracks)
    for _ in range(5):
        query = rng.integers(0, 256, (int(rng.integers(1, 4)), 32), dtype=np.uint8)
        truth = np.array([min(_hamming(a, b) for a in query for b in t) for t in tracks])
        distances, found = index.search(query, 40)
        expected = np.lexsort((np.arange(len(tracks)), truth))[:40]
        assert found.tolist() == expected.tolist() and distances.tolist() == truth[expected].tolist()


def test_one_code_per_track_searches_as_before():
    from hashing.search import HammingIndex, MultiCodeIndex

    rng = np.random.default_rng(6)
    codes = rng.integers(0, 256, (500, 32), dtype=np.uint8)
    query = rng.integers(0, 256, 32, dtype=np.uint8)
    d_old, i_old = HammingIndex(codes).search(query[None], 30)
    for index in (MultiCodeIndex(codes), MultiCodeIndex(list(codes))):
        d_new, i_new = index.search(query, 30)
        assert i_new.tolist() == i_old[0].tolist() and d_new.tolist() == d_old[0].tolist()


def test_an_excerpt_finds_its_whole_track_by_a_window_code():
    """A query close to one window of a long track (and far from its whole-track code) survives stage 1 only when
    the window codes are searched."""
    rng = np.random.default_rng(7)
    n_db = 400
    whole = rng.integers(0, 256, (n_db, 32), dtype=np.uint8)
    windows = [rng.integers(0, 256, (4, 32), dtype=np.uint8) for _ in range(n_db)]
    frames = [random_codes(rng, 60) for _ in range(n_db)]
    target = 123
    query = windows[target][2].copy()
    query[:4] ^= 0x0F  # 16 bits off the window's code
    single = HashCascade(whole, frames, stage1_k=10, stage2_k=5)
    multi = HashCascade([np.vstack([w[None], ws]) for w, ws in zip(whole, windows, strict=True)], frames,
                        stage1_k=10, stage2_k=5)
    assert target not in single.query(query, frames[target][10:40]).indices
    result = multi.query(query, frames[target][10:40])
    assert result.indices[0] == target and result.hamming[0] == 16


def test_code_windows_cover_a_track_with_half_overlap():
    from encoders.codes.bits import WINDOW_CODES, WINDOW_HOP_CODES, code_windows

    assert code_windows(WINDOW_CODES) == []  # about one window long: the whole-track code serves
    windows = code_windows(500)
    assert windows[0] == (0, WINDOW_CODES) and windows[-1][1] == 500
    assert all(e - s == WINDOW_CODES for s, e in windows)
    assert all(b[0] - a[0] <= WINDOW_HOP_CODES for a, b in zip(windows, windows[1:], strict=False))


def test_a_track_with_many_windows_does_not_hide_the_others():
    from hashing.search import MultiCodeIndex

    rng = np.random.default_rng(8)
    tracks = [rng.integers(0, 256, (1, 32), dtype=np.uint8) for _ in range(200)]
    tracks[0] = rng.integers(0, 256, (500, 32), dtype=np.uint8)  # a three-hour recording's windows
    query = tracks[57][0].copy()
    query[:2] ^= 0x01
    tracks[0][:300] = query  # many exact hits in one track
    distances, found = MultiCodeIndex(tracks).search(query, 5)
    assert found[:2].tolist() == [0, 57] and distances[:2].tolist() == [0, 2] and len(set(found.tolist())) == 5
