"""Sections of a MIDI file from its notes: symbolic evidence first, the rendered audio only as a fallback.

On the file's own beat grid (``pretty_midi.get_beats``), each beat becomes the set of its note onsets
quantised to ``SUB_BEATS`` sub-beats, (sub-beat, pitch), drums apart. Repeats are written out in MIDI, so
a section played again gives exactly (or nearly) the same sets: the near-exact beat self-similarity
(Jaccard of the sets) is read along each lag, and every run of at least ``MIN_RUN`` matching beats marks
its start and end, in both copies, as boundary evidence (the lag-matrix view of repetition). Beside it:
long rests and long last notes (phrase ends), changes of pitch-class content (key), of tempo, of time
signature and key signature events, of instrumentation and of onset density, and the downbeats.

A logistic model (coefficients in ``encoders/weights/symbolic-boundary-v1.json``, fitted by
``encoders.training.boundary``) turns these per-beat features into a boundary score; peaks above its
threshold at least ``min_section_s`` apart are the boundaries, so the number of sections follows the
evidence, not a fixed k. Labels come from the same similarity (``labels.segment_labels``).
"""

from __future__ import annotations

import functools
import json
from pathlib import Path

import numpy as np
import pretty_midi
import scipy.sparse

from encoders.structure.labels import segment_labels
from encoders.structure.laplacian import Segment

__all__ = ["DEFAULT_SYMBOLIC_WEIGHTS", "SUB_BEATS", "beat_features", "repetition_evidence",
           "symbolic_beats", "symbolic_segments", "usable_midi"]

DEFAULT_SYMBOLIC_WEIGHTS = Path(__file__).resolve().parents[1] / "weights" / "symbolic-boundary-v1.json"
SUB_BEATS = 4
MIN_RUN = 4  # beats: shorter repetition runs are not evidence
MIN_LAG = 4
MATCH = 0.7  # Jaccard at or above which two beats are (near-)exact repeats
MAX_BEATS = 2048
MAX_SLOTS = 4096  # sub-beat slots compared pairwise (float32: 64 MB)
TEMPO_TOLERANCE = 0.1  # |log| change of beat length below this is not evidence (about 10 %)
RUN_LEVELS = ((4, 12), (12, 24), (24, 1 << 30))  # run lengths (beats) whose evidence is counted apart
FEATURE_NAMES = ("rep_run", "rep_run_wide", "rep_4_12", "rep_12_24", "rep_24_", "rest", "last_ioi", "pc_nov4",
                 "pc_nov8", "pc_nov16", "tempo",
                 "meta", "instruments", "density", "downbeat", "onset", "rep_x_rest", "bias")


def usable_midi(pm: pretty_midi.PrettyMIDI) -> bool:
    """Whether the file has enough notes and beats for the symbolic method."""
    n_notes = sum(len(i.notes) for i in pm.instruments)
    return n_notes >= 8 and len(symbolic_beats(pm)) >= 8


def symbolic_beats(pm: pretty_midi.PrettyMIDI) -> np.ndarray:
    """The beat grid (s) the symbolic method runs on: the file's beats up to its end, at most MAX_BEATS."""
    end = pm.get_end_time()
    beats = np.asarray(pm.get_beats(), np.float64)
    beats = beats[beats < end - 1e-3]
    if len(beats) > MAX_BEATS:
        beats = beats[:: -(-len(beats) // MAX_BEATS)]
    return beats


def _notes(pm: pretty_midi.PrettyMIDI) -> tuple[np.ndarray, np.ndarray, np.ndarray, np.ndarray, np.ndarray]:
    rows = [(n.start, n.end, n.pitch + (128 if inst.is_drum else 0), inst.program + (128 if inst.is_drum else 0),
             n.velocity) for inst in pm.instruments for n in inst.notes]
    if not rows:
        return tuple(np.empty(0) for _ in range(5))  # type: ignore[return-value]
    a = np.array(rows, dtype=np.float64)
    return a[:, 0], a[:, 1], a[:, 2].astype(int), a[:, 3].astype(int), a[:, 4]


def slots_per_beat(n_beats: int) -> int:
    """Sub-beat slots per beat for the repetition search: SUB_BEATS, fewer on long files (memory is slots^2)."""
    return SUB_BEATS if n_beats * SUB_BEATS <= MAX_SLOTS else max(1, MAX_SLOTS // max(n_beats, 1))


def slot_onsets(starts: np.ndarray, pitches: np.ndarray, bounds: np.ndarray, sub: int) -> scipy.sparse.csr_matrix:
    """(n_beats * sub, 256) binary: the pitches (drums at 128 + key) with an onset in each sub-beat slot."""
    n = len(bounds) - 1
    beat = np.searchsorted(bounds, starts, side="right") - 1
    ok = (beat >= 0) & (beat < n)
    beat, s, p = beat[ok], starts[ok], pitches[ok]
    frac = (s - bounds[beat]) / np.maximum(bounds[beat + 1] - bounds[beat], 1e-6)
    slot = beat * sub + np.clip(np.round(frac * sub).astype(int), 0, sub)  # just before a beat: that beat's slot
    keep = slot < n * sub
    m = scipy.sparse.coo_matrix((np.ones(int(keep.sum()), np.float32), (slot[keep], p[keep])),
                                shape=(n * sub, 256)).tocsr()
    m.data[:] = 1.0
    return m


def onset_similarity(onsets: scipy.sparse.csr_matrix) -> np.ndarray:
    """(m, m) float32 Jaccard similarity of the slots' onset sets; two empty slots count 1 (a shared rest or
    held note), one empty slot 0."""
    inter = (onsets @ onsets.T).toarray().astype(np.float32)
    size = np.asarray(onsets.sum(axis=1), dtype=np.float32).ravel()
    union = size[:, None] + size[None, :] - inter
    return np.where(union > 0, inter / np.maximum(union, 1.0), np.float32(1.0)).astype(np.float32)


def repetition_evidence(sim: np.ndarray, nonempty: np.ndarray, sub: int,
                        run_levels: tuple[tuple[int, int], ...] = ((MIN_RUN, 1 << 30),)) -> np.ndarray:
    """(len(run_levels), n_beats + 1) boundary evidence at each beat from the runs of near-exact repetition
    along every lag of the slot similarity (slots: ``sub`` per beat). A run counts for the level whose
    range holds its length in beats, weighted by its onsets (at most 32 beats' worth); it marks its start
    and end in both copies, at the nearest beat. Each level is scaled to a maximum of 1."""
    m = sim.shape[0]
    n = m // sub
    ev = np.zeros((len(run_levels), n + 1))
    match = sim >= MATCH
    onsets_before = np.r_[0, np.cumsum(nonempty)]
    min_len = MIN_RUN * sub
    for lag in range(MIN_LAG * sub, m - min_len + 1):
        d = np.diagonal(match, lag)
        if d.sum() < min_len:
            continue
        edges = np.diff(np.r_[0, d.astype(np.int8), 0])
        starts, ends = np.flatnonzero(edges == 1), np.flatnonzero(edges == -1)
        long = ends - starts >= min_len
        for a, b in zip(starts[long], ends[long], strict=True):
            beats_long = (b - a) / sub
            weight = min(onsets_before[b] - onsets_before[a], 4 * 32) / (4 * 32)
            if weight <= 0:
                continue
            for k, (lo, hi) in enumerate(run_levels):
                if lo <= beats_long < hi:
                    for x in (a, b, a + lag, min(b + lag, m)):
                        ev[k, min(int(round(x / sub)), n)] += weight
    ev[:, 0] = 0.0
    ev[:, n] = 0.0
    return ev / np.maximum(ev.max(axis=1, keepdims=True), 1e-9)


def beat_similarity(slot_sim: np.ndarray, sub: int) -> np.ndarray:
    """(n, n) beat similarity for labels: the slot similarity averaged over each beat's slots pair by pair,
    the best over offsets of up to half a beat (a repeat may sit off the beat grid by a pickup)."""
    m = slot_sim.shape[0]
    n = m // sub
    padded = np.pad(slot_sim, ((0, 0), (sub, sub)), constant_values=0.0)
    best = np.zeros((n, n), np.float32)
    for off in range(-(sub // 2), sub // 2 + 1):
        acc = np.zeros((n, n), np.float32)
        for k in range(sub):
            acc += padded[k::sub, sub + k + off::sub][:n, :n]
        best = np.maximum(best, acc / sub)
    return best


def _window_hist(x: np.ndarray, w: int) -> tuple[np.ndarray, np.ndarray]:
    """Sums of rows in the w beats before and the w beats from each beat boundary: (n + 1, d) each."""
    c = np.vstack([np.zeros((1, x.shape[1])), np.cumsum(x, axis=0)])
    n = x.shape[0]
    idx = np.arange(n + 1)
    before = c[idx] - c[np.maximum(idx - w, 0)]
    after = c[np.minimum(idx + w, n)] - c[idx]
    return before, after


def _cos_dist(a: np.ndarray, b: np.ndarray) -> np.ndarray:
    na, nb = np.linalg.norm(a, axis=1), np.linalg.norm(b, axis=1)
    ok = (na > 0) & (nb > 0)
    out = np.zeros(len(a))
    out[ok] = 1.0 - np.sum(a[ok] * b[ok], axis=1) / (na[ok] * nb[ok])
    return out


def beat_features(pm: pretty_midi.PrettyMIDI, beats: np.ndarray | None = None
                  ) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
    """Per-beat boundary features of a MIDI file: (features (n_beats, len(FEATURE_NAMES)), beat times,
    beat similarity (n_beats, n_beats)). Row i is the evidence for a boundary at the start of beat i."""
    beats = symbolic_beats(pm) if beats is None else np.asarray(beats, np.float64)
    end = max(pm.get_end_time(), beats[-1] + 1e-3)
    bounds = np.r_[beats, end]
    n = len(beats)
    starts, ends, pitches, programs, _ = _notes(pm)
    sub = slots_per_beat(n)
    onsets = slot_onsets(starts, pitches, bounds, sub)
    slot_sim = onset_similarity(onsets)
    nonempty = np.asarray(onsets.sum(axis=1)).ravel() > 0
    evidence = repetition_evidence(slot_sim, nonempty, sub, ((MIN_RUN, 1 << 30), *RUN_LEVELS))[:, :n]
    rep, rep_levels = evidence[0], list(evidence[1:])
    rep_wide = np.convolve(rep, np.ones(3), mode="same")
    both_empty = ~nonempty[:, None] & ~nonempty[None, :]
    sim = beat_similarity(np.where(both_empty, np.float32(0.5), slot_sim), sub)  # a shared rest proves little
    beat_len = np.diff(bounds)
    # rests: silent time just before each beat (no note sounding), in beats
    sounding_end = np.zeros(n)
    order = np.argsort(starts)
    s_sorted, e_sorted = starts[order], np.maximum.accumulate(ends[order]) if len(ends) else ends
    k = np.searchsorted(s_sorted, beats - 1e-3, side="left")  # notes started before each beat
    sounding_end[k > 0] = e_sorted[k[k > 0] - 1]
    first_on = s_sorted[np.minimum(k, len(s_sorted) - 1)] if len(s_sorted) else beats
    gap = np.clip(np.minimum(first_on, beats + beat_len) - np.maximum(sounding_end, beats - 8 * beat_len), 0, None)
    rest = np.log1p(np.where(k > 0, gap, 0.0) / beat_len)
    # last inter-onset interval before the beat (long final notes end phrases)
    uniq = np.unique(s_sorted) if len(s_sorted) else s_sorted
    j = np.searchsorted(uniq, beats - 1e-3, side="left")
    prev_on = np.where(j > 0, uniq[np.maximum(j - 1, 0)], beats)
    next_on = uniq[np.minimum(j, len(uniq) - 1)] if len(uniq) else beats
    last_ioi = np.log1p(np.clip(next_on - prev_on, 0, None) / beat_len) * (j > 0)
    # pitch-class content, duration weighted, per beat
    pc = np.zeros((n, 12))
    dens = np.zeros((n, 1))
    for s, e, p in zip(starts, ends, pitches, strict=True):
        if p >= 128:
            continue
        a, b = np.searchsorted(bounds, s, "right") - 1, np.searchsorted(bounds, e, "left")
        pc[max(a, 0): max(b, a + 1), p % 12] += 1.0
    beat_of_onset = np.clip(np.searchsorted(bounds, starts, "right") - 1, 0, n - 1)
    np.add.at(dens[:, 0], beat_of_onset, 1.0)
    nov = []
    for w in (4, 8, 16):
        bfr, aft = _window_hist(pc, w)
        nov.append(_cos_dist(bfr, aft)[:n])
    db, da = _window_hist(dens, 4)
    density = np.abs(np.log1p(db[:n, 0]) - np.log1p(da[:n, 0]))
    # tempo: change of beat length across the beat, beyond TEMPO_TOLERANCE (expressive drift is not a boundary)
    lb = np.log(beat_len)
    tempo = np.maximum(np.abs(np.r_[0.0, np.diff(lb)]) - TEMPO_TOLERANCE, 0.0)
    meta = np.zeros(n)
    for ev in list(pm.time_signature_changes) + list(pm.key_signature_changes):
        if ev.time > 1e-3:
            i = int(np.argmin(np.abs(beats - ev.time)))
            meta[i] = 1.0
    prog_onehot = np.zeros((n, 256))
    np.add.at(prog_onehot, (beat_of_onset, programs), 1.0)
    pb, pa = _window_hist((prog_onehot > 0).astype(float), 8)
    instruments = np.array([0.0 if not (x.any() and y.any()) else
                            1.0 - np.sum((x > 0) & (y > 0)) / np.sum((x > 0) | (y > 0)) for x, y in zip(pb[:n], pa[:n],
                                                                                                    strict=True)])
    downbeats = np.asarray(pm.get_downbeats(), np.float64)
    downbeat = np.zeros(n)
    if len(downbeats):
        near = np.abs(beats[:, None] - downbeats[None, :]).min(axis=1) if n * len(downbeats) < 4e6 else np.zeros(n)
        downbeat = (near < 0.25 * beat_len).astype(float)
    onset = nonempty[::sub][:n]
    feats = np.stack([rep, rep_wide, *rep_levels, rest, last_ioi, *nov, tempo, meta, instruments, density, downbeat,
                      onset.astype(float), rep * (rest + last_ioi), np.ones(n)], axis=1)
    return feats, beats, sim


@functools.lru_cache(maxsize=2)
def load_symbolic_model(path: str | Path = DEFAULT_SYMBOLIC_WEIGHTS) -> dict:
    """{'coef': [...], 'threshold', 'min_section_s', 'label_threshold'} of the shipped model."""
    return json.loads(Path(path).read_text())


def boundary_scores(feats: np.ndarray, model: dict) -> np.ndarray:
    z = feats @ np.asarray(model["coef"], np.float64)
    return 1.0 / (1.0 + np.exp(-z))


def pick_peaks(score: np.ndarray, times: np.ndarray, duration: float, threshold: float, min_section_s: float,
               radius: int = 2) -> list[int]:
    """Indices of boundary beats: local maxima (within +-radius) above threshold, greedily by score, each at
    least min_section_s from the track's ends and from each other."""
    n = len(score)
    if n == 0:
        return []
    padded = np.pad(score, radius, mode="constant", constant_values=-np.inf)
    windows = np.lib.stride_tricks.sliding_window_view(padded, 2 * radius + 1)
    cand = np.flatnonzero((score >= windows.max(axis=1)) & (score >= threshold))
    chosen: list[int] = []
    for i in cand[np.argsort(-score[cand], kind="stable")]:
        t = times[i]
        if t < min_section_s or duration - t < min_section_s:
            continue
        if all(abs(t - times[j]) >= min_section_s for j in chosen):
            chosen.append(int(i))
    return sorted(chosen)


def segments_from_boundaries(bound_idx: list[int], beats: np.ndarray, duration: float, sim: np.ndarray,
                             label_threshold: float) -> list[Segment]:
    """Covering segments from boundary beat indices, labelled by repetition in ``sim``."""
    cuts = [0, *bound_idx, len(beats)]
    ranges = [(a, b) for a, b in zip(cuts[:-1], cuts[1:], strict=True)]
    labels = segment_labels(sim, ranges, label_threshold)
    starts = [0.0] + [float(beats[i]) for i in bound_idx]
    ends = starts[1:] + [duration]
    return [Segment(a, b, lab) for a, b, lab in zip(starts, ends, labels, strict=True)]


def symbolic_segments(pm: pretty_midi.PrettyMIDI, duration_s: float, *, model: dict | None = None,
                      threshold: float | None = None) -> list[Segment]:
    """Labelled sections of a parsed MIDI file covering [0, duration_s] (file time)."""
    duration = float(duration_s)
    if not np.isfinite(duration) or duration <= 0:
        raise ValueError(f"duration_s must be positive and finite, got {duration_s}")
    if not usable_midi(pm):
        return [Segment(0.0, duration, "A")]
    model = load_symbolic_model() if model is None else model
    feats, beats, sim = beat_features(pm)
    keep = beats < duration
    feats, beats, sim = feats[keep], beats[keep], sim[np.ix_(keep, keep)]
    score = boundary_scores(feats, model)
    th = model["threshold"] if threshold is None else threshold
    idx = pick_peaks(score, beats, duration, th, model["min_section_s"])
    return segments_from_boundaries(idx, beats, duration, sim, model["label_threshold"])
