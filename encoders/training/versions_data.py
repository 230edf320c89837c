"""The version embedding's corpus: tune families of music21's bundled corpus rendered to audio.

* Bach chorales (``bach/``): a family is a hymn melody; different harmonisations of the same soprano melody
  (same pitch contour of its opening, transposition-normalised) are versions of one another.
* Essen folksongs (``essenFolksong/``): a family is a catalogue code of the ``N:`` field (``A0004A``,
  ``A0004B``... are variants of ``A0004``) within one collection file.

Families are split by a hash of the family key (``splits.version_family_split``; never by version).
Training and validation versions are rendered with FluidR3 and TimGM6mb in even transpositions with the
training GM programs; held-out versions with MuseScore General in odd transpositions with other programs, so
keys, soundfonts and instruments of the evaluation are unseen in training. Chorales are rendered twice (two
keys, tempi and programs), Essen variants once. Features are the pipeline's own (``audio_features``): frame
chroma from the log-CQT, the score's quarter-note grid and beats tracked on the audio.
"""

from __future__ import annotations

import hashlib
import pickle
import re
import time
from concurrent.futures import ProcessPoolExecutor
from dataclasses import dataclass
from pathlib import Path

import numpy as np

from encoders.features import FRAME_RATE, audio_features, estimate_beats
from encoders.training.cache import read_cache
from encoders.training.music21_scores import abc_tunes, music21_corpus_dir, parse_abc_phrase
from encoders.training.reels import REEL_GAP_S, Arranged, render_reel
from encoders.training.splits import version_family_split

DATA_VERSION = 2
SPLITS = ("train", "val", "heldout")
TRAIN_FONTS = ("fluidr3", "timgm6mb")
EVAL_FONTS = ("musescore",)
TRAIN_SHIFTS = (-4, -2, 0, 2, 4, 6)
EVAL_SHIFTS = (-5, -3, -1, 1, 3, 5)
TRAIN_PROGRAMS = (0, 6, 19, 48, 52, 73)  # piano, harpsichord, church organ, strings, choir, flute
EVAL_PROGRAMS = (1, 20, 49, 53, 71, 24)  # bright piano, reed organ, strings 2, voice oohs, clarinet, guitar
BACH_BPM = (60.0, 100.0)
ESSEN_BPM = (70.0, 150.0)
TRAIN_MAX_QL = 48.0  # training renderings keep at most this many quarter notes (crops are used anyway)
REEL_MAX_S = 600.0
HELDOUT_BACH_VERSIONS = 2  # renderings of each held-out chorale: other keys, tempi and programs
DEFAULT_CACHE = Path(".cache/cover-data")


@dataclass
class Tune:
    """One version before rendering: notes in quarter lengths (onset, duration, MIDI pitch)."""

    name: str
    family: str
    source: str  # "bach" or "essen"
    notes: list[tuple[float, float, int]]
    length_ql: float


@dataclass
class CoverItem:
    """One rendered version with the pipeline's features."""

    name: str
    family: str
    source: str
    split: str
    soundfont: str
    program: int
    shift: int
    bpm: float
    duration_s: float
    chroma: np.ndarray  # (n_frames, 12) float16, frames at FRAME_RATE
    beat_times: np.ndarray  # the score's quarter-note grid (s), as the pipeline has for MIDI
    tracked_beats: np.ndarray  # beats tracked on the audio (s), as the pipeline has for recordings


def _melody_key(pitches: list[int], n: int = 12) -> str:
    """Transposition-normalised contour of the first ``n`` distinct consecutive pitches."""
    dedup = [p for i, p in enumerate(pitches) if i == 0 or p != pitches[i - 1]][:n]
    return ",".join(str(p - dedup[0]) for p in dedup) if dedup else ""


def _four_voices(path: Path) -> tuple[list, list] | None:
    """(notes, soprano (onset, pitch)) of a chorale file with four parts; None if unreadable or fewer parts."""
    from music21 import converter

    try:
        score = converter.parse(str(path))
    except Exception:  # noqa: BLE001 - an unreadable file is skipped
        return None
    if len(score.parts) < 4:
        return None
    notes, soprano = [], []
    for i, part in enumerate(score.parts[:4]):
        for n in part.stripTies().flatten().notes:
            for p in n.pitches:
                notes.append((float(n.offset), float(n.quarterLength), int(p.midi)))
                if i == 0:
                    soprano.append((float(n.offset), int(p.midi)))
    return [x for x in notes if x[1] > 0], soprano


def _chorale(base: str, notes: list, soprano: list) -> Tune | None:
    if len(soprano) < 12:
        return None
    key = _melody_key([p for _, p in sorted(soprano)])
    return Tune(f"bach/{base}", "bach/" + hashlib.blake2b(key.encode(), digest_size=6).hexdigest(), "bach", notes,
                max(o + d for o, d, _ in notes))


def chorale_tune(path: Path) -> Tune | None:
    """One chorale file as a Tune whose family is its soprano melody (None if unusable)."""
    voices = _four_voices(path)
    return None if voices is None else _chorale(re.sub(r"[-_].*$", "", path.stem), *voices)


def bach_tunes() -> list[Tune]:
    """Every four-voice chorale once (``bwv112.5-sc`` = ``bwv112.5``), family = its soprano melody."""
    out, seen = [], set()
    for path in sorted((music21_corpus_dir() / "bach").glob("bwv*.mxl")):
        base = re.sub(r"[-_].*$", "", path.stem)
        if base in seen or (voices := _four_voices(path)) is None:
            continue
        seen.add(base)
        if (tune := _chorale(base, *voices)) is not None:
            out.append(tune)
    return out


def essen_tunes(max_per_family: int = 4) -> list[Tune]:
    """Essen variants sharing a catalogue code (``A0004A``, ``A0004B``...): families of at least two."""
    families: dict[str, list[tuple[dict, str]]] = {}
    for path in sorted((music21_corpus_dir() / "essenFolksong").glob("*.abc")):
        if path.stem.startswith("test"):
            continue
        for tune in abc_tunes(path):
            codes = [m.group(1) for n in tune.get("notes", []) if (m := re.fullmatch(r"([A-Z]\d{4})[A-Z]", n))]
            if codes:
                families.setdefault(f"essen/{path.stem}/{codes[0]}", []).append((tune, path.stem))
    out = []
    for family in sorted(families):
        members = families[family]
        if len(members) < 2:
            continue
        parsed = []
        for tune, stem in members[:max_per_family]:
            ph = parse_abc_phrase(tune, "\n".join(tune["lines"]))
            if ph is not None and len(ph.notes) >= 8:
                parsed.append(Tune(f"essen/{stem}/{tune['id']}", family, "essen", ph.notes, ph.length_ql))
        if len(parsed) >= 2:
            out.extend(parsed)
    return out


def arrange_tune(tune: Tune, shift: int, bpm: float, max_ql: float | None, rng: np.random.Generator) -> Arranged:
    """One version of ``tune`` laid out in time: transposed by ``shift`` semitones, at ``bpm`` quarter notes per
    minute, cut after ``max_ql`` quarter notes (None: whole), with velocity jitter."""
    spq = 60.0 / bpm
    base = int(rng.integers(64, 101))
    notes = []
    for on, dur, pitch in tune.notes:
        if max_ql is not None and on >= max_ql:
            continue
        vel = int(np.clip(base + rng.integers(-10, 11), 20, 127))
        notes.append((on * spq, (on + dur) * spq, int(np.clip(pitch + shift, 21, 108)), vel))
    length = min(tune.length_ql, max_ql) if max_ql is not None else tune.length_ql
    duration = max(end for _, end, _, _ in notes)
    beats = np.arange(0.0, length - 1e-6, 1.0) * spq
    return Arranged(notes, beats, np.array([[0.0, duration]]), ["A"], duration)


@dataclass
class RenderPlan:
    """One version to render: its tune, split, soundfont, GM program, transposition and tempo."""

    tune: Tune
    split: str
    font: str
    program: int
    shift: int
    bpm: float
    arranged: Arranged


def _plans(tunes: list[Tune], rng: np.random.Generator, bach_train_versions: int) -> list[RenderPlan]:
    plans = []
    for tune in tunes:
        split = version_family_split(tune.family)
        held = split == "heldout"
        n = 1 if tune.source == "essen" else HELDOUT_BACH_VERSIONS if held else bach_train_versions
        fonts, shifts, programs = ((EVAL_FONTS, EVAL_SHIFTS, EVAL_PROGRAMS) if held
                                   else (TRAIN_FONTS, TRAIN_SHIFTS, TRAIN_PROGRAMS))
        for v in range(n):
            font = fonts[(v + int(rng.integers(len(fonts)))) % len(fonts)]
            shift, program = int(rng.choice(shifts)), int(rng.choice(programs))
            bpm = float(rng.uniform(*(BACH_BPM if tune.source == "bach" else ESSEN_BPM)))
            arranged = arrange_tune(tune, shift, bpm, None if held else TRAIN_MAX_QL, rng)
            plans.append(RenderPlan(tune, split, font, program, shift, bpm, arranged))
    return plans


def render_and_analyse(reel: list[RenderPlan]) -> list[CoverItem]:
    """Render versions sharing one soundfont in one call and compute the pipeline's features of each."""
    audios = render_reel([(p.arranged, p.program) for p in reel], reel[0].font)
    items = []
    for p, y in zip(reel, audios, strict=True):
        feats = audio_features(y, p.arranged.beats)
        n = min(len(feats.cqt), int(np.ceil(p.arranged.duration * FRAME_RATE)) + 1)
        tracked = estimate_beats(feats.cqt[:n])
        items.append(CoverItem(p.tune.name, p.tune.family, p.tune.source, p.split, p.font, p.program, p.shift,
                               p.bpm, float(p.arranged.duration), feats.chroma[:n].astype(np.float16),
                               p.arranged.beats, tracked[tracked < p.arranged.duration]))
    return items


def build_cover_corpus(cache_dir: str | Path = DEFAULT_CACHE, *, seed: int = 0, max_essen_families: int = 200,
                       bach_train_versions: int = 2, workers: int = 2, progress: bool = True) -> list[CoverItem]:
    """Build (or load from ``cache_dir``) the rendered corpus, every split, in a fixed order."""
    cache = Path(cache_dir) / f"cover-e{max_essen_families}-b{bach_train_versions}-seed{seed}-d{DATA_VERSION}.pkl"
    if (items := read_cache(cache)) is not None:
        return items
    started = time.perf_counter()
    rng = np.random.default_rng(seed)
    essen = essen_tunes()
    keep = sorted({t.family for t in essen})
    keep = set(keep[i] for i in sorted(rng.permutation(len(keep))[:max_essen_families]))
    tunes = bach_tunes() + [t for t in essen if t.family in keep]
    if progress:
        print(f"  {len(tunes)} tunes parsed ({time.perf_counter() - started:.0f} s)", flush=True)
    plans = _plans(tunes, rng, bach_train_versions)
    reels = []
    for font in sorted({p.font for p in plans}):
        todo, reel, total = [p for p in plans if p.font == font], [], 0.0
        for p in todo:
            if reel and total + p.arranged.duration > REEL_MAX_S:
                reels.append(reel)
                reel, total = [], 0.0
            reel.append(p)
            total += p.arranged.duration + REEL_GAP_S
        if reel:
            reels.append(reel)
    items: list[CoverItem] = []
    with ProcessPoolExecutor(max_workers=workers) as pool:
        for done in pool.map(render_and_analyse, reels):
            items.extend(done)
            if progress:
                print(f"  {len(items)}/{len(plans)} versions rendered ({time.perf_counter() - started:.0f} s)",
                      flush=True)
    items.sort(key=lambda it: (it.name, it.soundfont, it.shift, it.program))
    cache.parent.mkdir(parents=True, exist_ok=True)
    cache.write_bytes(pickle.dumps(items))
    return items


def cover_corpus(split: str | None = None, **kwargs) -> list[CoverItem]:
    """The versions of ``split`` ('train', 'val', 'heldout'; None = all), building the corpus if needed."""
    if split is not None and split not in SPLITS:
        raise ValueError(f"split must be one of {SPLITS}, got {split!r}")
    return [it for it in build_cover_corpus(**kwargs) if split is None or it.split == split]


__all__ = ["CoverItem", "DATA_VERSION", "SPLITS", "Tune", "bach_tunes", "build_cover_corpus", "chorale_tune",
           "cover_corpus", "essen_tunes"]
