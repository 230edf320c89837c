"""A structural-segmentation corpus with known section boundaries and labels, from music21's bundled corpus.

Every piece is assembled in a form such as AABA, ABAB or ABAC from sections cut at phrase ends, so that the
ground truth has boundaries and labels (repeated sections share a label):

* ``essen`` pieces: each section type is the opening phrases (one ABC line each) of a different Essen
  folksong of the same collection file, transposed to a common tonic, so section types differ by melody,
  not by key or timbre;
* ``bach`` pieces: the section types are consecutive groups of two phrases (phrase ends at the soprano's
  fermatas) of one Bach chorale, in four voices; chorales whose groups share a phrase are skipped.

Repeated sections are played again with a slightly different tempo (+-4 %) and new velocity jitter. One
program (piano or strings), soundfont (FluidR3, TimGM6mb, MuseScore General) and tempo per piece. Each piece
is rendered with ``render_midi`` (several pieces per rendering, cut apart afterwards: loading a soundfont
costs more than playing a minute of music) and analysed with ``audio_features`` on the exact beat grid of
the score (as the pipeline does for MIDI); beats tracked on the audio are kept too. Pieces are split by a
hash of their name (one tune or chorale is used by one piece only), never by frame.
"""

from __future__ import annotations

import hashlib
import pickle
import re
import time
from dataclasses import dataclass, field
from pathlib import Path

import numpy as np
import pretty_midi

from encoders.features import FRAME_RATE, audio_features, estimate_beats
from encoders.media import SAMPLE_RATE
from encoders.render import render_midi
from encoders.soundfonts import available_soundfonts

DATA_VERSION = 1
SPLITS = ("train", "val", "heldout")
PROGRAMS = (0, 1, 48, 49)  # acoustic / bright piano, string ensembles 1 / 2
FORMS_2 = ("AABA", "ABAB", "AABB", "ABA", "ABBA", "AABAB")
FORMS_3 = ("ABAC", "ABCA", "AABCA", "ABACA", "ABCB")
REEL_MAX_S = 900.0  # pieces rendered together in one call, at most this long
REEL_GAP_S = 3.0  # silence between pieces of a reel (longer than any release / reverb tail)
ESSEN_SECTION_S = (8.0, 24.0)  # an Essen section takes opening phrases until at least 8 s, at most 24 s
ESSEN_BPM = (80.0, 140.0)
BACH_BPM = (60.0, 96.0)
REPEAT_TEMPO_JITTER = 0.04
DEFAULT_CACHE = Path(".cache/segment-data")

_PITCH_CLASS = {"C": 0, "D": 2, "E": 4, "F": 5, "G": 7, "A": 9, "B": 11, "H": 11}


@dataclass
class Phrase:
    """Notes of one phrase in quarter lengths from the phrase start: (onset, duration, MIDI pitch)."""

    notes: list[tuple[float, float, int]]
    length_ql: float
    melody: tuple = ()  # (onset, pitch) of the top voice, to compare phrases


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


def piece_split(name: str) -> str:
    """'heldout' for one piece in five, 'val' for another one in five, else 'train' (blake2b of the name)."""
    bucket = hashlib.blake2b(f"segment:{name}".encode(), digest_size=8).digest()[0] % 5
    return "heldout" if bucket == 0 else "val" if bucket == 1 else "train"


# ----------------------------------------------------------------------------------------------- sources


def _music21_corpus_dir() -> Path:
    import music21

    return Path(music21.__file__).parent / "corpus"


def _abc_tunes(path: Path) -> list[dict]:
    """Tunes of an ABC file: {'id', 'M', 'L', 'K', 'lines', 'notes'} with one body line per phrase."""
    tunes, cur = [], None
    for raw in path.read_text(encoding="latin-1").splitlines():
        line = raw.strip()
        if line.startswith("X:"):
            cur = {"id": line[2:].strip(), "M": "none", "L": "1/8", "K": None, "lines": [], "notes": []}
            tunes.append(cur)
        elif cur is None or not line or line.startswith("%"):
            continue
        elif re.match(r"^[A-Za-z]:", line):
            if cur["K"] is None:
                cur[line[0]] = line[2:].strip()
                if line[0] == "N":  # every N: line (Essen catalogue codes, remarks)
                    cur["notes"].append(line[2:].strip())
        elif cur["K"] is not None:
            cur["lines"].append(line)
    return [t for t in tunes if t["K"] and t["lines"]]


def _tonic_pc(key: str) -> int:
    key = key.strip()
    pc = _PITCH_CLASS.get(key[:1].upper(), 0)
    rest = key[1:].lower()
    if rest.startswith(("#", "is")):
        pc += 1
    elif rest.startswith(("b", "es", "s")) and not rest.startswith("sus"):
        pc -= 1
    return pc % 12


def _parse_abc_phrase(tune: dict, line: str) -> Phrase | None:
    """One ABC body line as a phrase (music21's ABC parser on the tune's header + that line)."""
    from music21 import converter

    header = f"X:1\nL:{tune['L']}\nK:{tune['K']}\n"
    if tune["M"].lower() != "none":
        header = f"X:1\nM:{tune['M']}\nL:{tune['L']}\nK:{tune['K']}\n"
    try:
        score = converter.parse(header + line + "\n", format="abc").stripTies()
    except Exception:  # noqa: BLE001 - a line music21 cannot read is skipped with its tune
        return None
    flat = score.flatten()
    notes = []
    for n in flat.notes:
        for p in getattr(n, "pitches", ()):
            notes.append((float(n.offset), float(n.quarterLength), int(p.midi)))
    length = float(flat.highestTime)
    if not notes or length <= 0 or any(d <= 0 for _, d, _ in notes):
        return None
    return Phrase(notes, length, tuple((o, p) for o, _, p in notes))


def _transpose(phrases: list[Phrase], semitones: int) -> list[Phrase]:
    return [Phrase([(o, d, p + semitones) for o, d, p in ph.notes], ph.length_ql) for ph in phrases]


def essen_specs(n_pieces: int, rng: np.random.Generator) -> list[PieceSpec]:
    """Essen pieces: each section type is the opening phrases of another folksong of the same file."""
    files = sorted(p for p in (_music21_corpus_dir() / "essenFolksong").glob("*.abc")
                   if not p.stem.startswith("test"))
    pools = {}
    for f in files:
        tunes = [t for t in _abc_tunes(f) if len(t["lines"]) >= 2]
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
        ph = _parse_abc_phrase(tune, line)
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
    paths = sorted((_music21_corpus_dir() / "bach").glob("bwv*.mxl"))
    seen, specs = set(), []
    for i in rng.permutation(len(paths)):
        if len(specs) >= n_pieces:
            break
        path = paths[i]
        base = re.sub(r"[-_].*$", "", path.stem)  # bwv112.5-sc and bwv112.5 are one chorale
        if base in seen:
            continue
        phrases = _chorale_phrases(path)
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


def _chorale_phrases(path: Path) -> list[Phrase] | None:
    """The four voices of a chorale cut into phrases at the ends of the soprano's fermata notes."""
    from music21 import converter, expressions

    try:
        score = converter.parse(str(path))
    except Exception:  # noqa: BLE001 - an unreadable file is skipped
        return None
    voices = {}
    for part in score.parts:
        name = (part.partName or "").strip().lower()
        for v in ("soprano", "alto", "tenor", "bass"):
            if name.startswith(v) and v not in voices:
                voices[v] = part.stripTies().flatten()
    if len(voices) != 4:
        return None
    sop = voices["soprano"]
    ends = sorted({float(n.offset + n.quarterLength) for n in sop.notes
                   if any(isinstance(e, expressions.Fermata) for e in n.expressions)})
    total = float(max(v.highestTime for v in voices.values()))
    if not ends:
        return None
    if total - ends[-1] > 1.0:
        ends.append(total)
    starts = [0.0] + ends[:-1]
    phrases = []
    for a, b in zip(starts, ends, strict=True):
        notes, soprano = [], []
        for vname, v in voices.items():
            for n in v.notes:
                on, off = float(n.offset), float(n.offset + n.quarterLength)
                if on >= b or off <= a or on < a - 1e-6:
                    continue
                for p in n.pitches:
                    notes.append((on - a, min(off, b) - on, int(p.midi)))
                    if vname == "soprano":
                        soprano.append((round(on - a, 3), int(p.midi)))
        if not notes or b - a < 2.0:
            return None
        phrases.append(Phrase(notes, b - a, tuple(soprano)))
    return phrases


# ------------------------------------------------------------------------------------------------ render


@dataclass
class _Arranged:
    notes: list[tuple[float, float, int, int]]  # start s, end s, pitch, velocity
    beats: np.ndarray
    intervals: np.ndarray
    labels: list[str]
    duration: float


def arrange(spec: PieceSpec, rng: np.random.Generator) -> _Arranged:
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
    return _Arranged(notes, np.concatenate(beats), np.array(intervals), list(spec.form), t0)


def _render_reel(items: list[tuple[_Arranged, int]], soundfont: str) -> list[np.ndarray]:
    """Render several arranged pieces in one fluidsynth call; returns each piece's audio."""
    pm = pretty_midi.PrettyMIDI()
    insts: dict[int, pretty_midi.Instrument] = {}
    offsets, t = [], 0.0
    for arr, program in items:
        inst = insts.setdefault(program, pretty_midi.Instrument(program=program))
        for on, off, pitch, vel in arr.notes:
            inst.notes.append(pretty_midi.Note(vel, pitch, t + on, t + off))
        offsets.append(t)
        t += arr.duration + REEL_GAP_S
    pm.instruments = [insts[p] for p in sorted(insts)]
    y = render_midi(pm, soundfont)
    out = []
    for (arr, _), off in zip(items, offsets, strict=True):
        a = int(round(off * SAMPLE_RATE))
        out.append(y[a: a + int(np.ceil(arr.duration * SAMPLE_RATE))])
    return out


def build_segment_corpus(cache_dir: str | Path = DEFAULT_CACHE, *, n_essen: int = 180, n_bach: int = 120,
                         seed: int = 0, progress: bool = True) -> list[SegmentPiece]:
    """Build (or load from ``cache_dir``) the whole corpus; every split, in a fixed order."""
    cache = Path(cache_dir) / f"segments-e{n_essen}-b{n_bach}-seed{seed}-d{DATA_VERSION}.pkl"
    if cache.exists():
        return pickle.loads(cache.read_bytes())
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
            audios = _render_reel([(arr, prog) for _, arr, _, prog in reel], font)
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


def _analyse(spec: PieceSpec, arr: _Arranged, font: str, program: int, y: np.ndarray) -> SegmentPiece:
    feats = audio_features(y, arr.beats)
    n_frames = min(len(feats.cqt), int(np.ceil(arr.duration * FRAME_RATE)) + 1)
    cqt = feats.cqt[:n_frames]
    tracked = estimate_beats(cqt)
    return SegmentPiece(name=spec.name, source=spec.source, split=piece_split(spec.name), form=spec.form,
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
           "build_segment_corpus", "essen_specs", "piece_split", "segment_corpus"]
