"""Rendering MIDI to audio with fluidsynth."""

from __future__ import annotations

import copy

import numpy as np
import pretty_midi

from encoders.media import SAMPLE_RATE, MediaError
from encoders.soundfonts import MIDI_SIDE_SOUNDFONT, soundfont_path


def render_midi(pm: pretty_midi.PrettyMIDI, soundfont: str = MIDI_SIDE_SOUNDFONT,
                sr: int = SAMPLE_RATE) -> np.ndarray:
    """Synthesize ``pm`` with fluidsynth and ``soundfont``; mono float32 peak-normalised to 0.9.

    Drum parts are played on the GM standard kit: small soundfonts (TimGM6mb) lack the other kits, and
    fluidsynth would leave those parts silent.
    """
    if any(inst.is_drum and inst.program != 0 for inst in pm.instruments):
        pm = copy.deepcopy(pm)
        for inst in pm.instruments:
            if inst.is_drum:
                inst.program = 0
    y = pm.fluidsynth(fs=sr, synthesizer=soundfont_path(soundfont))
    if y.size == 0 or not np.isfinite(y).all() or np.max(np.abs(y)) <= 0:
        raise MediaError("rendering the MIDI file produced no sound", "RenderError")
    return (0.9 * y / np.max(np.abs(y))).astype(np.float32)
