"""What a run report shows, gathered from a finished output folder: its latest tables, its row in
``OUT/history/runs`` and, for the few tracks drawn, their CQTs (kept in the state folder, else recomputed)."""

from __future__ import annotations

import datetime as dt
import io
import json
from dataclasses import dataclass, field

import numpy as np
from apache_beam.io.filesystem import CompressionTypes
from apache_beam.io.filesystems import FileSystems

from pipelines.runs import HISTORY, RUNS
from pipelines.schemas import TABLES

RAW = CompressionTypes.UNCOMPRESSED


class ReportError(Exception):
    """The folder has no tables to report on."""


@dataclass
class RunInfo:
    """The latest completed run's row of ``OUT/history/runs`` (empty fields when the run kept no history)."""

    run_id: str = ""
    started_at: dt.datetime | None = None
    finished_at: dt.datetime | None = None
    analysis_key: str = ""
    counters: dict = field(default_factory=dict)  # row counts of its tables
    settings: dict = field(default_factory=dict)  # options and decision cuts (RunConfig.settings)

    @property
    def seconds(self) -> float | None:
        if self.started_at is None or self.finished_at is None:
            return None
        return (self.finished_at - self.started_at).total_seconds()


#: Tables read whole as rows; `alignments` and `segments` (the big ones) are read as Arrow and only the
#: rows of the pairs and tracks drawn become Python objects.
ROW_TABLES = ("tracks", "errors", "matches", "clusters", "version_edges")


@dataclass
class RunTables:
    """The latest tables of an output folder and the run that wrote them."""

    out: str
    tables: dict[str, list[dict]]  # ROW_TABLES as rows
    arrow: dict[str, object]  # alignments, segments as pyarrow Tables
    run: RunInfo

    def rows(self, table: str) -> list[dict]:
        return self.tables.get(table, [])

    def segments_of(self, track_ids: set[str]) -> dict[str, list[dict]]:
        """track id -> its `segments` rows in order, for ``track_ids`` only."""
        return _grouped(self.arrow["segments"], "track_id", track_ids, "segment_index")

    def alignment_of(self, pairs: set[tuple[str, str]]) -> dict[tuple[str, str], dict]:
        """(midi_id, audio_id) -> its `alignments` row, for ``pairs`` only."""
        import pyarrow as pa
        import pyarrow.compute as pc

        table = self.arrow["alignments"]
        if not pairs or table.num_rows == 0:
            return {}
        keys = pc.binary_join_element_wise(table["midi_id"], table["audio_id"], "|")
        wanted = pa.array(sorted(f"{m}|{a}" for m, a in pairs))
        rows = table.filter(pc.is_in(keys, value_set=wanted)).to_pylist()
        return {(r["midi_id"], r["audio_id"]): r for r in rows}


def _grouped(table, column: str, values: set[str], order: str) -> dict[str, list[dict]]:
    import pyarrow as pa
    import pyarrow.compute as pc

    if not values or table.num_rows == 0:
        return {}
    found: dict[str, list[dict]] = {}
    for row in table.filter(pc.is_in(table[column], value_set=pa.array(sorted(values)))).to_pylist():
        found.setdefault(row[column], []).append(row)
    return {k: sorted(v, key=lambda r: r[order]) for k, v in found.items()}


def _parquet_files(pattern: str) -> list[str]:
    return sorted(m.path for m in FileSystems.match([pattern])[0].metadata_list)


def _read_arrow(paths: list[str], schema):
    import pyarrow as pa
    import pyarrow.parquet as pq

    parts = []
    for path in paths:
        with FileSystems.open(path, compression_type=RAW) as f:
            parts.append(pq.read_table(io.BytesIO(f.read())))
    return pa.concat_tables(parts, promote_options="default") if parts else schema.empty_table()


def _read(paths: list[str]) -> list[dict]:
    import pyarrow as pa

    return _read_arrow(paths, pa.schema([])).to_pylist()


def load_tables(out: str) -> RunTables:
    """The latest tables under ``out`` (local or any Beam file system) and the latest run's record; raises
    ReportError when there is no ``tracks`` table (not a finished mirmatch output folder)."""
    out = out.rstrip("/")
    if not _parquet_files(FileSystems.join(out, "tracks", "*.parquet")):
        raise ReportError(f"no mirmatch tables under {out}; run `mirmatch run --out {out} ...` first")
    files = {t: _parquet_files(FileSystems.join(out, t, "*.parquet")) for t in TABLES}
    tables = {t: _read(files[t]) for t in ROW_TABLES}
    arrow = {t: _read_arrow(files[t], TABLES[t]) for t in ("alignments", "segments")}
    return RunTables(out, tables, arrow, latest_run(out))


def latest_run(out: str) -> RunInfo:
    """The most recently finished run recorded under ``out`` (an empty RunInfo when none is)."""
    rows = _read(_parquet_files(FileSystems.join(out, HISTORY, RUNS, "run=*", "*.parquet")))
    if not rows:
        return RunInfo()
    row = max(rows, key=lambda r: (r["finished_at"], r["run_id"]))
    return RunInfo(run_id=row["run_id"], started_at=row["started_at"], finished_at=row["finished_at"],
                   analysis_key=row.get("analysis_key") or "", counters=json.loads(row.get("counters") or "{}"),
                   settings=json.loads(row.get("settings") or "{}"))


def track_cqt(track_id: str, modality: str, uri: str, state_root: str | None, analysis_key: str
              ) -> tuple[np.ndarray | None, str]:
    """A track's log-CQT (n_frames, 48) float32 at ``encoders.features.FRAME_RATE`` and where it came from:
    the run's kept analysis (state folder, by content hash and analysis key) when there is one, else
    recomputed from the file with the run-time feature code; (None, reason) when neither works (the file
    is gone or changed, or too big to decode whole for a figure)."""
    from encoders.analyze import IN_MEMORY_BYTES, track_features
    from encoders.media import content_id
    from pipelines.sources import path_of_uri
    from pipelines.state import StateStore

    if state_root and analysis_key:
        kept = StateStore(state_root, analysis_key).load_track(track_id, modality)
        if getattr(kept, "cqt", None) is not None:
            return np.asarray(kept.cqt, np.float32), "kept analysis"
    try:
        with FileSystems.open(path_of_uri(uri), compression_type=RAW) as f:
            size = f.seek(0, 2)
            if size > IN_MEMORY_BYTES:
                return None, f"file of {size >> 20} MB not decoded again for the report"
            f.seek(0)
            data = f.read()
    except Exception as exc:
        return None, f"cannot read the file again: {str(exc).splitlines()[0] if str(exc) else type(exc).__name__}"
    if content_id(data) != track_id:
        return None, "the file changed since the run"
    try:
        features, _ = track_features(data, modality)
    except Exception as exc:
        return None, f"recomputing its features failed: {type(exc).__name__}"
    return features.cqt, "recomputed"
