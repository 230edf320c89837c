"""Reading music21's bundled corpus: Essen folksongs (ABC) and Bach chorales, as phrases of notes.

Shared by the corpora built from it (``structure_data``, ``versions_data``, ``music21_midi``). music21 is
imported only when a file is parsed; it belongs to the ``train`` extra.
"""

from __future__ import annotations

import re
from dataclasses import dataclass
from pathlib import Path


@dataclass
class Phrase:
    """Notes of one phrase in quarter lengths from the phrase start: (onset, duration, MIDI pitch)."""

    notes: list[tuple[float, float, int]]
    length_ql: float
    melody: tuple = ()  # (onset, pitch) of the top voice, to compare phrases


def music21_corpus_dir() -> Path:
    """The folder of the corpus music21 installs with itself (``bach/``, ``essenFolksong/``, ...)."""
    try:
        import music21
    except ImportError:
        raise ModuleNotFoundError("training needs music21, which comes with the `train` extra: pip install -e "
                                  "'.[train]' (make setup installs it)", name="music21") from None

    return Path(music21.__file__).parent / "corpus"


def abc_tunes(path: Path) -> list[dict]:
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


def parse_abc_phrase(tune: dict, line: str) -> Phrase | None:
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


def chorale_phrases(path: Path) -> list[Phrase] | None:
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
