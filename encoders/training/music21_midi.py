"""Whole pieces from music21's bundled corpus as multi-instrument MIDI, for training the hash encoders.

* ``bach``: every Bach chorale (one file per chorale number), its four voices from
  ``encoders.training.music21_scores``'s phrase loader laid end to end, each voice on its own instrument;
* ``essen``: Essen folksongs (whole tunes, parsed with the same ABC loader), the melody doubled an octave
  lower on another instrument half of the time, repeated until the piece lasts 20 s.

Tempo, instruments (drawn from organ, strings, winds, brass, choir, guitars, pianos and synth patches) and a
simple drum groove (one piece in three) are drawn per piece from a generator seeded with the piece's name,
so a piece is the same MIDI in every process and run. Names are ``bach_<bwv>`` and ``essen_<file>_<tune>``.
"""

from __future__ import annotations

import hashlib
import re
from pathlib import Path

import numpy as np
import pretty_midi

from encoders.training.music21_scores import abc_tunes, chorale_phrases, music21_corpus_dir, parse_abc_phrase

SOURCES = ("bach", "essen")
#: General MIDI programs a part may be played with (none of them percussive).
PROGRAMS = (0, 1, 4, 6, 11, 16, 19, 21, 22, 24, 25, 32, 33, 40, 41, 42, 43, 48, 49, 50, 52, 56, 57, 58,
            60, 61, 65, 66, 68, 69, 70, 71, 73, 74, 80, 81, 88, 89, 90)
MIN_DURATION_S = 20.0
MAX_DURATION_S = 60.0
BACH_BPM = (56.0, 100.0)
ESSEN_NOTE_S = (0.22, 0.45)  # seconds per melody note on average (Essen units vary from file to file)


def _rng(name: str, seed: int) -> np.random.Generator:
    return np.random.default_rng([seed, int.from_bytes(hashlib.blake2b(name.encode(), digest_size=8).digest())])


def music21_sources(sources: tuple[str, ...] = SOURCES, n_essen: int = 200, seed: int = 0) -> list[tuple[str, tuple]]:
    """(name, spec) of every piece of ``sources``, in a stable order; ``midi_from_spec(spec)`` builds it.

    Specs are small and picklable, so that pieces are parsed in the rendering workers.
    """
    root = music21_corpus_dir()
    out: list[tuple[str, tuple]] = []
    if "bach" in sources:
        seen = set()
        for path in sorted((root / "bach").glob("bwv*.mxl")):
            base = re.sub(r"[-_].*$", "", path.stem)  # bwv112.5-sc and bwv112.5 are one chorale
            if base not in seen:
                seen.add(base)
                out.append((f"bach_{base}", ("bach", str(path), seed)))
    if "essen" in sources:
        files = sorted(p for p in (root / "essenFolksong").glob("*.abc") if not p.stem.startswith("test"))
        tunes = [(f, t) for f in files for t in abc_tunes(f) if len(t["lines"]) >= 2]
        for i in np.random.default_rng(seed).permutation(len(tunes))[:n_essen]:
            f, tune = tunes[int(i)]
            out.append((f"essen_{f.stem}_{tune['id']}", ("essen", tune, seed)))
    return out


def midi_from_spec(name: str, spec: tuple) -> pretty_midi.PrettyMIDI | None:
    """The piece's MIDI (None when music21 cannot read it or it is too short), cut at MAX_DURATION_S."""
    kind, source, seed = spec
    rng = _rng(name, seed)
    if kind == "bach":
        phrases = chorale_phrases(Path(source))
        if not phrases:
            return None
        spq = 60.0 / rng.uniform(*BACH_BPM)
        voices: list[list[tuple[float, float, int]]] = [[], [], [], []]
        t0 = 0.0
        for ph in phrases:
            for on, dur, pitch in ph.notes:  # chorale voices: the highest pitches are the soprano's
                voices[_voice_of(pitch, ph.notes, on)].append((t0 + on * spq, t0 + (on + dur) * spq, pitch))
            t0 += ph.length_ql * spq
        parts = [v for v in voices if v]
        total = t0
    else:
        whole = parse_abc_phrase(source, "\n".join(source["lines"]))
        if whole is None or len(whole.notes) < 20:
            return None
        spq = float(rng.uniform(*ESSEN_NOTE_S)) * len(whole.notes) / whole.length_ql
        melody, t0 = [], 0.0
        while t0 < MIN_DURATION_S:  # repeat the tune until the piece is long enough
            melody += [(t0 + on * spq, t0 + (on + dur) * spq, p) for on, dur, p in whole.notes]
            t0 += whole.length_ql * spq
        parts = [melody] + ([[(a, b, p - 12) for a, b, p in melody]] if rng.random() < 0.5 else [])
        total = t0
    if total < MIN_DURATION_S:
        return None
    pm = pretty_midi.PrettyMIDI(initial_tempo=60.0 / spq)
    same = rng.random() < 0.4  # one instrument for every part, else one each
    first = int(rng.choice(PROGRAMS))
    for notes in parts:
        program = first if same else int(rng.choice(PROGRAMS))
        inst = pretty_midi.Instrument(program=program)
        base = int(rng.integers(60, 105))
        for a, b, p in notes:
            if a < MAX_DURATION_S:
                inst.notes.append(pretty_midi.Note(int(np.clip(base + rng.integers(-8, 9), 1, 127)),
                                                   int(np.clip(p, 21, 108)), a, min(b, MAX_DURATION_S)))
        pm.instruments.append(inst)
    if rng.random() < 1 / 3:
        pm.instruments.append(_drums(min(total, MAX_DURATION_S), spq, rng))
    return pm


def _voice_of(pitch: int, notes: list[tuple[float, float, int]], onset: float) -> int:
    """Index (0 = highest) of ``pitch`` among the distinct pitches sounding at ``onset``, at most 3."""
    sounding = sorted({p for on, dur, p in notes if on <= onset < on + dur}, reverse=True)
    return min(sounding.index(pitch) if pitch in sounding else 0, 3)


def _drums(total: float, spq: float, rng: np.random.Generator) -> pretty_midi.Instrument:
    """Kick on beats 1 and 3, snare on 2 and 4, closed hi-hat on every eighth."""
    drums = pretty_midi.Instrument(program=0, is_drum=True)
    for k, t in enumerate(np.arange(0.0, total, spq / 2)):
        hits = [42] + ([36] if k % 8 in (0, 4) else [38] if k % 8 in (2, 6) else [])
        for pitch in hits:
            drums.notes.append(pretty_midi.Note(int(rng.integers(60, 100)), pitch, float(t), float(t) + 0.1))
    return drums


__all__ = ["MAX_DURATION_S", "SOURCES", "midi_from_spec", "music21_sources"]
