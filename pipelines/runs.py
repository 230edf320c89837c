"""Where a run writes its tables, how they become the latest, and the history of runs.

A run writes every table to a partition of its own, ``OUT/history/<table>/run=<RUN_ID>/``, and only when
the whole pipeline has finished copies them over the latest tables ``OUT/<table>/`` and records itself
in ``OUT/history/runs/``. So:

* the latest tables (what the contract's readers glob) are always those of one complete run: a run
  killed half-way leaves the previous tables in place, and the next run replaces them whole;
* every completed run stays queryable: ``OUT/history/<table>/run=*/`` (Hive-style partitions), and
  ``OUT/history/runs`` lists the completed runs with their counters;
* partitions of runs that never completed are removed by the next run (one writer per OUT at a time).

With ``history=False`` the partition lives in ``OUT/_staging/<RUN_ID>/`` and is removed after publishing, like
the analyses of a run without a state folder (``scratch_folder``).
"""

from __future__ import annotations

import datetime as dt
import json
import re
from pathlib import Path

import pyarrow as pa
import pyarrow.parquet as pq
from apache_beam.io.filesystem import CompressionTypes
from apache_beam.io.filesystems import FileSystems

HISTORY = "history"
STAGING = "_staging"
RUNS = "runs"
RUNS_SCHEMA = pa.schema([
    ("run_id", pa.string()), ("started_at", pa.timestamp("s", tz="UTC")),
    ("finished_at", pa.timestamp("s", tz="UTC")), ("inputs", pa.int64()), ("analysis_key", pa.string()),
    ("counters", pa.string()),
    ("settings", pa.string()),  # JSON: the options and decision cuts the run used (RunConfig.settings)
])
_RUN_DIR = re.compile(r"/run=([^/]+)/")


def new_run_id(now: dt.datetime | None = None) -> str:
    """A run id that sorts by time: UTC ``YYYYMMDDTHHMMSSZ``."""
    return (now or dt.datetime.now(dt.UTC)).strftime("%Y%m%dT%H%M%SZ")


def staged_folder(out: str, run_id: str, table: str, history: bool = True) -> str:
    """The folder a run writes ``table`` to before publishing it."""
    if history:
        return FileSystems.join(out, HISTORY, table, f"run={run_id}")
    return FileSystems.join(out, STAGING, run_id, table)


def scratch_folder(out: str, run_id: str) -> str:
    """Where a run without a state folder keeps its analyses until it has published (then removed)."""
    return FileSystems.join(out, STAGING, run_id, "analyses")


def _files(folder: str) -> list[str]:
    return sorted(m.path for m in FileSystems.match([FileSystems.join(folder, "*")])[0].metadata_list)


def _delete_folder(folder: str) -> None:
    if FileSystems.exists(folder):
        FileSystems.delete([folder])
    else:  # object stores have no folders, only names with a common prefix
        files = _files(folder)
        if files:
            FileSystems.delete(files)


def publish(out: str, run_id: str, tables: list[str], history: bool = True) -> None:
    """Replace the latest tables ``OUT/<table>/`` with this run's partitions."""
    for table in tables:
        staged = [f for f in _files(staged_folder(out, run_id, table, history)) if not _is_temp(f)]
        latest = FileSystems.join(out, table)
        _delete_folder(latest)
        if staged:
            FileSystems.mkdirs(latest)  # a no-op on object stores
            FileSystems.copy(staged, [FileSystems.join(latest, f.rstrip("/").rsplit("/", 1)[-1]) for f in staged])
    _delete_folder(FileSystems.join(out, STAGING, run_id))  # staged tables (without history), scratch analyses


def _is_temp(path: str) -> bool:
    return "beam-temp" in path.rsplit("/", 1)[-1]


def record_run(out: str, run_id: str, started: dt.datetime, finished: dt.datetime, inputs: int,
               analysis_key: str, counters: dict, settings: dict | None = None) -> str:
    """Append this run to ``OUT/history/runs`` (one Parquet file per completed run; ``counters`` are the
    row counts of its tables, ``settings`` the options and decision cuts it ran with)."""
    table = pa.table({
        "run_id": [run_id], "started_at": [started], "finished_at": [finished], "inputs": [inputs],
        "analysis_key": [analysis_key], "counters": [json.dumps(counters, sort_keys=True)],
        "settings": [json.dumps(settings or {}, sort_keys=True)],
    }, schema=RUNS_SCHEMA)
    sink = pa.BufferOutputStream()
    pq.write_table(table, sink)
    path = FileSystems.join(staged_folder(out, run_id, RUNS), "run.parquet")
    with FileSystems.create(path, compression_type=CompressionTypes.UNCOMPRESSED) as f:
        f.write(sink.getvalue().to_pybytes())
    return path


def publish_run(_, *, out: str, run_id: str, tables: list[str], history: bool, started_at: dt.datetime,
                inputs: int, analysis_key: str, settings: dict | None = None, **side) -> str:
    """The pipeline's last step (its side inputs are every table's written files and row counts):
    publish this run's tables and, with history, record it. Returns the run id."""
    publish(out, run_id, tables, history)
    if history:
        rows = {name.removeprefix("rows_"): int(n) for name, n in side.items() if name.startswith("rows_")}
        record_run(out, run_id, started_at, dt.datetime.now(dt.UTC), inputs, analysis_key, rows, settings)
    return run_id


def completed_runs(out: str) -> list[str]:
    """Ids of the runs recorded in ``OUT/history/runs``, oldest first."""
    pattern = FileSystems.join(out, HISTORY, RUNS, "run=*", "run.parquet")
    return sorted(_run_id(m.path) for m in FileSystems.match([pattern])[0].metadata_list)


def _run_id(path: str) -> str:
    found = _RUN_DIR.search(path.replace("\\", "/"))
    return found.group(1) if found else ""


def _partitions(out: str) -> set[str]:
    """Every ``OUT/history/<table>/run=<id>`` folder, empty ones included on local disks."""
    if FileSystems.get_scheme(out) in (None, "file"):
        return {str(p) for p in Path(out.removeprefix("file://")).glob(f"{HISTORY}/*/run=*") if p.is_dir()}
    pattern = FileSystems.join(out, HISTORY, "*", "run=*", "**")  # object stores: folders are name prefixes
    return {m.path[: m.path.index("/", m.path.index("/run=") + 1)]
            for m in FileSystems.match([pattern])[0].metadata_list if "/run=" in m.path}


def remove_incomplete_runs(out: str) -> list[str]:
    """Delete partitions of runs that never completed (killed or failed); returns their folders."""
    done = set(completed_runs(out))
    stale = sorted(f for f in _partitions(out) if _run_id(f + "/") not in done)
    for folder in stale:
        _delete_folder(folder)
    staging = FileSystems.join(out, STAGING)
    if FileSystems.exists(staging):
        FileSystems.delete([staging])
        stale.append(staging)
    return stale
