"""The boundary model's corpus: pieces with known sections as MIDI and as corrupted audio renderings.

Two kinds of piece, from music21's Essen folksongs and Bach chorales:

* ``assembled``: forms such as AABA built from sections cut at phrase ends (``structure_data``'s recipe:
  Essen sections are the opening phrases of different songs of one collection, chorale sections are
  consecutive two-phrase groups of one chorale);
* ``unassembled``: a piece in its own form, its phrases as the sections (an Essen song as written, one
  phrase per ABC line; a chorale with its repeats written out, cut at the soprano's fermatas), phrases with
  the same melody sharing a label. A model cannot score there by learning the seams of the assembly.

Pieces are split by **tune family**, never by piece: an Essen song's family is the incipit of its first
phrase (its pitch letters), a chorale's the soprano's intervals in its first phrase (the same melody
harmonised in several BWV numbers is one family). Every family is in one split only.

Each piece is kept as MIDI (notes on a tempo map whose beats are the score's quarter notes; the symbolic
segmentation reads it) and as audio: the MIDI tempo-warped, cropped, re-orchestrated
(``corrupt.corrupted_rendering``'s steps), rendered with a soundfont (FluidR3 / TimGM6mb for training and
validation, MuseScore General, never trained on, for the held-out split), with reverb and noise, and in
half of the pieces mixed over a real recording (the FIT packages for train / val, the EVAL packages for
held-out). The exact time map from audio to MIDI time is kept, so the truth of the audio is the MIDI's
sections mapped through it. Cached under ``.cache/struct-19/``.
"""

from __future__ import annotations

import hashlib
import io
import pickle
import re
import time
from dataclasses import dataclass, field
from pathlib import Path

import numpy as np
import pretty_midi

from encoders.features import FRAME_RATE, audio_features
from encoders.media import SAMPLE_RATE, decode_audio
from encoders.render import render_midi
from encoders.training.cache import read_cache
from encoders.training.corrupt import Corruption, corrupt_midi, degrade_audio, draw_corruption
from encoders.training.music21_scores import Phrase, abc_tunes, chorale_phrases, music21_corpus_dir, parse_abc_phrase
from encoders.training.real_music import real_recordings
from encoders.training.structure_data import (
    BACH_BPM,
    ESSEN_BPM,
    FORMS_2,
    FORMS_3,
    PROGRAMS,
    REPEAT_TEMPO_JITTER,
    _opening_phrases,
    _tonic_pc,
    _transpose,
)

DATA_VERSION = 1
SPLITS = ("train", "val", "heldout")
TRAIN_FONTS = ("fluidr3", "timgm6mb")
HELDOUT_FONT = "musescore"
DEFAULT_CACHE = Path(".cache/struct-19")
RESOLUTION = 480
REEL_GAP_S = 3.0
REEL_MAX_S = 900.0
BACKGROUND_SHARE = 0.5
BACKGROUND_SNR_DB = (6.0, 18.0)


@dataclass
class BoundaryPiece:
    """One piece as MIDI and as a corrupted audio rendering, with its sections in both time axes."""

    name: str
    family: str
    split: str
    kind: str  # "assembled" or "unassembled"
    source: str  # "essen" or "bach"
    midi_bytes: bytes  # a standard MIDI file: tempo map on the score's quarter notes
    midi_intervals: np.ndarray  # (n, 2) sections in MIDI time, covering [0, midi_duration]
    labels: list[str]
    soundfont: str
    background: str  # "" or the real recording mixed in
    knots_midi: np.ndarray  # the time map: audio time t <-> MIDI time, np.interp(t + crop, warped, midi)
    knots_warped: np.ndarray
    crop_start_s: float
    duration_s: float  # of the audio
    cqt: np.ndarray  # (n_frames, 48) float16 log-CQT of the audio
    tracked_beats: np.ndarray  # beats tracked on the audio
    true_beats: np.ndarray  # the score's quarter notes mapped into audio time
    ref_intervals: np.ndarray  # (m, 2) sections in audio time, covering [0, duration_s]
    ref_labels: list[str] = field(default_factory=list)

    @property
    def frame_times(self) -> np.ndarray:
        return np.arange(len(self.cqt)) / FRAME_RATE

    def midi(self) -> pretty_midi.PrettyMIDI:
        return pretty_midi.PrettyMIDI(io.BytesIO(self.midi_bytes))

    def midi_to_audio_time(self, t: np.ndarray) -> np.ndarray:
        return np.interp(np.asarray(t, np.float64), self.knots_midi, self.knots_warped) - self.crop_start_s


# ------------------------------------------------------------------------------------------- families


def family_split(family: str) -> str:
    """'heldout' for a fifth of the families, 'val' for about a sixth, else 'train' (blake2b of the family)."""
    bucket = hashlib.blake2b(f"boundary:{family}".encode(), digest_size=2).digest()[0] % 20
    return "heldout" if bucket < 4 else "val" if bucket < 7 else "train"


def essen_family(tune: dict) -> str:
    letters = re.sub(r"[^A-Ga-g]", "", tune["lines"][0]).upper()[:8]
    return f"essen:{letters}"


def melody_family(phrase: Phrase) -> str:
    pitches = [p for _, p in phrase.melody]
    return "bach:" + ",".join(str(b - a) for a, b in zip(pitches[:-1], pitches[1:], strict=True))


@dataclass
class Spec:
    name: str
    family: str
    split: str
    kind: str
    source: str
    sections: list[tuple[str, list[Phrase], float]]  # (label, phrases, quarter notes per minute) in order


def _phrase_key(ph: Phrase) -> tuple:
    return tuple((round(o, 3), p) for o, _, p in ph.notes)


def _phrase_labels(phrases: list[Phrase]) -> list[str]:
    names: dict[tuple, str] = {}
    return [names.setdefault(_phrase_key(ph), chr(65 + len(names)) if len(names) < 26 else f"P{len(names)}")
            for ph in phrases]


def essen_specs(rng: np.random.Generator, n_assembled: int, n_unassembled: int) -> list[Spec]:
    """Assembled Essen pieces (sections from songs of one collection file and one split) and songs as written."""
    files = sorted(p for p in (music21_corpus_dir() / "essenFolksong").glob("*.abc") if not p.stem.startswith("test"))
    pools: dict[tuple[str, str], list[dict]] = {}
    for f in files:
        for t in abc_tunes(f):
            if len(t["lines"]) >= 2:
                fam = essen_family(t)
                t["family"] = fam
                pools.setdefault((f.stem, family_split(fam)), []).append(t)
    keys = sorted(k for k, v in pools.items() if len(v) >= 6)
    for k in keys:
        pools[k] = [pools[k][i] for i in rng.permutation(len(pools[k]))]
    specs: list[Spec] = []
    # songs as written first (their tunes are then not reused)
    tries = 0
    while sum(s.kind == "unassembled" for s in specs) < n_unassembled and tries < 20 * n_unassembled:
        tries += 1
        stem, split = keys[int(rng.integers(len(keys)))]
        pool = pools[(stem, split)]
        if len(pool) < 6:
            continue
        tune = pool.pop()
        phrases = [parse_abc_phrase(tune, line) for line in tune["lines"]]
        if any(p is None for p in phrases) or not 3 <= len(phrases) <= 12:
            continue
        bpm = float(rng.uniform(*ESSEN_BPM))
        secs = [(lab, [ph], bpm * (1 + rng.uniform(-0.01, 0.01))) for lab, ph in zip(_phrase_labels(phrases),
                                                                                          phrases, strict=True)]
        specs.append(Spec(f"essen-song/{stem}/{tune['id']}", tune["family"], split, "unassembled", "essen", secs))
    tries = 0
    while sum(s.kind == "assembled" for s in specs) < n_assembled and tries < 20 * n_assembled:
        tries += 1
        stem, split = keys[int(rng.integers(len(keys)))]
        pool = pools[(stem, split)]
        form = str(rng.choice(FORMS_3 if rng.random() < 0.35 else FORMS_2))
        kinds = sorted(set(form))
        bpm = float(rng.uniform(*ESSEN_BPM))
        chosen = []
        while pool and len(chosen) < len(kinds):
            tune = pool.pop()
            phrases = _opening_phrases(tune, bpm)
            if phrases is not None:
                chosen.append((tune, phrases))
        if len(chosen) < len(kinds):
            continue
        tonic = _tonic_pc(chosen[0][0]["K"])
        by_kind = {k: _transpose(ph, (tonic - _tonic_pc(t["K"]) + 6) % 12 - 6) for k, (t, ph) in zip(kinds, chosen,
                                                                                                   strict=True)}
        secs = [(k, by_kind[k], bpm * (1.0 + rng.uniform(-REPEAT_TEMPO_JITTER, REPEAT_TEMPO_JITTER))) for k in form]
        specs.append(Spec(f"essen/{stem}/{'+'.join(t['id'] for t, _ in chosen)}", chosen[0][0]["family"], split,
                          "assembled", "essen", secs))
    return specs


def _expanded_chorale_phrases(path: Path) -> list[Phrase] | None:
    """A chorale's phrases with its repeats written out (music21 expandRepeats), cut at the fermatas."""
    from music21 import converter

    try:
        score = converter.parse(str(path)).expandRepeats()
    except Exception:  # noqa: BLE001 - unreadable or inconsistent repeats: skipped
        return None
    tmp = Path(f"/tmp/struct19-{path.stem}.musicxml")
    try:
        score.write("musicxml", fp=str(tmp))
        return chorale_phrases(tmp)
    except Exception:  # noqa: BLE001
        return None
    finally:
        tmp.unlink(missing_ok=True)


def bach_specs(rng: np.random.Generator, n_assembled: int, n_unassembled: int) -> list[Spec]:
    """Assembled chorale pieces (two-phrase groups in a form) and chorales with their repeats written out."""
    paths = sorted((music21_corpus_dir() / "bach").glob("bwv*.mxl"))
    seen: set[str] = set()
    specs: list[Spec] = []
    for i in rng.permutation(len(paths)):
        n_a = sum(s.kind == "assembled" for s in specs)
        n_u = len(specs) - n_a
        if n_a >= n_assembled and n_u >= n_unassembled:
            break
        path = paths[i]
        base = re.sub(r"[-_].*$", "", path.stem)
        if base in seen:
            continue
        phrases = chorale_phrases(path)
        if phrases is None or len(phrases) < 4:
            continue
        seen.add(base)
        fam = melody_family(phrases[0])
        split = family_split(fam)
        bpm = float(rng.uniform(*BACH_BPM))
        if n_u < n_unassembled and (n_a >= n_assembled or rng.random() < 0.35):
            full = _expanded_chorale_phrases(path) or phrases
            secs = [(lab, [ph], bpm) for lab, ph in zip(_phrase_labels(full), full, strict=True)]
            specs.append(Spec(f"bach-chorale/{base}", fam, split, "unassembled", "bach", secs))
            continue
        if n_a >= n_assembled:
            continue
        k = 3 if len(phrases) >= 6 and rng.random() < 0.4 else 2
        groups = [phrases[2 * j: 2 * j + 2] for j in range(k)]
        melodies = [{ph.melody for ph in g} for g in groups]
        if any(melodies[a] & melodies[b] for a in range(k) for b in range(a + 1, k)):
            continue
        form = str(rng.choice(FORMS_3 if k == 3 else FORMS_2))
        secs = [(c, groups[ord(c) - 65], bpm * (1.0 + rng.uniform(-REPEAT_TEMPO_JITTER, REPEAT_TEMPO_JITTER)))
                for c in form]
        specs.append(Spec(f"bach/{base}", fam, split, "assembled", "bach", secs))
    return specs


# -------------------------------------------------------------------------------------------------- MIDI


def spec_midi(spec: Spec, program: int, rng: np.random.Generator) -> tuple[pretty_midi.PrettyMIDI, np.ndarray,
                                                                              list[str]]:
    """The piece as a PrettyMIDI whose tempo map puts a beat on every quarter note; (pm, intervals, labels)."""
    pm = pretty_midi.PrettyMIDI(resolution=RESOLUTION, initial_tempo=spec.sections[0][2])
    inst = pretty_midi.Instrument(program=program)
    base_vel = int(rng.integers(64, 101))
    scales, tick_q, t0, intervals, labels = [], 0.0, 0.0, [], []
    for label, phrases, bpm in spec.sections:
        spq = 60.0 / bpm
        tick = int(round(tick_q * RESOLUTION))
        if not scales or abs(scales[-1][1] - spq / RESOLUTION) > 1e-12:
            scales.append((tick, spq / RESOLUTION))
        start = t0
        for ph in phrases:
            for on, dur, pitch in ph.notes:
                vel = int(np.clip(base_vel + rng.integers(-10, 11), 20, 127))
                inst.notes.append(pretty_midi.Note(vel, int(np.clip(pitch, 21, 108)), t0 + on * spq,
                                                   t0 + (on + dur) * spq))
            t0 += ph.length_ql * spq
            tick_q += ph.length_ql
        intervals.append((start, t0))
        labels.append(label)
    pm._tick_scales = scales
    pm._update_tick_to_time(int(round(tick_q * RESOLUTION)) + 1)
    pm.instruments = [inst]
    buf = io.BytesIO()
    pm.write(buf)
    pm = pretty_midi.PrettyMIDI(io.BytesIO(buf.getvalue()))
    return pm, np.array(intervals), labels


def midi_bytes(pm: pretty_midi.PrettyMIDI) -> bytes:
    buf = io.BytesIO()
    pm.write(buf)
    return buf.getvalue()


# ------------------------------------------------------------------------------------------------- audio


def _backgrounds(split: str, rng: np.random.Generator, n: int = 8) -> list[tuple[str, np.ndarray]]:
    try:
        files = [f for fs in real_recordings("eval" if split == "heldout" else "fit").values() for f in fs]
    except Exception:  # noqa: BLE001 - no real recordings on this machine: no background mixing
        return []
    out = []
    for i in rng.permutation(len(files))[:n]:
        try:
            out.append((files[i].name, decode_audio(files[i].read_bytes())))
        except Exception:  # noqa: BLE001
            continue
    return out


def _mix(y: np.ndarray, bg: np.ndarray, rng: np.random.Generator) -> np.ndarray:
    if len(bg) < len(y):
        bg = np.tile(bg, int(np.ceil(len(y) / max(len(bg), 1))) + 1)
    a = int(rng.integers(0, len(bg) - len(y) + 1))
    part = bg[a: a + len(y)].astype(np.float32)
    snr = rng.uniform(*BACKGROUND_SNR_DB)
    p_y, p_b = np.mean(y ** 2) + 1e-12, np.mean(part ** 2) + 1e-12
    out = y + part * np.sqrt(p_y / p_b / 10 ** (snr / 10))
    return (0.9 * out / (np.max(np.abs(out)) + 1e-9)).astype(np.float32)


def _render_many(pms: list[pretty_midi.PrettyMIDI], soundfont: str) -> list[np.ndarray]:
    """Several MIDI files in one fluidsynth call, REEL_GAP_S apart, cut apart again."""
    reel = pretty_midi.PrettyMIDI()
    insts: dict[int, pretty_midi.Instrument] = {}
    offsets, t = [], 0.0
    for pm in pms:
        for src in pm.instruments:
            inst = insts.setdefault(src.program, pretty_midi.Instrument(program=src.program))
            inst.notes += [pretty_midi.Note(n.velocity, n.pitch, n.start + t, n.end + t) for n in src.notes]
        offsets.append(t)
        t += pm.get_end_time() + REEL_GAP_S
    reel.instruments = [insts[p] for p in sorted(insts)]
    y = render_midi(reel, soundfont)
    return [y[int(round(off * SAMPLE_RATE)): int(round(off * SAMPLE_RATE)) + int(np.ceil(pm.get_end_time()
                                                                                         * SAMPLE_RATE))]
            for pm, off in zip(pms, offsets, strict=True)]


def _audio_truth(c: Corruption, intervals: np.ndarray, labels: list[str], duration: float
                 ) -> tuple[np.ndarray, list[str]]:
    bounds = np.interp(intervals[:, 0], c.tempo_knots_s, c.warped_knots_s) - c.crop_start_s
    keep = [i for i in range(len(bounds)) if bounds[i] < duration - 0.5 and (i + 1 == len(bounds)
                                                                            or bounds[i + 1] > 0.5)]
    starts = np.maximum(bounds[keep], 0.0)
    starts[0] = 0.0
    ends = np.r_[starts[1:], duration]
    return np.stack([starts, ends], axis=1), [labels[i] for i in keep]


def build_boundary_corpus(cache_dir: str | Path = DEFAULT_CACHE, *, n_essen: int = 220, n_essen_songs: int = 100,
                          n_bach: int = 100, n_chorales: int = 50, seed: int = 0, progress: bool = True
                          ) -> list[BoundaryPiece]:
    """Build (or load from ``cache_dir``) the whole corpus, every split, in a fixed order."""
    cache = Path(cache_dir) / (f"boundary-e{n_essen}-s{n_essen_songs}-b{n_bach}-c{n_chorales}-seed{seed}"
                               f"-d{DATA_VERSION}.pkl")
    if (pieces := read_cache(cache)) is not None:
        return pieces
    started = time.perf_counter()
    rng = np.random.default_rng(seed)
    specs = essen_specs(rng, n_essen, n_essen_songs) + bach_specs(rng, n_bach, n_chorales)
    if progress:
        print(f"  {len(specs)} pieces parsed ({time.perf_counter() - started:.0f} s)", flush=True)
    backgrounds = {s: _backgrounds(s, rng) for s in SPLITS}
    plans = []
    for spec in specs:
        pm, intervals, labels = spec_midi(spec, int(rng.choice(PROGRAMS)), rng)
        font = HELDOUT_FONT if spec.split == "heldout" else str(rng.choice(TRAIN_FONTS))
        c = draw_corruption(pm, rng, max_warp=0.1, crop=True)
        c.crop_start_s, c.crop_end_s = c.crop_start_s * 0.5, c.warped_knots_s[-1] - 0.5 * (c.warped_knots_s[-1]
                                                                                            - c.crop_end_s)
        plans.append((spec, pm, intervals, labels, font, c, corrupt_midi(pm, c, rng)))
    pieces: list[BoundaryPiece] = []
    for font in (*TRAIN_FONTS, HELDOUT_FONT):
        todo = [p for p in plans if p[4] == font]
        while todo:
            reel, total = [], 0.0
            while todo and (not reel or total + todo[0][6].get_end_time() <= REEL_MAX_S):
                reel.append(todo.pop(0))
                total += reel[-1][6].get_end_time() + REEL_GAP_S
            for plan, y in zip(reel, _render_many([p[6] for p in reel], font), strict=True):
                pieces.append(_analyse(plan, y, backgrounds[plan[0].split], rng))
            if progress:
                print(f"  {len(pieces)}/{len(plans)} pieces rendered and analysed "
                      f"({time.perf_counter() - started:.0f} s)", flush=True)
    order = {spec.name: i for i, spec in enumerate(specs)}
    pieces.sort(key=lambda p: order[p.name])
    cache.parent.mkdir(parents=True, exist_ok=True)
    cache.write_bytes(pickle.dumps(pieces))
    return pieces


def _analyse(plan, y: np.ndarray, backgrounds: list, rng: np.random.Generator) -> BoundaryPiece:
    spec, pm, intervals, labels, font, c, _ = plan
    y = degrade_audio(y, c, rng)
    bg_name = ""
    if backgrounds and rng.random() < BACKGROUND_SHARE:
        bg_name, bg = backgrounds[int(rng.integers(len(backgrounds)))]
        y = _mix(y, bg, rng)
    duration = len(y) / SAMPLE_RATE
    feats = audio_features(y)
    n_frames = min(len(feats.cqt), int(np.ceil(duration * FRAME_RATE)) + 1)
    ref, ref_labels = _audio_truth(c, intervals, labels, duration)
    true_beats = np.interp(pm.get_beats(), c.tempo_knots_s, c.warped_knots_s) - c.crop_start_s
    return BoundaryPiece(
        name=spec.name, family=spec.family, split=spec.split, kind=spec.kind, source=spec.source,
        midi_bytes=midi_bytes(pm), midi_intervals=intervals, labels=labels, soundfont=font, background=bg_name,
        knots_midi=np.asarray(c.tempo_knots_s), knots_warped=np.asarray(c.warped_knots_s),
        crop_start_s=float(c.crop_start_s), duration_s=float(duration), cqt=feats.cqt[:n_frames].astype(np.float16),
        tracked_beats=feats.beat_times[feats.beat_times < duration],
        true_beats=true_beats[(true_beats >= 0) & (true_beats < duration)], ref_intervals=ref, ref_labels=ref_labels)


def boundary_corpus(split: str | None = None, kind: str | None = None, **kwargs) -> list[BoundaryPiece]:
    """The pieces of ``split`` ('train', 'val', 'heldout'; None = all) and ``kind`` (None = both)."""
    if split is not None and split not in SPLITS:
        raise ValueError(f"split must be one of {SPLITS}, got {split!r}")
    return [p for p in build_boundary_corpus(**kwargs) if (split is None or p.split == split)
            and (kind is None or p.kind == kind)]


def main() -> int:
    from encoders.training import boundary_data  # by its module name (not __main__): the cache unpickles anywhere

    pieces = boundary_data.build_boundary_corpus()
    for split in SPLITS:
        for kind in ("assembled", "unassembled"):
            sel = [p for p in pieces if p.split == split and p.kind == kind]
            print(f"{split} {kind}: {len(sel)} pieces, {sum(p.duration_s for p in sel) / 60:.0f} min, "
                  f"{len({p.family for p in sel})} families")
    return 0


if __name__ == "__main__":
    raise SystemExit(main())


__all__ = ["BoundaryPiece", "DATA_VERSION", "SPLITS", "boundary_corpus", "build_boundary_corpus", "family_split"]
