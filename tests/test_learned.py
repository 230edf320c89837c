"""Learned hash encoders: networks, loss, a short training run, and the shipped weights."""

import numpy as np
import pytest
import torch

from encoders.hashes import load_hasher
from encoders.learned import DEFAULT_WEIGHTS, FrameEncoder, HashNetworks, LearnedHasher, SequenceEncoder
from encoders.train import TrainConfig, contrastive_loss, train_frames, train_sequences
from encoders.training_data import AlignedPair, piece_split


def test_frame_encoder_downsamples_time_8x_and_keeps_codes_in_range():
    net = FrameEncoder(hidden=16)
    h, codes = net(torch.randn(2, 64, 48))
    assert h.shape == (2, 8, 16) and codes.shape == (2, 8, 32)
    assert codes.abs().max() <= 1


def test_sequence_encoder_ignores_masked_padding():
    torch.manual_seed(0)
    enc = SequenceEncoder(code_bits=8, bits=16)
    h = torch.tanh(torch.randn(1, 5, 8))
    padded = torch.cat([h, torch.ones(1, 3, 8)], dim=1)
    mask = torch.tensor([[True] * 5 + [False] * 3])
    torch.testing.assert_close(enc(h), enc(padded, mask))


def test_contrastive_loss_prefers_matching_codes():
    a = torch.tensor([[1.0, -1.0, 1.0, 1.0]])
    far = -a
    loss_good = contrastive_loss(a, a, far.unsqueeze(1), margin=2.0, alpha=5.0, penalty=0.1)
    loss_bad = contrastive_loss(a, far, a.unsqueeze(1), margin=2.0, alpha=5.0, penalty=0.1)
    assert float(loss_good) == pytest.approx(0.0, abs=1e-6)
    assert float(loss_bad) > 10


def synthetic_pairs(n_pieces=6, frames=160, seed=0):
    """Audio = MIDI CQT delayed and noisier; the frame map is known."""
    rng = np.random.default_rng(seed)
    pairs = []
    for i in range(n_pieces):
        midi = rng.random((frames, 48)).astype(np.float32)
        shift = int(rng.integers(0, 10))
        audio = midi[shift:] + 0.1 * rng.standard_normal((frames - shift, 48)).astype(np.float32)
        pairs.append(AlignedPair(f"piece{i}", midi, audio, np.arange(shift, frames)))
    return pairs


def test_short_training_lowers_the_frame_loss_and_fits_the_sequence_head(request):
    from encoders.train import _standardised

    torch.manual_seed(0)
    threads = torch.get_num_threads()
    torch.set_num_threads(1)  # as train() does; tiny batches gain nothing from more
    request.addfinalizer(lambda: torch.set_num_threads(threads))
    cfg = TrainConfig(hidden=16, batch=8, frame_steps=60, sequence_steps=40, lr=3e-3)
    nets = HashNetworks(hidden=16)
    data = _standardised(synthetic_pairs())
    rng = np.random.default_rng(0)
    frame = train_frames(nets, data, cfg, rng, log=lambda _: None)
    assert np.mean(frame[-10:]) < 0.7 * np.mean(frame[:10])
    projection = nets.sequence["audio"].projection.clone()
    attention = nets.sequence["audio"].score[0].weight.detach().clone()
    seq = train_sequences(nets, data, cfg, rng, log=lambda _: None)
    assert len(seq) == cfg.sequence_steps and np.isfinite(seq).all()
    enc = nets.sequence["audio"]
    assert not torch.equal(enc.score[0].weight, attention)  # the attention is trained ...
    assert torch.equal(enc.projection, projection)  # ... the binarising projection stays fixed
    assert enc.scale.min() > 0 and not torch.equal(enc.center, torch.zeros_like(enc.center))


def test_piece_split_is_stable_and_holds_out_about_a_fifth():
    names = [f"simutrans_{i:03d}" for i in range(500)]
    held = [n for n in names if piece_split(n) == "heldout"]
    assert held == [n for n in names if piece_split(n) == "heldout"]
    assert 0.12 < len(held) / len(names) < 0.28


@pytest.mark.skipif(not DEFAULT_WEIGHTS.exists(), reason="no shipped weights")
def test_shipped_model_is_the_default_and_codes_are_deterministic():
    hasher = load_hasher(None)
    assert isinstance(hasher, LearnedHasher)
    cqt = np.random.default_rng(0).random((300, 48)).astype(np.float32)
    frames, track = hasher.codes(cqt, "audio")
    assert frames.dtype == np.uint32 and frames.shape == (38,)
    assert track.dtype == np.uint8 and track.shape == (32,)
    again = LearnedHasher()
    assert np.array_equal(again.frame_codes(cqt, "audio"), frames)
    assert np.array_equal(again.track_code(cqt, "audio"), track)
    assert not np.array_equal(hasher.frame_codes(cqt, "midi"), frames)  # one network per modality
    with pytest.raises(ValueError, match="modality"):
        hasher.frame_codes(cqt, "video")


def test_weights_path_errors_say_what_to_do(tmp_path):
    with pytest.raises(FileNotFoundError, match="mirmatch train"):
        load_hasher(str(tmp_path / "missing.pt"))
    assert load_hasher("random-projection:3").seed == 3
