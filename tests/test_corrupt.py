"""Corruptions keep an exact ground-truth time map."""

from __future__ import annotations

import numpy as np
import pretty_midi
import pytest

from encoders.training.corpus import debian_midi_files
from encoders.training.corrupt import audio_to_midi_time, corrupt_midi, crop_midi, draw_corruption


def piece(seconds: float = 60.0) -> pretty_midi.PrettyMIDI:
    pm = pretty_midi.PrettyMIDI()
    for program, pitches in ((0, (60, 64, 67)), (40, (72, 76))):
        inst = pretty_midi.Instrument(program=program)
        t = 0.0
        while t < seconds:
            for p in pitches:
                inst.notes.append(pretty_midi.Note(velocity=80, pitch=p, start=t, end=t + 0.4))
            t += 0.5
        pm.instruments.append(inst)
    return pm


def test_time_map_moves_every_note_where_it_says(rng):
    original = piece()
    c = draw_corruption(original, rng)
    corrupted = corrupt_midi(original, c, rng)
    by_pitch = {}
    for inst in original.instruments:
        for n in inst.notes:
            by_pitch.setdefault(n.pitch, []).append(n.start)
    assert c.crop_start_s > 0 or c.crop_end_s < c.warped_knots_s[-1]
    errors = []
    for inst in corrupted.instruments:
        for n in inst.notes:
            if n.start < 1e-6:  # clipped by the crop: its onset is the crop's, not the note's
                continue
            mapped = audio_to_midi_time(c, np.array([n.start]))[0]
            errors.append(np.min(np.abs(np.array(by_pitch[n.pitch]) - mapped)))
    assert np.max(errors) < 1e-3


def test_warp_stays_in_bounds(rng):
    original = piece(90)
    for _ in range(5):
        c = draw_corruption(original, rng, max_warp=0.15)
        rates = np.diff(c.tempo_knots_s) / np.diff(c.warped_knots_s)
        assert ((rates > 0.75) & (rates < 1.3)).all()


def test_crop_shifts_and_trims():
    cropped = crop_midi(piece(60), 10.0, 20.0)
    starts = [n.start for inst in cropped.instruments for n in inst.notes]
    assert min(starts) == pytest.approx(0.0) and max(n.end for i in cropped.instruments for n in i.notes) <= 10
    assert cropped.get_end_time() <= 10.0 + 1e-6


def test_debian_collections_are_installed():
    files = debian_midi_files()
    assert len(files) > 100
    assert {c for c, _ in files} == {"simutrans", "openttd", "freedink", "mma"}
