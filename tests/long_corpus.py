"""A corpus of long pieces for runner-equality tests: looped Debian MIDI files and long corrupted renderings.

Large elements (a 10-minute MIDI file's CQT is about 2.4 MB) and many bundles are what exposed silent
data loss on Beam's multi-process DirectRunner; the small demo corpus never did. Built once, cached.
"""

from __future__ import annotations

import copy
import json
from pathlib import Path

import numpy as np
import pretty_midi

from encoders.soundfonts import MIDI_SIDE_SOUNDFONT, available_soundfonts
from encoders.training.corpus import AUDIO_FORMATS, DEMO_COLLECTIONS, debian_midi_files, usable_pieces, write_audio
from encoders.training.corrupt import corrupted_rendering, crop_midi

LONG_CORPUS_VERSION = 1


def looped(pm: pretty_midi.PrettyMIDI, min_duration_s: float) -> pretty_midi.PrettyMIDI:
    """``pm`` played back to back until it lasts at least ``min_duration_s`` (as a looping game piece does)."""
    length = pm.get_end_time()
    out = copy.deepcopy(pm)
    repeats = int(np.ceil(min_duration_s / max(length, 1.0)))
    for inst, source in zip(out.instruments, pm.instruments, strict=True):
        inst.notes = [pretty_midi.Note(n.velocity, n.pitch, n.start + k * length, n.end + k * length)
                      for k in range(repeats) for n in source.notes]
        inst.control_changes, inst.pitch_bends = [], []
    return out


def build_long_corpus(out_dir: str | Path, *, n_midi: int = 12, n_matched: int = 6, n_short: int = 6,
                      midi_minutes: float = 10.0, seed: int = 0) -> dict:
    """Build (or reuse) the corpus under ``out_dir``; returns its manifest.

    ``n_midi`` MIDI files looped to ``midi_minutes``; ``n_matched`` of them also as a long corrupted rendering
    (another soundfont, tempo warps, crop, noise, reverb); ``n_short`` 30-second renderings of other pieces as
    distractors, so that every MIDI query has at least 10 audio candidates.
    """
    out = Path(out_dir).resolve()
    manifest_path = out / "truth.json"
    params = dict(n_midi=n_midi, n_matched=n_matched, n_short=n_short, midi_minutes=midi_minutes, seed=seed,
                  version=LONG_CORPUS_VERSION)
    if manifest_path.exists():
        truth = json.loads(manifest_path.read_text())
        if truth.get("params") == params:
            return truth
    rng = np.random.default_rng(seed)
    fonts = [f for f in available_soundfonts() if f != MIDI_SIDE_SOUNDFONT]
    files = debian_midi_files(DEMO_COLLECTIONS)
    pieces = usable_pieces([files[i] for i in rng.permutation(len(files))], 40.0, 240.0)
    for sub in ("midi", "audio"):
        (out / sub).mkdir(parents=True, exist_ok=True)
        for old in (out / sub).iterdir():
            old.unlink()
    pairs = []
    for i in range(n_midi + n_short):
        name, pm = next(pieces)
        font, fmt = fonts[i % len(fonts)], AUDIO_FORMATS[i % len(AUDIO_FORMATS)]
        if i < n_midi:
            pm = looped(pm, 60.0 * midi_minutes)
            midi_path = out / "midi" / f"{name}.mid"
            pm.write(str(midi_path))
            if i < n_matched:
                y, _ = corrupted_rendering(pm, font, rng)
                audio_path = out / "audio" / f"{name}.{font}.{fmt}"
                write_audio(audio_path, y)
                pairs.append({"midi": str(midi_path), "audio": str(audio_path)})
        else:
            y, _ = corrupted_rendering(crop_midi(pm, 0.0, 30.0), font, rng, crop=False)
            write_audio(out / "audio" / f"short_{name}.{font}.{fmt}", y)
    truth = {"params": params, "pairs": pairs, "midi": sorted(str(p) for p in (out / "midi").iterdir()),
             "audio": sorted(str(p) for p in (out / "audio").iterdir())}
    manifest_path.write_text(json.dumps(truth, indent=1))
    return truth
