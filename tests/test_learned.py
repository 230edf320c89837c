"""Learned hash encoders: networks, loss, a short training run, and the shipped weights."""

import numpy as np
import pytest
import torch

from encoders.codes import load_hasher
from encoders.codes.learned import (
    DEFAULT_WEIGHTS,
    V4_WEIGHTS,
    FrameEncoder,
    HashNetworks,
    LearnedHasher,
    SequenceEncoder,
)
from encoders.training.codes import TrainConfig, contrastive_loss, train_frames, train_sequences, variance_hinge
from encoders.training.codes_data import AlignedPair
from encoders.training.splits import hash_piece_split


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


def test_he_init_gives_codes_that_vary_with_the_input():
    """torch's default init shrinks the signal layer by layer: every input gets nearly the same code."""
    rng = np.random.default_rng(0)
    x = torch.from_numpy(rng.standard_normal((16, 64, 48)).astype(np.float32))
    spread = {}
    for name in ("default", "he"):
        torch.manual_seed(0)
        net = FrameEncoder()
        if name == "he":
            net.init_he()
        with torch.no_grad():
            spread[name] = float(net(x)[1].reshape(-1, 32).std(0).mean())
    assert spread["default"] < 0.01
    assert spread["he"] > 0.1


def test_variance_hinge_is_zero_for_balanced_bits_and_high_for_collapsed_codes():
    rng = np.random.default_rng(0)
    balanced = torch.from_numpy(rng.choice([-1.0, 1.0], (512, 32)).astype(np.float32))
    collapsed = torch.ones(512, 32) + 1e-3 * torch.randn(512, 32)
    assert float(variance_hinge(balanced)) < 0.02
    assert float(variance_hinge(collapsed)) > 0.9


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
    from encoders.training.codes import standardised_pairs

    torch.manual_seed(0)
    threads = torch.get_num_threads()
    torch.set_num_threads(1)  # as train() does; tiny batches gain nothing from more
    request.addfinalizer(lambda: torch.set_num_threads(threads))
    cfg = TrainConfig(hidden=16, batch=8, frame_steps=60, sequence_steps=40, lr=3e-3, sequence_whiten=8)
    nets = HashNetworks(hidden=16, sequence_lags=cfg.sequence_lags, sequence_whiten=cfg.sequence_whiten)
    data = standardised_pairs(synthetic_pairs())
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
    # One whitening for both modalities, fitted on the training tracks: 8 independent axes.
    assert torch.equal(enc.whitening, nets.sequence["midi"].whitening)
    assert torch.linalg.matrix_rank(enc.whitening) == 8


def test_piece_split_is_stable_and_holds_out_about_a_fifth():
    names = [f"simutrans_{i:03d}" for i in range(500)]
    held = [n for n in names if hash_piece_split(n) == "heldout"]
    assert held == [n for n in names if hash_piece_split(n) == "heldout"]
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


def test_music21_pieces_are_deterministic_multi_instrument_midi():
    from encoders.training.music21_midi import midi_from_spec, music21_sources

    sources = music21_sources(("bach",))
    assert len(sources) > 300 and all(name.startswith("bach_") for name, _ in sources)
    name, spec = next((n, s) for n, s in sources if midi_from_spec(n, s) is not None)
    pm, again = midi_from_spec(name, spec), midi_from_spec(name, spec)
    pitched = [inst for inst in pm.instruments if not inst.is_drum]
    assert len(pitched) == 4 and 20.0 <= pm.get_end_time() <= 61.0  # four voices, 20-60 s (+ drum tail)
    assert [(n.start, n.pitch, n.velocity) for i in pm.instruments for n in i.notes] == \
        [(n.start, n.pitch, n.velocity) for i in again.instruments for n in i.notes]


def test_validation_pieces_are_music21_training_pieces_never_held_out():
    from encoders.training.splits import in_hash_split, is_hash_validation

    names = [f"bach_bwv{i}.6" for i in range(300)] + [f"simutrans_{i:03d}" for i in range(300)]
    val = [n for n in names if in_hash_split(n, "val", set())]
    assert val and all(n.startswith("bach_") and is_hash_validation(n) for n in val)
    assert all(in_hash_split(n, "train", set()) and not in_hash_split(n, "heldout", set()) for n in val)
    assert not any(is_hash_validation(n) for n in names if n.startswith("simutrans"))


def test_masked_negatives_do_not_count():
    a = torch.tensor([[1.0, -1.0, 1.0, 1.0]])
    negatives = torch.stack([a, -a], dim=1)  # a false negative (identical code) and a true one
    masked = contrastive_loss(a, a, negatives, margin=2.0, alpha=5.0, penalty=0.1, neg_mask=torch.tensor([[0.0, 1.0]]))
    assert float(masked) == pytest.approx(0.0, abs=1e-6)
    assert float(contrastive_loss(a, a, negatives, margin=2.0, alpha=5.0, penalty=0.1)) > 1


def test_phase_two_draws_debian_and_music21_pieces_in_the_asked_shares():
    from encoders.training.codes import draw_weights

    names = ["bach_bwv1.6", "bach_bwv2.6", "bach_bwv3.6", "simutrans_a"]
    w = draw_weights(names, 0.5)
    assert w[-1] == pytest.approx(0.5) and w[:3] == pytest.approx([1 / 6] * 3)
    assert draw_weights(names, None) is None and draw_weights(["simutrans_a", "mma_b"], 0.5) is None


def test_lagged_moments_tell_apart_the_same_codes_in_another_order():
    torch.manual_seed(0)
    codes = torch.sign(torch.randn(1, 12, 8))
    reordered = codes[:, torch.randperm(12)]
    plain, lagged = SequenceEncoder(code_bits=8, bits=64), SequenceEncoder(code_bits=8, bits=64, lags=(1, 2))
    # Uniform pooling: the plain moments do not depend on the order of the codes; the lagged ones do.
    torch.testing.assert_close(plain.pooled_uniform(codes), plain.pooled_uniform(reordered))
    assert lagged.pooled_uniform(codes).shape == (1, 8 + 36 + 2 * 64)
    assert not torch.allclose(lagged.pooled_uniform(codes), lagged.pooled_uniform(reordered))
    # Masked padding is ignored, and a track shorter than a lag still gets a code.
    padded = torch.cat([codes, torch.ones(1, 4, 8)], dim=1)
    mask = torch.tensor([[True] * 12 + [False] * 4])
    torch.testing.assert_close(lagged(codes), lagged(padded, mask))
    assert lagged(codes[:, :1]).shape == (1, 64)


def test_info_nce_prefers_matching_rows():
    from encoders.training.codes import info_nce_loss

    a = torch.sign(torch.randn(6, 32, generator=torch.Generator().manual_seed(1)))
    matched = info_nce_loss(a, a, temperature=0.1, penalty=0.1)
    shuffled = info_nce_loss(a, a.roll(1, dims=0), temperature=0.1, penalty=0.1)
    assert float(matched) < 0.1 < float(shuffled)


def test_weights_remember_their_sequence_lags(tmp_path):
    nets = HashNetworks(hidden=16, sequence_lags=(1, 3))
    path = tmp_path / "lags.pt"
    torch.save({"hidden": 16, "sequence_lags": [1, 3], "state_dict": nets.state_dict()}, path)
    hasher = LearnedHasher(path)
    assert hasher.nets.sequence["midi"].lags == (1, 3)
    assert hasher.track_code(np.random.default_rng(0).random((100, 48)).astype(np.float32), "midi").shape == (32,)


def test_train_rejects_an_unknown_sequence_loss_before_any_work(tmp_path):
    from encoders.training.codes import train

    with pytest.raises(ValueError, match="infonce"):
        train(tmp_path / "x.pt", TrainConfig(sequence_loss="triplet"))
    assert not (tmp_path / "x.pt").exists()


def test_warm_up_starts_phase_one_with_small_steps():
    from encoders.training.codes import optimise

    def first_move(warmup: int) -> float:
        param = torch.nn.Parameter(torch.zeros(1))
        seen = []

        def batch_loss() -> torch.Tensor:
            seen.append(float(param.detach()))
            return ((param - 1) ** 2).sum()

        optimise([param], 100, 0.1, batch_loss, lambda _: None, "test", warmup)
        return abs(seen[1] - seen[0])

    # Adam's first step is about the learning rate whatever the gradient: 0.1 at full rate, 0.01 after 1/10.
    assert first_move(0) == pytest.approx(0.1, rel=0.05)
    assert first_move(10) == pytest.approx(0.01, rel=0.05)


@pytest.mark.skipif(not DEFAULT_WEIGHTS.exists(), reason="no shipped weights")
def test_window_codes_are_the_track_codes_of_the_windows_frame_codes():
    import torch

    from encoders.codes.bits import code_windows

    hasher = LearnedHasher(windows=True)
    cqt = np.random.default_rng(1).random((8 * 300, 48)).astype(np.float32)
    assert LearnedHasher().all_codes(cqt, "midi")[2].shape == (0, 32)  # off by default
    frames, track, windows = hasher.all_codes(cqt, "midi")
    assert np.array_equal(frames, hasher.frame_codes(cqt, "midi"))
    assert np.array_equal(track, hasher.track_code(cqt, "midi"))
    spans = code_windows(300)
    assert windows.shape == (len(spans), 32) and len(spans) >= 6
    _, soft = hasher._embed(cqt, "midi")
    s, e = spans[2]
    with torch.inference_mode():
        alone = np.packbits(hasher.nets.sequence["midi"](soft[:, s:e])[0].numpy() > 0)
    assert np.array_equal(windows[2], alone)
    assert hasher.all_codes(cqt[:400], "midi")[2].shape == (0, 32)  # 50 codes: one window at most, none kept


def test_fine_tune_starts_from_the_saved_networks_and_configuration():
    """``codes_finetune.load_networks`` gives back the shipped networks (the same codes as the hasher) and the
    configuration they were trained with, which the fine-tune continues from."""
    from encoders.training.codes_finetune import load_networks

    nets, cfg = load_networks(V4_WEIGHTS)
    assert cfg.sequence_lags == (1, 2, 3, 4, 6, 8) and cfg.sequence_whiten == 96 and cfg.music21 == ("bach",)
    cqt = np.random.default_rng(3).standard_normal((400, 48)).astype(np.float32)
    frames, _ = LearnedHasher(V4_WEIGHTS).codes(cqt, "audio")
    hasher = LearnedHasher(V4_WEIGHTS)
    hasher.nets = nets  # the loaded copy in place of the hasher's own
    assert np.array_equal(frames, hasher.codes(cqt, "audio")[0])
    shipped = torch.load(V4_WEIGHTS, map_location="cpu", weights_only=True)["state_dict"]
    assert all(torch.equal(v, shipped[k]) for k, v in nets.state_dict().items())
