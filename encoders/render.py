"""Rendering MIDI to audio with fluidsynth.

One synthesizer per rendering plays every part at once (one MIDI channel per part, drums on channel 10)
and its float output is read directly. pretty_midi's own ``PrettyMIDI.fluidsynth`` renders each part
in its own synthesizer through fluidsynth's 16-bit output, whose dither noise comes from a table filled
by the C library's ``rand()`` once per process: renders then differ between processes, and reruns of
the pipeline would not be identical.
"""

from __future__ import annotations

import ctypes
import threading
from collections.abc import Iterator

import numpy as np
import pretty_midi

from encoders.media import SAMPLE_RATE, MediaError
from encoders.soundfonts import MIDI_SIDE_SOUNDFONT, soundfont_path

DRUM_CHANNEL = 9
MELODIC_CHANNELS = tuple(c for c in range(16) if c != DRUM_CHANNEL)
TAIL_S = 1.0  # silence rendered after the last event, for release and reverb tails
BLOCK = 4096  # largest number of frames asked of fluidsynth at once

# fluidsynth is not documented as safe for several synthesizers rendering from threads of one process,
# and Beam runs bundles on several threads: renders are serialised within a process.
_RENDER_LOCK = threading.Lock()
#: fluidsynth's interpolation of the soundfont's samples: its default, 4th order (FLUID_INTERP_4THORDER).
#: Linear (1) costs a sixth less of the rendering in isolation, but in bench_analysis saved ~5% of the MIDI
#: analysis while moving MIDI results (0.06% of frame-code bits, beat chroma up to 0.12): not worth it.
INTERPOLATION = 4
FLUID_WARN = 2  # fluidsynth's log level of warnings
#: Soundfonts loaded once per process (parsing FluidR3 takes ~0.13 s): each is kept by a synthesizer that
#: never renders, and lent to each rendering's own synthesizer (renders are the same samples as with a
#: soundfont loaded for each). Used under _RENDER_LOCK only.
_SOUNDFONTS: dict[str, tuple[object, int]] = {}


def _fluidsynth():
    import fluidsynth  # imported late: it prints where it found libfluidsynth

    return fluidsynth


def _library():
    """libfluidsynth with the argument types of the calls made here besides pyfluidsynth's own."""
    lib = _fluidsynth()._fl
    lib.fluid_synth_write_float.argtypes = [ctypes.c_void_p, ctypes.c_int, ctypes.c_void_p, ctypes.c_int,
                                            ctypes.c_int, ctypes.c_void_p, ctypes.c_int, ctypes.c_int]
    lib.fluid_synth_get_sfont_by_id.argtypes = [ctypes.c_void_p, ctypes.c_int]
    lib.fluid_synth_get_sfont_by_id.restype = ctypes.c_void_p
    lib.fluid_synth_add_sfont.argtypes = [ctypes.c_void_p, ctypes.c_void_p]
    lib.fluid_synth_remove_sfont.argtypes = [ctypes.c_void_p, ctypes.c_void_p]
    lib.fluid_synth_set_interp_method.argtypes = [ctypes.c_void_p, ctypes.c_int, ctypes.c_int]
    lib.fluid_set_log_function.argtypes = [ctypes.c_int, ctypes.c_void_p, ctypes.c_void_p]
    # fluidsynth's warnings ("No preset found on channel N", once per channel of every synthesizer a
    # lent soundfont leaves) went to stderr by the hundred for every MIDI file; errors still print.
    lib.fluid_set_log_function(FLUID_WARN, None, None)
    return lib


def _loaded_soundfont(soundfont: str) -> int:
    """The fluid_sfont_t pointer of ``soundfont``, loaded once per process (call under _RENDER_LOCK)."""
    path = soundfont_path(soundfont)
    if path not in _SOUNDFONTS:
        holder = _fluidsynth().Synth(samplerate=float(SAMPLE_RATE))
        sfid = holder.sfload(path)
        if sfid == -1:
            holder.delete()
            raise MediaError(f"fluidsynth could not load the soundfont {soundfont!r}", "RenderError")
        _SOUNDFONTS[path] = (holder, _library().fluid_synth_get_sfont_by_id(holder.synth, sfid))
    return _SOUNDFONTS[path][1]


def _write_float(synth, n: int) -> np.ndarray:
    """``n`` frames of the synth's stereo float output, mixed to mono."""
    lib = _fluidsynth()._fl
    left = np.zeros(n, dtype=np.float32)
    right = np.zeros(n, dtype=np.float32)
    status = lib.fluid_synth_write_float(synth.synth, n, left.ctypes.data, 0, 1, right.ctypes.data, 0, 1)
    if status != 0:
        raise MediaError("fluidsynth failed while rendering", "RenderError")
    return 0.5 * (left + right)


def _channel_plan(instruments: list[pretty_midi.Instrument]) -> list[int]:
    """MIDI channel of each part: drums on channel 10, melodic parts one per channel, sharing a
    channel by program once the 15 melodic channels are used up."""
    channels, by_program, free = [], {}, list(MELODIC_CHANNELS)
    for inst in instruments:
        if inst.is_drum:
            channels.append(DRUM_CHANNEL)
        elif free:
            channels.append(free.pop(0))
            by_program.setdefault(inst.program, channels[-1])
        else:
            channels.append(by_program.get(inst.program, MELODIC_CHANNELS[inst.program % len(MELODIC_CHANNELS)]))
    return channels


def _events(parts: list[pretty_midi.Instrument], channels: list[int]) -> list[tuple]:
    """(time, order, kind, channel, a, b) for every event; at equal times note-offs come first."""
    events = []
    for inst, ch in zip(parts, channels, strict=True):
        for note in inst.notes:
            events.append((note.start, 1, "on", ch, note.pitch, note.velocity))
            events.append((note.end, 0, "off", ch, note.pitch, 0))
        for bend in inst.pitch_bends:
            events.append((bend.time, 1, "bend", ch, bend.pitch, 0))
        for cc in inst.control_changes:
            events.append((cc.time, 1, "cc", ch, cc.number, cc.value))
    events.sort(key=lambda e: (e[0], e[1], e[3], e[4]))
    return events


def render_midi(pm: pretty_midi.PrettyMIDI, soundfont: str = MIDI_SIDE_SOUNDFONT,
                sr: int = SAMPLE_RATE) -> np.ndarray:
    """Synthesize ``pm`` with fluidsynth and ``soundfont``; mono float32 peak-normalised to 0.9.

    Deterministic: the same MIDI and soundfont give the same samples in any process. Drum parts play
    the GM standard kit: small soundfonts (TimGM6mb) lack the other kits, which would stay silent.
    """
    out = np.concatenate(list(render_blocks(pm, soundfont, sr)))
    peak = float(np.max(np.abs(out))) if out.size else 0.0
    check_rendered_peak(peak)
    return (0.9 * out / peak).astype(np.float32)


def check_rendered_peak(peak: float) -> None:
    """Raise MediaError when a rendering's peak says it produced no sound."""
    if not np.isfinite(peak) or peak <= 0:
        raise MediaError("rendering the MIDI file produced no sound", "RenderError")


#: Samples per block yielded by ``render_blocks`` (60 s at 22050 Hz): what a long rendering holds at a time.
RENDER_BLOCK_S = 60.0


def render_blocks(pm: pretty_midi.PrettyMIDI, soundfont: str = MIDI_SIDE_SOUNDFONT, sr: int = SAMPLE_RATE,
                  block_s: float = RENDER_BLOCK_S) -> Iterator[np.ndarray]:
    """The raw (not normalised) mono float32 rendering of ``pm``, in consecutive blocks of ``block_s``
    seconds (the last one shorter): one synthesizer plays the whole file, its state carried from block to
    block, so the blocks put together are exactly the one-piece rendering. Memory is bounded by a block,
    whatever the file's length. The process's render lock is held until the generator ends or is closed.
    """
    parts = [inst for inst in pm.instruments if inst.notes]
    if not parts:
        raise MediaError("the MIDI file has no notes to render", "NoNotes")
    fluidsynth = _fluidsynth()
    channels = _channel_plan(parts)
    events = _events(parts, channels)
    total = int(np.ceil((events[-1][0] + TAIL_S) * sr))
    block_frames = max(BLOCK, int(block_s * sr))
    pending: list[np.ndarray] = []
    n_pending = 0
    lib = _library()
    with _RENDER_LOCK:
        sfont = _loaded_soundfont(soundfont)
        synth = fluidsynth.Synth(samplerate=float(sr))
        sfid = lib.fluid_synth_add_sfont(synth.synth, sfont)
        try:
            if sfid == -1:
                raise MediaError(f"fluidsynth could not add the soundfont {soundfont!r}", "RenderError")
            lib.fluid_synth_set_interp_method(synth.synth, -1, INTERPOLATION)
            for inst, ch in zip(parts, channels, strict=True):
                if inst.is_drum:
                    synth.program_select(ch, sfid, 128, 0)
                else:
                    synth.program_select(ch, sfid, 0, inst.program)
            position = 0
            for time, _, kind, ch, a, b in [*events, (None, 0, "end", 0, 0, 0)]:
                target = total if time is None else min(total, int(time * sr))
                while position < target:
                    n = min(BLOCK, target - position)
                    pending.append(_write_float(synth, n))
                    n_pending += n
                    position += n
                    if n_pending >= block_frames:
                        yield np.concatenate(pending)
                        pending, n_pending = [], 0
                if kind == "on":
                    synth.noteon(ch, a, b)
                elif kind == "off":
                    synth.noteoff(ch, a)
                elif kind == "bend":
                    synth.pitch_bend(ch, a)
                elif kind == "cc":
                    synth.cc(ch, a, b)
            if pending:
                yield np.concatenate(pending)
        finally:
            if sfid != -1:
                lib.fluid_synth_remove_sfont(synth.synth, sfont)  # lent, not the synthesizer's to free
            synth.delete()
