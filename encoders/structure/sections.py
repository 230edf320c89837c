"""The pipeline's segmentation: which method segments a track.

* MIDI files: ``symbolic.symbolic_segments`` on the notes (repetition of beat-quantised note patterns, rests,
  changes of tempo, key, metre and instrumentation); the rendered audio only when the file has too few
  notes or beats for it (``symbolic.usable_midi``).
* Recordings (and that fallback): ``boundary.boundary_segments``, the supervised boundary CNN on the
  log-CQT over the structure grid (tracked beats, or fixed windows when no beat is usable).
"""

from __future__ import annotations

import numpy as np

from encoders.structure.boundary import boundary_segments
from encoders.structure.laplacian import Segment
from encoders.structure.symbolic import symbolic_segments, usable_midi

__all__ = ["track_segments"]


def track_segments(cqt: np.ndarray, frame_times: np.ndarray, duration_s: float, beat_times: np.ndarray | None,
                   pm=None) -> list[Segment]:
    """Labelled sections covering [0, duration_s]: from the notes of ``pm`` (a parsed MIDI file) when it is
    given and usable, else from the audio features (log-CQT frames at ``frame_times``, the grid's beats)."""
    if pm is not None and usable_midi(pm):
        return symbolic_segments(pm, duration_s)
    return boundary_segments(cqt, frame_times, duration_s, beat_times)
