"""Tests for the pipeline's segmentation: the symbolic (MIDI) method, the audio boundary CNN, the labels, and the
dispatch between them (encoders.structure.symbolic / boundary / labels / sections)."""

from __future__ import annotations

import mir_eval
import numpy as np
import pretty_midi
import pytest

from encoders.features import FRAME_RATE, audio_features
from encoders.media import SAMPLE_RATE
from encoders.render import render_midi
from encoders.structure.boundary import boundary_segments, load_boundary_model
from encoders.structure.labels import segment_labels
from encoders.structure.laplacian import Segment
from encoders.structure.sections import track_segments
from encoders.structure.symbolic import (
    FEATURE_NAMES,
    beat_features,
    load_symbolic_model,
    onset_similarity,
    pick_peaks,
    repetition_evidence,
    slot_onsets,
    symbolic_segments,
    usable_midi,
)
from tests.conftest import synthetic_form


def _assert_covers(segs: list[Segment], duration: float) -> None:
    assert segs and segs[0].start_s == 0.0 and segs[-1].end_s == duration
    for seg, nxt in zip(segs[:-1], segs[1:], strict=True):
        assert seg.end_s == nxt.start_s
    assert all(s.end_s > s.start_s for s in segs)
    first_seen = list(dict.fromkeys(s.label for s in segs))
    assert first_seen == [chr(ord("A") + i) for i in range(len(first_seen))]


def _melody(rng: np.random.Generator, beats: int) -> list[tuple[float, float, int]]:
    """A random melody of quarter and eighth notes over ``beats`` beats, ending on a held note and a rest."""
    notes, t = [], 0.0
    while t < beats - 2:
        d = float(rng.choice([0.5, 1.0]))
        notes.append((t, d, int(rng.integers(60, 79))))
        t += d
    notes.append((t, beats - t - 0.5, 60))
    return notes


def _form_midi(form: str, bpm: float = 100.0, beats: int = 16, seed: int = 0) -> tuple[pretty_midi.PrettyMIDI,
                                                                                       list[float]]:
    rng = np.random.default_rng(seed)
    melodies = {k: _melody(rng, beats) for k in sorted(set(form))}
    pm = pretty_midi.PrettyMIDI(initial_tempo=bpm)
    inst = pretty_midi.Instrument(program=0)
    spq = 60.0 / bpm
    starts = []
    for i, k in enumerate(form):
        t0 = i * beats * spq
        starts.append(t0)
        for on, d, p in melodies[k]:
            inst.notes.append(pretty_midi.Note(80, p, t0 + on * spq, t0 + (on + d) * spq))
    pm.instruments.append(inst)
    return pm, starts


def test_repetition_evidence_marks_repeat_edges() -> None:
    pm, _ = _form_midi("ABAB", beats=16)
    beats = pm.get_beats()
    bounds = np.r_[beats, pm.get_end_time()]
    notes = pm.instruments[0].notes
    onsets = slot_onsets(np.array([n.start for n in notes]), np.array([n.pitch for n in notes]), bounds, 4)
    sim = onset_similarity(onsets)
    ev = repetition_evidence(sim, np.asarray(onsets.sum(axis=1)).ravel() > 0, 4)[0]
    # ABAB repeats at lag 32 beats: the run starts at beat 0 / 32 and ends at 32 / 64; the strongest inner
    # evidence is on the repeat's start, and there is none inside a section
    assert int(np.argmax(ev[1:-1])) + 1 == 32
    assert ev[8] == 0.0 and ev[40] == 0.0
    feats, grid, beat_sim = beat_features(pm)
    assert feats.shape == (len(grid), len(FEATURE_NAMES)) and beat_sim.shape == (len(grid), len(grid))
    a_vs_a = np.mean([beat_sim[i, 32 + i] for i in range(16)])
    a_vs_b = np.mean([beat_sim[i, 16 + i] for i in range(16)])
    assert a_vs_a > a_vs_b + 0.2, (a_vs_a, a_vs_b)


@pytest.mark.parametrize("form", ["AABA", "ABAB", "ABCA"])
def test_symbolic_segments_find_written_out_repeats(form: str) -> None:
    pm, starts = _form_midi(form, seed=len(form) + ord(form[-1]))
    duration = pm.get_end_time()
    segs = symbolic_segments(pm, duration)
    _assert_covers(segs, duration)
    ref = np.array([[a, b] for a, b in zip(starts, starts[1:] + [duration], strict=True)])
    est = np.array([[s.start_s, s.end_s] for s in segs])
    f05 = mir_eval.segment.detection(ref, est, window=0.5, trim=True)[2]
    assert f05 >= 0.8, segs
    pair_f = mir_eval.segment.pairwise(ref, list(form), est, [s.label for s in segs])[2]
    assert pair_f >= 0.8, segs


def test_unusable_midi_falls_back_to_audio() -> None:
    pm = pretty_midi.PrettyMIDI()
    inst = pretty_midi.Instrument(program=0)
    inst.notes = [pretty_midi.Note(80, 60, 0.0, 1.0), pretty_midi.Note(80, 62, 1.0, 2.0)]
    pm.instruments.append(inst)
    assert not usable_midi(pm)
    assert symbolic_segments(pm, 2.0) == [Segment(0.0, 2.0, "A")]
    feats, times, duration = synthetic_form("ABAB", 15.0, np.random.default_rng(0), FRAME_RATE, 0.0, (0.5, 1.0),
                                            0.02)
    feats = np.clip(feats, 0, 1).astype(np.float32)
    beats = np.arange(0.0, duration, 0.5)
    assert track_segments(feats, times, duration, beats, pm=pm) == boundary_segments(feats, times, duration, beats)


def test_track_segments_reads_the_notes_of_a_midi_file() -> None:
    pm, _ = _form_midi("AABA")
    duration = pm.get_end_time()
    n = int(duration * FRAME_RATE)
    silent = np.zeros((n, 48), np.float32)  # the audio says nothing: the sections must come from the notes
    segs = track_segments(silent, np.arange(n) / FRAME_RATE, duration, None, pm=pm)
    assert [s.label for s in segs] == ["A", "A", "B", "A"]


def test_boundary_segments_on_a_rendered_form() -> None:
    pm, starts = _form_midi("AABA", bpm=110.0, beats=24, seed=5)
    y = render_midi(pm)
    duration = len(y) / SAMPLE_RATE
    feats = audio_features(y)
    times = np.arange(len(feats.cqt)) / FRAME_RATE
    ref = np.array([[a, b] for a, b in zip(starts, starts[1:] + [duration], strict=True)])
    segs = boundary_segments(feats.cqt, times, duration, feats.beat_times)
    _assert_covers(segs, duration)
    est = np.array([[s.start_s, s.end_s] for s in segs])
    assert mir_eval.segment.detection(ref, est, window=3.0, trim=True)[2] >= 0.5, segs
    fallback = boundary_segments(feats.cqt, times, duration, None)  # no usable beats: fixed windows
    _assert_covers(fallback, duration)
    assert len(fallback) < 12


def test_boundary_segments_degenerate_and_bad_input() -> None:
    n = 800
    times = np.arange(n) / FRAME_RATE
    assert boundary_segments(np.full((n, 48), 0.3, np.float32), times, n / FRAME_RATE) == [
        Segment(0.0, n / FRAME_RATE, "A")]
    with pytest.raises(ValueError):
        boundary_segments(np.zeros((n, 48), np.float32), times, 0.0)
    with pytest.raises(ValueError):
        boundary_segments(np.zeros((n, 48), np.float32), times[:-1], 10.0)


def test_segment_labels_share_a_label_across_repeats() -> None:
    rng = np.random.default_rng(0)
    a, b = rng.normal(size=(8, 12)), rng.normal(size=(8, 12))
    x = np.concatenate([a, a, b, a])
    x = x / np.linalg.norm(x, axis=1, keepdims=True)
    sim = (x @ x.T + 1) / 2
    ranges = [(0, 8), (8, 16), (16, 24), (24, 32)]
    assert segment_labels(sim, ranges, 0.8) == ["A", "A", "B", "A"]


def test_pick_peaks_keeps_sections_long_enough() -> None:
    score = np.zeros(40)
    score[[10, 12, 25]] = [0.9, 0.95, 0.8]
    times = np.arange(40) * 0.5
    assert pick_peaks(score, times, 20.0, 0.5, 2.0) == [12, 25]
    assert pick_peaks(score, times, 20.0, 0.5, 7.0) == [25]  # 12 is 6 s from the start


def test_shipped_models_load() -> None:
    model = load_boundary_model()
    assert 0.0 < model.config.threshold < 1.0 and model.config.min_section_s > 0
    sym = load_symbolic_model()
    assert len(sym["coef"]) == len(sym["feature_names"])
