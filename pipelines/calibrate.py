"""`mirmatch calibrate`: re-fit the decision settings (``hashing.decisions``) on a user's labelled pairs.

The labels are a CSV file with columns ``uri_a, uri_b, same`` (``same``: true/false, yes/no or 1/0), and
optionally ``kind`` (``match`` or ``version``; default: ``match`` for a MIDI file and a recording, ``version``
for two tracks of one modality). Each labelled pair's evidence is taken from the finished run in OUT (its
`matches` rows), or computed as the run would: from the analyses kept in the state folder, or from the files.
"""

from __future__ import annotations

import csv
import io
from dataclasses import dataclass

import numpy as np

from pipelines.sources import table_uri

TRUE_WORDS, FALSE_WORDS = {"1", "true", "yes", "y", "t"}, {"0", "false", "no", "n", "f"}
KINDS = ("match", "version")


class LabelError(ValueError):
    """A label file that cannot be used; the message says what to fix."""


@dataclass
class Label:
    uri_a: str
    uri_b: str
    same: bool
    kind: str | None


def read_labels(text: str, source: str) -> list[Label]:
    """Parse a label file's text; LabelError names the row and the problem."""
    reader = csv.DictReader(io.StringIO(text))
    columns = {c.strip() for c in reader.fieldnames or []}
    missing = {"uri_a", "uri_b", "same"} - columns
    if missing:
        raise LabelError(f"{source}: missing column(s) {', '.join(sorted(missing))}; the header must name uri_a, "
                         "uri_b, same (and optionally kind)")
    labels = []
    for line, row in enumerate(reader, start=2):
        row = {k.strip(): (v or "").strip() for k, v in row.items() if k}
        word = row["same"].lower()
        if word not in TRUE_WORDS | FALSE_WORDS:
            raise LabelError(f"{source}, line {line}: same={row['same']!r}; use true/false, yes/no or 1/0")
        kind = row.get("kind") or None
        if kind is not None and kind not in KINDS:
            raise LabelError(f"{source}, line {line}: kind={kind!r}; use 'match' or 'version'")
        labels.append(Label(row["uri_a"], row["uri_b"], word in TRUE_WORDS, kind))
    return labels


class RunEvidence:
    """A finished run's tracks and matches, and the analyses behind them (state folder, else the files)."""

    def __init__(self, out: str, state: str | None, model: str | None):
        from encoders.analyze import analysis_key
        from pipelines.pipeline import STATE_DIR
        from pipelines.query import query_arrow
        from pipelines.state import StateStore

        self.out, self.model = out, model
        tracks = query_arrow(out, "SELECT track_id, uri, modality FROM tracks WHERE status = 'ok'").to_pylist()
        if not tracks:
            raise LabelError(f"{out} has no analysed tracks; calibrate needs a finished `mirmatch run` there")
        self.tracks = {t["uri"]: t for t in tracks}
        self.ids = sorted({t["track_id"] for t in tracks})
        self.uri_of = {t["track_id"]: t["uri"] for t in sorted(tracks, key=lambda t: t["uri"])}
        self.modality_of = {t["track_id"]: t["modality"] for t in tracks}
        try:
            rows = query_arrow(out, "SELECT midi_id, audio_id, margin, aligned_s FROM matches").to_pylist()
        except Exception:  # no matches (an audio-only run), or a run from before margins were kept
            rows = []
        self.scored = {(r["midi_id"], r["audio_id"]): (r["margin"], r["aligned_s"]) for r in rows}
        self.store = StateStore(state or f"{out.rstrip('/')}/{STATE_DIR}", analysis_key(model))
        self._analyses: dict[str, object] = {}
        self._nulls: dict[str, tuple[float, float]] = {}
        self.aligned = 0

    def track(self, uri: str) -> dict:
        """The `tracks` row of a label's uri (as written in the tables, or as a path)."""
        found = self.tracks.get(uri) or self.tracks.get(table_uri(uri))
        if found is None:
            raise LabelError(f"{uri} is not an analysed track of {self.out}; use the uris of its `tracks` table")
        return found

    def analysis(self, track_id: str):
        if track_id not in self._analyses:
            from pipelines.api import analyze
            from pipelines.sources import path_of_uri

            modality = self.modality_of[track_id]
            kept = self.store.load_track(track_id, modality)
            if getattr(kept, "cqt", None) is None:
                kept = analyze(path_of_uri(self.uri_of[track_id]), modality, self.model)
            self._analyses[track_id] = kept
        return self._analyses[track_id]

    def match_evidence(self, midi_id: str, audio_id: str) -> tuple[float, float]:
        """(margin, aligned seconds) of a (MIDI, audio) pair: the run's, or aligned now."""
        if (midi_id, audio_id) in self.scored:
            return self.scored[(midi_id, audio_id)]
        from encoders.features import FRAME_RATE
        from hashing.align import align_pair
        from hashing.decisions import match_margin

        self.aligned += 1
        pair = align_pair(self.analysis(midi_id).cqt, self.analysis(audio_id).cqt, FRAME_RATE)
        return match_margin(pair.score, pair.null_scores), pair.aligned_s

    def similarity(self, a: str, b: str) -> float:
        """The verified version similarity of two tracks, as the run computes it (``pipelines.api.verified_pair``)."""
        from pipelines.api import verified_pair

        return verified_pair(self.analysis(a), self.analysis(b))[0]

    def null(self, track_id: str, settings) -> tuple[float, float]:
        """A track's null: its similarities to its reference tracks (``hashing.decisions``), computed once."""
        from hashing.decisions import REFERENCE_TRACKS, null_model, reference_tracks

        if track_id not in self._nulls:
            references = reference_tracks(self.ids, track_id, REFERENCE_TRACKS)
            self._nulls[track_id] = null_model([self.similarity(track_id, r) for r in references],
                                               settings.min_spread)
        return self._nulls[track_id]

    def version_z(self, a: str, b: str, settings) -> float:
        """How far the verified similarity of two tracks stands above both their nulls (``hashing.decisions``)."""
        from hashing.decisions import edge_z

        return edge_z(self.similarity(a, b), self.null(a, settings), self.null(b, settings))


def calibrate(out: str, labels: list[Label], state: str | None = None, model: str | None = None, base=None):
    """Decision settings re-fitted on ``labels`` against the run in ``out``; returns (settings, report lines)."""
    from hashing.decisions import DecisionSettings, fit_match_settings, fit_version_settings

    base = base or DecisionSettings()
    evidence = RunEvidence(out, state, model)
    match_rows, version_rows = [], []
    for label in labels:
        ta, tb = evidence.track(label.uri_a), evidence.track(label.uri_b)
        kind = label.kind or ("match" if ta["modality"] != tb["modality"] else "version")
        if kind == "match":
            if ta["modality"] == tb["modality"]:
                raise LabelError(f"{label.uri_a} and {label.uri_b} are both {ta['modality']}: a match label needs "
                                 "a MIDI file and a recording")
            midi, audio = (ta, tb) if ta["modality"] == "midi" else (tb, ta)
            match_rows.append((*evidence.match_evidence(midi["track_id"], audio["track_id"]), label.same))
        else:
            version_rows.append((evidence.version_z(ta["track_id"], tb["track_id"], base.versions), label.same))
    lines, match, versions = [], base.match, base.versions
    if match_rows:
        margins, aligned, same = (np.array(c) for c in zip(*match_rows, strict=True))
        match = fit_match_settings(margins, aligned, same, base.match)
        lines.append(f"match pairs: {len(same)} ({int(same.sum())} same); margin cut {base.match.cut:.3f} -> "
                     f"{match.cut:.3f} ({evidence.aligned} pairs aligned now, the others from the run)")
    if version_rows:
        z, same = (np.array(c) for c in zip(*version_rows, strict=True))
        versions = fit_version_settings(z, same, base.versions)
        lines.append(f"version pairs: {len(same)} ({int(same.sum())} same); z cut {base.versions.min_z:.2f} -> "
                     f"{versions.min_z:.2f}")
    if not lines:
        raise LabelError("no labelled pairs")
    settings = DecisionSettings(match, versions).with_fit(
        run=out, match_pairs=len(match_rows), version_pairs=len(version_rows),
        match_same=int(sum(r[-1] for r in match_rows)), version_same=int(sum(r[-1] for r in version_rows)))
    return settings, lines
