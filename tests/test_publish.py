"""Publishing for warehouses: the Parquet files a warehouse takes as they are, readers that never see half a run
while another is published, and pruning the history to the newest runs."""

from __future__ import annotations

import datetime as dt
import glob
import os
import threading
import time
from pathlib import Path

import duckdb
import pyarrow as pa
import pyarrow.parquet as pq
import pytest

from pipelines.publish import OUTPUTS
from pipelines.runs import (
    LATEST,
    completed_runs,
    prune_runs,
    publish,
    read_latest,
    record_run,
    remove_incomplete_runs,
    staged_folder,
)
from pipelines.schemas import CONTRACT_VERSION, TABLES

URI_COLUMNS = {"tracks": ["uri"], "matches": ["midi_uri", "audio_uri"], "alignments": ["midi_uri", "audio_uri"],
               "clusters": ["uri"], "segments": ["uri"], "errors": ["uri"]}


# --- the Parquet files of a real run ---------------------------------------------------------------------------

def test_tables_are_parquet_a_warehouse_takes_as_is(pipeline_out):
    latest = read_latest(str(pipeline_out))
    run_id = latest["run_id"]
    for table in OUTPUTS:
        files = sorted((pipeline_out / table).glob("*.parquet"))
        assert files, table
        for f in files:
            assert f.name.startswith(f"part-{run_id}-"), f  # two runs' files never share a name
            meta = pq.ParquetFile(f).metadata
            kv = {k.decode(): v.decode() for k, v in meta.metadata.items()}
            assert kv["mirmatch.table"] == table and kv["mirmatch.run_id"] == run_id
            assert kv["mirmatch.contract_version"] == CONTRACT_VERSION
            assert kv["mirmatch.analysis_key"] == latest["analysis_key"] and len(kv["mirmatch.analysis_key"]) == 16
            assert kv["mirmatch.model"] == "learned" and kv["mirmatch.version"]
            for g in range(meta.num_row_groups):
                for c in range(meta.num_columns):
                    assert meta.row_group(g).column(c).compression == "ZSTD", (table, c)
            schema = pq.read_schema(f)
            for field in TABLES[table]:  # required columns stay required in the file
                assert schema.field(field.name).nullable == field.nullable, (table, field.name)
    assert not TABLES["tracks"].field("uri").nullable and TABLES["tracks"].field("track_id").nullable


def test_nullable_columns_are_those_a_row_may_leave_empty(pipeline_out):
    tracks = pq.read_table(pipeline_out / "tracks").to_pylist()
    failed = [t for t in tracks if t["status"] == "error"]
    assert failed and all(t["duration_s"] is None for t in failed)  # a failed track has no duration
    assert all(t["track_id"] and t["duration_s"] for t in tracks if t["status"] == "ok")
    for table in OUTPUTS:
        rows = pq.read_table(pipeline_out / table)
        for field in TABLES[table]:
            if not field.nullable:
                assert rows.column(field.name).null_count == 0, (table, field.name)


def test_lists_use_the_parquet_spec_layout(pipeline_out):
    f = next((pipeline_out / "alignments").glob("*.parquet"))
    schema = pq.ParquetFile(f).schema
    paths = {schema.column(i).path for i in range(len(schema))}
    assert {"midi_times_s.list.element", "audio_times_s.list.element"} <= paths  # not ...list.item


def test_every_uri_is_absolute(pipeline_out, tiny_corpus):
    for table, columns in URI_COLUMNS.items():
        for row in pq.read_table(pipeline_out / table, columns=columns).to_pylist():
            for column in columns:
                value = row[column]
                if table == "errors" and value.startswith("track:"):  # an error about a track id, not a file
                    continue
                assert value.startswith("file:///"), (table, column, value)
    uris = set(pq.read_table(pipeline_out / "tracks").column("uri").to_pylist())
    assert {Path(p).resolve().as_uri() for p in tiny_corpus["midi"]} <= uris


def test_contract_checker_passes(pipeline_out, tiny_corpus, bad_inputs):
    import subprocess
    import sys

    from tests.conftest import SHARED

    n = len(tiny_corpus["audio"]) + len(tiny_corpus["midi"]) + sum(len(v) for v in bad_inputs.values())
    proc = subprocess.run([sys.executable, str(SHARED / "tools" / "check_contract.py"), str(pipeline_out),
                           "--inputs", str(n)], capture_output=True, text=True)
    assert proc.returncode == 0, proc.stdout + proc.stderr


# --- publishing while readers read -----------------------------------------------------------------------------

SHARDS = 3
ROWS = {"A": 5, "B": 7}  # rows per shard: the two runs' tables differ in size


def write_run(out: Path, run_id: str) -> None:
    """A completed run's partitions: every table in SHARDS files, each row naming its run."""
    for table in [*OUTPUTS, "index"]:
        folder = Path(staged_folder(str(out), run_id, table))
        folder.mkdir(parents=True)
        for shard in range(SHARDS):
            rows = pa.table({"uri": [f"run-{run_id}"] * ROWS[run_id], "shard": [shard] * ROWS[run_id]})
            pq.write_table(rows, folder / f"part-{run_id}-{shard:05d}-of-{SHARDS:05d}.parquet")
    now = dt.datetime.now(dt.UTC)
    record_run(str(out), run_id, now, now, 1, "key", {})


def seen(counts: dict[str, tuple[list[str], int]]) -> str:
    """The one run whose complete tables a read saw; fails on a mix, a missing table or a partial one."""
    runs = {run for table, (found, _) in counts.items() for run in found}
    assert len(runs) == 1, f"a read mixed runs: {counts}"
    run = runs.pop().removeprefix("run-")
    for table, (_, n) in counts.items():
        assert n == SHARDS * ROWS[run], f"{table} of run {run} read partially: {n} rows"
    return run


def read_via_query(out: str) -> str:
    """Reader 1, `mirmatch query`'s code path: every table through the views of one connection."""
    from pipelines.query import connect

    con = connect(out)
    counts = {}
    for table in OUTPUTS:
        found = con.execute(f"SELECT list(DISTINCT uri), count(*) FROM {table}").fetchall()[0]
        counts[table] = (found[0] or [], found[1])
    return seen(counts)


def read_glob_duckdb(out: str, table: str) -> str:
    """Reader 2, a plain DuckDB glob over OUT/<table>/ (what the contract's readers do)."""
    found = duckdb.sql(f"SELECT list(DISTINCT uri), count(*) FROM read_parquet('{out}/{table}/**/*.parquet')"
                       ).fetchall()[0]
    return seen({table: (found[0] or [], found[1])})


def read_glob_pyarrow(out: str, table: str) -> str:
    """Reader 3, Python's glob then pyarrow, file by file (as ../shared/tools/check_contract.py reads)."""
    files = sorted(glob.glob(f"{out}/{table}/**/*.parquet", recursive=True))
    assert files, f"{table}: no files"
    rows = pa.concat_tables([pq.read_table(f) for f in files])
    return seen({table: (sorted(set(rows.column("uri").to_pylist())), rows.num_rows)})


def read_listing(out: str, table: str) -> str:
    """Reader 4, one directory listing of OUT/<table>: never empty, and every file of one run."""
    names = os.listdir(f"{out}/{table}")
    runs = {name.split("-")[1] for name in names}
    assert len(runs) == 1 and len(names) == SHARDS, f"{table} listed {names}"
    return runs.pop()


def test_readers_never_see_half_a_run_while_runs_are_published(tmp_path):
    out = tmp_path / "out"
    write_run(out, "A")
    write_run(out, "B")
    publish(str(out), "A", [*OUTPUTS, "index"])
    stop = threading.Event()
    results: dict[str, dict] = {name: {"A": 0, "B": 0, "retried": 0, "failures": []}
                                for name in ("query", "glob_duckdb", "glob_pyarrow", "listing")}

    def reader(name, read):
        tally = results[name]
        i = 0
        while not stop.is_set():
            table = OUTPUTS[i % len(OUTPUTS)]
            i += 1
            try:
                tally[read(str(out), table) if name != "query" else read(str(out))] += 1
            except (FileNotFoundError, duckdb.IOException):
                # a glob whose listing was taken just before a swap names files that are no longer under
                # OUT/<table> (DuckDB then says "No files found", having dropped them): read again. That the
                # table itself is never missing is what the listing reader checks.
                tally["retried"] += 1
            except AssertionError as exc:
                tally["failures"].append(str(exc))

    threads = [threading.Thread(target=reader, args=(name, fn), daemon=True) for name, fn in
               (("query", read_via_query), ("glob_duckdb", read_glob_duckdb), ("glob_pyarrow", read_glob_pyarrow),
                ("listing", read_listing))]
    for t in threads:
        t.start()
    deadline = time.monotonic() + 20
    publishes = 0
    while time.monotonic() < deadline and (publishes < 200 or min(
            min(r["A"], r["B"]) for r in results.values()) < 5):
        publish(str(out), "B" if publishes % 2 == 0 else "A", [*OUTPUTS, "index"])
        publishes += 1
    stop.set()
    for t in threads:
        t.join(30)
    print(f"{publishes} publishes; reads per reader: {results}")
    for name, tally in results.items():
        assert not tally["failures"], f"{name}: {tally['failures'][:3]}"
        assert tally["A"] >= 5 and tally["B"] >= 5, f"{name} did not read both runs: {tally}"
    # The pointer names immutable partitions: nothing to retry. A glob reader retries when a swap falls between
    # its listing and its opening of the files (often here, with a publish every few milliseconds).
    assert results["query"]["retried"] == results["listing"]["retried"] == 0
    assert read_latest(str(out))["run_id"] == ("B" if publishes % 2 else "A")
    assert not [p for p in out.iterdir() if ".tmp-" in p.name or ".old-" in p.name]  # nothing left behind


def test_publish_replaces_a_folder_left_by_an_older_mirmatch(tmp_path):
    out = tmp_path / "out"
    write_run(out, "A")
    (out / "tracks").mkdir()
    (out / "tracks" / "part-00000-of-00001.parquet").write_text("old")
    publish(str(out), "A", ["tracks"])
    assert (out / "tracks").is_symlink()
    assert sorted(p.name for p in (out / "tracks").iterdir()) == [f"part-A-{s:05d}-of-{SHARDS:05d}.parquet"
                                                                   for s in range(SHARDS)]
    pointer = read_latest(str(out))
    assert pointer["run_id"] == "A" and pointer["tables"] == {"tracks": "history/tracks/run=A"}
    assert (out / LATEST).exists()


# --- pruning the history ---------------------------------------------------------------------------------------

def test_keep_runs_prunes_history_to_the_newest_runs(tmp_path):
    out = tmp_path / "out"
    base = dt.datetime(2026, 1, 1, tzinfo=dt.UTC)
    # finished in this order; ids do not sort by age ("z-first" is the oldest)
    for i, run_id in enumerate(["z-first", "b-second", "a-third", "c-fourth"]):
        for table in [*OUTPUTS, "index"]:
            folder = Path(staged_folder(str(out), run_id, table))
            folder.mkdir(parents=True)
            pq.write_table(pa.table({"uri": [run_id]}), folder / f"part-{run_id}-0.parquet")
        record_run(str(out), run_id, base, base + dt.timedelta(hours=i), 1, "key", {})
    publish(str(out), "c-fourth", [*OUTPUTS, "index"])

    assert prune_runs(str(out), 2) == ["z-first", "b-second"]
    assert completed_runs(str(out)) == ["a-third", "c-fourth"]
    for table in [*OUTPUTS, "index", "runs"]:
        assert sorted(p.name for p in (out / "history" / table).iterdir()) == ["run=a-third", "run=c-fourth"]
    from pipelines.query import query

    assert "(2 rows)" in query(str(out), "SELECT run_id FROM runs")
    assert prune_runs(str(out), 2) == []  # nothing more to prune
    assert remove_incomplete_runs(str(out)) == []  # the kept runs are complete
    with pytest.raises(ValueError):
        prune_runs(str(out), 0)


def test_keep_runs_on_real_runs(tiny_corpus, tmp_path):
    from pipelines.cli import main

    out = tmp_path / "out"
    pair = tiny_corpus["pairs"][0]
    for run_id in ("r1", "r2", "r3"):
        argv = ["run", "--out", str(out), "--audio", pair["audio"], "--midi", pair["midi"], "--run-id", run_id,
                "--keep-runs", "2"]
        assert main(argv) == 0
    assert completed_runs(str(out)) == ["r2", "r3"]
    for table in [*OUTPUTS, "index", "runs"]:
        assert sorted(p.name for p in (out / "history" / table).iterdir()) == ["run=r2", "run=r3"], table
    assert os.readlink(out / "tracks") == "history/tracks/run=r3"
    with pytest.raises(SystemExit):  # 0 runs kept would delete the tables just published
        main(["run", "--out", str(out), "--midi", pair["midi"], "--keep-runs", "0"])
