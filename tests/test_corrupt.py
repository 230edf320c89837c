"""Corruptions keep an exact ground-truth time map."""

from __future__ import annotations

import numpy as np
import pretty_midi
import pytest

from encoders.training.corpus import debian_midi_files
from encoders.training.corrupt import (
    audio_to_midi_time,
    corrupt_midi,
    crop_midi,
    draw_corruption,
    midi_side_corruption,
    midi_time,
)


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


def test_midi_side_time_map_places_every_original_note(rng):
    """midi_time sends an original onset to where the imperfect MIDI file plays it (the MIDI side of the
    realistic training pairs): every corrupted note lies where some original note of its pitch maps."""
    original = piece(40.0)
    corrupted, c = midi_side_corruption(original, rng)
    assert c.crop_start_s == 0 and len(corrupted.instruments) == 1  # a part of two dropped
    errors = []
    for n in corrupted.instruments[0].notes:
        onsets = [m.start for inst in original.instruments for m in inst.notes if m.pitch == n.pitch]
        errors.append(np.min(np.abs(midi_time(c, np.array(onsets)) - n.start)))
    assert np.max(errors) < 1e-3
    round_trip = audio_to_midi_time(c, midi_time(c, np.array([3.0, 17.5])))
    assert np.allclose(round_trip, [3.0, 17.5], atol=1e-6)


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


def _one_note(pitch: int = 69, seconds: float = 2.0) -> pretty_midi.PrettyMIDI:
    pm = pretty_midi.PrettyMIDI()
    inst = pretty_midi.Instrument(program=73)  # flute: nearly a sine
    inst.notes.append(pretty_midi.Note(velocity=100, pitch=pitch, start=0.0, end=seconds))
    pm.instruments.append(inst)
    return pm


def test_detune_moves_the_pitch_by_the_cents_asked():
    from encoders.features import FMIN_MIDI, log_cqt
    from encoders.render import render_midi
    from encoders.training.corrupt import detune

    def upper_share(cents):
        pm = _one_note()
        detune(pm, cents)
        cqt = log_cqt(render_midi(pm))[1][10:60].mean(0)
        bin_ = 69 - FMIN_MIDI
        return cqt[bin_ + 1] / (cqt[bin_] + cqt[bin_ + 1])

    shares = [upper_share(c) for c in (-50.0, 0.0, 50.0, 100.0)]
    assert shares[0] < shares[1] - 0.1 < shares[2] - 0.2 < shares[3] - 0.3  # the energy moves up a bin
    assert abs(shares[2] - 0.5) < 0.15  # half a semitone: between the two bins


def test_realistic_rendering_keeps_length_and_mixes_the_background(rng):
    from encoders.media import SAMPLE_RATE
    from encoders.training.corrupt import midi_side_extras, realistic_rendering

    original = piece(30.0)
    background = np.sin(2 * np.pi * 97.0 * np.arange(60 * SAMPLE_RATE) / SAMPLE_RATE).astype(np.float32)
    y, c = realistic_rendering(original, "timgm6mb", np.random.default_rng(1), background)
    duration = c.crop_end_s - c.crop_start_s
    assert abs(len(y) / SAMPLE_RATE - duration) < 1.5 and np.isfinite(y).all() and np.abs(y).max() <= 0.91
    spectrum = np.abs(np.fft.rfft(y[: 10 * SAMPLE_RATE]))
    freqs = np.fft.rfftfreq(10 * SAMPLE_RATE, 1 / SAMPLE_RATE)
    assert spectrum[np.abs(freqs - 97.0) < 0.5].max() > 5 * np.median(spectrum)  # the background is in it
    extras = [midi_side_extras(original, np.random.default_rng(s)) for s in range(20)]
    assert any(any(i.is_drum for i in pm.instruments) for pm in extras)
    assert any(len(pm.instruments) > len(original.instruments) and not pm.instruments[-1].is_drum for pm in extras)
    assert all(pm.get_end_time() <= original.get_end_time() + 0.5 for pm in extras)  # timing unchanged
