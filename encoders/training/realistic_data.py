"""Training pairs closer to real recordings (issue 16): the audio side rendered with ``corrupt.realistic_rendering``
over real recordings, the MIDI side an imperfect MIDI file.

For each training piece (the Debian MIDI collections' and a share of the Bach chorales' training split, never a
validation or held-out piece):

* the audio side: ``realistic_rendering`` in the training soundfont (TimGM6mb): tempo warp, crop, programs,
  dropped parts, drums or an octave doubling the MIDI lacks, detuning, a generated room, EQ, compression, a real
  recording of the ``FIT_PACKAGES`` mixed under it at 3-20 dB (only the recordings ``fit_recording_role`` gives
  to training; the others are the validation excerpts' background and distractors), noise, a low-bitrate codec;
* the MIDI side: ``midi_side_corruption`` (its own tempo change, a part dropped, programs changed) then
  ``midi_side_extras`` (a drum track, an octave doubling), rendered as the pipeline renders MIDI (FluidR3).

Both corruptions keep exact time maps, so every audio frame gets the MIDI-side frame it plays. Rendered once and
cached under ``cache_dir``.
"""

from __future__ import annotations

import pickle
from multiprocessing import get_context
from pathlib import Path

import numpy as np
import pretty_midi

from encoders.features import FRAME_RATE, log_cqt
from encoders.media import SAMPLE_RATE, decode_audio
from encoders.render import render_midi
from encoders.training.cache import read_cache
from encoders.training.codes_data import TRAIN_SOUNDFONT, TRAINING_COLLECTIONS, AlignedPair, demo_pieces
from encoders.training.corpus import debian_midi_files, usable_pieces
from encoders.training.corrupt import (
    audio_to_midi_time,
    midi_side_corruption,
    midi_side_extras,
    midi_time,
    realistic_rendering,
)
from encoders.training.music21_midi import midi_from_spec, music21_sources
from encoders.training.real_music import fit_recording_role, real_recordings
from encoders.training.splits import in_hash_split, is_hash_validation

DATA_VERSION = 1
MAX_BACKGROUND_S = 240.0  # seconds of a real recording decoded for one mix


def _pair(job: tuple) -> list[AlignedPair]:
    name, source, backgrounds, versions, seed = job
    pm = source if isinstance(source, pretty_midi.PrettyMIDI) else midi_from_spec(name, source)
    if pm is None:
        return []
    rng = np.random.default_rng(seed)
    pairs = []
    for _ in range(versions):
        midi, mc = midi_side_corruption(pm, rng)
        midi_cqt = log_cqt(render_midi(midi_side_extras(midi, rng)))[0]
        path = backgrounds[int(rng.integers(len(backgrounds)))]
        background = decode_audio(Path(path).read_bytes())[: int(MAX_BACKGROUND_S * SAMPLE_RATE)]
        y, ac = realistic_rendering(pm, TRAIN_SOUNDFONT, rng, background)
        audio_cqt = log_cqt(y)[0]
        original = audio_to_midi_time(ac, np.arange(len(audio_cqt)) / FRAME_RATE)
        frames = np.round(midi_time(mc, original) * FRAME_RATE).astype(np.int64)
        pairs.append(AlignedPair(name, midi_cqt, audio_cqt, np.clip(frames, 0, len(midi_cqt) - 1)))
    return pairs


def realistic_pairs(n_bach: int = 70, debian_versions: int = 2, max_duration_s: float = 60.0, seed: int = 0,
                    cache_dir: str | Path = ".cache/enc2-train", workers: int = 2,
                    progress: bool = True) -> list[AlignedPair]:
    """Aligned (imperfect MIDI, realistic rendering) pairs: every Debian training piece (``debian_versions``
    renderings each) and the first ``n_bach`` Bach chorales of the training split (one each), first
    ``max_duration_s`` seconds; cached."""
    key = f"realistic-bach{n_bach}-v{debian_versions}-{int(max_duration_s)}s-seed{seed}-d{DATA_VERSION}"
    cache = Path(cache_dir) / f"{key}.pkl"
    cached = read_cache(cache)
    if cached is not None:
        return cached
    backgrounds = sorted(str(p) for files in real_recordings("fit").values() for p in files
                         if fit_recording_role(p) == "train")
    held = demo_pieces()
    debian = [(n, pm) for n, pm in usable_pieces(debian_midi_files(TRAINING_COLLECTIONS), 20.0, max_duration_s)
              if in_hash_split(n, "train", held)]
    bach = [(n, s) for n, s in music21_sources(("bach",), 0, seed)
            if in_hash_split(n, "train", set()) and not is_hash_validation(n)][:n_bach]
    jobs = [(n, src, backgrounds, debian_versions if i < len(debian) else 1, seed * 100_003 + 70_000 + i)
            for i, (n, src) in enumerate(debian + bach)]
    pairs: list[AlignedPair] = []
    with get_context("spawn").Pool(workers) as pool:  # forked workers hung (locks held in the parent)
        for i, result in enumerate(pool.imap(_pair, jobs)):
            pairs += result
            if progress and (i + 1) % 20 == 0:
                print(f"  rendered {i + 1}/{len(jobs)} realistic training pieces", flush=True)
    cache.parent.mkdir(parents=True, exist_ok=True)
    cache.write_bytes(pickle.dumps(pairs))
    return pairs
