"""Structural segmentation on held-out pieces, scored with mir_eval.segment: baseline vs learned embeddings.

    python tests/bench/eval_segments.py [--split heldout] [--weights PATH] [--no-speed]

Pieces: encoders.training.structure_data (music21's Essen folksongs and Bach chorales assembled in forms such as AABA,
rendered with fluidsynth; built and cached under .cache/segment-data/ on first use, ~3 minutes). For each
beat source (the score's beat grid, as the pipeline has for MIDI; beats tracked on the audio, as it has for
recordings) and each figure (boundary hit-rate F at 0.5 s and 3 s, trimmed; pairwise frame-clustering F),
one line gives the learned method beside the baseline (laplacian_segments on the CQT), with a paired
bootstrap 95 % interval of the difference. Speed: one hour of features (held-out pieces concatenated into
4-minute tracks; decoding and CQT excluded) segmented with each method.
"""

from __future__ import annotations

import argparse
import time
import warnings

import _common  # noqa: F401  (puts the repository on sys.path)
import mir_eval
import numpy as np
import torch
from _common import report

from encoders.features import FRAME_RATE
from encoders.structure.embedding import DEFAULT_WEIGHTS, load_segment_model
from encoders.structure.laplacian import laplacian_segments
from encoders.structure.learned import learned_segments
from encoders.training.structure_data import segment_corpus

FIGURES = ("F@0.5s", "F@3s", "pairwise F")
TRACK_S = 240.0
HOUR_S = 3600.0


def scores(segs, ref_intervals: np.ndarray, ref_labels: list[str]) -> list[float]:
    est = np.array([[s.start_s, s.end_s] for s in segs])
    labels = [s.label for s in segs]
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")  # "Estimated intervals are empty" for one-segment outputs
        return [mir_eval.segment.detection(ref_intervals, est, window=0.5, trim=True)[2],
                mir_eval.segment.detection(ref_intervals, est, window=3.0, trim=True)[2],
                mir_eval.segment.pairwise(ref_intervals, ref_labels, est, labels)[2]]


def methods(model):
    return {
        "baseline": lambda cqt, t, d, b: laplacian_segments(cqt, t, d, b),
        "learned (fused)": lambda cqt, t, d, b: learned_segments(cqt, t, d, b, model=model, feature="fused"),
        "learned (embeddings only)": lambda cqt, t, d, b: learned_segments(cqt, t, d, b, model=model,
                                                                           feature="learned"),
    }


def bootstrap_ci(diff: np.ndarray, rng: np.random.Generator, n: int = 2000) -> tuple[float, float]:
    means = diff[rng.integers(0, len(diff), size=(n, len(diff)))].mean(axis=1)
    return float(np.percentile(means, 2.5)), float(np.percentile(means, 97.5))


def hour_of_tracks(pieces) -> list[tuple[np.ndarray, np.ndarray, float, np.ndarray]]:
    """Held-out pieces concatenated (cycling) into ~TRACK_S tracks totalling HOUR_S: (cqt, times, dur, beats)."""
    tracks, total, i = [], 0.0, 0
    while total < HOUR_S:
        cqts, beats, n_frames = [], [], 0
        while n_frames < TRACK_S * FRAME_RATE:
            p = pieces[i % len(pieces)]
            i += 1
            cqt = p.cqt.astype(np.float32)[: int(p.duration_s * FRAME_RATE)]
            beats.append(p.beat_times[p.beat_times < len(cqt) / FRAME_RATE] + n_frames / FRAME_RATE)
            cqts.append(cqt)
            n_frames += len(cqt)
        times = np.arange(n_frames) / FRAME_RATE
        tracks.append((np.concatenate(cqts), times, n_frames / FRAME_RATE, np.concatenate(beats)))
        total += tracks[-1][2]
    return tracks


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--split", default="heldout", choices=("heldout", "val"))
    parser.add_argument("--weights", default=str(DEFAULT_WEIGHTS))
    parser.add_argument("--threads", type=int, default=2, help="torch threads for the embedding network")
    parser.add_argument("--no-speed", action="store_true")
    args = parser.parse_args(argv)
    torch.set_num_threads(args.threads)
    model = load_segment_model(args.weights)
    pieces = segment_corpus(args.split)
    n_essen = sum(p.source == "essen" for p in pieces)
    print(f"{len(pieces)} {args.split} pieces ({n_essen} Essen, {len(pieces) - n_essen} Bach), "
          f"{sum(p.duration_s for p in pieces) / 60:.1f} min; weights {args.weights}", flush=True)
    rng = np.random.default_rng(0)
    for beat_source in ("score", "tracked"):
        results = {name: [] for name in methods(model)}
        for p in pieces:
            beats = p.beat_times if beat_source == "score" else p.tracked_beats
            cqt = p.cqt.astype(np.float32)
            for name, fn in methods(model).items():
                results[name].append(scores(fn(cqt, p.frame_times, p.duration_s, beats), p.ref_intervals,
                                            p.ref_labels))
        base = np.array(results["baseline"])
        for name in list(results)[1:]:
            got = np.array(results[name])
            for j, fig in enumerate(FIGURES):
                lo, hi = bootstrap_ci(got[:, j] - base[:, j], rng)
                report(f"{fig}, {beat_source} beats, {name}", got[:, j].mean(), "",
                       f"baseline laplacian_segments on CQT: {base[:, j].mean():.3f}; "
                       f"difference 95% CI [{lo:+.3f}, {hi:+.3f}]; {len(pieces)} pieces")
    if not args.no_speed:
        tracks = hour_of_tracks(pieces)
        hours = sum(t[2] for t in tracks) / 3600.0
        timings = {}
        for name, fn in methods(model).items():
            fn(*tracks[0])  # warm-up (numba / torch first calls)
            started = time.perf_counter()
            for cqt, times, dur, beats in tracks:
                fn(cqt, times, dur, beats)
            timings[name] = (time.perf_counter() - started) / hours
        for name in list(timings)[1:]:
            report(f"seconds per hour of audio features, {name}", timings[name], "s",
                   f"baseline: {timings['baseline']:.1f} s; {len(tracks)} tracks of ~{TRACK_S / 60:.0f} min, "
                   f"torch threads {args.threads}")
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
