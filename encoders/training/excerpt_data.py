"""Evaluation data for 30-second previews against imperfect MIDI (Raffel's setting), with real recordings.

Each piece of a split becomes one *case*:

* the query: the piece's MIDI file corrupted on the MIDI side (tempo changed and warped, one pitched part
  dropped, programs changed), rendered as the pipeline renders MIDI (FluidR3);
* its "recording": the piece corrupted Raffel-style (``corrupt.corrupted_rendering``: its own tempo warp,
  programs, reverb, noise) and rendered with MuseScore General (a soundfont no encoder trained on), mixed over
  a real recording at ``MIX_DB`` below it;
* a 30-second excerpt of that recording, cut from the audio (not from its CQT).

Unrelated audio: every real recording of the split's packages, whole, and cut into consecutive 30-second
excerpts. Splits never share a piece or a package: ``val`` has the music21 validation pieces with the
``FIT_PACKAGES`` recordings that training does not mix under its renderings (``real_music.fit_recording_role``;
settings are chosen on it), ``heldout`` the held-out Debian pieces (and the demo corpus's) with the
``EVAL_PACKAGES`` recordings. Everything is cached under ``cache_dir``.
"""

from __future__ import annotations

import itertools
import pickle
from dataclasses import dataclass
from multiprocessing import Pool
from pathlib import Path

import numpy as np
import pretty_midi

from encoders.features import log_cqt
from encoders.media import SAMPLE_RATE, decode_audio
from encoders.render import render_midi
from encoders.training.cache import read_cache
from encoders.training.codes_data import HELDOUT_SOUNDFONT, N_ESSEN, TRAINING_COLLECTIONS
from encoders.training.corpus import DEMO_COLLECTIONS, debian_midi_files, usable_pieces
from encoders.training.corrupt import corrupted_rendering, midi_side_corruption
from encoders.training.music21_midi import midi_from_spec, music21_sources
from encoders.training.real_music import fit_recording_role, real_recordings
from encoders.training.splits import MUSIC21_SOURCES, in_hash_split

DATA_VERSION = 1
EXCERPT_S = 30.0
MIX_DB = (3.0, 20.0)  # the rendering this many dB above the real recording under it
MAX_PIECE_S = 180.0
MIN_PIECE_S = 35.0
MAX_REAL_S = 600.0  # real recordings are cut here (a few are long ambient loops)


@dataclass
class ExcerptCase:
    """One piece: its corrupted MIDI's CQT (the query), its mixed recording's CQT and its excerpt's CQT."""

    name: str
    midi_cqt: np.ndarray  # (n, 48) float32
    audio_cqt: np.ndarray  # (m, 48) float32, the whole recording
    excerpt_cqt: np.ndarray  # (~646, 48) float32, 30 s of the recording
    excerpt_start_s: float
    background: str
    mix_db: float


@dataclass
class RealAudio:
    """A real recording (unrelated to every query): its CQT whole, and its 30-second excerpts' CQTs."""

    name: str
    cqt: np.ndarray
    excerpts: list[np.ndarray]


def demo_piece_names() -> set[str]:
    """The pieces the demo corpus draws (``corpus.build_demo_corpus`` with its defaults), without building it:
    they are always held out."""
    rng = np.random.default_rng(0)
    files = debian_midi_files(DEMO_COLLECTIONS)
    files = [files[i] for i in rng.permutation(len(files))]
    return {name for name, _ in itertools.islice(usable_pieces(files, 25.0, 60.0), 32)}


def query_corruption(pm: pretty_midi.PrettyMIDI, rng: np.random.Generator) -> pretty_midi.PrettyMIDI:
    """The imperfect MIDI file (``corrupt.midi_side_corruption``): tempo changed (+-20%) and warped, one pitched
    part dropped (when there are at least two), each remaining part's program changed with probability 0.3."""
    return midi_side_corruption(pm, rng)[0]


def mix_over(y: np.ndarray, background: np.ndarray, snr_db: float) -> np.ndarray:
    """``y`` with ``background`` (looped or cut to length) ``snr_db`` below it, peak-normalised to 0.9."""
    bg = np.resize(background, len(y))
    gain = np.sqrt(np.mean(y ** 2) / (np.mean(bg ** 2) + 1e-12)) * 10 ** (-snr_db / 20)
    mixed = y + gain * bg
    return (0.9 * mixed / (np.max(np.abs(mixed)) + 1e-9)).astype(np.float32)


def _case(job: tuple) -> ExcerptCase | None:
    name, source, background_path, seed = job
    pm = source if isinstance(source, pretty_midi.PrettyMIDI) else midi_from_spec(name, source)
    if pm is None or pm.get_end_time() < MIN_PIECE_S:
        return None
    rng = np.random.default_rng(seed)
    midi_cqt = log_cqt(render_midi(query_corruption(pm, rng)))[0]
    y, _ = corrupted_rendering(pm, HELDOUT_SOUNDFONT, rng, crop=False)
    snr = float(rng.uniform(*MIX_DB))
    background = decode_audio(Path(background_path).read_bytes())[: int(MAX_REAL_S * SAMPLE_RATE)]
    start = int(rng.integers(0, max(1, len(background) - len(y))))
    y = mix_over(y, background[start:], snr)
    n = int(EXCERPT_S * SAMPLE_RATE)
    at = int(rng.integers(0, max(1, len(y) - n)))
    return ExcerptCase(name, midi_cqt, log_cqt(y)[0], log_cqt(y[at:at + n])[0], at / SAMPLE_RATE,
                       Path(background_path).name, snr)


def _real(path: str) -> RealAudio:
    y = decode_audio(Path(path).read_bytes())[: int(MAX_REAL_S * SAMPLE_RATE)]
    n = int(EXCERPT_S * SAMPLE_RATE)
    excerpts = [log_cqt(y[s:s + n])[0] for s in range(0, max(1, len(y) - n + 1), n)]
    return RealAudio(f"{Path(path).parent.name}/{Path(path).name}", log_cqt(y)[0], excerpts)


def _sources(split: str, seed: int) -> list[tuple[str, object]]:
    if split == "val":
        return [(name, spec) for name, spec in music21_sources(MUSIC21_SOURCES, N_ESSEN, seed)
                if in_hash_split(name, "val", set())]
    extra = demo_piece_names()
    return [(name, pm) for name, pm in usable_pieces(debian_midi_files(TRAINING_COLLECTIONS), MIN_PIECE_S,
                                                     MAX_PIECE_S) if in_hash_split(name, "heldout", extra)]


def excerpt_corpus(split: str, cache_dir: str | Path = ".cache/enc-excerpts", seed: int = 0, workers: int = 2,
                   progress: bool = True, max_pieces: int | None = None) -> tuple[list[ExcerptCase], list[RealAudio]]:
    """(cases, real recordings) of ``split`` ('val' or 'heldout'), built once and cached. ``max_pieces``: only
    the split's first pieces (a smaller corpus, cached under its own name)."""
    suffix = "" if max_pieces is None else f"-first{max_pieces}"
    cache = Path(cache_dir) / f"{split}-seed{seed}-d{DATA_VERSION}{suffix}.pkl"
    cached = read_cache(cache)
    if cached is not None:
        return cached
    packages = real_recordings("fit" if split == "val" else "eval")
    real_paths = sorted(str(p) for files in packages.values() for p in files
                        if split != "val" or fit_recording_role(p) == "val")
    rng = np.random.default_rng([seed, 7])
    sources = _sources(split, seed)[:max_pieces]
    jobs = [(name, source, real_paths[int(rng.integers(len(real_paths)))], seed * 100_003 + 90_000 + i)
            for i, (name, source) in enumerate(sources)]
    cases: list[ExcerptCase] = []
    real: list[RealAudio] = []
    with Pool(workers) as pool:
        for i, case in enumerate(pool.imap(_case, jobs)):
            if case is not None:
                cases.append(case)
            if progress and (i + 1) % 10 == 0:
                print(f"  {split}: rendered {i + 1}/{len(jobs)} pieces", flush=True)
        for i, item in enumerate(pool.imap(_real, real_paths)):
            real.append(item)
            if progress and (i + 1) % 10 == 0:
                print(f"  {split}: analysed {i + 1}/{len(real_paths)} real recordings", flush=True)
    cache.parent.mkdir(parents=True, exist_ok=True)
    cache.write_bytes(pickle.dumps((cases, real)))
    return cases, real
