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


# --- Closer to real recordings (issue 16): what a studio, a room and a codec do, and what a MIDI file adds ------

#: Background level range: the rendering this many dB above a real recording mixed under it.
BACKGROUND_DB = (3.0, 20.0)
DETUNE_CENTS = 50.0
#: Pitch-bend range of General MIDI synthesizers (+-2 semitones over +-8192).
BEND_RANGE_CENTS = 200.0


def add_drums(pm: pretty_midi.PrettyMIDI, rng: np.random.Generator, beat_s: float | None = None) -> None:
    """Append a rock drum groove (kick, snare, hi-hat) over the piece's length, in place; the beat from the
    MIDI file's own estimate unless given."""
    end = pm.get_end_time()
    if beat_s is None:
        beats = pm.get_beats()
        beat_s = float(np.median(np.diff(beats))) if len(beats) > 2 else 0.5
    drums = pretty_midi.Instrument(program=0, is_drum=True)
    for k, t in enumerate(np.arange(0.0, end, beat_s / 2)):
        hits = [42] + ([36] if k % 4 == 0 else [38] if k % 4 == 2 else [])
        for pitch in hits:
            drums.notes.append(pretty_midi.Note(int(rng.integers(60, 110)), pitch, float(t), float(t) + 0.1))
    pm.instruments.append(drums)


def double_octave(pm: pretty_midi.PrettyMIDI, rng: np.random.Generator) -> None:
    """Double one pitched part an octave up or down on another program (as arrangers and MIDI transcribers
    do), in place."""
    pitched = [inst for inst in pm.instruments if not inst.is_drum and inst.notes]
    if not pitched:
        return
    source = pitched[int(rng.integers(len(pitched)))]
    shift = int(rng.choice([-12, 12]))
    double = pretty_midi.Instrument(program=int(rng.integers(0, 112)))
    double.notes = [pretty_midi.Note(n.velocity, int(np.clip(n.pitch + shift, 0, 127)), n.start, n.end)
                    for n in source.notes]
    pm.instruments.append(double)


def detune(pm: pretty_midi.PrettyMIDI, cents: float) -> None:
    """Tune every pitched part by ``cents`` (a pitch bend held from time 0), in place: the recording's tuning
    is off concert pitch, its timing unchanged."""
    value = int(np.clip(round(cents / BEND_RANGE_CENTS * 8192), -8192, 8191))
    for inst in pm.instruments:
        if not inst.is_drum:
            inst.pitch_bends = [pretty_midi.PitchBend(value, 0.0)] + [
                pretty_midi.PitchBend(int(np.clip(b.pitch + value, -8192, 8191)), b.time) for b in inst.pitch_bends]


def room_impulse(rng: np.random.Generator, rt60_s: float, sr: int = SAMPLE_RATE) -> np.ndarray:
    """A generated room impulse response: the direct sound, a few early reflections within 50 ms, then a
    diffuse tail of noise whose high frequencies decay faster than its low ones (air and walls absorb them)."""
    n = max(2, int(rt60_s * sr))
    t = np.arange(n) / sr
    low = rng.standard_normal(n) * np.exp(-6.9 * t / rt60_s)
    high = rng.standard_normal(n) * np.exp(-6.9 * t / (0.4 * rt60_s))
    smooth = np.convolve(low, np.ones(8) / 8, mode="same")  # a crude low-pass: the slow-decaying band
    ir = 0.15 * (smooth + (high - np.convolve(high, np.ones(8) / 8, mode="same")))
    for _ in range(int(rng.integers(3, 8))):
        ir[int(rng.uniform(0.002, 0.05) * sr) % n] += rng.uniform(0.2, 0.6) * rng.choice([-1, 1])
    ir[0] = 1.0
    return ir / np.sqrt(np.sum(ir ** 2))


def random_eq(y: np.ndarray, rng: np.random.Generator, sr: int = SAMPLE_RATE) -> np.ndarray:
    """Two to four peaking filters of +-9 dB at random centres (60 Hz - 8 kHz), and a random tilt."""
    from scipy.signal import lfilter

    for _ in range(int(rng.integers(2, 5))):
        f0, gain_db, q = 60 * 2 ** rng.uniform(0, 7), rng.uniform(-9, 9), rng.uniform(0.5, 3)
        a_gain, w0 = 10 ** (gain_db / 40), 2 * np.pi * f0 / sr
        alpha = np.sin(w0) / (2 * q)
        b = [1 + alpha * a_gain, -2 * np.cos(w0), 1 - alpha * a_gain]
        a = [1 + alpha / a_gain, -2 * np.cos(w0), 1 - alpha / a_gain]
        y = lfilter(b, a, y)
    tilt = rng.uniform(-0.5, 0.5)  # first-order tilt: + brighter, - darker
    return (y + tilt * np.diff(y, prepend=y[:1]) * 4).astype(np.float32)


def compress(y: np.ndarray, rng: np.random.Generator, sr: int = SAMPLE_RATE) -> np.ndarray:
    """Dynamic-range compression: gain from a smoothed RMS envelope above a threshold, ratio 2-8, make-up gain."""
    from scipy.signal import lfilter

    ratio, threshold_db = rng.uniform(2, 8), rng.uniform(-30, -10)
    coeff = np.exp(-1.0 / (rng.uniform(0.01, 0.2) * sr))
    power = lfilter([1 - coeff], [1, -coeff], y.astype(np.float64) ** 2)
    level_db = 10 * np.log10(power / (np.max(power) + 1e-12) + 1e-10)
    gain_db = np.minimum(0.0, (threshold_db - level_db) * (1 - 1 / ratio))
    return (y * 10 ** (gain_db / 20)).astype(np.float32)


def lossy_codec(y: np.ndarray, rng: np.random.Generator, sr: int = SAMPLE_RATE) -> np.ndarray:
    """Round trip through a low-bitrate encoder (Ogg Vorbis or MP3 at libsndfile's highest compression levels)."""
    import io

    import soundfile as sf

    fmt, subtype = (("OGG", "VORBIS"), ("MP3", "MPEG_LAYER_III"))[int(rng.integers(2))]
    buffer = io.BytesIO()
    try:
        with sf.SoundFile(buffer, "w", sr, 1, format=fmt, subtype=subtype,
                          compression_level=float(rng.uniform(0.7, 1.0))) as f:
            f.write(y)
        buffer.seek(0)
        decoded, _ = sf.read(buffer, dtype="float32")
    except (RuntimeError, TypeError, sf.LibsndfileError):  # an encoder this libsndfile lacks: leave it
        return y
    out = np.zeros_like(y)
    out[: min(len(y), len(decoded))] = decoded[: len(y)]
    return out


def realistic_rendering(pm: pretty_midi.PrettyMIDI, soundfont: str, rng: np.random.Generator,
                        background: np.ndarray | None = None) -> tuple[np.ndarray, Corruption]:
    """A corrupted rendering closer to a real recording than ``corrupted_rendering``: the same tempo warp, crop,
    programs and dropped parts, plus drums (40%) or an octave-doubled part (30%) the MIDI file lacks, detuning
    up to +-50 cents, then a generated room (70%), EQ, compression (60%), a real recording mixed under it
    (``BACKGROUND_DB`` below, when given), noise and a low-bitrate codec (50%). Returns (audio, corruption); the
    corruption's time map is exact, as every step that moves time is applied to the MIDI."""
    c = draw_corruption(pm, rng)
    midi = corrupt_midi(pm, c, rng)
    if rng.random() < 0.4:
        add_drums(midi, rng)
    if rng.random() < 0.3:
        double_octave(midi, rng)
    detune(midi, rng.uniform(-DETUNE_CENTS, DETUNE_CENTS))
    y = render_midi(midi, soundfont=soundfont).astype(np.float64)
    if rng.random() < 0.7:
        y = fftconvolve(y, room_impulse(rng, rng.uniform(0.2, 1.5)))[: len(y)]
    y = random_eq(y, rng)
    if rng.random() < 0.6:
        y = compress(y, rng)
    if background is not None and len(background):
        start = int(rng.integers(0, max(1, len(background) - len(y))))
        bg = np.resize(background[start:], len(y))
        y = y + bg * np.sqrt(np.mean(y ** 2) / (np.mean(bg ** 2) + 1e-12)) * 10 ** (-rng.uniform(*BACKGROUND_DB) / 20)
    y = y + rng.standard_normal(len(y)) * np.sqrt(np.mean(y ** 2) / 10 ** (c.snr_db / 10))
    y = (0.9 * y / (np.max(np.abs(y)) + 1e-9)).astype(np.float32)
    if rng.random() < 0.5:
        y = lossy_codec(y, rng)
    return y, c


def midi_side_corruption(pm: pretty_midi.PrettyMIDI, rng: np.random.Generator
                         ) -> tuple[pretty_midi.PrettyMIDI, Corruption]:
    """The imperfect MIDI file of Raffel's setting: tempo changed (+-20%) and warped, one pitched part dropped
    (when there are at least two), each remaining part's program changed with probability 0.3 (to any melodic
    program). Returns (MIDI, corruption); uncropped, so ``midi_time`` maps original times onto it."""
    c = draw_corruption(pm, rng, max_warp=0.2, crop=False)
    pitched = [i for i, inst in enumerate(pm.instruments) if not inst.is_drum and inst.notes]
    c.dropped = [int(rng.choice(pitched))] if len(pitched) >= 2 else []
    c.program_shift = {i: int(rng.integers(0, 112)) for i in pitched if rng.random() < 0.3}
    return corrupt_midi(pm, c, rng), c


def midi_time(c: Corruption, original_times_s: np.ndarray) -> np.ndarray:
    """Where times of the original MIDI land in an uncropped corrupted one (the inverse of ``audio_to_midi_time``)."""
    return np.interp(np.asarray(original_times_s), c.tempo_knots_s, c.warped_knots_s) - c.crop_start_s


def midi_side_extras(pm: pretty_midi.PrettyMIDI, rng: np.random.Generator) -> pretty_midi.PrettyMIDI:
    """A copy of the MIDI file with what real MIDI files often add to a piece: a drum track (30%) and an octave
    doubling (30%); timing unchanged, so a corruption's time map still holds."""
    out = copy.deepcopy(pm)
    if rng.random() < 0.3 and not any(inst.is_drum for inst in out.instruments):
        add_drums(out, rng)
    if rng.random() < 0.3:
        double_octave(out, rng)
    return out
