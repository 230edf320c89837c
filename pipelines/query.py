"""`mirmatch query`: SQL over the output tables with DuckDB."""

from __future__ import annotations

import json
from typing import BinaryIO

import duckdb

from pipelines.runs import HISTORY, RUNS, read_latest
from pipelines.schemas import TABLES


def connect(out: str) -> duckdb.DuckDBPyConnection:
    """An in-memory DuckDB connection with one view per table found under ``out``.

    The latest tables are views by name (``matches``), read from the partitions that the pointer
    ``OUT/_latest.json`` names (``pipelines.runs``), so every view is of one complete run even while
    another run publishes; every completed run's tables are ``<table>_history`` with a ``run`` column, and
    ``runs`` lists the completed runs.
    """
    con = duckdb.connect()
    root = out.rstrip("/")
    latest = (read_latest(out) or {}).get("tables", {})
    found = 0
    for table in TABLES:
        if table in latest:  # the partition itself: its run=... folder is not a column of the latest table
            found += _view(con, table, f"{root}/{latest[table]}/*.parquet", hive=False)
        else:  # an OUT written before the pointer existed
            found += _view(con, table, f"{root}/{table}/**/*.parquet")
        _view(con, f"{table}_history", f"{root}/{HISTORY}/{table}/run=*/*.parquet",
              f"run IN (SELECT run_id FROM read_parquet('{root}/{HISTORY}/{RUNS}/run=*/*.parquet'))")
    _view(con, RUNS, f"{root}/{HISTORY}/{RUNS}/run=*/*.parquet")
    if not found:
        raise FileNotFoundError(f"no mirmatch tables under {out}; run `mirmatch run --out {out} ...` first")
    return con


def _view(con: duckdb.DuckDBPyConnection, name: str, pattern: str, where: str | None = None,
          hive: bool = True) -> bool:
    """Create view ``name`` over the Parquet files matching ``pattern``; False when there are none."""
    try:
        con.execute(f"CREATE VIEW {name} AS SELECT * FROM read_parquet('{pattern}', hive_partitioning = {hive}, "
                    f"hive_types_autocast = false, union_by_name = true)" + (f" WHERE {where}" if where else ""))
        con.execute(f"SELECT 1 FROM {name} LIMIT 0")
        return True
    except duckdb.Error:
        con.execute(f"DROP VIEW IF EXISTS {name}")
        return False


FORMATS = ("table", "csv", "json", "parquet")


def query(out: str, sql: str, max_rows: int = 100) -> str:
    """Run ``sql`` over the tables of ``out`` and return the result as a printable table of at most ``max_rows``
    rows (0 = all), every one of them shown."""
    result = query_arrow(out, sql, max_rows)
    return "" if result is None else text_table(result)


def query_arrow(out: str, sql: str, limit: int = 0):
    """The result of ``sql`` over the tables of ``out`` as a pyarrow Table (at most ``limit`` rows, 0 = all);
    None for a statement that returns no rows."""
    relation = connect(out).sql(sql)
    if relation is None:
        return None
    return (relation.limit(limit) if limit else relation).fetch_arrow_table()


def write_result(table, fmt: str, stream: BinaryIO) -> None:
    """Write a query result to a binary stream as ``fmt``: an aligned text table, CSV with a header, JSON Lines,
    or Parquet."""
    import pyarrow.csv
    import pyarrow.parquet as pq

    if fmt == "table":
        stream.write((text_table(table) + "\n").encode())
    elif fmt == "csv":
        pyarrow.csv.write_csv(table, stream)
    elif fmt == "json":
        for row in table.to_pylist():
            stream.write((json.dumps(row, default=str) + "\n").encode())
    elif fmt == "parquet":
        pq.write_table(table, stream, compression="zstd")
    else:
        raise ValueError(f"format must be one of {FORMATS}, got {fmt!r}")


def text_table(table, max_width: int = 60) -> str:
    """Every row of ``table`` as aligned text columns (long values cut to ``max_width`` characters), then a
    line with the row count."""
    names = table.column_names
    rows = [[_cell(v, max_width) for v in row.values()] for row in table.to_pylist()]
    widths = [max([len(n)] + [len(r[i]) for r in rows]) for i, n in enumerate(names)]
    lines = ["  ".join(n.ljust(w) for n, w in zip(names, widths, strict=True)).rstrip(),
             "  ".join("-" * w for w in widths)]
    lines += ["  ".join(c.ljust(w) for c, w in zip(r, widths, strict=True)).rstrip() for r in rows]
    lines.append(f"({len(rows)} row{'s' if len(rows) != 1 else ''})")
    return "\n".join(lines)


def _cell(value, max_width: int) -> str:
    text = "NULL" if value is None else f"{value:.6g}" if isinstance(value, float) else str(value)
    return text if len(text) <= max_width else text[: max_width - 3] + "..."
