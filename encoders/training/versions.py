"""Training the version embedding of ``encoders.versions.embedding`` (``mirmatch train --cover``): triplet loss
with semi-hard negative mining (Doras & Peeters 2019).

Two networks are trained separately and concatenated (``encoders.versions.embedding``): "beat" (below) and "fixed",
which sees chroma at a fixed hop stretched by a random factor in STRETCH (log-uniform) instead of beat views.

Batches hold P tune families with two versions each. Every version is seen through a random view of its
beats (the score's grid, beats tracked on the audio, or the score's beat period x 3/2 or x 2/3, as a beat
tracker may give; the tempo octave is canonicalised by ``beat_steps``)
and a random crop; the loss is FaceNet's semi-hard triplet loss over all anchor-positive pairs of the
batch. Curriculum: the score's beats only at first (with tracked beats from the start, the embedding
collapses), then more and more tracked beats. Seeded: the same data and seed give the same weights (one torch thread).
"""

from __future__ import annotations

import time
from collections.abc import Callable
from pathlib import Path

import numpy as np
import torch

from encoders.features import FRAME_RATE
from encoders.training.loop import run_steps
from encoders.training.versions_data import CoverItem, cover_corpus
from encoders.training.versions_eval import calibrate_threshold, precision_threshold, retrieval_metrics
from encoders.versions.chroma import FIXED_HOP_S, beat_steps, fixed_steps, scaled_beats
from encoders.versions.embedding import (
    DEFAULT_WEIGHTS,
    INPUTS,
    CoverNet,
    combine,
    embed_steps,
    input_views,
    pad_steps,
    save_models,
)

VIEW_P = (0.4, 0.4, 0.1, 0.1)  # score beats, tracked beats, score x 3/2, score x 2/3 (at full curriculum)
CURRICULUM = (0.3, 0.7)  # score beats only before 30 % of the steps, then more tracked beats until 70 %
STRETCH = (0.5, 2.0)  # range of the fixed-rate net's random hop multiplier (tempo augmentation)
CROP = {"beat": 96, "fixed": 256}  # longest training crop, in steps


def item_views(item: CoverItem) -> list[np.ndarray]:
    """Step chroma of one version under each beat view (score, tracked, score periods x 3/2 and x 2/3)."""
    chroma = item.chroma.astype(np.float32)
    score = item.beat_times
    grids = (score, item.tracked_beats, scaled_beats(score, 1.5), scaled_beats(score, 2 / 3))
    return [beat_steps(chroma, FRAME_RATE, b) for b in grids]


def eval_embeddings(models: dict[str, CoverNet], items: list[CoverItem], beats: str = "tracked") -> np.ndarray:
    """Embeddings as ``cover_embedding`` computes them, with beats tracked on the audio (as the pipeline has
    for recordings) or the score's grid (``beats='score'``, as for MIDI files)."""
    parts = []
    for name, model in models.items():
        per_item = [input_views(name, it.chroma.astype(np.float32), FRAME_RATE,
                                it.tracked_beats if beats == "tracked" else it.beat_times) for it in items]
        n_views = len(per_item[0]) if per_item else 0
        parts.append(np.mean([embed_steps(model, [v[k] for v in per_item]) for k in range(n_views)], axis=0))
    return combine(parts)


def semihard_triplet_loss(emb: torch.Tensor, labels: torch.Tensor, margin: float) -> torch.Tensor:
    """FaceNet's semi-hard triplet loss on squared distances of L2-normalised embeddings.

    For each anchor-positive pair the negative is the closest one farther than the positive (semi-hard);
    without such a negative, the farthest negative.
    """
    d = (2.0 - 2.0 * emb @ emb.T).clamp_min(0.0)
    same = labels[:, None] == labels[None, :]
    eye = torch.eye(len(labels), dtype=torch.bool, device=emb.device)
    anchors, positives = torch.nonzero(same & ~eye, as_tuple=True)
    d_ap = d[anchors, positives]
    d_an = d[anchors]  # (pairs, batch)
    neg = ~same[anchors]
    semi = neg & (d_an > d_ap[:, None])
    big = torch.finfo(d.dtype).max
    closest_semi = torch.where(semi, d_an, torch.full_like(d_an, big)).amin(dim=1)
    farthest = torch.where(neg, d_an, torch.full_like(d_an, -big)).amax(dim=1)
    chosen = torch.where(semi.any(dim=1), closest_semi, farthest)
    return torch.relu(d_ap - chosen + margin).mean()


def view_probabilities(progress: float) -> np.ndarray:
    """Probabilities of the four beat views at ``progress`` in [0, 1] of training (the curriculum)."""
    lo, hi = CURRICULUM
    mix = min(1.0, max(0.0, (progress - lo) / (hi - lo)))
    return (1 - mix) * np.array([1.0, 0.0, 0.0, 0.0]) + mix * np.array(VIEW_P)


def _batch(views: list[list[np.ndarray]], groups: list[list[int]], rng: np.random.Generator, families: int,
           crop: int, view_p: np.ndarray | None) -> tuple[torch.Tensor, torch.Tensor, torch.Tensor]:
    """A batch of crops; ``view_p`` None: ``views`` hold one chroma per item, seen at a random fixed hop."""
    chosen = rng.choice(len(groups), size=min(families, len(groups)), replace=False)
    seqs, labels = [], []
    for g in chosen:
        for item in rng.choice(groups[g], size=2, replace=False):
            if view_p is None:
                stretch = float(np.exp(rng.uniform(np.log(STRETCH[0]), np.log(STRETCH[1]))))
                s = fixed_steps(views[item][0], FRAME_RATE, FIXED_HOP_S * stretch)
            else:
                s = views[item][int(rng.choice(4, p=view_p))]
            length = min(len(s), crop)
            if rng.random() < 0.5:
                length = max(8, int(length * rng.uniform(0.6, 1.0)))
            start = int(rng.integers(0, len(s) - length + 1))
            seqs.append(s[start:start + length])
            labels.append(g)
    x, m = pad_steps(seqs)
    return torch.from_numpy(x), torch.from_numpy(m), torch.tensor(labels)


def train_cover_model(items: list[CoverItem], *, net: str = "beat", seed: int = 0, steps: int = 3000,
                      families: int = 32, lr: float = 2e-3, margin: float = 0.3,
                      log: Callable[[str], None] = print) -> CoverNet:
    """Train the CoverNet of input ``net`` ('beat' or 'fixed') on ``items`` (families of two or more); seeded."""
    torch.manual_seed(seed)
    rng = np.random.default_rng(seed)
    by_family: dict[str, list[int]] = {}
    for i, it in enumerate(items):
        by_family.setdefault(it.family, []).append(i)
    groups = [g for _, g in sorted(by_family.items()) if len(g) >= 2]
    views = ([item_views(it) for it in items] if net == "beat"
             else [[it.chroma.astype(np.float32)] for it in items])
    model = CoverNet()
    opt = torch.optim.AdamW(model.parameters(), lr=lr, weight_decay=1e-4)
    sched = torch.optim.lr_scheduler.OneCycleLR(opt, max_lr=lr, total_steps=steps, pct_start=0.1)
    started = time.perf_counter()

    def batch_loss(step: int) -> torch.Tensor:
        view_p = view_probabilities((step + 1) / steps) if net == "beat" else None
        x, m, labels = _batch(views, groups, rng, families, CROP[net], view_p)
        return semihard_triplet_loss(model(x, m), labels, margin)

    def report(done: int, losses: list[float]) -> None:
        if done % 100 == 0 or done == steps:
            log(f"  {net} step {done}/{steps} loss {_smoothed(losses):.4f} ({time.perf_counter() - started:.0f} s)")

    model.train()
    run_steps(opt, sched, steps, batch_loss, report)
    return model.eval()


def _smoothed(losses: list[float]) -> float:
    """Exponential moving average (weight 0.02) of the losses so far, from the first: the logged loss."""
    running = losses[0]
    for loss in losses[1:]:
        running = 0.98 * running + 0.02 * loss
    return running


def train_and_save(out: str | Path = DEFAULT_WEIGHTS, *, seed: int = 0, steps: int = 3000,
                   log: Callable[[str], None] = print) -> dict:
    """Build the corpus, train both networks on its train split, calibrate the clustering threshold on val (pair
    precision 0.9; the ARI-best one is recorded too), save."""
    torch.set_num_threads(1)
    started = time.perf_counter()
    train, val = cover_corpus("train"), cover_corpus("val")
    log(f"  {len(train)} training versions in {len({it.family for it in train})} families; "
        f"{len(val)} validation versions")
    models = {net: train_cover_model(train, net=net, seed=seed, steps=steps, log=log) for net in INPUTS}
    seconds = time.perf_counter() - started
    meta = {"seed": seed, "steps": steps, "train_seconds": round(seconds, 1), "train_versions": len(train)}
    meta.update(validation_meta(models, val))
    save_models(models, out, meta)
    log(f"  saved {out}: {meta}")
    return meta


def validation_meta(models: dict[str, CoverNet], val: list[CoverItem]) -> dict:
    """Validation figures (tracked and score beats) and the calibrated clustering thresholds."""
    emb = eval_embeddings(models, val)
    fams = [it.family for it in val]
    best_ari_threshold, ari = calibrate_threshold(emb, fams)
    return {"val": retrieval_metrics(emb, fams), "val_score_beats": retrieval_metrics(eval_embeddings(
        models, val, "score"), fams), "cluster_similarity": precision_threshold(emb, fams),
        "best_ari_similarity": best_ari_threshold, "val_ari": round(ari, 4)}
