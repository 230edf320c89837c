"""Raffel-style corruptions of MIDI renderings with an exact time map kept as ground truth.

The "audio" of development corpora is a MIDI file tempo-warped, cropped, re-orchestrated and rendered
with another soundfont, then degraded with noise, reverb and a lossy codec. Every step that moves time is
applied to the MIDI before rendering, so the map from audio time to MIDI time is known exactly.
"""

from __future__ import annotations

import copy
from dataclasses import dataclass

import numpy as np
import pretty_midi
from scipy.signal import fftconvolve

from encoders.media import SAMPLE_RATE
from encoders.render import render_midi


@dataclass
class Corruption:
    """Parameters of one corrupted rendering; drawn by ``draw_corruption``."""

    tempo_knots_s: list[float]  # original MIDI times ...
    warped_knots_s: list[float]  # ... and where they land after the tempo warp
    crop_start_s: float  # in warped time
    crop_end_s: float
    program_shift: dict[int, int]  # instrument index -> new program
    dropped: list[int]  # instrument indices removed
    velocity_jitter: int
    snr_db: float
    reverb_s: float  # RT60-like decay time; 0 = dry


def draw_corruption(pm: pretty_midi.PrettyMIDI, rng: np.random.Generator, *, max_warp: float = 0.15,
                    crop: bool = True, segment_s: float = 8.0) -> Corruption:
    """Random corruption parameters for ``pm`` (tempo factor within 1 +- max_warp, piecewise)."""
    end = pm.get_end_time()
    knots = np.arange(0.0, end + segment_s, segment_s)
    knots[-1] = max(end, knots[-2] + 1e-3) if len(knots) > 1 else end
    global_rate = rng.uniform(1 - max_warp, 1 + max_warp)
    rates = global_rate * rng.uniform(0.93, 1.07, size=len(knots) - 1)
    warped = np.concatenate([[0.0], np.cumsum(np.diff(knots) / rates)])
    total = warped[-1]
    start, stop = 0.0, total
    if crop and total > 20:
        start = float(rng.uniform(0, 0.15) * total)
        stop = float(total - rng.uniform(0, 0.15) * total)
    pitched = [i for i, inst in enumerate(pm.instruments) if not inst.is_drum]
    shifts = {i: int(np.clip(pm.instruments[i].program + rng.integers(-3, 4), 0, 127))
              for i in pitched if rng.random() < 0.3}
    dropped = [int(rng.choice(pitched))] if len(pitched) > 2 and rng.random() < 0.3 else []
    return Corruption(tempo_knots_s=knots.tolist(), warped_knots_s=warped.tolist(), crop_start_s=start,
                      crop_end_s=stop, program_shift=shifts, dropped=dropped,
                      velocity_jitter=int(rng.integers(0, 16)), snr_db=float(rng.uniform(15, 35)),
                      reverb_s=float(rng.choice([0.0, rng.uniform(0.2, 0.8)])))


def crop_midi(pm: pretty_midi.PrettyMIDI, start_s: float, end_s: float) -> pretty_midi.PrettyMIDI:
    """Copy of ``pm`` keeping notes sounding in [start_s, end_s), shifted so start_s becomes 0."""
    out = copy.deepcopy(pm)
    for inst in out.instruments:
        notes = []
        for note in inst.notes:
            if note.end <= start_s or note.start >= end_s:
                continue
            note.start, note.end = max(note.start, start_s) - start_s, min(note.end, end_s) - start_s
            if note.end - note.start > 1e-3:
                notes.append(note)
        inst.notes = notes
        inst.control_changes = [c for c in inst.control_changes if start_s <= c.time < end_s]
        for c in inst.control_changes:
            c.time -= start_s
        inst.pitch_bends = [b for b in inst.pitch_bends if start_s <= b.time < end_s]
        for b in inst.pitch_bends:
            b.time -= start_s
    out.instruments = [inst for inst in out.instruments if inst.notes]
    for events in (out.time_signature_changes, out.key_signature_changes, out.lyrics, out.text_events):
        kept = [e for e in events if start_s <= e.time < end_s or (e.time < start_s and e is events[0])]
        for e in kept:
            e.time = max(0.0, e.time - start_s)
        events[:] = kept
    # Tempo changes after the end would still count in get_end_time(); pretty_midi has no public API
    # to edit its tempo map, so trim its tick scales directly.
    cut = out.time_to_tick(end_s - start_s)
    out._tick_scales = [ts for ts in out._tick_scales if ts[0] <= cut] or out._tick_scales[:1]
    out._update_tick_to_time(cut + 1)
    return out


def corrupt_midi(pm: pretty_midi.PrettyMIDI, c: Corruption, rng: np.random.Generator) -> pretty_midi.PrettyMIDI:
    """Apply the time warp, crop, program changes, dropped parts and velocity jitter to a copy of ``pm``."""
    warped = copy.deepcopy(pm)
    warped.adjust_times(np.asarray(c.tempo_knots_s), np.asarray(c.warped_knots_s))
    warped.instruments = [inst for i, inst in enumerate(warped.instruments) if i not in c.dropped]
    kept = [i for i in range(len(pm.instruments)) if i not in c.dropped]
    for new_i, old_i in enumerate(kept):
        if old_i in c.program_shift:
            warped.instruments[new_i].program = c.program_shift[old_i]
        for note in warped.instruments[new_i].notes:
            note.velocity = int(np.clip(note.velocity + rng.integers(-c.velocity_jitter, c.velocity_jitter + 1),
                                        1, 127))
    return crop_midi(warped, c.crop_start_s, c.crop_end_s)


def degrade_audio(y: np.ndarray, c: Corruption, rng: np.random.Generator, sr: int = SAMPLE_RATE) -> np.ndarray:
    """Add reverb (exponentially decaying noise impulse response) and noise at ``c.snr_db``."""
    if c.reverb_s > 0:
        t = np.arange(int(c.reverb_s * sr)) / sr
        ir = rng.standard_normal(len(t)) * np.exp(-6.9 * t / c.reverb_s)
        ir[0] = 1.0 / 0.3
        y = fftconvolve(y, ir * 0.3)[: len(y)]
    signal_power = np.mean(y ** 2) + 1e-12
    noise = rng.standard_normal(len(y)) * np.sqrt(signal_power / 10 ** (c.snr_db / 10))
    y = y + noise
    return (0.9 * y / (np.max(np.abs(y)) + 1e-9)).astype(np.float32)


def audio_to_midi_time(c: Corruption, audio_times_s: np.ndarray) -> np.ndarray:
    """The exact ground-truth map from times in the corrupted audio to times in the original MIDI."""
    warped = np.asarray(audio_times_s) + c.crop_start_s
    return np.interp(warped, c.warped_knots_s, c.tempo_knots_s)


def corrupted_rendering(pm: pretty_midi.PrettyMIDI, soundfont: str, rng: np.random.Generator,
                        crop: bool = True) -> tuple[np.ndarray, Corruption]:
    """Render a corrupted version of ``pm`` with ``soundfont``; returns (audio, corruption)."""
    c = draw_corruption(pm, rng, crop=crop)
    y = render_midi(corrupt_midi(pm, c, rng), soundfont=soundfont)
    return degrade_audio(y, c, rng), c
