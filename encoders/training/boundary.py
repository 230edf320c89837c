"""Training the section-boundary models: the symbolic (MIDI) boundary model and the audio boundary CNN.

Data: ``boundary_data`` (pieces with known sections, split by tune family). Both models are fitted on the
``train`` split; their decoding settings (peak threshold, shortest section, label threshold) are chosen on
the ``val`` split by the mean of F@0.5, F@3 and pairwise F (mir_eval). ``heldout`` is never read here.

* symbolic: a logistic regression over ``symbolic.beat_features`` (target: the beat each section starts on)
  -> ``encoders/weights/symbolic-boundary-v1.json``;
* audio: ``boundary.BoundaryNet`` trained with binary cross-entropy on boundary labels smeared over the
  neighbouring beats (a Gaussian of ``smear_beats``), on three grids of every piece (beats tracked on the
  audio, the score's beats mapped into audio time, fixed windows as for tracks without a usable beat)
  -> ``encoders/weights/segment-boundary-v1.pt``.

    python -m encoders.training.boundary [--steps 3000] [--threads 1]

Deterministic for a seed and thread count.
"""

from __future__ import annotations

import json
import time
import warnings
from pathlib import Path

import mir_eval
import numpy as np
import torch
from torch import nn

from encoders.structure.boundary import (
    DEFAULT_BOUNDARY_WEIGHTS,
    BoundaryConfig,
    BoundaryNet,
    beat_inputs,
    boundary_curve,
    label_similarity,
    save_boundary_model,
)
from encoders.structure.laplacian import Segment
from encoders.structure.symbolic import (
    DEFAULT_SYMBOLIC_WEIGHTS,
    FEATURE_NAMES,
    beat_features,
    boundary_scores,
    pick_peaks,
    segments_from_boundaries,
)
from encoders.training.boundary_data import BoundaryPiece, boundary_corpus

GRIDS = ("tracked", "true", "windows")
#: Coefficients of the symbolic features the corpus has no example of (one instrument, no metre or key
#: signature events, tempo changes within expressive drift): a tempo change of 10 % beyond the tolerance,
#: a time or key signature event, or a change of the instruments playing each add as much to the logit as
#: a strong repetition edge.
SYMBOLIC_PRIORS = {"tempo": 30.0, "meta": 3.0, "instruments": 3.0}


def segment_scores(segs: list[Segment], ref_intervals: np.ndarray, ref_labels: list[str]) -> list[float]:
    """[F@0.5 s, F@3 s (both trimmed), pairwise frame-clustering F] of ``segs`` (mir_eval.segment)."""
    est = np.array([[s.start_s, s.end_s] for s in segs])
    labels = [s.label for s in segs]
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")
        return [mir_eval.segment.detection(ref_intervals, est, window=0.5, trim=True)[2],
                mir_eval.segment.detection(ref_intervals, est, window=3.0, trim=True)[2],
                mir_eval.segment.pairwise(ref_intervals, ref_labels, est, labels)[2]]


def midi_truth(p: BoundaryPiece, duration: float) -> np.ndarray:
    iv = p.midi_intervals.copy()
    iv[-1, 1] = max(duration, iv[-1, 0] + 1e-3)
    return iv


def grid_beats(p: BoundaryPiece, grid: str) -> np.ndarray | None:
    return {"tracked": p.tracked_beats, "true": p.true_beats, "windows": None}[grid]


def smeared_targets(starts: np.ndarray, boundaries: np.ndarray, smear_beats: float) -> np.ndarray:
    """Per-beat targets: exp(-d^2 / 2 s^2), d the distance in beats to the nearest boundary's beat."""
    n = len(starts)
    target = np.zeros(n, np.float32)
    for b in boundaries:
        i = int(np.argmin(np.abs(starts - b)))
        d = np.arange(n) - i
        target = np.maximum(target, np.exp(-0.5 * (d / smear_beats) ** 2).astype(np.float32))
    return target


# ---------------------------------------------------------------------------------------------- symbolic


def _symbolic_rows(pieces: list[BoundaryPiece]) -> list[tuple[np.ndarray, np.ndarray, np.ndarray, float, np.ndarray,
                                                              BoundaryPiece]]:
    rows = []
    for p in pieces:
        pm = p.midi()
        feats, beats, sim = beat_features(pm)
        duration = float(max(inst.get_end_time() for inst in pm.instruments))
        y = np.zeros(len(beats))
        for b in p.midi_intervals[1:, 0]:
            y[int(np.argmin(np.abs(beats - b)))] = 1.0
        rows.append((feats, beats, sim, duration, y, p))
    return rows


def decode_grid(runs: list, score_fn, thresholds, min_sections, label_thresholds) -> tuple[dict, float]:
    """Best (threshold, min_section_s, label_threshold) by mean F@0.5 / F@3 / pairwise F on ``runs``:
    (scores per beat, beat times, similarity, duration, ref intervals, ref labels)."""
    best, best_val = {}, -1.0
    for th in thresholds:
        for ms in min_sections:
            cuts = [pick_peaks(sc, t, d, th, ms) for sc, t, _, d, _, _ in runs]
            for lt in label_thresholds:
                vals = []
                for (_, t, sim, d, ref, lab), idx in zip(runs, cuts, strict=True):
                    segs = segments_from_boundaries(idx, t, d, sim, lt)
                    vals.append(score_fn(segs, ref, lab))
                m = float(np.mean(vals))
                if m > best_val:
                    best, best_val = {"threshold": th, "min_section_s": ms, "label_threshold": lt}, m
    return best, best_val


def fit_symbolic(train: list[BoundaryPiece], val: list[BoundaryPiece], out: str | Path | None = None,
                 progress: bool = True) -> dict:
    """Fit the symbolic boundary model on ``train``, its decoding on ``val``; write it to ``out``."""
    from sklearn.linear_model import LogisticRegression

    rows = _symbolic_rows(train)
    x = np.concatenate([r[0] for r in rows])
    y = np.concatenate([r[4] for r in rows])
    clf = LogisticRegression(C=1.0, fit_intercept=False, max_iter=2000, class_weight="balanced")
    clf.fit(x, y)
    coef = clf.coef_.ravel().tolist()
    for name, value in SYMBOLIC_PRIORS.items():  # evidence the corpus never shows: set by hand, not fitted
        coef[FEATURE_NAMES.index(name)] = value
    vrows = _symbolic_rows(val)
    runs = [(boundary_scores(f, {"coef": coef}), b, s, d, midi_truth(p, d), p.labels) for f, b, s, d, _, p in vrows]
    decoding, value = decode_grid(runs, lambda s, r, lab: np.mean(segment_scores(s, r, lab)),
                                  np.linspace(0.4, 0.9, 11), (3.0, 4.0, 5.0, 6.0), (0.3, 0.4, 0.5, 0.6))
    decoding = {k: float(v) for k, v in decoding.items()}
    model = {"feature_names": list(FEATURE_NAMES), "coef": coef, **decoding, "priors": SYMBOLIC_PRIORS,
             "fitted_on": f"{len(train)} train pieces", "val_mean_f": round(value, 4)}
    if progress:
        print(f"  symbolic: {len(x)} beats, {int(y.sum())} boundaries; val mean F {value:.3f} with {decoding}")
    if out is not None:
        Path(out).write_text(json.dumps(model, indent=1) + "\n")
    return model


# ------------------------------------------------------------------------------------------------- audio


EXCERPT_BEATS = 32  # beats scored per training excerpt
MARGIN_BEATS = 4  # extra beats either side of an excerpt, dropped from the loss (the trunks' receptive field)


def _audio_tracks(pieces: list[BoundaryPiece], config: BoundaryConfig, smear_beats: float):
    """Per piece and grid: (sub-beat CQT, lag rows, targets), inputs padded by MARGIN_BEATS more beats."""
    tracks = []
    for p in pieces:
        cqt = p.cqt.astype(np.float32)
        for grid in GRIDS:
            inputs = beat_inputs(cqt, p.frame_times, grid_beats(p, grid), config)
            target = smeared_targets(inputs["starts"], p.ref_intervals[1:, 0], smear_beats)
            m = MARGIN_BEATS
            seq = np.pad(inputs["seq"], ((m * config.sub_beats, m * config.sub_beats), (0, 0)), mode="edge")
            lags = np.pad(inputs["lags"], ((m, m), (0, 0)), mode="edge")
            tracks.append((seq, lags, target))
    return tracks


def _excerpt(track, start: int, config: BoundaryConfig) -> tuple[np.ndarray, np.ndarray, np.ndarray, np.ndarray]:
    """Inputs for target beats [start, start + EXCERPT_BEATS) (clipped to the track), with a mask."""
    seq, lags, target = track
    n_in = EXCERPT_BEATS + config.context_beats + 2 * MARGIN_BEATS
    x_seq = seq[start * config.sub_beats: (start + n_in) * config.sub_beats]
    x_lag = lags[start: start + n_in]
    y = target[start: start + EXCERPT_BEATS]
    mask = np.ones(EXCERPT_BEATS, np.float32)
    short = n_in - len(x_lag)
    if short > 0:  # the track ends inside the excerpt: pad, and mask the padded beats
        x_seq = np.pad(x_seq, ((0, short * config.sub_beats), (0, 0)), mode="edge")
        x_lag = np.pad(x_lag, ((0, short), (0, 0)), mode="edge")
    mask[len(y):] = 0.0
    y = np.pad(y, (0, EXCERPT_BEATS - len(y)))
    return x_seq, x_lag, y, mask


def train_boundary_net(train: list[BoundaryPiece], *, steps: int = 3000, batch: int = 16, lr: float = 2e-3,
                       smear_beats: float = 1.0, seed: int = 0, config: BoundaryConfig | None = None,
                       threads: int = 1, progress: bool = True) -> tuple[BoundaryNet, list[float], float]:
    """Train the boundary CNN on ``train`` (each piece on GRIDS), ``batch`` excerpts of EXCERPT_BEATS beats
    per step, boundary beats weighted up to balance the loss; returns (model, losses, seconds)."""
    config = BoundaryConfig() if config is None else config
    previous = torch.get_num_threads()
    torch.set_num_threads(threads)
    started = time.perf_counter()
    try:
        torch.manual_seed(seed)
        rng = np.random.default_rng(seed)
        tracks = _audio_tracks(train, config, smear_beats)
        lengths = np.array([len(t[2]) for t in tracks])
        weights = lengths / lengths.sum()
        model = BoundaryNet(config)
        opt = torch.optim.AdamW(model.parameters(), lr=lr, weight_decay=1e-3)
        warm = max(1, steps // 20)
        sched = torch.optim.lr_scheduler.LambdaLR(
            opt, lambda s: min(1.0, (s + 1) / warm) * 0.5 * (1.0 + np.cos(np.pi * min(s, steps) / steps)))
        pos_share = float(np.mean(np.concatenate([t[2] for t in tracks])))
        pos_weight = (1.0 - pos_share) / max(pos_share, 1e-3) * 0.5
        m = MARGIN_BEATS
        losses = []
        model.train()
        for step in range(steps):
            picks = rng.choice(len(tracks), size=batch, p=weights)
            items = [_excerpt(tracks[k], int(rng.integers(0, max(lengths[k] - EXCERPT_BEATS // 2, 1))), config)
                     for k in picks]
            xs, xl, y, mask = (torch.from_numpy(np.stack(v).astype(np.float32)) for v in zip(*items, strict=True))
            if rng.random() < 0.5:  # gain / contrast jitter of the scaled CQT
                xs = (xs * float(rng.uniform(0.8, 1.2)) + float(rng.uniform(-0.1, 0.1))).clamp(0, 1)
            logits = model(xs, xl)[:, m: m + EXCERPT_BEATS]
            w = mask * (1.0 + (pos_weight - 1.0) * y)
            loss = (nn.functional.binary_cross_entropy_with_logits(logits, y, reduction="none") * w).sum() / w.sum()
            opt.zero_grad()
            loss.backward()
            opt.step()
            sched.step()
            losses.append(float(loss.detach()))
            if progress and (step + 1) % 250 == 0:
                print(f"  step {step + 1}/{steps}: loss {np.mean(losses[-250:]):.4f} "
                      f"({time.perf_counter() - started:.0f} s)", flush=True)
        model.eval()
        return model, losses, time.perf_counter() - started
    finally:
        torch.set_num_threads(previous)


def tune_audio_decoding(model: BoundaryNet, val: list[BoundaryPiece], progress: bool = True) -> dict:
    """Peak threshold, shortest section and label threshold chosen on ``val`` (tracked beats)."""
    runs = []
    for p in val:
        inputs = beat_inputs(p.cqt.astype(np.float32), p.frame_times, p.tracked_beats, model.config)
        keep = inputs["starts"] < p.duration_s
        sim = label_similarity(inputs)[np.ix_(keep, keep)]
        runs.append((boundary_curve(inputs, model)[keep], inputs["starts"][keep], sim, p.duration_s,
                     p.ref_intervals, p.ref_labels))
    decoding, value = decode_grid(runs, lambda s, r, lab: np.mean(segment_scores(s, r, lab)),
                                  np.linspace(0.2, 0.9, 15), (3.0, 4.0, 6.0), (0.5, 0.6, 0.7, 0.8))
    if progress:
        print(f"  audio: val mean F {value:.3f} with {decoding}")
    return {k: float(v) for k, v in decoding.items()}


def main(argv: list[str] | None = None) -> int:
    """python -m encoders.training.boundary [--steps N] [--seed S] [--threads T] [--only symbolic|audio]"""
    import argparse
    import dataclasses

    parser = argparse.ArgumentParser(description="Train the boundary models on the boundary corpus.")
    parser.add_argument("--steps", type=int, default=3000)
    parser.add_argument("--seed", type=int, default=0)
    parser.add_argument("--threads", type=int, default=1)
    parser.add_argument("--only", choices=("symbolic", "audio"))
    parser.add_argument("--out", default=str(DEFAULT_BOUNDARY_WEIGHTS))
    parser.add_argument("--symbolic-out", default=str(DEFAULT_SYMBOLIC_WEIGHTS))
    args = parser.parse_args(argv)
    started = time.perf_counter()
    train, val = boundary_corpus("train"), boundary_corpus("val")
    print(f"{len(train)} train, {len(val)} val pieces ({time.perf_counter() - started:.0f} s)", flush=True)
    if args.only != "audio":
        fit_symbolic(train, val, args.symbolic_out)
    if args.only != "symbolic":
        model, losses, seconds = train_boundary_net(train, steps=args.steps, seed=args.seed, threads=args.threads)
        print(f"  trained in {seconds:.0f} s; final loss {np.mean(losses[-250:]):.4f}", flush=True)
        torch.set_num_threads(args.threads)
        decoding = tune_audio_decoding(model, val)
        model.config = dataclasses.replace(model.config, **decoding)
        save_boundary_model(model, args.out)
        print(f"weights: {args.out} ({Path(args.out).stat().st_size / 1024:.0f} KB)")
    print(f"total {time.perf_counter() - started:.0f} s")
    return 0


if __name__ == "__main__":
    raise SystemExit(main())


__all__ = ["fit_symbolic", "segment_scores", "smeared_targets", "train_boundary_net", "tune_audio_decoding"]
