"""Training the learned hash encoders of ``encoders.codes.learned`` (``mirmatch train``).

Phase 1 trains the two frame encoders jointly with Raffel & Ellis's contrastive loss on aligned frame
windows: matching codes are pulled together, codes of other pieces pushed at least ``margin`` apart, and an
output penalty drives the tanh outputs towards +-1 so that thresholding loses little. Training data: the
Debian MIDI collections and music21's Bach chorales; phase 1b fine-tunes on those plus the Essen folksongs
(monophonic tunes, which collapse the codes when there from the start). Phase 2 trains the attention-pooling
sequence encoders on (audio crop, whole MIDI) pairs with an InfoNCE loss over the batch, the frame encoders
frozen. Deterministic for a given seed: one CPU thread, deterministic algorithms.
"""

from __future__ import annotations

import json
import math
import time
from dataclasses import asdict, dataclass
from pathlib import Path

import numpy as np
import torch

from encoders.codes.bits import pad_frames
from encoders.codes.learned import V4_WEIGHTS, HashNetworks, standardise_cqt
from encoders.training.codes_data import TRAIN_SOUNDFONT, TRAINING_COLLECTIONS, AlignedPair, aligned_pairs
from encoders.training.loop import run_steps
from encoders.training.splits import is_hash_validation


@dataclass
class TrainConfig:
    seed: int = 0
    hidden: int = 128
    versions: int = 3  # corrupted renderings per training piece of the Debian collections
    # music21 sources trained on as well (() for none): the Bach chorales; the monophonic Essen tunes made
    # the frame codes collapse when in phase 1 from the start (held-out stage-2 top-1 0.44 on the Debian pieces).
    music21: tuple[str, ...] = ("bach",)
    # Corrupted renderings per music21 piece (phases 1, 1b and 2). 3 rather than 1, with He's initialisation
    # and the variance term below (no warm-up): validation stage-2 MRR 0.964 vs 0.483 (v3's 0.912); stage-1
    # 0.839 vs 0.408 (v3's 0.810).
    music21_versions: int = 3
    frame_music21: bool = True  # music21 pieces in phase 1 too (False: phase 1 on the Debian pieces only)
    window: int = 64  # frames per training window (8 codes)
    batch: int = 32  # windows (phase 1) or pieces (phase 2) per step
    frame_steps: int = 1500
    # Phase 1b: the frame encoders fine-tuned with these music21 sources added to phase 1's data (() for
    # none). Added once the codes have formed, the Essen tunes do not collapse them: validation stage-2 top-1
    # 0.904 vs 0.883 (Essen 0.852 vs 0.815, Bach 0.925 vs 0.910).
    finetune_music21: tuple[str, ...] = ("essen",)
    finetune_steps: int = 600
    finetune_lr: float = 3e-4
    sequence_debian_share: float | None = 0.5  # share of phase-2 draws from Debian pieces (None: uniform)
    sequence_steps: int = 300  # more over-fits the ~80 training pieces (held-out stage-1 MRR 0.72 -> 0.65)
    lr: float = 1e-3
    alpha: float = 5.0  # weight of the negative term (Raffel: ~5)
    frame_margin: float = 6.0  # Euclidean margin between 32-d codes of different frames (~9 bits)
    sequence_margin: float = 16.0  # between 256-d sequence codes (~64 bits; sequence_loss "contrastive")
    # Phase 2's loss: "infonce" (softmax over the batch's other pieces, both directions) or "contrastive"
    # (Raffel & Ellis's, as in phase 1). Validation stage-1 MRR 0.783 vs 0.628 with the whitening below
    # (lags 1, 2, 4; mean of 3 seeds; the model card has the table).
    sequence_loss: str = "infonce"
    sequence_temperature: float = 0.1  # of the InfoNCE softmax over cosine similarities
    # Lagged second moments pooled by the sequence encoders (in codes of 8 frames; () for none): validation
    # stage-1 MRR 0.828 vs 0.783 for lags 1, 2, 4, and 0.655 without lags or whitening (mean of 3 seeds).
    sequence_lags: tuple[int, ...] = (1, 2, 3, 4, 6, 8)
    # Principal axes the pooled moments are whitened on before the random projection (0: none). With the
    # lags above and InfoNCE, validation stage-1 MRR 0.828 vs 0.735, rank of 95% 8 vs 31 (3 seeds).
    sequence_whiten: int = 96
    output_penalty: float = 0.1
    negatives: int = 4  # negative MIDI codes per audio code (phase 1)
    # Negatives whose MIDI frames sound alike (cosine of the standardised CQT, mean over the 8 frames of a
    # code) above this are not pushed apart (None: keep all). v2 used 0.6; keeping all of them is better on
    # the validation chorales at stage 2 (MRR 0.913 vs 0.892, rank of 95% 7 vs 22).
    negative_max_similarity: float | None = None
    # Weight of VICReg's variance term (``variance_hinge``) on the frame codes of both modalities in phase 1:
    # it pushes every bit to vary over the batch. Phase 1 otherwise sits on a collapsed solution (one code
    # for every input, loss ~30) for hundreds of steps, and escapes it or not by chance (v3: at step ~500).
    variance_weight: float = 2.0
    # He initialisation of the frame encoders (``FrameEncoder.init_he``): with torch's default the codes
    # start out the same for every input (std over inputs ~2e-4 against ~0.3) and the variance term
    # cannot act. Both are needed: either alone stayed collapsed for 300 steps.
    he_init: bool = True
    # Linear learning-rate warm-up over the first phase-1 steps. Without it, the first Adam steps at full rate
    # could still saturate the codes into the collapsed solution (1 seed in 3 sat on it for ~800 steps);
    # with it, seeds 0, 1, 3 and 4 all left it within 100 steps. Validation stage-1 MRR 0.925 / 0.897 / 0.898
    # (seeds 0 / 1 / 2) vs 0.839 / collapsed / 0.702 without it; stage-2 MRR 0.966 / 0.974 / 0.968 vs 0.964.
    warmup_steps: int = 200
    # Phase 2's audio clips: this share of the recording (drawn uniformly), against the whole MIDI file.
    sequence_clip: tuple[float, float] = (0.4, 1.0)


def contrastive_loss(a: torch.Tensor, b_pos: torch.Tensor, b_neg: torch.Tensor, margin: float, alpha: float,
                     penalty: float, neg_mask: torch.Tensor | None = None) -> torch.Tensor:
    """Raffel & Ellis: ||a - b+||^2 + alpha * max(0, margin - ||a - b-||)^2 + penalty * (1 - x^2)^2.

    ``neg_mask`` (shape of ``b_neg`` less its last axis): which negatives count (default all)."""
    pos = ((a - b_pos) ** 2).sum(-1).mean()
    neg_dist = torch.sqrt(((a.unsqueeze(-2) - b_neg) ** 2).sum(-1) + 1e-8)
    hinge = torch.clamp(margin - neg_dist, min=0) ** 2
    neg = hinge.mean() if neg_mask is None else (hinge * neg_mask).sum() / neg_mask.sum().clamp(min=1)
    out = torch.cat([a.reshape(-1), b_pos.reshape(-1)])
    return pos + alpha * neg + penalty * ((1 - out**2) ** 2).mean()


def variance_hinge(codes: torch.Tensor, target: float = 1.0) -> torch.Tensor:
    """Mean over the code bits of max(0, target - std over the batch) (VICReg's variance term): zero when
    every bit varies like a balanced +-1 bit, large when the codes collapse to one vector for all inputs."""
    return torch.clamp(target - torch.sqrt(codes.var(0) + 1e-4), min=0).mean()


def info_nce_loss(a: torch.Tensor, b: torch.Tensor, temperature: float, penalty: float) -> torch.Tensor:
    """Symmetric InfoNCE: row i of ``a`` should be closer (cosine) to row i of ``b`` than to any other row,
    and the reverse; plus the output penalty (1 - x^2)^2 that drives tanh outputs towards +-1."""
    sims = torch.nn.functional.normalize(a, dim=1) @ torch.nn.functional.normalize(b, dim=1).T / temperature
    target = torch.arange(len(a))
    out = torch.cat([a.reshape(-1), b.reshape(-1)])
    return (0.5 * (torch.nn.functional.cross_entropy(sims, target) + torch.nn.functional.cross_entropy(sims.T, target))
            + penalty * ((1 - out**2) ** 2).mean())


def standardised_pairs(pairs: list[AlignedPair]) -> list[tuple[np.ndarray, np.ndarray, np.ndarray, str]]:
    """(standardised audio CQT, standardised MIDI CQT, frame map, name) of each pair: what the phases draw from."""
    return [(standardise_cqt(p.audio_cqt), standardise_cqt(p.midi_cqt), p.midi_frame, p.name) for p in pairs]


def _window_batch(data, cfg: TrainConfig, rng: np.random.Generator):
    """Aligned windows: audio frames and, frame by frame, the MIDI frames they play."""
    audio, midi, piece = [], [], []
    while len(audio) < cfg.batch:
        i = int(rng.integers(len(data)))
        a, m, frame_map, name = data[i]
        if len(a) < cfg.window:
            continue
        start = int(rng.integers(0, len(a) - cfg.window + 1))
        audio.append(a[start:start + cfg.window])
        midi.append(m[frame_map[start:start + cfg.window]])
        piece.append(i)
    return torch.from_numpy(np.stack(audio)), torch.from_numpy(np.stack(midi)), np.array(piece)


def optimise(params, steps: int, lr: float, batch_loss, log, phase: str, warmup: int = 0) -> list[float]:
    """Adam with a cosine learning-rate decay over ``steps`` (after a linear warm-up over ``warmup`` steps);
    ``batch_loss()`` draws a batch and returns its loss. Returns the loss of every step; logs their mean
    every 100 steps."""
    opt = torch.optim.Adam(params, lr=lr)
    if warmup:  # without one, torch's recursive cosine schedule: the older weights' runs stay bit-exact
        sched = torch.optim.lr_scheduler.LambdaLR(
            opt, lambda s: min(1.0, (s + 1) / warmup) * 0.5 * (1 + math.cos(math.pi * s / steps)))
    else:
        sched = torch.optim.lr_scheduler.CosineAnnealingLR(opt, steps)
    started = time.monotonic()

    def report(done: int, losses: list[float]) -> None:
        if done % 100 == 0:
            log(f"  {phase} step {done}/{steps} loss {np.mean(losses[-100:]):.3f} "
                f"({time.monotonic() - started:.0f} s)")

    return run_steps(opt, sched, steps, lambda _: batch_loss(), report)


def train_frames(nets: HashNetworks, data, cfg: TrainConfig, rng: np.random.Generator, log,
                 steps: int | None = None, lr: float | None = None) -> list[float]:
    """Phase 1: both frame encoders jointly. ``steps`` and ``lr`` default to the config's phase-1 values,
    and then phase 1's warm-up applies; a fine-tune (phase 1b) passes its own and starts at full rate."""
    def batch_loss() -> torch.Tensor:
        audio, midi, piece = _window_batch(data, cfg, rng)
        _, fa = nets.frame["audio"](audio)  # (b, s, 32)
        _, fm = nets.frame["midi"](midi)
        b, s, d = fa.shape
        # Negatives: MIDI codes from windows of other pieces.
        flat_m = fm.reshape(b * s, d)
        neg_idx = torch.from_numpy(rng.integers(0, b * s, (b, s, cfg.negatives)))
        same = torch.from_numpy(piece)[neg_idx // s] == torch.from_numpy(piece)[:, None, None]
        neg_idx = torch.where(same, (neg_idx + s * (1 + b // 2)) % (b * s), neg_idx)
        mask = None
        if cfg.negative_max_similarity is not None:
            blocks = torch.nn.functional.normalize(midi.reshape(b, s, -1, midi.shape[-1]).mean(2), dim=-1)
            flat_blocks = blocks.reshape(b * s, -1)
            similarity = (blocks.unsqueeze(2) * flat_blocks[neg_idx]).sum(-1)  # (b, s, negatives)
            mask = (similarity < cfg.negative_max_similarity).float()
        loss = contrastive_loss(fa, fm, flat_m[neg_idx], cfg.frame_margin, cfg.alpha, cfg.output_penalty, mask)
        if cfg.variance_weight:
            loss = loss + cfg.variance_weight * (variance_hinge(fa.reshape(b * s, d)) + variance_hinge(flat_m))
        return loss

    return optimise(list(nets.frame.parameters()), cfg.frame_steps if steps is None else steps,
                     cfg.lr if lr is None else lr, batch_loss, log, "frames", cfg.warmup_steps if steps is None else 0)


def _embeddings(nets: HashNetworks, data) -> list[tuple[torch.Tensor, torch.Tensor, str]]:
    """Soft frame codes of every full audio and MIDI track (frozen frame encoders)."""
    out = []
    with torch.no_grad():
        for a, m, _, name in data:
            _, ca = nets.frame["audio"](torch.from_numpy(pad_frames(a)).unsqueeze(0))
            _, cm = nets.frame["midi"](torch.from_numpy(pad_frames(m)).unsqueeze(0))
            out.append((ca[0], cm[0], name))
    return out


def _padded(seqs: list[torch.Tensor]) -> tuple[torch.Tensor, torch.Tensor]:
    longest = max(len(s) for s in seqs)
    out = torch.zeros(len(seqs), longest, seqs[0].shape[1])
    mask = torch.zeros(len(seqs), longest, dtype=torch.bool)
    for i, s in enumerate(seqs):
        out[i, : len(s)] = s
        mask[i, : len(s)] = True
    return out, mask


def draw_weights(names: list[str], debian_share: float | None) -> np.ndarray | None:
    """Probability of drawing each piece in phase 2: ``debian_share`` of the mass spread evenly over the
    Debian pieces, the rest over the music21 ones (None, or only one kind present: uniform)."""
    debian = np.array([n.split("_", 1)[0] in TRAINING_COLLECTIONS for n in names])
    if debian_share is None or debian.all() or not debian.any():
        return None
    w = np.where(debian, debian_share / debian.sum(), (1 - debian_share) / (~debian).sum())
    return w / w.sum()


def _whitening(standardised: torch.Tensor, axes: int) -> torch.Tensor:
    """(n_pooled, axes): the first principal axes of both modalities' standardised moments, each scaled by
    1 / sqrt(its singular value relative to the first): shared by the two sequence encoders."""
    _, singular, axes_t = torch.linalg.svd(standardised.double(), full_matrices=False)
    found = min(axes, len(singular))  # fewer tracks than axes: the rest stay zero
    signs = torch.sign(axes_t[:found].sum(1, keepdim=True))  # a fixed sign per axis (SVD's is arbitrary)
    whitening = torch.zeros(standardised.shape[1], axes, dtype=torch.float64)
    whitening[:, :found] = (signs * axes_t[:found]).T / (singular[:found] / singular[0]).clamp(min=1e-6).sqrt()
    return whitening.float()


def train_sequences(nets: HashNetworks, data, cfg: TrainConfig, rng: np.random.Generator, log) -> list[float]:
    embedded = _embeddings(nets, data)
    names = sorted({name for *_, name in embedded})
    by_name = {n: [e for e in embedded if e[2] == n] for n in names}
    weights = draw_weights(names, cfg.sequence_debian_share)
    standardised = []
    with torch.no_grad():  # centre and scale the pooled moments with the training tracks' statistics
        for i, modality in enumerate(("audio", "midi")):
            enc = nets.sequence[modality]
            pooled = torch.cat([enc.pooled_uniform(e[i].unsqueeze(0)) for e in embedded])
            enc.center.copy_(pooled.mean(0))
            enc.scale.copy_(pooled.std(0) + 1e-3)
            standardised.append((pooled - enc.center) / enc.scale)
        if nets.sequence_whiten:  # the networks' own setting (train() builds them from the config)
            whitening = _whitening(torch.cat(standardised), nets.sequence_whiten)
            for enc in nets.sequence.values():
                enc.whitening.copy_(whitening)

    def batch_loss() -> torch.Tensor:
        chosen = rng.choice(len(names), size=min(cfg.batch, len(names)), replace=False, p=weights)
        audio, midi = [], []
        for c in chosen:
            ha, hm, _ = by_name[names[c]][int(rng.integers(len(by_name[names[c]])))]
            length = max(4, int(len(ha) * rng.uniform(*cfg.sequence_clip)))  # a clip of the recording
            start = int(rng.integers(0, len(ha) - length + 1))
            audio.append(ha[start:start + length])
            midi.append(hm)
        pa = nets.sequence["audio"](*_padded(audio))
        pm = nets.sequence["midi"](*_padded(midi))
        if cfg.sequence_loss == "infonce":
            return info_nce_loss(pa, pm, cfg.sequence_temperature, cfg.output_penalty)
        b = len(chosen)
        neg_idx = torch.tensor([[j for j in range(b) if j != i] for i in range(b)])
        return contrastive_loss(pa, pm, pm[neg_idx], cfg.sequence_margin, cfg.alpha, cfg.output_penalty)

    params = [p for p in nets.sequence.parameters() if p.requires_grad]
    return optimise(params, cfg.sequence_steps, cfg.lr, batch_loss, log, "sequences")


def train(out: str | Path = V4_WEIGHTS, cfg: TrainConfig | None = None, log=print,
          frames_from: str | Path | None = None) -> Path:
    """Build the training data (cached), train both phases and write the weights to ``out``.

    ``frames_from``: take the frame encoders from earlier weights of the same configuration and train only
    the sequence encoders (phase 2 draws from its own random stream, so the result is the same as a full run).
    """
    cfg = cfg or TrainConfig()
    if cfg.sequence_loss not in ("infonce", "contrastive"):
        raise ValueError(f"sequence_loss must be 'infonce' or 'contrastive', got {cfg.sequence_loss!r}")
    torch.manual_seed(cfg.seed)
    torch.use_deterministic_algorithms(True)
    torch.set_num_threads(1)  # the same float reductions on any machine: reproducible weights
    rng = np.random.default_rng(cfg.seed)
    started = time.monotonic()
    log(f"training data: training split rendered with {TRAIN_SOUNDFONT}, {cfg.versions} versions per Debian "
        f"piece, {cfg.music21_versions} per music21 piece ({', '.join(cfg.music21) or 'none'})")
    pairs = aligned_pairs("train", TRAIN_SOUNDFONT, versions=cfg.versions, seed=cfg.seed,
                          collections=TRAINING_COLLECTIONS)
    extra = [] if not cfg.music21 else [
        p for p in aligned_pairs("train", TRAIN_SOUNDFONT, versions=cfg.music21_versions, seed=cfg.seed,
                                 collections=cfg.music21) if not is_hash_validation(p.name)]
    frame_data = standardised_pairs(pairs + extra if cfg.frame_music21 else pairs)
    finetune = [] if not cfg.finetune_music21 or frames_from is not None else [
        p for p in aligned_pairs("train", TRAIN_SOUNDFONT, versions=cfg.music21_versions, seed=cfg.seed,
                                 collections=cfg.finetune_music21) if not is_hash_validation(p.name)]
    pairs += extra
    data = standardised_pairs(pairs)
    n_pieces = len({p.name for p in pairs})
    log(f"  {n_pieces} pieces, {len(pairs)} renderings, {sum(len(p.audio_cqt) for p in pairs)} audio frames; "
        f"{len({p.name for p in finetune})} more pieces ({len(finetune)} renderings) for phase 1b "
        f"({', '.join(cfg.finetune_music21) or 'none'})")
    nets = HashNetworks(hidden=cfg.hidden, sequence_lags=cfg.sequence_lags, sequence_whiten=cfg.sequence_whiten)
    if frames_from is None:
        if cfg.he_init:
            for encoder in nets.frame.values():
                encoder.init_he()
        log("phase 1: frame encoders (contrastive loss on aligned windows)")
        frame_losses = train_frames(nets, frame_data, cfg, rng, log)
        if finetune and cfg.finetune_steps:
            log(f"phase 1b: frame encoders fine-tuned with {', '.join(cfg.finetune_music21)} added")
            frame_losses = train_frames(nets, frame_data + standardised_pairs(finetune), cfg,
                                        np.random.default_rng([cfg.seed, 7]), log, cfg.finetune_steps, cfg.finetune_lr)
    else:
        log(f"phase 1: frame encoders taken from {frames_from}")
        state = torch.load(frames_from, map_location="cpu", weights_only=True)
        nets.frame.load_state_dict({k[len("frame."):]: v for k, v in state["state_dict"].items()
                                    if k.startswith("frame.")})
        frame_losses = [json.loads(Path(frames_from).with_suffix(".json").read_text())["final_frame_loss"]]
    log("phase 2: sequence encoders (attention pooling)")
    sequence_losses = train_sequences(nets, data, cfg, np.random.default_rng([cfg.seed, 2]), log)
    out = Path(out)
    out.parent.mkdir(parents=True, exist_ok=True)
    state_dict = {k: v.detach().clone() for k, v in nets.state_dict().items()}
    if cfg.sequence_whiten:  # the two modalities share one whitening: saved once
        state_dict["sequence.midi.whitening"] = state_dict["sequence.audio.whitening"]
    state = {"hidden": cfg.hidden, "sequence_lags": list(cfg.sequence_lags), "sequence_whiten": cfg.sequence_whiten,
             "state_dict": state_dict}
    torch.save(state, out)
    meta = {"config": asdict(cfg), "pieces": n_pieces, "renderings": len(pairs),
            "finetune_pieces": len({p.name for p in finetune}),
            "final_frame_loss": float(np.mean(frame_losses[-100:])),
            "final_sequence_loss": float(np.mean(sequence_losses[-100:])),
            "seconds": round(time.monotonic() - started), "torch": torch.__version__,
            **({"frames_from": str(frames_from)} if frames_from is not None else {})}
    out.with_suffix(".json").write_text(json.dumps(meta, indent=1) + "\n")
    log(f"wrote {out} ({out.stat().st_size / 1e6:.1f} MB) in {meta['seconds']} s")
    return out
