"""Where a run writes its tables, how they become the latest (atomically), and the history of runs.

A run writes every table to a partition of its own, ``OUT/history/<table>/run=<RUN_ID>/`` (with
``history=False``: ``OUT/_published/<RUN_ID>/<table>/``), file names carrying the run id. Only when the whole
pipeline has finished and its tables are checked does it record itself in ``OUT/history/runs/`` and publish:

* ``OUT/_latest.json``, the pointer, names the run and the folder of each of its tables; it is replaced
  whole (a rename on local disks, one object write on object stores), last. Readers that follow it
  (``mirmatch query``, the README's recipes) always read one complete run;
* on local disks each ``OUT/<table>`` is a symbolic link to the run's partition, swapped by an atomic rename
  (``os.replace``) before the pointer: a reader globbing ``OUT/<table>/**/*.parquet`` sees the old table or
  the new one, never a mix (a listing taken just before the swap may fail to open its files; then read again);
* on object stores (``gs://``), which have neither links nor renames, the run's files are copied into
  ``OUT/<table>/`` and only then the previous run's files deleted: a glob reader there may briefly see both
  runs' rows, so warehouses should read the partition the pointer names.

Every completed run stays queryable (``OUT/history/<table>/run=*/``, Hive-style partitions, and
``OUT/history/runs``) unless pruned to the newest N (``prune_runs``); partitions of runs that never completed
are removed by the next run (one writer per OUT at a time).
"""

from __future__ import annotations

import datetime as dt
import json
import os
import re
import uuid
from pathlib import Path

import pyarrow as pa
import pyarrow.parquet as pq
from apache_beam.io.filesystem import CompressionTypes
from apache_beam.io.filesystems import FileSystems

HISTORY = "history"
STAGING = "_staging"
PUBLISHED = "_published"  # the tables of runs without history
LATEST = "_latest.json"
RUNS = "runs"
RUNS_SCHEMA = pa.schema([
    pa.field("run_id", pa.string(), nullable=False), pa.field("started_at", pa.timestamp("s", tz="UTC")),
    pa.field("finished_at", pa.timestamp("s", tz="UTC")), ("inputs", pa.int64()), ("analysis_key", pa.string()),
    ("counters", pa.string()),
    ("settings", pa.string()),  # JSON: the options and decision cuts the run used (RunConfig.settings)
])
RAW = CompressionTypes.UNCOMPRESSED
_RUN_DIR = re.compile(r"/run=([^/]+)/")


def new_run_id(now: dt.datetime | None = None) -> str:
    """A run id that sorts by time: UTC ``YYYYMMDDTHHMMSSZ``."""
    return (now or dt.datetime.now(dt.UTC)).strftime("%Y%m%dT%H%M%SZ")


def _relative_folder(run_id: str, table: str, history: bool) -> str:
    return f"{HISTORY}/{table}/run={run_id}" if history else f"{PUBLISHED}/{run_id}/{table}"


def staged_folder(out: str, run_id: str, table: str, history: bool = True) -> str:
    """The folder a run writes ``table`` to; once published, the latest ``OUT/<table>`` is this folder."""
    return FileSystems.join(out, *_relative_folder(run_id, table, history).split("/"))


def scratch_folder(out: str, run_id: str) -> str:
    """Where a run without a state folder keeps its analyses until it has published (then removed)."""
    return FileSystems.join(out, STAGING, run_id, "analyses")


def _is_local(path: str) -> bool:
    return FileSystems.get_scheme(path) in (None, "file")


def _local(path: str) -> Path:
    return Path(path.removeprefix("file://"))


def _files(folder: str) -> list[str]:
    return sorted(m.path for m in FileSystems.match([FileSystems.join(folder, "*")])[0].metadata_list)


def _delete_folder(folder: str) -> None:
    if _is_local(folder) and _local(folder).is_symlink():
        _local(folder).unlink()
    elif FileSystems.exists(folder):
        FileSystems.delete([folder])
    else:  # object stores have no folders, only names with a common prefix
        files = _files(folder)
        if files:
            FileSystems.delete(files)


def _is_temp(path: str) -> bool:
    return "beam-temp" in path.rsplit("/", 1)[-1]


def read_latest(out: str) -> dict | None:
    """The pointer ``OUT/_latest.json`` (run_id, published_at, tables: table -> folder relative to OUT, ...),
    or None before the first publish (or for an OUT written by a mirmatch without it)."""
    path = FileSystems.join(out, LATEST)
    try:
        with FileSystems.open(path, compression_type=RAW) as f:
            return json.loads(f.read().decode("utf-8"))
    except Exception:  # missing: not published yet
        return None


def latest_folders(out: str) -> dict[str, str]:
    """table -> the folder (under ``out``) of its latest published files: the partition the pointer names, or
    ``OUT/<table>`` when there is no pointer."""
    latest = read_latest(out)
    if latest is None:
        return {}
    return {table: FileSystems.join(out, *rel.split("/")) for table, rel in latest["tables"].items()}


def _write_latest(out: str, pointer: dict) -> None:
    """Replace the pointer whole: rename over it on local disks; one object write (atomic) on object stores."""
    data = json.dumps(pointer, indent=1, sort_keys=True).encode()
    path = FileSystems.join(out, LATEST)
    if _is_local(out):
        tmp = _local(out) / f".{LATEST}.tmp-{uuid.uuid4().hex}"
        tmp.write_bytes(data)
        os.replace(tmp, _local(path))
        return
    with FileSystems.create(path, mime_type="application/json", compression_type=RAW) as f:
        f.write(data)


def _swap_link(link: Path, target: str) -> None:
    """Point ``link`` at ``target`` (relative to its folder) in one atomic rename. A real folder left there by
    an older mirmatch is moved aside first (the only moment ``link`` is missing), then removed."""
    tmp = link.with_name(f".{link.name}.tmp-{uuid.uuid4().hex}")
    os.symlink(target, tmp, target_is_directory=True)
    old = None
    if link.is_dir() and not link.is_symlink():
        old = link.with_name(f".{link.name}.old-{uuid.uuid4().hex}")
        os.rename(link, old)
    os.replace(tmp, link)
    if old is not None:
        FileSystems.delete([str(old)])


def _copy_then_prune(staged: list[str], latest: str) -> None:
    """Object stores: copy this run's files into ``latest``, then delete the files of earlier runs there (the
    names carry the run id, so none is overwritten)."""
    names = [f.rstrip("/").rsplit("/", 1)[-1] for f in staged]
    if staged:
        FileSystems.copy(staged, [FileSystems.join(latest, n) for n in names])
    old = [f for f in _files(latest) if f.rsplit("/", 1)[-1] not in set(names)]
    if old:
        FileSystems.delete(old)


def publish(out: str, run_id: str, tables: list[str], history: bool = True, analysis_key: str = "") -> None:
    """Make this run's partitions the latest tables (module docstring), then write the pointer."""
    previous = read_latest(out)
    for table in tables:
        staged = staged_folder(out, run_id, table, history)
        latest = FileSystems.join(out, table)
        if _is_local(out):
            _local(staged).mkdir(parents=True, exist_ok=True)  # a table without rows is an empty folder
            try:
                _swap_link(_local(latest), _relative_folder(run_id, table, history))
                continue
            except OSError:  # a file system without symbolic links (some network mounts): copy, as below
                _local(latest).mkdir(exist_ok=True)
        _copy_then_prune([f for f in _files(staged) if not _is_temp(f)], latest)
    _write_latest(out, {
        "run_id": run_id, "published_at": dt.datetime.now(dt.UTC).isoformat(timespec="seconds"),
        "analysis_key": analysis_key, "history": history,
        "tables": {t: _relative_folder(run_id, t, history) for t in tables},
    })
    _delete_folder(FileSystems.join(out, STAGING, run_id))  # scratch analyses of a run without state
    if not history:  # keep this run's tables and the previous ones (a reader may still be reading them)
        keep = {run_id, (previous or {}).get("run_id")}
        for folder in _published_runs(out):
            if folder.rstrip("/").rsplit("/", 1)[-1] not in keep:
                _delete_folder(folder)


def _published_runs(out: str) -> list[str]:
    """The folders ``OUT/_published/<run_id>`` of runs without history."""
    root = FileSystems.join(out, PUBLISHED)
    if _is_local(out):
        return sorted(str(p) for p in _local(root).glob("*") if p.is_dir())
    metadata = FileSystems.match([FileSystems.join(root, "*", "**")])[0].metadata_list
    prefix = root.rstrip("/") + "/"
    return sorted({prefix + m.path[len(prefix):].split("/", 1)[0] for m in metadata if m.path.startswith(prefix)})


def record_run(out: str, run_id: str, started: dt.datetime, finished: dt.datetime, inputs: int,
               analysis_key: str, counters: dict, settings: dict | None = None) -> str:
    """Append this run to ``OUT/history/runs`` (one Parquet file per completed run; ``counters`` are the
    row counts of its tables, ``settings`` the options and decision cuts it ran with)."""
    table = pa.table({
        "run_id": [run_id], "started_at": [started], "finished_at": [finished], "inputs": [inputs],
        "analysis_key": [analysis_key], "counters": [json.dumps(counters, sort_keys=True)],
        "settings": [json.dumps(settings or {}, sort_keys=True)],
    }, schema=RUNS_SCHEMA.with_metadata({"mirmatch.table": RUNS, "mirmatch.run_id": run_id,
                                         "mirmatch.analysis_key": analysis_key}))
    sink = pa.BufferOutputStream()
    pq.write_table(table, sink, compression="zstd")
    path = FileSystems.join(staged_folder(out, run_id, RUNS), "run.parquet")
    with FileSystems.create(path, compression_type=RAW) as f:
        f.write(sink.getvalue().to_pybytes())
    return path


def publish_run(_, *, out: str, run_id: str, tables: list[str], history: bool, started_at: dt.datetime,
                inputs: int, analysis_key: str, keep_runs: int | None = None, settings: dict | None = None,
                **side) -> str:
    """The pipeline's last step (its side inputs are every table's written files and row counts): with history,
    record this run and its ``settings`` (first, so that the next run never takes a published partition for a
    killed run's), publish its tables, then prune the history to the newest ``keep_runs`` runs. Returns the
    run id."""
    if history:
        rows = {name.removeprefix("rows_"): int(n) for name, n in side.items() if name.startswith("rows_")}
        record_run(out, run_id, started_at, dt.datetime.now(dt.UTC), inputs, analysis_key, rows, settings)
    publish(out, run_id, tables, history, analysis_key)
    if history and keep_runs:
        prune_runs(out, keep_runs)
    return run_id


def completed_runs(out: str) -> list[str]:
    """Ids of the runs recorded in ``OUT/history/runs``, oldest first."""
    pattern = FileSystems.join(out, HISTORY, RUNS, "run=*", "run.parquet")
    return sorted(_run_id(m.path) for m in FileSystems.match([pattern])[0].metadata_list)


def runs_by_age(out: str) -> list[str]:
    """Ids of the completed runs, oldest first by the time they finished (then by id)."""
    pattern = FileSystems.join(out, HISTORY, RUNS, "run=*", "run.parquet")
    found = []
    for m in FileSystems.match([pattern])[0].metadata_list:
        with FileSystems.open(m.path, compression_type=RAW) as f:
            finished = pq.read_table(pa.BufferReader(f.read()), columns=["finished_at"]).column(0)[0].as_py()
        found.append((finished, _run_id(m.path)))
    return [run_id for _, run_id in sorted(found)]


def prune_runs(out: str, keep: int) -> list[str]:
    """Delete every table's partitions, then the runs record, of all completed runs but the newest ``keep``
    (never the run the pointer names). Returns the ids removed, oldest first."""
    if keep < 1:
        raise ValueError(f"keep must be 1 or more, got {keep}")
    latest = (read_latest(out) or {}).get("run_id")
    old = [r for r in runs_by_age(out)[:-keep] if r != latest]
    for run_id in old:
        folders = sorted(_partitions(out, run_id), key=lambda f: f.rstrip("/").endswith(f"/{RUNS}/run={run_id}"))
        for folder in folders:  # the runs record last: a prune killed half-way is finished by the next one
            _delete_folder(folder)
    return old


def _run_id(path: str) -> str:
    found = _RUN_DIR.search(path.replace("\\", "/"))
    return found.group(1) if found else ""


def _partitions(out: str, run_id: str = "*") -> set[str]:
    """Every ``OUT/history/<table>/run=<id>`` folder (of ``run_id``, default all), empty ones included on local
    disks."""
    if _is_local(out):
        return {str(p) for p in _local(out).glob(f"{HISTORY}/*/run={run_id}") if p.is_dir()}
    pattern = FileSystems.join(out, HISTORY, "*", f"run={run_id}", "**")  # object stores: folders are prefixes
    return {m.path[: m.path.index("/", m.path.index("/run=") + 1)]
            for m in FileSystems.match([pattern])[0].metadata_list if "/run=" in m.path}


def remove_incomplete_runs(out: str) -> list[str]:
    """Delete partitions of runs that never completed (killed or failed), never the published one; returns
    their folders."""
    done = set(completed_runs(out)) | {(read_latest(out) or {}).get("run_id")}
    stale = sorted(f for f in _partitions(out) if _run_id(f + "/") not in done)
    stale += [f for f in _published_runs(out) if f.rstrip("/").rsplit("/", 1)[-1] not in done]
    for folder in stale:
        _delete_folder(folder)
    staging = FileSystems.join(out, STAGING)
    if FileSystems.exists(staging):
        FileSystems.delete([staging])
        stale.append(staging)
    return stale
