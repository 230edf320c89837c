"""Collections of files for fitting and evaluating the pipeline's yes/no decisions (``is_match``, clusters).

Each collection is a folder of MIDI files and recordings that ``mirmatch run`` takes as it is, with a
``truth.json`` naming the true (MIDI, audio) pairs and the version families. Two splits, never sharing a
piece, a family or a package of recordings:

* ``fit``: Debian MIDI pieces of the hash encoders' training split, validation chorale and Essen families,
  real recordings of ``real_music.FIT_PACKAGES``;
* ``eval``: held-out Debian MIDI pieces, held-out families, real recordings of ``real_music.EVAL_PACKAGES``.

What is in a collection (every "recording" of a MIDI file is a corrupted rendering in a soundfont other than
the MIDI side's, half of them mixed over a real recording of the split, 6 to 15 dB below):

* matches, whole: a MIDI file and its whole recording;
* matches, excerpts: a MIDI file and a 30-second excerpt of its recording (another MIDI file than the whole
  ones, so every MIDI file has one true recording);
* short pieces: a MIDI file of 20 s and its whole recording (a short piece matched whole is a match);
* real recordings, whole, and "jingles" (5-second excerpts of them) and 30-second excerpts: unrelated audio;
* version families: each version of a chorale melody or an Essen tune, as a MIDI file or a recording in its
  own key, tempo and instrument (no true MIDI-audio match between different versions).
"""

from __future__ import annotations

import json
import os
import shutil
from pathlib import Path

import numpy as np
import pretty_midi

from encoders.media import SAMPLE_RATE, decode_audio
from encoders.render import render_midi
from encoders.training.corpus import DEMO_COLLECTIONS, debian_midi_files, piece_name, usable_pieces, write_audio
from encoders.training.corrupt import audio_to_midi_time, corrupted_rendering, crop_midi
from encoders.training.real_music import real_recordings
from encoders.training.splits import hash_piece_split, version_family_split

DATA_VERSION = 1
AUDIO_FONTS = ("musescore", "timgm6mb")
EXCERPT_S = 30.0
JINGLE_S = 5.0
SHORT_PIECE_S = 20.0
MAX_PIECE_S = 150.0
MIX_DB = (6.0, 15.0)
VERSION_PROGRAMS = (0, 1, 19, 24, 40, 48, 52, 71, 73)


def _mix_over(y: np.ndarray, background: np.ndarray, rng: np.random.Generator) -> np.ndarray:
    """``y`` with a real recording under it, ``MIX_DB`` below it (the background looped or cut to length)."""
    bg = np.resize(background, len(y))
    gain = np.sqrt(np.mean(y ** 2) / (np.mean(bg ** 2) + 1e-12)) * 10 ** (-rng.uniform(*MIX_DB) / 20)
    mixed = y + gain * bg
    return (0.9 * mixed / (np.max(np.abs(mixed)) + 1e-9)).astype(np.float32)


def _excerpt(y: np.ndarray, seconds: float, rng: np.random.Generator) -> tuple[np.ndarray, float]:
    n = int(seconds * SAMPLE_RATE)
    start = int(rng.integers(0, max(1, len(y) - n)))
    return y[start:start + n], start / SAMPLE_RATE


def _pieces(split: str, rng: np.random.Generator):
    want = "train" if split == "fit" else "heldout"
    files = debian_midi_files(DEMO_COLLECTIONS)
    files = [files[i] for i in rng.permutation(len(files))]
    return usable_pieces([(c, p) for c, p in files if hash_piece_split(piece_name(c, p)) == want], 40.0, MAX_PIECE_S)


def _version_tunes(split: str, n_families: int, rng: np.random.Generator) -> list:
    """Tunes of ``n_families`` chorale and ``n_families`` Essen families of the split ('val' or 'heldout')."""
    from encoders.training.versions_data import bach_tunes, essen_tunes

    family_split = "val" if split == "fit" else "heldout"
    chosen = []
    for tunes in (bach_tunes(), essen_tunes()):
        by_family: dict[str, list] = {}
        for t in tunes:
            if version_family_split(t.family) == family_split:
                by_family.setdefault(t.family, []).append(t)
        families = sorted(f for f, ts in by_family.items() if len(ts) >= 2)
        for i in sorted(rng.permutation(len(families))[:n_families]):
            chosen += by_family[families[i]][:4]
    return chosen


def _version_midi(notes: list[tuple[float, float, int, int]], program: int) -> pretty_midi.PrettyMIDI:
    pm = pretty_midi.PrettyMIDI()
    inst = pretty_midi.Instrument(program=program)
    inst.notes = [pretty_midi.Note(v, p, s, e) for s, e, p, v in notes]
    pm.instruments.append(inst)
    return pm


def build_decision_collection(out_dir: str | os.PathLike, split: str, *, n_whole: int = 10, n_excerpts: int = 10,
                              n_short: int = 4, n_jingles: int = 20, n_real_excerpts: int = 20,
                              n_families: int = 8, seed: int = 0, progress: bool = True) -> dict:
    """Build (or reuse) the ``split`` ('fit' or 'eval') collection under ``out_dir``; returns its truth."""
    from encoders.training.versions_data import arrange_tune

    out = Path(out_dir)
    params = dict(split=split, n_whole=n_whole, n_excerpts=n_excerpts, n_short=n_short, n_jingles=n_jingles,
                  n_real_excerpts=n_real_excerpts, n_families=n_families, seed=seed, version=DATA_VERSION)
    truth_path = out / "truth.json"
    if truth_path.exists() and json.loads(truth_path.read_text()).get("params") == params:
        return json.loads(truth_path.read_text())
    rng = np.random.default_rng([seed, 0 if split == "fit" else 1])
    for sub in ("midi", "audio"):  # files of an earlier, different build would be unlabelled pairs
        shutil.rmtree(out / sub, ignore_errors=True)
        (out / sub).mkdir(parents=True)
    real = [p for files in real_recordings(split).values() for p in files]
    backgrounds = [real[i] for i in rng.permutation(len(real))[:8]]
    background_audio = [decode_audio(p.read_bytes())[: 120 * SAMPLE_RATE] for p in backgrounds]
    pairs, kinds = [], {}

    def say(text: str) -> None:
        if progress:
            print(f"  {split} collection: {text}", flush=True)

    pieces = _pieces(split, rng)
    for i in range(n_whole + n_excerpts + n_short):
        name, pm = next(pieces)
        kind = "whole" if i < n_whole else "excerpt" if i < n_whole + n_excerpts else "short"
        if kind == "short":
            pm = crop_midi(pm, 0.0, SHORT_PIECE_S)
        midi_path = out / "midi" / f"{name}.mid"
        pm.write(str(midi_path))
        y, c = corrupted_rendering(pm, AUDIO_FONTS[i % 2], rng, crop=kind != "short")
        if i % 2:
            y = _mix_over(y, background_audio[i % len(background_audio)], rng)
        offset = 0.0
        if kind == "excerpt":
            y, offset = _excerpt(y, EXCERPT_S, rng)
        audio_path = out / "audio" / f"{name}.{kind}.ogg"
        write_audio(audio_path, y)
        times = np.arange(0.0, len(y) / SAMPLE_RATE, 0.5)
        pairs.append({"midi": str(midi_path), "audio": str(audio_path), "kind": kind, "mixed": bool(i % 2),
                      "audio_times_s": times.round(3).tolist(),
                      "midi_times_s": audio_to_midi_time(c, times + offset).round(4).tolist()})
        kinds[str(audio_path)] = f"match_{kind}"
        kinds[str(midi_path)] = "midi"
        say(f"{name} ({kind})")
    distractors = []
    for path in real:
        target = out / "audio" / f"real_{path.parent.name}_{path.name}"
        if not target.exists():
            target.symlink_to(path.resolve())
        distractors.append(str(target))
        kinds[str(target)] = "real"
    for k in range(n_jingles + n_real_excerpts):
        seconds, label = (JINGLE_S, "jingle") if k < n_jingles else (EXCERPT_S, "real_excerpt")
        source = real[int(rng.integers(len(real)))]
        y, _ = _excerpt(decode_audio(source.read_bytes()), seconds, rng)
        target = out / "audio" / f"{label}_{k:02d}_{source.stem}.ogg"
        write_audio(target, y)
        distractors.append(str(target))
        kinds[str(target)] = label
    say(f"{len(distractors)} real distractors")
    families: dict[str, list[str]] = {}
    for j, tune in enumerate(_version_tunes(split, n_families, rng)):
        shift = int(rng.integers(-5, 6))
        arranged = arrange_tune(tune, shift, float(rng.uniform(70, 130)), None, rng)
        program = int(rng.choice(VERSION_PROGRAMS))
        pm = _version_midi(arranged.notes, program)
        stem = f"version_{tune.source}_{j:03d}"
        if j % 2:
            path = out / "midi" / f"{stem}.mid"
            pm.write(str(path))
            kinds[str(path)] = f"version_{tune.source}"
        else:
            path = out / "audio" / f"{stem}.ogg"
            write_audio(path, render_midi(pm, AUDIO_FONTS[j % 4 // 2]))
            kinds[str(path)] = f"version_{tune.source}"
        families.setdefault(f"{tune.source}:{tune.family}", []).append(str(path))
    say(f"{sum(len(v) for v in families.values())} versions in {len(families)} families")
    truth = {"params": params, "pairs": pairs, "distractors": distractors, "families": families, "kinds": kinds,
             "midi": sorted(str(p) for p in (out / "midi").glob("*.mid")),
             "audio": sorted(str(p) for p in (out / "audio").iterdir())}
    truth_path.write_text(json.dumps(truth, indent=1))
    return truth
