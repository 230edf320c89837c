"""The segment embedding's corpus: pieces with known section boundaries and labels, from music21's bundled corpus.

Every piece is assembled in a form such as AABA, ABAB or ABAC from sections cut at phrase ends, so that the
ground truth has boundaries and labels (repeated sections share a label):

* ``essen`` pieces: each section type is the opening phrases (one ABC line each) of a different Essen
  folksong of the same collection file, transposed to a common tonic, so section types differ by melody,
  not by key or timbre;
* ``bach`` pieces: the section types are consecutive groups of two phrases (phrase ends at the soprano's
  fermatas) of one Bach chorale, in four voices; chorales whose groups share a phrase are skipped.

Repeated sections are played again with a slightly different tempo (+-4 %) and new velocity jitter. One
program (piano or strings), soundfont (FluidR3, TimGM6mb, MuseScore General) and tempo per piece. Each piece
is rendered with ``render_midi`` (several pieces per rendering, ``reels.render_reel``) and analysed with
``audio_features`` on the exact beat grid of the score (as the pipeline does for MIDI); beats tracked on the
audio are kept too. Pieces are split by a hash of their name (``splits.segment_piece_split``; one tune or
chorale is used by one piece only), never by frame.
"""

from __future__ import annotations

import pickle
import re
import time
from dataclasses import dataclass, field
from pathlib import Path

import numpy as np

from encoders.features import FRAME_RATE, audio_features, estimate_beats
from encoders.soundfonts import available_soundfonts
from encoders.training.cache import read_cache
from encoders.training.music21_scores import Phrase, abc_tunes, chorale_phrases, music21_corpus_dir, parse_abc_phrase
from encoders.training.reels import REEL_GAP_S, Arranged, render_reel
from encoders.training.splits import segment_piece_split

DATA_VERSION = 1
SPLITS = ("train", "val", "heldout")
PROGRAMS = (0, 1, 48, 49)  # acoustic / bright piano, string ensembles 1 / 2
FORMS_2 = ("AABA", "ABAB", "AABB", "ABA", "ABBA", "AABAB")
FORMS_3 = ("ABAC", "ABCA", "AABCA", "ABACA", "ABCB")
REEL_MAX_S = 900.0  # pieces rendered together in one call, at most this long
ESSEN_SECTION_S = (8.0, 24.0)  # an Essen section takes opening phrases until at least 8 s, at most 24 s
ESSEN_BPM = (80.0, 140.0)
BACH_BPM = (60.0, 96.0)
REPEAT_TEMPO_JITTER = 0.04
DEFAULT_CACHE = Path(".cache/segment-data")

_PITCH_CLASS = {"C": 0, "D": 2, "E": 4, "F": 5, "G": 7, "A": 9, "B": 11, "H": 11}


@dataclass
class PieceSpec:
    """A piece before rendering: its form and the phrases of each section type."""

    name: str
    source: str  # "essen" or "bach"
    form: str  # e.g. "AABA"
    sections: dict[str, list[Phrase]]
    bpm: float  # quarter notes per minute


@dataclass
class SegmentPiece:
    """One rendered piece: features and the ground-truth sections."""

    name: str
    source: str
    split: str
    form: str
    soundfont: str
    program: int
    duration_s: float
    cqt: np.ndarray  # (n_frames, 48) float16 log-CQT in [0, 1] (use .cqt.astype(np.float32))
    beat_times: np.ndarray  # (n_beats,) float64: the score's quarter-note grid
    tracked_beats: np.ndarray  # (m,) float64: beats tracked on the audio (encoders.features.estimate_beats)
    ref_intervals: np.ndarray  # (n_sections, 2) float64 seconds, covering [0, duration_s]
    ref_labels: list[str] = field(default_factory=list)

    @property
    def frame_times(self) -> np.ndarray:
        return np.arange(len(self.cqt)) / FRAME_RATE


# ----------------------------------------------------------------------------------------------- sources


def _tonic_pc(key: str) -> int:
    key = key.strip()
    pc = _PITCH_CLASS.get(key[:1].upper(), 0)
    rest = key[1:].lower()
    if rest.startswith(("#", "is")):
        pc += 1
    elif rest.startswith(("b", "es", "s")) and not rest.startswith("sus"):
        pc -= 1
    return pc % 12


def _transpose(phrases: list[Phrase], semitones: int) -> list[Phrase]:
    return [Phrase([(o, d, p + semitones) for o, d, p in ph.notes], ph.length_ql) for ph in phrases]


def essen_specs(n_pieces: int, rng: np.random.Generator) -> list[PieceSpec]:
    """Essen pieces: each section type is the opening phrases of another folksong of the same file."""
    files = sorted(p for p in (music21_corpus_dir() / "essenFolksong").glob("*.abc")
                   if not p.stem.startswith("test"))
    pools = {}
    for f in files:
        tunes = [t for t in abc_tunes(f) if len(t["lines"]) >= 2]
        if len(tunes) >= 9:
            pools[f.stem] = [tunes[i] for i in rng.permutation(len(tunes))]
    specs: list[PieceSpec] = []
    names = sorted(pools)
    stalled = 0
    while len(specs) < n_pieces and stalled < 5 * len(names):
        stem = names[len(specs) % len(names)] if stalled == 0 else names[int(rng.integers(len(names)))]
        pool = pools[stem]
        form = str(rng.choice(FORMS_3 if rng.random() < 0.35 else FORMS_2))
        kinds = sorted(set(form))
        bpm = float(rng.uniform(*ESSEN_BPM))
        sections, used = {}, []
        while pool and len(sections) < len(kinds):
            tune = pool.pop()
            phrases = _opening_phrases(tune, bpm)
            if phrases is not None:
                sections[kinds[len(sections)]] = (tune, phrases)
                used.append(tune["id"])
        if len(sections) < len(kinds):
            stalled += 1
            continue
        stalled = 0
        tonic = _tonic_pc(sections["A"][0]["K"])
        secs = {}
        for kind, (tune, phrases) in sections.items():
            shift = (tonic - _tonic_pc(tune["K"]) + 6) % 12 - 6
            secs[kind] = _transpose(phrases, shift)
        specs.append(PieceSpec(f"essen/{stem}/{'+'.join(used)}", "essen", form, secs, bpm))
    return specs


def _opening_phrases(tune: dict, bpm: float) -> list[Phrase] | None:
    """Leading phrases of a tune lasting ESSEN_SECTION_S at ``bpm`` (None if impossible)."""
    lo, hi = ESSEN_SECTION_S
    out, total = [], 0.0
    for line in tune["lines"]:
        ph = parse_abc_phrase(tune, line)
        if ph is None:
            return None
        if (total + ph.length_ql) * 60.0 / bpm > hi:
            break
        out.append(ph)
        total += ph.length_ql
        if total * 60.0 / bpm >= lo and len(out) >= 2:
            return out
    return None


def bach_specs(n_pieces: int, rng: np.random.Generator) -> list[PieceSpec]:
    """Chorale pieces: section types are consecutive two-phrase groups (fermata-delimited) of one chorale."""
    paths = sorted((music21_corpus_dir() / "bach").glob("bwv*.mxl"))
    seen, specs = set(), []
    for i in rng.permutation(len(paths)):
        if len(specs) >= n_pieces:
            break
        path = paths[i]
        base = re.sub(r"[-_].*$", "", path.stem)  # bwv112.5-sc and bwv112.5 are one chorale
        if base in seen:
            continue
        phrases = chorale_phrases(path)
        if phrases is None or len(phrases) < 4:
            continue
        k = 3 if len(phrases) >= 6 and rng.random() < 0.4 else 2
        groups = [phrases[2 * j: 2 * j + 2] for j in range(k)]
        melodies = [{ph.melody for ph in g} for g in groups]
        if any(melodies[a] & melodies[b] for a in range(k) for b in range(a + 1, k)):
            continue  # a phrase repeated in two section types: the labels would be ambiguous
        seen.add(base)
        form = str(rng.choice(FORMS_3 if k == 3 else FORMS_2))
        specs.append(PieceSpec(f"bach/{base}", "bach", form, {chr(65 + j): g for j, g in enumerate(groups)},
                               float(rng.uniform(*BACH_BPM))))
    return specs


# ------------------------------------------------------------------------------------------------ render


def arrange(spec: PieceSpec, rng: np.random.Generator) -> Arranged:
    """Lay the sections out in time: per-instance tempo jitter, velocity jitter, the quarter-note grid."""
    base_vel = int(rng.integers(64, 101))
    t0, notes, beats, intervals = 0.0, [], [], []
    for kind in spec.form:
        spq = 60.0 / (spec.bpm * (1.0 + rng.uniform(-REPEAT_TEMPO_JITTER, REPEAT_TEMPO_JITTER)))
        start = t0
        for ph in spec.sections[kind]:
            for on, dur, pitch in ph.notes:
                vel = int(np.clip(base_vel + rng.integers(-10, 11), 20, 127))
                notes.append((t0 + on * spq, t0 + (on + dur) * spq, int(np.clip(pitch, 21, 108)), vel))
            t0 += ph.length_ql * spq
        beats.append(start + np.arange(0.0, (t0 - start) / spq - 1e-6, 1.0) * spq)  # the section's quarter grid
        intervals.append((start, t0))
    return Arranged(notes, np.concatenate(beats), np.array(intervals), list(spec.form), t0)


def build_segment_corpus(cache_dir: str | Path = DEFAULT_CACHE, *, n_essen: int = 180, n_bach: int = 120,
                         seed: int = 0, progress: bool = True) -> list[SegmentPiece]:
    """Build (or load from ``cache_dir``) the whole corpus; every split, in a fixed order."""
    cache = Path(cache_dir) / f"segments-e{n_essen}-b{n_bach}-seed{seed}-d{DATA_VERSION}.pkl"
    if (pieces := read_cache(cache)) is not None:
        return pieces
    started = time.perf_counter()
    rng = np.random.default_rng(seed)
    specs = essen_specs(n_essen, rng) + bach_specs(n_bach, rng)
    if progress:
        print(f"  {len(specs)} pieces parsed ({time.perf_counter() - started:.0f} s)", flush=True)
    fonts = available_soundfonts()
    if not fonts:
        raise FileNotFoundError("no soundfont installed (see encoders/soundfonts.py)")
    plans = []
    for spec in specs:
        arr = arrange(spec, rng)
        plans.append((spec, arr, str(rng.choice(fonts)), int(rng.choice(PROGRAMS))))
    pieces: list[SegmentPiece] = []
    for font in fonts:
        todo = [p for p in plans if p[2] == font]
        while todo:
            reel, total = [], 0.0
            while todo and (not reel or total + todo[0][1].duration <= REEL_MAX_S):
                reel.append(todo.pop(0))
                total += reel[-1][1].duration + REEL_GAP_S
            audios = render_reel([(arr, prog) for _, arr, _, prog in reel], font)
            for (spec, arr, _, prog), y in zip(reel, audios, strict=True):
                pieces.append(_analyse(spec, arr, font, prog, y))
            if progress:
                print(f"  {len(pieces)}/{len(plans)} pieces rendered and analysed "
                      f"({time.perf_counter() - started:.0f} s)", flush=True)
    order = {spec.name: i for i, spec in enumerate(specs)}
    pieces.sort(key=lambda p: order[p.name])
    cache.parent.mkdir(parents=True, exist_ok=True)
    cache.write_bytes(pickle.dumps(pieces))
    return pieces


def _analyse(spec: PieceSpec, arr: Arranged, font: str, program: int, y: np.ndarray) -> SegmentPiece:
    feats = audio_features(y, arr.beats)
    n_frames = min(len(feats.cqt), int(np.ceil(arr.duration * FRAME_RATE)) + 1)
    cqt = feats.cqt[:n_frames]
    tracked = estimate_beats(cqt)
    return SegmentPiece(name=spec.name, source=spec.source, split=segment_piece_split(spec.name), form=spec.form,
                        soundfont=font, program=program, duration_s=float(arr.duration),
                        cqt=cqt.astype(np.float16), beat_times=arr.beats.astype(np.float64),
                        tracked_beats=tracked[tracked < arr.duration], ref_intervals=arr.intervals,
                        ref_labels=arr.labels)


def segment_corpus(split: str | None = None, **kwargs) -> list[SegmentPiece]:
    """The pieces of ``split`` ('train', 'val', 'heldout'; None = all), building the corpus if needed."""
    if split is not None and split not in SPLITS:
        raise ValueError(f"split must be one of {SPLITS}, got {split!r}")
    pieces = build_segment_corpus(**kwargs)
    return [p for p in pieces if split is None or p.split == split]


__all__ = ["DATA_VERSION", "Phrase", "PieceSpec", "SPLITS", "SegmentPiece", "arrange", "bach_specs",
           "build_segment_corpus", "essen_specs", "segment_corpus"]
