"""Development corpora built from MIDI collections installed by Debian packages.

The demo corpus pairs MIDI files (rendered later, by the pipeline, with the MIDI-side soundfont) with
"audio": corrupted renderings of some of them made with other soundfonts, plus audio-only distractors
rendered from MIDI files that are not in the MIDI set. ``truth.json`` keeps the true pairs and their
exact time maps.
"""

from __future__ import annotations

import json
import os
import shutil
from collections.abc import Iterator
from pathlib import Path

import numpy as np
import pretty_midi
import soundfile as sf

from encoders.media import SAMPLE_RATE
from encoders.soundfonts import MIDI_SIDE_SOUNDFONT, available_soundfonts
from encoders.training.corrupt import audio_to_midi_time, corrupted_rendering, crop_midi

#: Debian packages shipping multi-instrument MIDI files (all of them named in DEVELOPERS.md).
DEBIAN_MIDI_DIRS = {
    "simutrans": "/usr/share/games/simutrans/music",
    "openttd": "/usr/share/games/openttd/baseset/openmsx",
    "freedink": "/usr/share/games/dink/dink/Sound",
    "mma": "/usr/share/doc/mma/examples",
}
#: The demo and calibration corpora use the game soundtracks: the MMA examples share accompaniment
#: patterns from MMA's groove library, which makes them near-duplicates kept for harder evaluations.
DEMO_COLLECTIONS = ("simutrans", "openttd", "freedink")
AUDIO_FORMATS = ("wav", "flac", "ogg", "mp3")
TRUTH_FILE = "truth.json"
CORPUS_VERSION = 5  # bump when the way corpora are made changes, to rebuild cached ones


def debian_midi_files(collections: tuple[str, ...] = tuple(DEBIAN_MIDI_DIRS)) -> list[tuple[str, Path]]:
    """(collection, path) of every installed MIDI file of ``collections``, in a stable order."""
    found = []
    for name in collections:
        root = Path(DEBIAN_MIDI_DIRS[name])
        found += [(name, p) for p in sorted(root.rglob("*")) if p.suffix.lower() in (".mid", ".midi")]
    if not found:
        raise FileNotFoundError(
            "no MIDI collections installed; run `make setup` (it installs simutrans-data, openttd-openmsx, "
            "freedink-data and mma)"
        )
    return found


def piece_name(collection: str, path: Path) -> str:
    """A piece's name in corpora: its collection and file stem."""
    return f"{collection}_{path.stem}".replace(" ", "_")


def usable_pieces(files: list[tuple[str, Path]], min_duration_s: float, max_duration_s: float,
                  ) -> Iterator[tuple[str, pretty_midi.PrettyMIDI]]:
    """Yield (name, MIDI cropped to max_duration_s) for files that parse and last at least min_duration_s."""
    seen_names = set()
    for collection, path in files:
        try:
            pm = pretty_midi.PrettyMIDI(str(path))
        except Exception:
            continue
        pitched = [n for inst in pm.instruments if not inst.is_drum for n in inst.notes]
        if len(pitched) < 50 or pm.get_end_time() < min_duration_s:
            continue
        name = piece_name(collection, path)
        if name in seen_names:
            continue
        seen_names.add(name)
        yield name, crop_midi(pm, 0.0, max_duration_s)


#: Frames per write: libsndfile's Vorbis encoder crashes (SIGSEGV) when given minutes of audio in one call.
WRITE_BLOCK = 1 << 16


def write_audio(path: Path, y: np.ndarray, sr: int = SAMPLE_RATE) -> None:
    """Write mono float audio block by block; the format follows the extension (wav, flac, ogg/vorbis, mp3)."""
    with sf.SoundFile(str(path), "w", sr, 1) as f:
        for start in range(0, len(y), WRITE_BLOCK):
            f.write(y[start:start + WRITE_BLOCK])


def build_demo_corpus(out_dir: str | os.PathLike, *, n_midi: int = 24, n_matched: int = 16,
                      n_distractors: int = 8, max_duration_s: float = 60.0, min_duration_s: float = 25.0,
                      seed: int = 0, collections: tuple[str, ...] = DEMO_COLLECTIONS,
                      exclude: tuple[str, ...] = (), progress: bool = True) -> dict:
    """Build (or reuse, when complete) a demo corpus under ``out_dir``; returns the truth manifest.

    ``exclude`` names pieces (``collection_stem``) to leave out, e.g. those of another corpus, so that
    corpora used for calibration and for evaluation are split by piece.
    """
    out = Path(out_dir)
    truth_path = out / TRUTH_FILE
    params = dict(n_midi=n_midi, n_matched=n_matched, n_distractors=n_distractors,
                  max_duration_s=max_duration_s, min_duration_s=min_duration_s, seed=seed,
                  collections=list(collections), exclude=sorted(exclude), version=CORPUS_VERSION)
    if truth_path.exists():
        truth = json.loads(truth_path.read_text())
        if truth.get("params") == params:
            return truth
    if n_matched > n_midi:
        raise ValueError("n_matched cannot exceed n_midi")
    audio_fonts = [f for f in available_soundfonts() if f != MIDI_SIDE_SOUNDFONT]
    if not audio_fonts:
        raise FileNotFoundError("no second soundfont for the audio side; run `make setup`")
    rng = np.random.default_rng(seed)
    files = debian_midi_files(collections)
    files = [files[i] for i in rng.permutation(len(files))]
    for sub in ("midi", "audio"):
        shutil.rmtree(out / sub, ignore_errors=True)
        (out / sub).mkdir(parents=True)
    files = [(c, p) for c, p in files if piece_name(c, p) not in exclude]
    pieces = usable_pieces(files, min_duration_s, max_duration_s)
    pairs, distractors, used = [], [], []
    total = n_midi + n_distractors
    for i in range(total):
        try:
            name, pm = next(pieces)
            used.append(name)
        except StopIteration:
            raise RuntimeError(f"only {i} usable MIDI files found, {total} needed") from None
        if progress:
            print(f"  demo corpus [{i + 1}/{total}] {name}", flush=True)
        font = audio_fonts[i % len(audio_fonts)]
        fmt = AUDIO_FORMATS[i % len(AUDIO_FORMATS)]
        if i < n_midi:
            midi_path = out / "midi" / f"{name}.mid"
            pm.write(str(midi_path))
            if i >= n_matched:
                continue
            y, c = corrupted_rendering(pm, font, rng)
            audio_path = out / "audio" / f"{name}.{font}.{fmt}"
            write_audio(audio_path, y)
            times = np.arange(0.0, len(y) / SAMPLE_RATE, 0.5)
            pairs.append({"midi": str(midi_path), "audio": str(audio_path), "soundfont": font,
                          "audio_times_s": times.round(3).tolist(),
                          "midi_times_s": audio_to_midi_time(c, times).round(4).tolist()})
        else:
            y, _ = corrupted_rendering(pm, font, rng)
            audio_path = out / "audio" / f"distractor_{name}.{font}.{fmt}"
            write_audio(audio_path, y)
            distractors.append(str(audio_path))
    truth = {"params": params, "pairs": pairs, "distractors": distractors, "pieces": used,
             "midi": sorted(str(p) for p in (out / "midi").glob("*.mid")),
             "audio": sorted(str(p) for p in (out / "audio").iterdir())}
    truth_path.write_text(json.dumps(truth, indent=1))
    return truth
