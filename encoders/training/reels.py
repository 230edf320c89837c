"""Rendering many short arranged pieces in one fluidsynth call, cut apart afterwards: loading a soundfont costs
more than playing a minute of music. Used by the corpora of the segment and version embeddings.
"""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np
import pretty_midi

from encoders.media import SAMPLE_RATE
from encoders.render import render_midi

REEL_GAP_S = 3.0  # silence between pieces of a reel (longer than any release / reverb tail)


@dataclass
class Arranged:
    """One piece laid out in time, with its ground truth."""

    notes: list[tuple[float, float, int, int]]  # start s, end s, pitch, velocity
    beats: np.ndarray  # the score's quarter-note grid (s)
    intervals: np.ndarray  # (n_sections, 2) start and end (s) of each section
    labels: list[str]  # each section's label
    duration: float  # s


def render_reel(items: list[tuple[Arranged, int]], soundfont: str) -> list[np.ndarray]:
    """Render several (arranged piece, GM program) in one fluidsynth call with ``soundfont``; returns each
    piece's audio (mono float32 at SAMPLE_RATE), ``REEL_GAP_S`` of silence apart in the rendering."""
    pm = pretty_midi.PrettyMIDI()
    insts: dict[int, pretty_midi.Instrument] = {}
    offsets, t = [], 0.0
    for arr, program in items:
        inst = insts.setdefault(program, pretty_midi.Instrument(program=program))
        for on, off, pitch, vel in arr.notes:
            inst.notes.append(pretty_midi.Note(vel, pitch, t + on, t + off))
        offsets.append(t)
        t += arr.duration + REEL_GAP_S
    pm.instruments = [insts[p] for p in sorted(insts)]
    y = render_midi(pm, soundfont)
    out = []
    for (arr, _), off in zip(items, offsets, strict=True):
        a = int(round(off * SAMPLE_RATE))
        out.append(y[a: a + int(np.ceil(arr.duration * SAMPLE_RATE))])
    return out
