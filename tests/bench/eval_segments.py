"""Structural segmentation on held-out pieces (split by tune family), scored with mir_eval.segment.

    python tests/bench/eval_segments.py [--split heldout] [--no-speed] [--threads 1]

Pieces: ``encoders.training.boundary_data`` (music21's Essen folksongs and Bach chorales; ``assembled`` in forms
such as AABA, and ``unassembled``, each in its own form with its phrases as the sections; built and cached under
.cache/struct-19/ on first use). The held-out families' audio is rendered with a soundfont never trained on
(MuseScore General), tempo-warped, cropped, re-orchestrated, with reverb and noise, half of it over a real
recording of the EVAL packages.

Figures, each per kind of piece and as the mean over pieces: boundary hit-rate F at 0.5 s and 3 s (trimmed)
and pairwise frame-clustering F, with a paired bootstrap 95 % interval of the difference to each baseline:

* audio (beats tracked on the audio, as the pipeline has for recordings): the boundary CNN (the pipeline's
  method) beside the Laplacian baseline (``laplacian_segments`` on the CQT), structural features (Serrà et al.
  2014) and the previous pipeline method (``learned_segments``, fused);
* MIDI: the symbolic method (the pipeline's) beside the same three methods on the MIDI file's FluidR3
  rendering on its own beats (what the pipeline did for MIDI before);
* MIDI vs audio: the MIDI file's symbolic boundaries mapped into audio time through the true time map against
  the audio's boundaries, F@3 (symmetric), and the same for the previous method on both sides;
* speed: one hour of held-out audio features (4-minute tracks, tracked beats), each method in the same run.
"""

from __future__ import annotations

import argparse
import pickle
import time
import warnings
from pathlib import Path

import _common  # noqa: F401  (puts the repository on sys.path)
import mir_eval
import numpy as np
import torch
from _common import report

from encoders.features import FRAME_RATE, audio_features
from encoders.render import render_midi
from encoders.structure.boundary import boundary_segments, load_boundary_model
from encoders.structure.laplacian import laplacian_segments
from encoders.structure.learned import learned_segments
from encoders.structure.structural_features import structural_features_segments
from encoders.structure.symbolic import symbolic_segments
from encoders.training.boundary import midi_truth, segment_scores
from encoders.training.boundary_data import DEFAULT_CACHE, boundary_corpus

FIGURES = ("F@0.5s", "F@3s", "pairwise F")
TRACK_S = 240.0
HOUR_S = 3600.0


def audio_methods():
    return {
        "boundary CNN": lambda cqt, t, d, b: boundary_segments(cqt, t, d, b),
        "laplacian": lambda cqt, t, d, b: laplacian_segments(cqt, t, d, b),
        "structural features": lambda cqt, t, d, b: structural_features_segments(cqt, t, d, b),
        "previous (learned fused)": lambda cqt, t, d, b: learned_segments(cqt, t, d, b),
    }


def bootstrap_ci(diff: np.ndarray, rng: np.random.Generator, n: int = 2000) -> tuple[float, float]:
    means = diff[rng.integers(0, len(diff), size=(n, len(diff)))].mean(axis=1)
    return float(np.percentile(means, 2.5)), float(np.percentile(means, 97.5))


def midi_renderings(pieces, split: str) -> dict[str, tuple[np.ndarray, np.ndarray, float]]:
    """{name: (CQT, beats, duration)} of each piece's MIDI file rendered with FluidR3 (cached)."""
    cache = Path(DEFAULT_CACHE) / f"midi-renderings-{split}.pkl"
    if cache.exists():
        return pickle.loads(cache.read_bytes())
    out = {}
    for p in pieces:
        pm = p.midi()
        duration = float(max(inst.get_end_time() for inst in pm.instruments))
        feats = audio_features(render_midi(pm), beat_times=pm.get_beats())
        n = min(len(feats.cqt), int(np.ceil(duration * FRAME_RATE)) + 1)
        out[p.name] = (feats.cqt[:n].astype(np.float16), feats.beat_times[feats.beat_times < duration], duration)
    cache.write_bytes(pickle.dumps(out))
    return out


def summarise(results: dict[str, dict[str, list]], ours: str, kinds: list[str], setting: str, rng) -> None:
    for kind in ["all", *kinds]:
        sel = [i for i, k in enumerate(kinds_of[setting]) if kind in ("all", k)]
        if not sel:
            continue
        mine = np.array(results[ours])[sel]
        for j, fig in enumerate(FIGURES):
            parts = []
            for base, vals in results.items():
                if base == ours:
                    continue
                b = np.array(vals)[sel]
                lo, hi = bootstrap_ci(mine[:, j] - b[:, j], rng)
                parts.append(f"{base} {b[:, j].mean():.3f} [{lo:+.3f}, {hi:+.3f}]")
            report(f"{fig}, {setting}, {kind}, {ours}", mine[:, j].mean(), "",
                   f"{len(sel)} pieces; baselines (difference 95% CI): " + "; ".join(parts))


kinds_of: dict[str, list[str]] = {}


def boundaries_f3(ref_times: np.ndarray, est_times: np.ndarray, duration: float) -> float:
    """Symmetric F@3 between two sets of inner boundaries (intervals spanning [0, duration])."""
    def iv(t):
        t = np.sort(t[(t > 0) & (t < duration)])
        edges = np.r_[0.0, t, duration]
        return np.stack([edges[:-1], edges[1:]], axis=1)
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")
        return mir_eval.segment.detection(iv(ref_times), iv(est_times), window=3.0, trim=True)[2]


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--split", default="heldout", choices=("heldout", "val"))
    parser.add_argument("--threads", type=int, default=1, help="torch threads")
    parser.add_argument("--no-speed", action="store_true")
    args = parser.parse_args(argv)
    torch.set_num_threads(args.threads)
    pieces = boundary_corpus(args.split)
    kinds = ["assembled", "unassembled"]
    print(f"{len(pieces)} {args.split} pieces ({sum(p.kind == 'assembled' for p in pieces)} assembled, "
          f"{sum(p.kind == 'unassembled' for p in pieces)} unassembled; {len({p.family for p in pieces})} tune "
          f"families), {sum(p.duration_s for p in pieces) / 60:.1f} min of audio; audio soundfonts "
          f"{sorted({p.soundfont for p in pieces})}", flush=True)
    rng = np.random.default_rng(0)
    # audio, tracked beats
    audio = {name: [] for name in audio_methods()}
    audio_segs: dict[str, dict[str, list]] = {name: {} for name in audio_methods()}
    for p in pieces:
        cqt = p.cqt.astype(np.float32)
        for name, fn in audio_methods().items():
            segs = fn(cqt, p.frame_times, p.duration_s, p.tracked_beats)
            audio_segs[name][p.name] = segs
            audio[name].append(segment_scores(segs, p.ref_intervals, p.ref_labels))
    kinds_of["audio"] = [p.kind for p in pieces]
    summarise(audio, "boundary CNN", kinds, "audio", rng)
    # MIDI: the symbolic method vs the audio methods on the MIDI rendering
    renders = midi_renderings(pieces, args.split)
    midi = {"symbolic": [], **{name: [] for name in audio_methods() if name != "boundary CNN"},
            "boundary CNN on rendering": []}
    midi_segs: dict[str, dict[str, list]] = {"symbolic": {}, "previous (learned fused)": {}}
    for p in pieces:
        pm = p.midi()
        cqt16, beats, duration = renders[p.name]
        ref = midi_truth(p, duration)
        segs = symbolic_segments(pm, duration)
        midi_segs["symbolic"][p.name] = segs
        midi["symbolic"].append(segment_scores(segs, ref, p.labels))
        cqt = cqt16.astype(np.float32)
        times = np.arange(len(cqt)) / FRAME_RATE
        for name, fn in audio_methods().items():
            segs = fn(cqt, times, duration, beats)
            key = "boundary CNN on rendering" if name == "boundary CNN" else name
            if key in midi_segs:
                midi_segs[key][p.name] = segs
            midi[key].append(segment_scores(segs, ref, p.labels))
    kinds_of["MIDI"] = [p.kind for p in pieces]
    summarise(midi, "symbolic", kinds, "MIDI", rng)
    # MIDI boundaries mapped through the true time map vs the audio's boundaries
    for midi_name, audio_name in (("symbolic", "boundary CNN"), ("previous (learned fused)",
                                                                 "previous (learned fused)")):
        f3 = []
        for p in pieces:
            mb = np.array([s.start_s for s in midi_segs[midi_name][p.name][1:]])
            ab = np.array([s.start_s for s in audio_segs[audio_name][p.name][1:]])
            f3.append(boundaries_f3(p.midi_to_audio_time(mb), ab, p.duration_s))
        report(f"MIDI vs audio boundaries F@3, {midi_name} (MIDI) vs {audio_name} (audio)", float(np.mean(f3)), "",
               f"{len(pieces)} pieces; MIDI boundaries mapped through the true time map")
    if not args.no_speed:
        speed(pieces, args.threads)
    return 0


def hour_of_tracks(pieces) -> list[tuple[np.ndarray, np.ndarray, float, np.ndarray]]:
    """Held-out audio concatenated (cycling) into ~TRACK_S tracks totalling HOUR_S: (cqt, times, dur, beats)."""
    tracks, total, i = [], 0.0, 0
    while total < HOUR_S:
        cqts, beats, n_frames = [], [], 0
        while n_frames < TRACK_S * FRAME_RATE:
            p = pieces[i % len(pieces)]
            i += 1
            cqt = p.cqt.astype(np.float32)[: int(p.duration_s * FRAME_RATE)]
            beats.append(p.tracked_beats[p.tracked_beats < len(cqt) / FRAME_RATE] + n_frames / FRAME_RATE)
            cqts.append(cqt)
            n_frames += len(cqt)
        times = np.arange(n_frames) / FRAME_RATE
        tracks.append((np.concatenate(cqts), times, n_frames / FRAME_RATE, np.concatenate(beats)))
        total += tracks[-1][2]
    return tracks


def speed(pieces, threads: int) -> None:
    tracks = hour_of_tracks(pieces)
    hours = sum(t[2] for t in tracks) / 3600.0
    load_boundary_model()
    timings = {}
    for name, fn in audio_methods().items():
        fn(*tracks[0])  # warm-up (numba / torch first calls)
        started = time.perf_counter()
        for cqt, times, dur, beats in tracks:
            fn(cqt, times, dur, beats)
        timings[name] = (time.perf_counter() - started) / hours
    for name, t in timings.items():
        report(f"seconds per hour of audio features, {name}", t, "s",
               f"ratio to the previous method {t / timings['previous (learned fused)']:.2f}; {len(tracks)} tracks "
               f"of ~{TRACK_S / 60:.0f} min, torch threads {threads}")


if __name__ == "__main__":
    raise SystemExit(main())
