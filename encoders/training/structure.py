"""Training the per-beat segment embedding of ``encoders.structure.embedding`` without labels (McCallum 2019).

A triplet loss whose positive is a beat close to the anchor in time (same track, at most ``pos_max`` beats
away) and whose negative is a beat far from it (same track, at least ``neg_min`` beats away): nearby beats
mostly share a section, distant ones mostly do not. Data: the training split of ``structure_data``, each
piece once with the score's beats and once with beats tracked on the audio. Deterministic for a seed and
thread count. ``python -m encoders.training.structure`` reproduces the shipped weights.
"""

from __future__ import annotations

import time
from dataclasses import dataclass
from pathlib import Path

import numpy as np
import torch
from torch import nn

from encoders.structure.embedding import (
    DEFAULT_WEIGHTS,
    EmbeddingConfig,
    SegmentEmbeddingNet,
    padded_sub_beats,
    save_segment_model,
)
from encoders.training.loop import run_steps
from encoders.training.structure_data import segment_corpus

DEFAULT_CONFIG = EmbeddingConfig()  # the shipped model's


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
                            config: EmbeddingConfig = DEFAULT_CONFIG,
                            beat_sources: tuple[str, ...] = ("score", "tracked"),
                            threads: int = 1, out: str | Path | None = None, log_every: int = 100,
                            progress: bool = True) -> TrainResult:
    """Train the embedding on ``pieces`` (default: the training split of ``structure_data``).

    Each piece gives one track per beat source ("score": the score's beat grid, "tracked": beats tracked on
    the audio). Deterministic for a seed and thread count. Writes the weights to ``out`` if given.
    """
    if pieces is None:
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

    def batch_loss(_: int) -> torch.Tensor:
        trip = sample_triplets(n_beats, batch, rng, pos_max=pos_max, neg_min=neg_min)
        rows = offsets[trip[:, :1]] + trip[:, 1:] * config.sub_beats  # (batch, 3) first row of each patch
        idx = torch.from_numpy(rows.T.reshape(-1)[:, None] + span[None, :])
        emb = model(flat[idx]).view(3, batch, -1)
        return loss_fn(emb[0], emb[1], emb[2])

    losses = []  # mean loss of each logging window

    def report(done: int, step_losses: list[float]) -> None:
        if done % log_every == 0 or done == steps:
            losses.append(float(np.mean(step_losses[(done - 1) // log_every * log_every:done])))
            if progress:
                print(f"  step {done}/{steps}: triplet loss {losses[-1]:.4f} "
                      f"({time.perf_counter() - started:.0f} s)", flush=True)

    model.train()
    run_steps(opt, sched, steps, batch_loss, report)
    model.eval()
    if out is not None:
        save_segment_model(model, out)
    return TrainResult(model, losses, time.perf_counter() - started, len(seqs))


def main(argv: list[str] | None = None) -> int:
    """python -m encoders.training.structure [--out PATH] [--steps N] [--seed S] [--threads T]"""
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


__all__ = ["TrainResult", "sample_triplets", "train_segment_embedding"]
