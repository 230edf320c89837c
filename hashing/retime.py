"""Re-timing a MIDI file onto a recording with the time map of its alignment (``hashing.align``).

The aligned MIDI of a match is the MIDI file with every event moved to the time it sounds in the recording,
like the "aligned" release of the Lakh MIDI dataset (Raffel 2016): pretty_midi's
``PrettyMIDI.adjust_times(original_times, new_times)`` with the pair's monotonic time map, linear between its
points. What falls outside the aligned span has no time in the recording, so:

* a note whose onset is before the span's first MIDI time or after its last is dropped;
* a note that starts inside the span and ends after it is kept, its end clamped to the span's end
  (pretty_midi alone would drop it, losing the last chord of a MIDI file aligned up to its final onset);
* control changes, pitch bends and meta events outside the span are dropped (pretty_midi's behaviour).
"""

from __future__ import annotations

import copy
import warnings

import numpy as np

__all__ = ["monotonic_map", "retime_midi"]


def monotonic_map(midi_times_s: np.ndarray, audio_times_s: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
    """The points of a time map that ``adjust_times`` takes: MIDI times strictly increasing (the first audio
    time of each run of equal MIDI times, as pretty_midi picks it), audio times non-decreasing.

    Parameters
    ----------
    midi_times_s, audio_times_s : np.ndarray, shape (n,), seconds
        An ``alignments`` row's time map (non-decreasing on both sides; MIDI times repeat where the
        recording holds or pauses).

    Returns
    -------
    (midi_times_s, audio_times_s): float64 arrays of equal length. Raises ValueError when fewer than two
    distinct MIDI times remain: such a map spans no time to re-time onto.
    """
    midi = np.asarray(midi_times_s, dtype=np.float64).ravel()
    audio = np.asarray(audio_times_s, dtype=np.float64).ravel()
    if midi.shape != audio.shape:
        raise ValueError(f"time map sides differ in length: {midi.shape} vs {audio.shape}")
    if not (np.isfinite(midi).all() and np.isfinite(audio).all()):
        raise ValueError("time map has non-finite times")
    midi, first = np.unique(midi, return_index=True)
    audio = np.maximum.accumulate(audio[first])
    if len(midi) < 2:
        raise ValueError(f"time map spans no MIDI time ({len(midi)} distinct point)")
    return midi, audio


def retime_midi(pm, midi_times_s: np.ndarray, audio_times_s: np.ndarray):
    """A copy of ``pm`` (a ``pretty_midi.PrettyMIDI``) re-timed onto the recording's time base.

    An event at MIDI time ``midi_times_s[i]`` moves to ``audio_times_s[i]``, linearly in between; notes whose
    onset is outside [midi_times_s[0], midi_times_s[-1]] are dropped and the ends of the others clamped to
    that span (module docstring). ``pm`` itself is left unchanged.

    >>> import pretty_midi
    >>> pm = pretty_midi.PrettyMIDI(initial_tempo=120.0)
    >>> piano = pretty_midi.Instrument(program=0)
    >>> piano.notes = [pretty_midi.Note(100, 60, 1.0, 1.5), pretty_midi.Note(100, 62, 3.0, 9.0)]
    >>> pm.instruments.append(piano)
    >>> aligned = retime_midi(pm, [0.5, 4.0], [1.0, 8.0])  # the MIDI plays twice as fast as the recording
    >>> [(float(n.start), float(n.end)) for n in aligned.instruments[0].notes]
    [(2.0, 3.0), (6.0, 8.0)]
    """
    midi, audio = monotonic_map(midi_times_s, audio_times_s)
    out = copy.deepcopy(pm)
    for inst in out.instruments:
        inst.notes = [n for n in inst.notes if midi[0] <= n.start <= midi[-1]]
        for n in inst.notes:
            n.end = min(n.end, midi[-1])
    with warnings.catch_warnings():  # the map is already strictly increasing; nothing left to warn about
        warnings.simplefilter("ignore")
        out.adjust_times(midi, audio)
    return out
