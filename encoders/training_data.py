"""Training and evaluation data for the learned hash encoders: aligned CQT of MIDI and "audio".

Each piece of the Debian MIDI collections is rendered twice: the MIDI side as the pipeline renders it
(FluidR3), the audio side after Raffel-style corruptions with another soundfont (TimGM6mb for training,
MuseScore General for the held-out evaluation). The corruption's exact time map gives, for every audio
frame, the MIDI frame it plays. Pieces are split by a hash of their name, never by frame or clip.
"""

from __future__ import annotations

import hashlib
import pickle
from dataclasses import dataclass
from multiprocessing import Pool
from pathlib import Path

import numpy as np

from encoders.corpus import debian_midi_files, usable_pieces
from encoders.corrupt import audio_to_midi_time, corrupted_rendering
from encoders.features import FRAME_RATE, log_cqt
from encoders.render import render_midi
from encoders.soundfonts import MIDI_SIDE_SOUNDFONT

TRAIN_SOUNDFONT = "timgm6mb"
HELDOUT_SOUNDFONT = "musescore"
HELDOUT_SHARE = 5  # one piece in five is held out
TRAINING_COLLECTIONS = ("simutrans", "openttd", "freedink", "mma")
DATA_VERSION = 1


def piece_split(name: str) -> str:
    """'heldout' for one piece in HELDOUT_SHARE (by a hash of its name), else 'train'."""
    return "heldout" if hashlib.blake2b(name.encode(), digest_size=8).digest()[0] % HELDOUT_SHARE == 0 else "train"


@dataclass
class AlignedPair:
    """One piece's MIDI-side CQT and one corrupted audio rendering's CQT, with the frame map."""

    name: str
    midi_cqt: np.ndarray  # (n_midi, 48) float32
    audio_cqt: np.ndarray  # (n_audio, 48) float32
    midi_frame: np.ndarray  # (n_audio,) int64: the MIDI frame each audio frame plays, clipped


def _render_pair(job: tuple) -> list[AlignedPair]:
    name, pm, soundfont, versions, seed = job
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
    from encoders.corpus import build_demo_corpus

    return set(build_demo_corpus(".cache/demo-corpus", progress=False)["pieces"])


def in_split(name: str, split: str, held_out_extra: set[str]) -> bool:
    held = piece_split(name) == "heldout" or name in held_out_extra
    return held if split == "heldout" else not held


def aligned_pairs(split: str, soundfont: str, *, versions: int = 1, max_duration_s: float = 60.0,
                  cache_dir: str | Path = ".cache/hash-data", workers: int = 2, seed: int = 0,
                  collections: tuple[str, ...] = TRAINING_COLLECTIONS, progress: bool = True) -> list[AlignedPair]:
    """Aligned pairs for every usable piece of ``split`` (cached under ``cache_dir``).

    Held out: one piece in five by name hash, and every piece of the demo corpus.
    """
    key = f"{split}-{soundfont}-v{versions}-{int(max_duration_s)}s-seed{seed}-{'+'.join(collections)}-d{DATA_VERSION}"
    cache = Path(cache_dir) / f"{key}.pkl"
    if cache.exists():
        return pickle.loads(cache.read_bytes())
    extra = demo_pieces()
    pieces = [(name, pm) for name, pm in usable_pieces(debian_midi_files(collections), 20.0, max_duration_s)
              if in_split(name, split, extra)]
    jobs = [(name, pm, soundfont, versions, seed * 100_003 + i) for i, (name, pm) in enumerate(pieces)]
    pairs: list[AlignedPair] = []
    with Pool(workers) as pool:
        for i, result in enumerate(pool.imap(_render_pair, jobs)):
            pairs += result
            if progress and (i + 1) % 10 == 0:
                print(f"  rendered {i + 1}/{len(jobs)} {split} pieces ({soundfont})", flush=True)
    cache.parent.mkdir(parents=True, exist_ok=True)
    cache.write_bytes(pickle.dumps(pairs))
    return pairs


__all__ = ["AlignedPair", "HELDOUT_SOUNDFONT", "MIDI_SIDE_SOUNDFONT", "TRAIN_SOUNDFONT", "aligned_pairs",
           "piece_split"]
