"""Per-beat embeddings for structural segmentation, learned without labels from temporal proximity.

After McCallum, "Unsupervised learning of deep features for music segmentation" (ICASSP 2019): a small CNN
maps a beat-synchronous log-CQT patch around each beat to a unit vector, trained with a triplet loss whose
positive is a beat close to the anchor in time (same track, at most ``pos_max`` beats away) and whose negative
is a beat far from it (same track, at least ``neg_min`` beats away). No section labels are used: nearby
beats mostly share a section, distant ones mostly do not (repeats of a section are the exception the
loss has to live with). The embeddings then replace the CQT as the features of the Laplacian segmentation
(``encoders.structure_learned``).

Input: each beat interval is split into ``sub_beats`` equal parts (CQT frames averaged in each), and the
patch of beat i spans ``context_beats`` beats centred on it, edges replicated: (context * sub, 48).
"""

from __future__ import annotations

import functools
import time
from dataclasses import asdict, dataclass
from pathlib import Path

import librosa
import numpy as np
import torch
from torch import nn

from encoders.features import FRAME_RATE, N_BINS

DEFAULT_WEIGHTS = Path(__file__).parent / "weights" / "segment-embedding-v1.pt"
_FALLBACK_HOP_S = 0.5  # as encoders.structure.beat_sync: fixed windows when no usable beat grid is given
_MIN_BEATS_GRID = 4


@dataclass(frozen=True)
class EmbeddingConfig:
    context_beats: int = 8
    sub_beats: int = 4
    n_bins: int = N_BINS
    width: int = 16
    dim: int = 32


class SegmentEmbeddingNet(nn.Module):
    """(batch, context * sub, n_bins) patches -> (batch, dim) L2-normalised embeddings."""

    def __init__(self, config: EmbeddingConfig = EmbeddingConfig()):
        super().__init__()
        self.config = config
        w = config.width

        def block(c_in: int, c_out: int, pool: bool) -> list[nn.Module]:
            layers = [nn.Conv2d(c_in, c_out, 3, padding=1, bias=False), nn.BatchNorm2d(c_out), nn.ReLU()]
            return layers + ([nn.MaxPool2d(2)] if pool else [])

        self.features = nn.Sequential(*block(1, w, True), *block(w, 2 * w, True), *block(2 * w, 4 * w, True),
                                      *block(4 * w, 4 * w, False))
        t_out = (config.context_beats * config.sub_beats) // 8
        f_out = config.n_bins // 8
        self.head = nn.Linear(4 * w * t_out * f_out, config.dim)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        h = self.features(x.unsqueeze(1) - 0.5)
        return nn.functional.normalize(self.head(h.flatten(1)), dim=1)


# ------------------------------------------------------------------------------------------------ inputs


def beat_bounds(n_frames: int, frame_times: np.ndarray, beat_times: np.ndarray | None) -> np.ndarray:
    """Frame index of each beat interval's start, plus n_frames: the same grid as structure.beat_sync."""
    times = np.asarray(frame_times, dtype=np.float64).ravel()
    beats = None if beat_times is None else np.asarray(beat_times, dtype=np.float64).ravel()
    if beats is not None:
        beats = beats[np.isfinite(beats)]
    if beats is None or beats.size < _MIN_BEATS_GRID:
        beats = np.arange(times[0], times[-1], _FALLBACK_HOP_S)
    return librosa.util.fix_frames(np.searchsorted(times, np.sort(beats)), x_min=0, x_max=n_frames, pad=True)


def normalise_cqt(cqt: np.ndarray) -> np.ndarray:
    """Log-CQT frames scaled to [0, 1] per track (non-finite values to the floor); identity on log_cqt output."""
    x = np.asarray(cqt, dtype=np.float32)
    ok = np.isfinite(x)
    if not ok.all():
        x = np.where(ok, x, x[ok].min() if ok.any() else 0.0)
    lo, hi = float(x.min()) if x.size else 0.0, float(x.max()) if x.size else 0.0
    return (x - lo) / (hi - lo) if hi > lo else np.zeros_like(x)


def sub_beat_features(cqt: np.ndarray, bounds: np.ndarray, sub_beats: int) -> np.ndarray:
    """(n_beats * sub_beats, d): each beat interval split in sub_beats equal parts, frames averaged in each."""
    x = np.asarray(cqt, dtype=np.float32)
    n = len(x)
    starts, ends = bounds[:-1].astype(np.float64), bounds[1:].astype(np.float64)
    frac = np.arange(sub_beats + 1) / sub_beats
    edges = np.round(starts[:, None] + (ends - starts)[:, None] * frac[None, :]).astype(np.int64)
    a, b = edges[:, :-1].ravel(), edges[:, 1:].ravel()
    a = np.clip(a, 0, max(n - 1, 0))
    b = np.clip(np.maximum(b, a + 1), 1, n)
    a = np.minimum(a, b - 1)
    csum = np.concatenate([np.zeros((1, x.shape[1]), np.float64), np.cumsum(x, axis=0, dtype=np.float64)])
    return ((csum[b] - csum[a]) / (b - a)[:, None]).astype(np.float32)


def patch_index(n_beats: int, config: EmbeddingConfig) -> np.ndarray:
    """(n_beats, context * sub) row indices into the sub-beat sequence padded by pad_rows() on each side."""
    span = config.context_beats * config.sub_beats
    return np.arange(n_beats)[:, None] * config.sub_beats + np.arange(span)[None, :]


def pad_rows(config: EmbeddingConfig) -> int:
    return (config.context_beats // 2) * config.sub_beats


def padded_sub_beats(cqt: np.ndarray, frame_times: np.ndarray, beat_times: np.ndarray | None,
                     config: EmbeddingConfig) -> tuple[np.ndarray, np.ndarray]:
    """(padded sub-beat features, beat bounds): the model's input sequence of one track."""
    bounds = beat_bounds(len(cqt), frame_times, beat_times)
    seq = sub_beat_features(normalise_cqt(cqt), bounds, config.sub_beats)
    pad = pad_rows(config)
    return np.pad(seq, ((pad, pad), (0, 0)), mode="edge"), bounds


# --------------------------------------------------------------------------------------------- inference


@functools.lru_cache(maxsize=4)
def load_segment_model(path: str | Path = DEFAULT_WEIGHTS) -> SegmentEmbeddingNet:
    """The shipped (or given) embedding network, in eval mode."""
    state = torch.load(str(path), map_location="cpu", weights_only=True)
    model = SegmentEmbeddingNet(EmbeddingConfig(**state["config"]))
    model.load_state_dict(state["state_dict"])
    return model.eval()


def embed_beats(cqt: np.ndarray, beat_times: np.ndarray | None, model: SegmentEmbeddingNet | None = None, *,
                frame_times: np.ndarray | None = None, batch: int = 1024) -> tuple[np.ndarray, np.ndarray]:
    """Per-beat embeddings of a track: (n_beats, dim) float32 and each beat's start time (s).

    cqt: (n_frames, 48) log-CQT (encoders.features.log_cqt; other log scales are min-max scaled);
    frame_times default to the pipeline's frame rate. The beat grid is structure.beat_sync's, so the rows
    line up with the baseline's beat features.
    """
    model = load_segment_model() if model is None else model
    cfg = model.config
    times = np.arange(len(cqt)) / FRAME_RATE if frame_times is None else np.asarray(frame_times, np.float64)
    if len(cqt) == 0:
        return np.empty((0, cfg.dim), np.float32), np.empty(0)
    seq, bounds = padded_sub_beats(cqt, times, beat_times, cfg)
    idx = patch_index(len(bounds) - 1, cfg)
    out = []
    was_training = model.training
    model.eval()
    with torch.no_grad():
        for s in range(0, len(idx), batch):
            out.append(model(torch.from_numpy(seq[idx[s:s + batch]])).numpy())
    model.train(was_training)
    return np.concatenate(out).astype(np.float32), times[bounds[:-1]]


# ---------------------------------------------------------------------------------------------- training


def sample_triplets(n_beats: np.ndarray, size: int, rng: np.random.Generator, *, pos_max: int = 4,
                    neg_min: int = 16) -> np.ndarray:
    """(size, 4) int rows (track, anchor, positive, negative): 1 <= |pos - anchor| <= pos_max and
    |neg - anchor| >= neg_min, all in the same track (tracks weighted by length; anchors only where a
    negative exists). Tracks with fewer than neg_min + 1 beats are skipped."""
    n_beats = np.asarray(n_beats, dtype=np.int64)
    usable = np.flatnonzero(n_beats > neg_min)
    if usable.size == 0:
        raise ValueError(f"no track has more than neg_min={neg_min} beats")
    weights = n_beats[usable] / n_beats[usable].sum()
    track = rng.choice(usable, size=size, p=weights)
    n = n_beats[track]
    # anchor: uniform over the beats that have a negative, [0, n - 1 - neg_min] or [neg_min, n - 1] (every
    # beat once n >= 2 * neg_min)
    m = n - neg_min
    u = rng.integers(0, np.minimum(n, 2 * m))
    anchor = np.where((n >= 2 * neg_min) | (u < m), u, neg_min + (u - m))
    # positive: an offset in [-pos_max, pos_max] \ {0}, reflected back inside the track
    off = rng.integers(1, pos_max + 1, size=size) * rng.choice([-1, 1], size=size)
    pos = anchor + off
    pos = np.where((pos < 0) | (pos >= n), anchor - off, pos)
    pos = np.clip(pos, 0, n - 1)
    # negative: uniform over the beats at least neg_min away (left block [0, a - neg_min], right block
    # [a + neg_min, n - 1]); one draw over their concatenation
    left = np.maximum(anchor - neg_min + 1, 0)
    right = np.maximum(n - (anchor + neg_min), 0)
    draw = (rng.random(size) * (left + right)).astype(np.int64)
    neg = np.where(draw < left, draw, anchor + neg_min + (draw - left))
    return np.stack([track, anchor, pos, neg], axis=1)


@dataclass
class TrainResult:
    model: SegmentEmbeddingNet
    losses: list[float]  # mean triplet loss of each logging window
    seconds: float
    n_tracks: int


def _training_tracks(pieces, config: EmbeddingConfig, beat_sources: tuple[str, ...]):
    seqs, n_beats = [], []
    for p in pieces:
        cqt = p.cqt.astype(np.float32)
        for src in beat_sources:
            beats = p.beat_times if src == "score" else p.tracked_beats
            seq, bounds = padded_sub_beats(cqt, p.frame_times, beats, config)
            seqs.append(seq)
            n_beats.append(len(bounds) - 1)
    return seqs, np.array(n_beats)


def train_segment_embedding(pieces=None, *, steps: int = 2000, batch: int = 64, lr: float = 2e-3,
                            pos_max: int = 4, neg_min: int = 16, margin: float = 0.5, seed: int = 0,
                            config: EmbeddingConfig = EmbeddingConfig(),
                            beat_sources: tuple[str, ...] = ("score", "tracked"),
                            threads: int = 1, out: str | Path | None = None, log_every: int = 100,
                            progress: bool = True) -> TrainResult:
    """Train the embedding on ``pieces`` (default: the training split of encoders.segment_data).

    Each piece gives one track per beat source ("score": the score's beat grid, "tracked": beats tracked on
    the audio). Deterministic for a seed and thread count. Writes the weights to ``out`` if given.
    """
    if pieces is None:
        from encoders.segment_data import segment_corpus

        pieces = segment_corpus("train", progress=progress)
    previous_threads = torch.get_num_threads()
    torch.set_num_threads(threads)
    try:
        return _train(pieces, steps=steps, batch=batch, lr=lr, pos_max=pos_max, neg_min=neg_min, margin=margin,
                      seed=seed, config=config, beat_sources=beat_sources, out=out, log_every=log_every,
                      progress=progress)
    finally:
        torch.set_num_threads(previous_threads)


def _train(pieces, *, steps: int, batch: int, lr: float, pos_max: int, neg_min: int, margin: float, seed: int,
           config: EmbeddingConfig, beat_sources: tuple[str, ...], out: str | Path | None, log_every: int,
           progress: bool) -> TrainResult:
    started = time.perf_counter()
    torch.manual_seed(seed)
    rng = np.random.default_rng(seed)
    seqs, n_beats = _training_tracks(pieces, config, beat_sources)
    offsets = np.concatenate([[0], np.cumsum([len(s) for s in seqs])[:-1]])
    flat = torch.from_numpy(np.concatenate(seqs))
    span = np.arange(config.context_beats * config.sub_beats)
    model = SegmentEmbeddingNet(config)
    opt = torch.optim.Adam(model.parameters(), lr=lr)
    warm = max(1, steps // 10)  # linear warm-up, then cosine decay
    sched = torch.optim.lr_scheduler.LambdaLR(
        opt, lambda s: min(1.0, (s + 1) / warm) * 0.5 * (1.0 + np.cos(np.pi * min(s, steps) / steps)))
    loss_fn = nn.TripletMarginLoss(margin=margin)
    model.train()
    losses, window = [], []
    for step in range(steps):
        trip = sample_triplets(n_beats, batch, rng, pos_max=pos_max, neg_min=neg_min)
        rows = offsets[trip[:, :1]] + trip[:, 1:] * config.sub_beats  # (batch, 3) first row of each patch
        idx = torch.from_numpy(rows.T.reshape(-1)[:, None] + span[None, :])
        emb = model(flat[idx]).view(3, batch, -1)
        loss = loss_fn(emb[0], emb[1], emb[2])
        opt.zero_grad()
        loss.backward()
        opt.step()
        sched.step()
        window.append(loss.item())
        if (step + 1) % log_every == 0 or step + 1 == steps:
            losses.append(float(np.mean(window)))
            window = []
            if progress:
                print(f"  step {step + 1}/{steps}: triplet loss {losses[-1]:.4f} "
                      f"({time.perf_counter() - started:.0f} s)", flush=True)
    model.eval()
    if out is not None:
        save_segment_model(model, out)
    return TrainResult(model, losses, time.perf_counter() - started, len(seqs))


def save_segment_model(model: SegmentEmbeddingNet, path: str | Path) -> None:
    path = Path(path)
    path.parent.mkdir(parents=True, exist_ok=True)
    state = {k: v.detach().clone() for k, v in model.state_dict().items()}
    torch.save({"config": asdict(model.config), "state_dict": state}, str(path))


def main(argv: list[str] | None = None) -> int:
    """python -m encoders.segment_embedding [--out PATH] [--steps N] [--seed S] [--threads T]"""
    import argparse

    parser = argparse.ArgumentParser(description="Train the segmentation embedding on the training split.")
    parser.add_argument("--out", default=str(DEFAULT_WEIGHTS))
    parser.add_argument("--steps", type=int, default=2000)
    parser.add_argument("--seed", type=int, default=0)
    parser.add_argument("--threads", type=int, default=1)
    args = parser.parse_args(argv)
    result = train_segment_embedding(steps=args.steps, seed=args.seed, threads=args.threads, out=args.out)
    print(f"trained on {result.n_tracks} tracks in {result.seconds:.0f} s; final triplet loss "
          f"{result.losses[-1]:.4f}; weights: {args.out}")
    return 0


if __name__ == "__main__":
    raise SystemExit(main())


__all__ = ["DEFAULT_WEIGHTS", "EmbeddingConfig", "SegmentEmbeddingNet", "TrainResult", "beat_bounds", "embed_beats",
           "load_segment_model", "sample_triplets", "save_segment_model", "train_segment_embedding"]
