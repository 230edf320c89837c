"""Building ``OUT/report/``: what to draw (a few matches and tracks, chosen deterministically), the figures
and the page, written next to the tables. Runs in the launcher after publishing, never in the Beam graph."""

from __future__ import annotations

import datetime as dt
import json
import tempfile
from collections import defaultdict
from dataclasses import dataclass, field
from pathlib import Path, PurePosixPath

from apache_beam.io.filesystem import CompressionTypes
from apache_beam.io.filesystems import FileSystems

from pipelines.report import figures
from pipelines.report.data import RunTables, load_tables, track_cqt
from pipelines.report.page import definition_list, figure, note, page, paragraph, table

REPORT_DIR = "report"
INDEX = "index.html"
#: The run's own counters (from the launcher) kept beside the page, so `mirmatch report` can show them again.
RUN_COUNTERS = "run.json"
TOP_MATCHES = 12
SAMPLED_TRACKS = 6
MAX_ROWS = 500
MAX_GRAPH_CLUSTERS = 30
MAX_GRAPH_NODES = 300
RAW = CompressionTypes.UNCOMPRESSED


@dataclass
class ReportLimits:
    """How much of a big run the report draws and lists."""

    top_matches: int = TOP_MATCHES  # alignment figures: the most confident accepted matches
    sampled_tracks: int = SAMPLED_TRACKS  # self-similarity figures
    max_rows: int = MAX_ROWS  # rows per table


@dataclass
class Report:
    """What was written: the page's path, the figures by kind, and the report's total size in bytes."""

    index: str
    figures: dict[str, int] = field(default_factory=dict)
    size_bytes: int = 0


def _name(uri: str) -> str:
    """A track's file name for figures and tables (file:// uris percent-decoded)."""
    from pipelines.sources import path_of_uri

    return PurePosixPath(path_of_uri(uri or "")).name or str(uri)


def _default_settings(out: str) -> dict:
    from pipelines.pipeline import STATE_DIR, RunConfig

    cfg = RunConfig(audio=[], midi=[], out=out)
    return {**cfg.settings(), "state": FileSystems.join(out, STATE_DIR)}


def accepted_matches(matches: list[dict]) -> list[dict]:
    """Rows with is_match, most confident first (ties by uris: the same order on every rebuild)."""
    return sorted((m for m in matches if m["is_match"]), key=lambda m: (-m["confidence"], m["midi_uri"],
                                                                        m["audio_uri"]))


def sampled_tracks(tracks: list[dict], n: int) -> list[dict]:
    """``n`` ok tracks, alternately audio and MIDI, each modality in track-id order (deterministic, and both
    modalities shown when both exist); one row per distinct track id."""
    by_modality: dict[str, list[dict]] = defaultdict(list)
    seen = set()
    for t in sorted(tracks, key=lambda t: (t["track_id"] or "", t["uri"])):
        if t["status"] == "ok" and t["track_id"] not in seen:
            seen.add(t["track_id"])
            by_modality[t["modality"]].append(t)
    queues = [by_modality[m] for m in sorted(by_modality)]
    chosen: list[dict] = []
    while len(chosen) < n and any(queues):
        for q in queues:
            if q and len(chosen) < n:
                chosen.append(q.pop(0))
    return chosen


def version_graph(clusters: list[dict], accepted: list[dict], version_edges: list[dict] | None = None
                  ) -> tuple[list[list[str]], dict, list, list]:
    """Clusters of size > 1 (largest first, at most MAX_GRAPH_CLUSTERS and MAX_GRAPH_NODES nodes) as
    (member ids per cluster, nodes, version edges (a, b, similarity) inside a cluster, match edges). The version
    edges are the run's accepted ones (`version_edges`), or each track's nearest version for runs without it."""
    groups: dict[str, list[dict]] = defaultdict(list)
    for row in clusters:
        if row["cluster_size"] > 1:
            groups[row["cluster_id"]].append(row)
    ordered = sorted(groups.items(), key=lambda kv: (-len(kv[1]), kv[0]))
    members: list[list[str]] = []
    nodes: dict[str, dict] = {}
    for _, rows in ordered[:MAX_GRAPH_CLUSTERS]:
        if len(nodes) + len(rows) > MAX_GRAPH_NODES and members:
            break
        rows = sorted(rows, key=lambda r: (r["modality"], r["uri"]))
        members.append([r["track_id"] for r in rows])
        nodes.update({r["track_id"]: {"name": _name(r["uri"]), "modality": r["modality"],
                                      "cluster": r["cluster_id"]} for r in rows})
    edges: dict[frozenset, tuple[str, str, float]] = {}
    for e in version_edges or []:
        a, b = e["track_a"], e["track_b"]
        if e["accepted"] and a in nodes and b in nodes and nodes[a]["cluster"] == nodes[b]["cluster"]:
            edges[frozenset((a, b))] = (a, b, float(e["similarity"]))
    for row in clusters if version_edges is None else []:
        other = row["nearest_version_id"]
        if row["track_id"] in nodes and other in nodes and nodes[other]["cluster"] == nodes[row["track_id"]]["cluster"]:
            edges.setdefault(frozenset((row["track_id"], other)),
                             (row["track_id"], other, float(row["nearest_version_similarity"])))
    match_edges = sorted({(m["midi_id"], m["audio_id"]) for m in accepted
                          if m["midi_id"] in nodes and m["audio_id"] in nodes})
    return members, nodes, sorted(edges.values()), match_edges


class _Features:
    """CQTs of the tracks drawn, each loaded (or recomputed) once."""

    def __init__(self, tables: RunTables, settings: dict):
        self.state = settings.get("state")
        self.key = tables.run.analysis_key
        if not self.key:
            from encoders.analyze import analysis_key

            self.key = analysis_key(settings.get("model"))
        self.cache: dict[tuple[str, str], tuple] = {}

    def cqt(self, track_id: str, modality: str, uri: str):
        if (track_id, modality) not in self.cache:
            self.cache[(track_id, modality)] = track_cqt(track_id, modality, uri, self.state, self.key)
        return self.cache[(track_id, modality)]


def _summary(tables: RunTables, settings: dict, recorded: bool, counters: dict, accepted: list[dict]) -> str:
    from pipelines.cli import mirmatch_version

    tracks, run = tables.rows("tracks"), tables.run
    by = defaultdict(lambda: [0, 0])
    for t in tracks:
        by[t["modality"]][t["status"] != "ok"] += 1
    modality_rows = [(m, ok, err) for m, (ok, err) in sorted(by.items())]
    errors = tables.rows("errors")
    cluster_sizes = {r["cluster_id"]: r["cluster_size"] for r in tables.rows("clusters")}
    segments = tables.arrow["segments"]
    items = [
        ("run id", run.run_id or "(not recorded: the run kept no history)"),
        ("mirmatch version", mirmatch_version()),
        ("analysis key", run.analysis_key or "(not recorded)"),
        ("started", _time(run.started_at)), ("finished", _time(run.finished_at)),
        ("wall time (s)", round(run.seconds, 1) if run.seconds is not None else counters.get("seconds")),
        ("inputs", len(tracks)),
        ("errors (inputs that failed)", sum(e.get("severity", "error") == "error" for e in errors)),
        ("warnings", sum(e.get("severity") == "warning" for e in errors)),
        ("matches rows (top K per MIDI file)", len(tables.rows("matches"))),
        ("matches accepted (is_match)", len(accepted)),
        ("MIDI files with an accepted match", len({m["midi_id"] for m in accepted})),
        ("clusters", len(cluster_sizes)),
        ("clusters of size > 1", sum(n > 1 for n in cluster_sizes.values())),
        ("tracks in clusters of size > 1", sum(r["cluster_size"] > 1 for r in tables.rows("clusters"))),
        ("segments", segments.num_rows),
        ("tracks with segments", len(set(segments["track_id"].to_pylist())) if segments.num_rows else 0),
    ]
    shown = ("tracks_analyzed", "tracks_reused", "pairs_aligned", "pairs_reused", "seconds")
    items += [(f"counter: {k}", counters[k]) for k in shown if k in counters]
    html = definition_list(items)
    html += "<h3>Inputs by modality</h3>" + table(["modality", "ok", "error"], modality_rows, 10)
    settings_rows = [(k, json.dumps(v) if not isinstance(v, str) else v) for k, v in sorted(settings.items())]
    html += "<h3>Settings and decision cuts</h3>" + table(["setting", "value"], settings_rows, 50)
    if not recorded:
        html += note("This run did not record its settings (no history, or an older mirmatch): the defaults are "
                     "shown.")
    return html


def _time(value: dt.datetime | None) -> str:
    return value.strftime("%Y-%m-%d %H:%M:%S UTC") if value else "(not recorded)"


def _matches_section(accepted: list[dict], limits: ReportLimits) -> str:
    if not accepted:
        return paragraph("No MIDI file matched a recording with confidence above the threshold.")
    rows = [(i + 1, _name(m["midi_uri"]), _name(m["audio_uri"]), m["rank"], m["confidence"], m["midi_start_s"],
             m["midi_end_s"], m["audio_start_s"], m["audio_end_s"]) for i, m in enumerate(accepted)]
    return table(["#", "MIDI file", "recording", "rank", "confidence", "MIDI start (s)", "MIDI end (s)",
                  "audio start (s)", "audio end (s)"], rows, limits.max_rows, "accepted matches")


def _alignment_section(tables: RunTables, accepted: list[dict], feats: _Features, folder: Path,
                       limits: ReportLimits) -> tuple[str, int]:
    top = accepted[:limits.top_matches]
    if not top:
        return paragraph("No accepted match: nothing to draw."), 0
    maps = tables.alignment_of({(m["midi_id"], m["audio_id"]) for m in top})
    parts = [paragraph(f"The {len(top)} most confident accepted matches (of {len(accepted)}): the alignment path "
                       "(the alignments table's time map) over the cosine cost of the two tracks' standardised "
                       "CQTs, the MIDI rendering's CQT on the left and the recording's below.")]
    for i, m in enumerate(top, 1):
        midi_cqt, midi_from = feats.cqt(m["midi_id"], "midi", m["midi_uri"])
        audio_cqt, audio_from = feats.cqt(m["audio_id"], "audio", m["audio_uri"])
        time_map = maps.get((m["midi_id"], m["audio_id"]), {})
        sides = (("MIDI", midi_cqt, midi_from), ("audio", audio_cqt, audio_from))
        missing = [f"{side}: {why}" for side, c, why in sides if c is None]
        if not time_map:
            missing.append("no alignments row")
        title = f"#{i} {_name(m['midi_uri'])} -> {_name(m['audio_uri'])}, confidence {m['confidence']:.3f}"
        src = f"alignment_{i:02d}.png"
        figures.alignment_figure(folder / src, midi_cqt if audio_cqt is not None else None, audio_cqt,
                                 time_map.get("midi_times_s") or [], time_map.get("audio_times_s") or [],
                                 title.replace(" -> ", "\n-> "), "; ".join(missing))
        parts.append(figure(src, "alignment", f"{title} (CQT: {midi_from} / {audio_from})", f"alignment-{i}"))
    return "".join(parts), len(top)


def _structure_section(tables: RunTables, feats: _Features, folder: Path, limits: ReportLimits) -> tuple[str, int]:
    chosen = sampled_tracks(tables.rows("tracks"), limits.sampled_tracks)
    if not chosen:
        return paragraph("No track was analysed: nothing to draw."), 0
    segments = tables.segments_of({t["track_id"] for t in chosen})
    parts = [paragraph(f"{len(chosen)} tracks (alternately audio and MIDI, in track-id order): the self-similarity "
                       "of each track's standardised CQT, with its segments (boundaries as lines, labels above).")]
    drawn = 0
    for t in chosen:
        cqt, source = feats.cqt(t["track_id"], t["modality"], t["uri"])
        segs = segments.get(t["track_id"], [])
        title = f"{_name(t['uri'])} ({t['modality']}, {len(segs)} segments)"
        if cqt is None:
            parts.append(note(f"{title}: not drawn, {source}."))
            continue
        drawn += 1
        src = f"ssm_{drawn:02d}.png"
        figures.ssm_figure(folder / src, cqt, segs, title)
        labels = " ".join(f"{s['label']}@{s['start_s']:.1f}s" for s in segs)
        parts.append(figure(src, "ssm", f"{title}: {labels} (CQT: {source})"))
    return "".join(parts), drawn


def _clusters_section(tables: RunTables, accepted: list[dict], folder: Path, limits: ReportLimits) -> tuple[str, int]:
    kept_edges = tables.rows("version_edges")
    members, nodes, edges, match_edges = version_graph(tables.rows("clusters"), accepted,
                                                       kept_edges if kept_edges else None)
    if not members:
        return paragraph("No cluster has more than one track."), 0
    total = len({r["cluster_id"] for r in tables.rows("clusters") if r["cluster_size"] > 1})
    title = f"{len(members)} of {total} clusters of size > 1"
    figures.cluster_graph_figure(folder / "clusters.png", members, nodes, edges, match_edges, title)
    joined = ("the version edges the run accepted (`version_edges`: z above both tracks' nulls)" if kept_edges
              else "a track to its nearest verified version")
    html = paragraph("Each circle is a cluster of versions; nodes are tracks (blue MIDI, orange audio); solid edges "
                     f"are {joined} (width and number: verified similarity), dashed ones are accepted matches.")
    html += figure("clusters.png", "graph", title)
    uris = {r["track_id"]: r["uri"] for r in tables.rows("clusters")}
    rows = [(r["cluster_id"], r["cluster_size"], r["modality"], _name(r["uri"]),
             _name(uris.get(r["nearest_version_id"], r["nearest_version_id"] or "")), r["nearest_version_similarity"])
            for r in sorted(tables.rows("clusters"), key=lambda r: (-r["cluster_size"], r["cluster_id"], r["uri"]))
            if r["cluster_size"] > 1]
    html += table(["cluster", "size", "modality", "track", "nearest version", "similarity"], rows, limits.max_rows,
                  "tracks in clusters")
    return html, 1


def _distributions_section(tables: RunTables, settings: dict, folder: Path) -> tuple[str, int]:
    parts, drawn = [], 0
    margins = [m["margin"] for m in tables.rows("matches") if m.get("margin") is not None]
    z = [e["z"] for e in tables.rows("version_edges") if not e["is_reference"]]
    similarities = [r["nearest_version_similarity"] for r in tables.rows("clusters")
                    if r["nearest_version_similarity"] is not None]
    match_cut = (settings.get("match_decision") or {}).get("cut")
    version_cut = (settings.get("version_decision") or {}).get("min_z")
    version_figure = ((z, "similarity.png", version_cut, "z (robust deviations above both tracks' nulls)",
                       f"the {len(z)} verified version candidate pairs", "version above")
                      if z else (similarities, "similarity.png", settings.get("cluster_similarity"),
                                 "verified similarity", f"each track's nearest verified version "
                                 f"({len(similarities)} tracks)", "cluster similarity cut"))
    for values, src, cut, xlabel, title, cut_label in (
            (margins, "confidence.png", match_cut, "margin over the null alignments",
             f"margin of the {len(margins)} matches rows (is_match also needs 10 s aligned and the ratio test)",
             "is_match above"),
            version_figure):
        if not values:
            parts.append(note(f"No values for the histogram of {xlabel}."))
            continue
        figures.histogram_figure(folder / src, values, cut, xlabel, title, cut_label)
        parts.append(figure(src, "hist", title))
        drawn += 1
    return "".join(parts), drawn


def _errors_section(tables: RunTables, limits: ReportLimits) -> str:
    errors = sorted(tables.rows("errors"), key=lambda e: (e.get("severity") != "error", e["stage"], e["uri"]))
    if not errors:
        return paragraph("No errors and no warnings.")
    from pipelines.sources import path_of_uri

    rows = [(e.get("severity") or "error", e["stage"], e["error_type"], _name(path_of_uri(e["uri"])), e["uri"],
             e["message"]) for e in errors]
    return table(["severity", "stage", "type", "file", "uri", "message"], rows, limits.max_rows, "errors and warnings",
                 [r[0] for r in rows])


def _read_text(path: str) -> str | None:
    try:
        with FileSystems.open(path, compression_type=RAW) as f:
            return f.read().decode()
    except Exception:
        return None


def _kept_counters(out: str, run_id: str) -> dict:
    """The counters an earlier report of the same run kept (RUN_COUNTERS), so a rebuild shows them too."""
    text = _read_text(FileSystems.join(out, REPORT_DIR, RUN_COUNTERS))
    try:
        kept = json.loads(text) if text else {}
    except ValueError:
        return {}
    return kept if kept.get("run_id") == run_id else {}


def _publish(folder: Path, target: str) -> int:
    """Replace ``target`` (any Beam file system) with the files of ``folder``; returns the bytes written."""
    if FileSystems.exists(target):
        FileSystems.delete([target])
    else:  # object stores have no folders, only names with a common prefix
        old = [m.path for m in FileSystems.match([FileSystems.join(target, "*")])[0].metadata_list]
        if old:
            FileSystems.delete(old)
    FileSystems.mkdirs(target)  # a no-op on object stores
    size = 0
    for path in sorted(folder.iterdir()):
        data = path.read_bytes()
        size += len(data)
        with FileSystems.create(FileSystems.join(target, path.name), compression_type=RAW) as f:
            f.write(data)
    return size


def build_report(out: str, *, settings: dict | None = None, counters: dict | None = None,
                 limits: ReportLimits | None = None) -> Report:
    """Write ``OUT/report/index.html`` and its figures from the finished output folder ``out``.

    ``settings`` and ``counters``: the run's options and counters when the launcher has them (else the
    run's record in ``OUT/history/runs`` and an earlier report's ``run.json``). Raises
    ``pipelines.report.data.ReportError`` when ``out`` has no tables."""
    limits = limits or ReportLimits()
    out = out.rstrip("/")
    tables = load_tables(out)
    recorded = bool(settings or tables.run.settings)
    settings = {**_default_settings(out), **(tables.run.settings or {}), **(settings or {})}
    run_id = tables.run.run_id or (counters or {}).get("run_id", "")
    counters = counters or _kept_counters(out, run_id)
    accepted = accepted_matches(tables.rows("matches"))
    feats = _Features(tables, settings)
    report = Report(index=FileSystems.join(out, REPORT_DIR, INDEX))
    with tempfile.TemporaryDirectory(prefix="mirmatch-report-") as tmp:
        folder = Path(tmp)
        sections = {"summary": _summary(tables, settings, recorded, counters, accepted),
                    "matches": _matches_section(accepted, limits)}
        sections["alignments"], report.figures["alignment"] = _alignment_section(tables, accepted, feats, folder,
                                                                                  limits)
        sections["structure"], report.figures["ssm"] = _structure_section(tables, feats, folder, limits)
        sections["clusters"], report.figures["graph"] = _clusters_section(tables, accepted, folder, limits)
        sections["distributions"], report.figures["hist"] = _distributions_section(tables, settings, folder)
        sections["errors"] = _errors_section(tables, limits)
        title = f"mirmatch run {run_id}" if run_id else "mirmatch run"
        (folder / INDEX).write_text(page(title, sections, ["tracks", "matches", "alignments", "clusters", "segments",
                                                           "errors"]), encoding="utf-8")
        if counters:
            (folder / RUN_COUNTERS).write_text(json.dumps({**counters, "run_id": run_id}, sort_keys=True))
        report.size_bytes = _publish(folder, FileSystems.join(out, REPORT_DIR))
    return report

