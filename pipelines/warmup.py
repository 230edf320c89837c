"""Compile the numba kernels a run uses once, in the launching process, before worker processes start.

numba keeps compiled kernels in on-disk caches (``cache=True``, librosa's and ours). On a fresh install the
first multi-process run had every worker compile and write the same caches at once, and a worker then
crashed in librosa's beat tracker on a cache entry another process was writing (segmentation fault, the run
lost with "Channel closed prematurely"). Running the whole per-track analysis, the alignment, the
hash-sequence DTW and the version verification on a few seconds of synthetic music here first fills the
caches from one process; the workers then only read them.
"""

from __future__ import annotations

import io
import logging
import time

import numpy as np

log = logging.getLogger("mirmatch")

WARMUP_SECONDS = 12.0


def _synthetic_midi() -> bytes:
    """A few bars of a C-major arpeggio on a piano, as MIDI bytes."""
    import pretty_midi

    pm = pretty_midi.PrettyMIDI(initial_tempo=120.0)
    piano = pretty_midi.Instrument(program=0)
    for i in range(int(WARMUP_SECONDS * 2)):
        pitch = (60, 64, 67, 72)[i % 4]
        piano.notes.append(pretty_midi.Note(velocity=90, pitch=pitch, start=i * 0.5, end=i * 0.5 + 0.45))
    pm.instruments.append(piano)
    buffer = io.BytesIO()
    pm.write(buffer)
    return buffer.getvalue()


def _synthetic_audio(sr: int = 22050) -> bytes:
    """The same arpeggio as decaying sine tones, as WAV bytes."""
    import soundfile

    t = np.arange(int(0.5 * sr)) / sr
    notes = [np.sin(2 * np.pi * 440.0 * 2 ** ((p - 69) / 12) * t) * np.exp(-4 * t)
             for p in ((60, 64, 67, 72) * int(WARMUP_SECONDS / 2))]
    buffer = io.BytesIO()
    soundfile.write(buffer, (0.3 * np.concatenate(notes)).astype(np.float32), sr, format="WAV")
    return buffer.getvalue()


def compile_kernels(model: str | None = None) -> float:
    """Run every numba-compiled stage once on synthetic music (see the module docstring); returns the seconds
    it took. Failures are logged, never raised: the run then compiles in its workers as before."""
    started = time.monotonic()
    try:
        from encoders.analyze import analyze_source
        from encoders.codes import load_hasher
        from encoders.features import FRAME_RATE
        from hashing.align import align_pair
        from hashing.cascade import hash_dtw_batch
        from hashing.version_align import verified_similarity

        hasher = load_hasher(model)
        midi = analyze_source(_synthetic_midi(), "warmup://arpeggio.mid", "midi", hasher)
        audio = analyze_source(_synthetic_audio(), "warmup://arpeggio.wav", "audio", hasher)
        align_pair(midi.cqt, audio.cqt, FRAME_RATE)
        hash_dtw_batch(midi.frame_codes, [audio.frame_codes])
        verified_similarity(0.5, midi.version_sequence, audio.version_sequence)
    except Exception as exc:  # a warm-up must never stop a run
        log.warning("mirmatch: compiling the kernels before the workers start failed (%s: %s); going on",
                    type(exc).__name__, exc)
    return time.monotonic() - started
