"""Training and evaluation data for the learned hash encoders: aligned CQT of MIDI and "audio".

Each piece of the Debian MIDI collections and of music21's Bach chorales and Essen folksongs
(``encoders.training.music21_midi``) is rendered twice: the MIDI side as the pipeline renders it
(FluidR3), the audio side after Raffel-style corruptions with another soundfont (TimGM6mb for training,
MuseScore General for the held-out evaluation and the validation pieces). The corruption's exact time
map gives, for every audio frame, the MIDI frame it plays. Pieces are split by a hash of their name,
never by frame or clip (``encoders.training.splits``): one in five held out, another one in five of the
music21 pieces for validation.
"""

from __future__ import annotations

import pickle
from dataclasses import dataclass
from multiprocessing import Pool
from pathlib import Path

import numpy as np
import pretty_midi

from encoders.features import FRAME_RATE, log_cqt
from encoders.render import render_midi
from encoders.soundfonts import MIDI_SIDE_SOUNDFONT
from encoders.training.cache import read_cache
from encoders.training.corpus import build_demo_corpus, debian_midi_files, usable_pieces
from encoders.training.corrupt import audio_to_midi_time, corrupted_rendering
from encoders.training.music21_midi import midi_from_spec, music21_sources
from encoders.training.splits import MUSIC21_SOURCES, in_hash_split

TRAIN_SOUNDFONT = "timgm6mb"
HELDOUT_SOUNDFONT = "musescore"
TRAINING_COLLECTIONS = ("simutrans", "openttd", "freedink", "mma")
N_ESSEN = 200  # Essen tunes drawn (of about 8000); every Bach chorale is used
DATA_VERSION = 1


@dataclass
class AlignedPair:
    """One piece's MIDI-side CQT and one corrupted audio rendering's CQT, with the frame map."""

    name: str
    midi_cqt: np.ndarray  # (n_midi, 48) float32
    audio_cqt: np.ndarray  # (n_audio, 48) float32
    midi_frame: np.ndarray  # (n_audio,) int64: the MIDI frame each audio frame plays, clipped


def _render_pair(job: tuple) -> list[AlignedPair]:
    name, source, soundfont, versions, seed = job
    pm = source if isinstance(source, pretty_midi.PrettyMIDI) else midi_from_spec(name, source)
    if pm is None:
        return []
    rng = np.random.default_rng(seed)
    midi_cqt = log_cqt(render_midi(pm))[0]
    pairs = []
    for _ in range(versions):
        y, corruption = corrupted_rendering(pm, soundfont, rng)
        audio_cqt = log_cqt(y)[0]
        times = np.arange(len(audio_cqt)) / FRAME_RATE
        frames = np.round(audio_to_midi_time(corruption, times) * FRAME_RATE).astype(np.int64)
        pairs.append(AlignedPair(name, midi_cqt, audio_cqt, np.clip(frames, 0, len(midi_cqt) - 1)))
    return pairs


def demo_pieces() -> set[str]:
    """Pieces of the bundled demo corpus (built if needed): always held out, so the demo is a fair test."""
    return set(build_demo_corpus(".cache/demo-corpus", progress=False)["pieces"])


def aligned_pairs(split: str, soundfont: str, *, versions: int = 1, max_duration_s: float = 60.0,
                  cache_dir: str | Path = ".cache/hash-data", workers: int = 2, seed: int = 0,
                  collections: tuple[str, ...] = TRAINING_COLLECTIONS, progress: bool = True) -> list[AlignedPair]:
    """Aligned pairs for every usable piece of ``split`` (cached under ``cache_dir``).

    ``collections``: Debian MIDI collections (``encoders.training.corpus.DEBIAN_MIDI_DIRS``) and music21
    sources (``encoders.training.music21_midi.SOURCES``); each group is cached on its own. Held out: one
    piece in five by name hash, and every piece of the demo corpus.
    """
    debian = tuple(c for c in collections if c not in MUSIC21_SOURCES)
    music21 = tuple(c for c in collections if c in MUSIC21_SOURCES)
    pairs: list[AlignedPair] = []
    for group, offset in ((debian, 0), (music21, 50_000)):
        if not group:
            continue
        key = f"{split}-{soundfont}-v{versions}-{int(max_duration_s)}s-seed{seed}-{'+'.join(group)}-d{DATA_VERSION}"
        cache = Path(cache_dir) / f"{key}.pkl"
        rendered = read_cache(cache)
        if rendered is None:
            jobs = [(name, source, soundfont, versions, seed * 100_003 + offset + i)
                    for i, (name, source) in enumerate(_sources(split, group, max_duration_s, seed))]
            rendered = _render(jobs, workers, f"{split} {'+'.join(group)} ({soundfont})", progress)
            cache.parent.mkdir(parents=True, exist_ok=True)
            cache.write_bytes(pickle.dumps(rendered))
        pairs += rendered
    return pairs


def _sources(split: str, group: tuple[str, ...], max_duration_s: float, seed: int) -> list[tuple[str, object]]:
    """(name, PrettyMIDI or music21 spec) of the pieces of ``split`` in one group of collections."""
    if group[0] in MUSIC21_SOURCES:
        return [(name, spec) for name, spec in music21_sources(group, N_ESSEN, seed)
                if in_hash_split(name, split, set())]
    extra = demo_pieces()
    return [(name, pm) for name, pm in usable_pieces(debian_midi_files(group), 20.0, max_duration_s)
            if in_hash_split(name, split, extra)]


def _render(jobs: list[tuple], workers: int, what: str, progress: bool) -> list[AlignedPair]:
    pairs: list[AlignedPair] = []
    with Pool(workers) as pool:
        for i, result in enumerate(pool.imap(_render_pair, jobs)):
            pairs += result
            if progress and (i + 1) % 20 == 0:
                print(f"  rendered {i + 1}/{len(jobs)} {what} pieces", flush=True)
    return pairs


__all__ = ["AlignedPair", "HELDOUT_SOUNDFONT", "MIDI_SIDE_SOUNDFONT", "TRAIN_SOUNDFONT", "aligned_pairs"]
