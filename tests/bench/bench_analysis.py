"""Per-track analysis speed, per stage, on an hour of real recordings and an hour of MIDI, against a reference.

The recordings are the FIT game soundtracks of the real-music cache (supertux, hedgewars; `.cache/real-music`),
the MIDI files those of the Debian game packages (simutrans, openttd, freedink; ``encoders.training.corpus``),
each set cut at ``--minutes`` of media. Each implementation analyses the same files in a fresh process
(``analyze_source`` on each file's bytes, one torch thread) after one warm-up file; times are CPU seconds of
that process (``time.process_time``: per core, whatever else the machine runs). The reference is the
analysis of commit ``--reference`` (default cb4468a, the issue's reference), extracted with ``git archive``.
Prints seconds per media hour of each stage of this tree's analysis (exclusive times, stages nested in others
counted once), then each modality's total and the total as ratios against the reference, then how far this
tree's results are from the reference's on the same files (frame- and track-code bits, version embeddings,
version sequences, segment boundaries):
    python tests/bench/bench_analysis.py [--minutes 60] [--reference cb4468a]
"""

from __future__ import annotations

import argparse
import json
import os
import subprocess
import sys
import tempfile
from pathlib import Path

import numpy as np

sys.path.insert(0, str(Path(__file__).resolve().parents[2]))

from _common import report  # noqa: E402

REPO = Path(__file__).resolve().parents[2]
REAL_MUSIC = REPO / ".cache" / "real-music"
AUDIO_PACKAGES = ("supertux-data", "hedgewars-data")

#: Run in each implementation's tree: analyses the listed files, writes results and per-stage CPU times.
CHILD = r"""
import json, sys, time
from pathlib import Path
import numpy as np
import torch
torch.set_num_threads(1)
try:
    from encoders.codes import load_hasher
except ImportError:  # older layout (the reference)
    from encoders.hashes import load_hasher
import encoders.analyze as analyze

files, out, staged = json.loads(Path(sys.argv[1]).read_text()), Path(sys.argv[2]), sys.argv[3] == "1"
stage_times, stack = {}, []

def timed(name, fn):
    def wrapper(*args, **kwargs):
        stack.append(0.0)
        started = time.process_time()
        try:
            return fn(*args, **kwargs)
        finally:
            spent = time.process_time() - started
            inner = stack.pop()
            stage_times[name] = stage_times.get(name, 0.0) + spent - inner
            if stack:
                stack[-1] += spent
    return wrapper

def patch(module_name, attr, stage, owners=()):
    import importlib
    module = importlib.import_module(module_name)
    wrapped = timed(stage, getattr(module, attr))
    setattr(module, attr, wrapped)
    for owner in owners:  # modules that imported the name
        owner_module = importlib.import_module(owner)
        if hasattr(owner_module, attr):
            setattr(owner_module, attr, wrapped)

hasher = load_hasher()
if staged:
    for spec in json.loads(sys.argv[4]):
        patch(*spec)
    if hasattr(hasher, "codes"):
        hasher.codes = timed("hash codes (network)", hasher.codes)
warm = files[0]
analyze.analyze_source(Path(warm[0]).read_bytes(), warm[0], warm[1], hasher)
stage_times.clear()
totals, results = {"audio": 0.0, "midi": 0.0}, {}
for i, (path, modality) in enumerate(files[1:]):
    data = Path(path).read_bytes()
    started = time.process_time()
    r = analyze.analyze_source(data, path, modality, hasher)
    totals[modality] += time.process_time() - started
    results[f"{i}_frame_codes"] = r.frame_codes
    results[f"{i}_track_code"] = r.track_code
    results[f"{i}_cover"] = r.cover_embedding
    results[f"{i}_sequence"] = np.asarray(r.version_sequence, np.float32)
    results[f"{i}_bounds"] = np.array([s.start_s for s in r.segments[1:]], np.float64)
    results[f"{i}_duration"] = np.array([r.duration_s])
np.savez(out, **results)
print(json.dumps({"totals": totals, "stages": stage_times}))
"""

#: (module, function, stage name, modules that imported it by name) of this tree's analysis.
STAGES = [
    ("encoders.media", "decode_audio", "decode + resample (audio)", ("encoders.analyze",)),
    ("encoders.media", "parse_midi", "parse (MIDI)", ("encoders.analyze",)),
    ("encoders.render", "render_midi", "render (MIDI, fluidsynth)", ("encoders.analyze",)),
    ("encoders.features", "_cqt_magnitude", "CQT", ()),
    ("encoders.features", "estimate_beats", "beats (audio)", ()),
    ("encoders.features", "chroma_from_cqt", "chroma", ()),
    ("encoders.versions.embedding", "cover_embedding", "version embedding (inputs + networks)",
     ("encoders.analyze",)),
    ("encoders.versions.chroma", "version_sequence", "version sequence", ("encoders.analyze",)),
    ("encoders.structure.learned", "embed_beats", "segment embedding (network)", ()),
    ("encoders.structure.learned", "learned_segments", "segmentation (graphs, clustering)", ("encoders.analyze",)),
]


def audio_files(seconds: float) -> list[tuple[str, float]]:
    import soundfile as sf

    found = []
    for package in AUDIO_PACKAGES:
        found += sorted(p for p in (REAL_MUSIC / package).rglob("*") if p.suffix.lower() in (".ogg", ".wav", ".flac"))
    if not found:
        sys.exit(f"no recordings under {REAL_MUSIC}/{{{','.join(AUDIO_PACKAGES)}}}; build the real-music cache "
                 "first (tests/bench/eval_decisions.py does)")
    return _first(((str(p), sf.info(str(p)).duration) for p in found), seconds)


def midi_files(seconds: float) -> list[tuple[str, float]]:
    from encoders.media import MediaError, midi_duration, parse_midi
    from encoders.training.corpus import DEMO_COLLECTIONS, debian_midi_files

    def durations():
        for _, path in debian_midi_files(DEMO_COLLECTIONS):
            try:
                yield str(path), midi_duration(parse_midi(path.read_bytes()))
            except MediaError:
                continue

    return _first(durations(), seconds)


def _first(items, seconds: float) -> list[tuple[str, float]]:
    """Items (path, duration) in order until their durations add up to ``seconds``."""
    out, total = [], 0.0
    for path, duration in items:
        if total >= seconds:
            break
        out.append((path, duration))
        total += duration
    return out


def run_tree(tree: Path, files: list[tuple[str, str]], staged: bool, tmp: Path, label: str) -> tuple[dict, dict]:
    listing, out = tmp / f"{label}.json", tmp / f"{label}.npz"
    listing.write_text(json.dumps(files))
    args = [sys.executable, "-c", CHILD, str(listing), str(out), "1" if staged else "0", json.dumps(STAGES)]
    env = {**os.environ, "PYTHONPATH": str(tree), "OMP_NUM_THREADS": "1", "MKL_NUM_THREADS": "1"}
    proc = subprocess.run(args, cwd=tree, env=env, capture_output=True, text=True)
    if proc.returncode:
        sys.exit(f"the {label} analysis failed:\n{proc.stderr[-3000:]}")
    return json.loads(proc.stdout.strip().splitlines()[-1]), dict(np.load(out))


def reference_tree(commit: str, tmp: Path) -> Path:
    """The reference commit's files, extracted from this repository (weights included)."""
    tree = tmp / f"ref-{commit}"
    tree.mkdir()
    archive = subprocess.run(["git", "-C", str(REPO), "archive", commit], capture_output=True, check=True).stdout
    subprocess.run(["tar", "-x", "-C", str(tree)], input=archive, check=True)
    return tree


def bits_differing(a: np.ndarray, b: np.ndarray) -> tuple[int, int]:
    n = min(len(a), len(b))
    x = np.unpackbits(np.ascontiguousarray(a[:n]).view(np.uint8) ^ np.ascontiguousarray(b[:n]).view(np.uint8))
    return int(x.sum()), int(x.size)


def boundary_hits(ref: np.ndarray, new: np.ndarray, window_s: float) -> tuple[int, int]:
    """Boundaries of ``ref`` with one of ``new`` within ``window_s``, and the number of ``ref``'s boundaries."""
    if len(ref) == 0:
        return 0, 0
    if len(new) == 0:
        return 0, len(ref)
    return int((np.abs(ref[:, None] - new[None, :]).min(axis=1) <= window_s).sum()), len(ref)


def compare(files: list[tuple[str, str]], ref: dict, new: dict, label: str) -> None:
    """One line per figure: how far this tree's results are from ``ref``'s, by modality."""
    for modality in ("audio", "midi"):
        idx = [i for i, (_, m) in enumerate(files[1:]) if m == modality]
        frame = np.sum([bits_differing(ref[f"{i}_frame_codes"], new[f"{i}_frame_codes"]) for i in idx], axis=0)
        track = np.sum([bits_differing(ref[f"{i}_track_code"], new[f"{i}_track_code"]) for i in idx], axis=0)
        cosine = [float(ref[f"{i}_cover"] @ new[f"{i}_cover"]) for i in idx]
        seq = [float(np.abs(ref[f"{i}_sequence"] - new[f"{i}_sequence"]).max()) if
               ref[f"{i}_sequence"].shape == new[f"{i}_sequence"].shape else 1.0 for i in idx]
        hits = np.sum([boundary_hits(ref[f"{i}_bounds"], new[f"{i}_bounds"], 0.5) for i in idx], axis=0)
        report(f"{modality}: frame-code bits differing from {label}", frame[0] / max(1, frame[1]), "",
               f"{frame[0]} of {frame[1]}")
        report(f"{modality}: track-code bits differing from {label}", track[0] / max(1, track[1]), "",
               f"{track[0]} of {track[1]}")
        report(f"{modality}: version embedding cosine to {label}, lowest", min(cosine), "",
               f"mean {np.mean(cosine):.5f}")
        report(f"{modality}: version sequence largest difference from {label}", max(seq), "",
               f"{sum(s > 1e-2 for s in seq)} of {len(seq)} tracks over 0.01")
        report(f"{modality}: segment boundaries of {label} found within 0.5 s", hits[0] / max(1, hits[1]), "",
               f"{hits[0]} of {hits[1]}")


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--minutes", type=float, default=60.0, help="media of each modality (minutes)")
    parser.add_argument("--reference", default="cb4468a", help="commit whose analysis is the reference")
    parser.add_argument("--compare-to", default=None, help="also compare results with this tree (a path)")
    args = parser.parse_args()
    audio, midi = audio_files(args.minutes * 60), midi_files(args.minutes * 60)
    hours = {"audio": sum(d for _, d in audio[1:]) / 3600, "midi": sum(d for _, d in midi[1:]) / 3600}
    # the first file of the list is the warm-up (model loading, first calls): not timed
    files = [(audio[0][0], "audio")] + [(p, "audio") for p, _ in audio[1:]] + [(p, "midi") for p, _ in midi[1:]]
    report("media analysed", hours["audio"] + hours["midi"], "h",
           f"{hours['audio']:.2f} h of audio in {len(audio) - 1} files, {hours['midi']:.2f} h of MIDI in "
           f"{len(midi) - 1} files")
    with tempfile.TemporaryDirectory() as tmp:
        tmp = Path(tmp)
        ref_tree = reference_tree(args.reference, tmp)
        new, new_results = run_tree(REPO, files, True, tmp, "new")
        ref, ref_results = run_tree(ref_tree, files, False, tmp, "reference")
        total_hours = hours["audio"] + hours["midi"]
        for stage, seconds in sorted(new["stages"].items(), key=lambda kv: -kv[1]):
            report(f"stage {stage}", seconds / total_hours, "s per media hour")
        staged = sum(new["stages"].values())
        new_total = sum(new["totals"].values())
        report("stage other (bookkeeping, beat-synchronous pooling, ...)", (new_total - staged) / total_hours,
               "s per media hour")
        for modality in ("audio", "midi"):
            report(f"{modality}: seconds per {modality} hour, this tree / reference",
                   new["totals"][modality] / ref["totals"][modality], "",
                   f"{new['totals'][modality] / hours[modality]:.1f} vs "
                   f"{ref['totals'][modality] / hours[modality]:.1f} s per hour")
        ref_total = sum(ref["totals"].values())
        report(f"total: speed-up per core over {args.reference}", ref_total / new_total, "x",
               f"{new_total / total_hours:.1f} vs {ref_total / total_hours:.1f} CPU s per media hour")
        compare(files, ref_results, new_results, args.reference)
        if args.compare_to:
            other, other_results = run_tree(Path(args.compare_to), files, False, tmp, "other")
            report(f"total: speed-up per core over {args.compare_to}",
                   sum(other["totals"].values()) / new_total, "x")
            compare(files, other_results, new_results, args.compare_to)


if __name__ == "__main__":
    main()
