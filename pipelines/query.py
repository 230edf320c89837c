"""`mirmatch query`: SQL over the output tables with DuckDB."""

from __future__ import annotations

import duckdb

from pipelines.runs import HISTORY, RUNS
from pipelines.schemas import TABLES


def connect(out: str) -> duckdb.DuckDBPyConnection:
    """An in-memory DuckDB connection with one view per table found under ``out``.

    The latest tables are views by name (``matches``); every completed run's tables are
    ``<table>_history`` with a ``run`` column, and ``runs`` lists the completed runs.
    """
    con = duckdb.connect()
    root = out.rstrip("/")
    found = 0
    for table in TABLES:
        found += _view(con, table, f"{root}/{table}/**/*.parquet")
        _view(con, f"{table}_history", f"{root}/{HISTORY}/{table}/run=*/*.parquet",
              f"run IN (SELECT run_id FROM read_parquet('{root}/{HISTORY}/{RUNS}/run=*/*.parquet'))")
    _view(con, RUNS, f"{root}/{HISTORY}/{RUNS}/run=*/*.parquet")
    if not found:
        raise FileNotFoundError(f"no mirmatch tables under {out}; run `mirmatch run --out {out} ...` first")
    return con


def _view(con: duckdb.DuckDBPyConnection, name: str, pattern: str, where: str | None = None) -> bool:
    """Create view ``name`` over the Parquet files matching ``pattern``; False when there are none."""
    try:
        con.execute(f"CREATE VIEW {name} AS SELECT * FROM read_parquet('{pattern}', hive_partitioning = true, "
                    f"hive_types_autocast = false, union_by_name = true)" + (f" WHERE {where}" if where else ""))
        con.execute(f"SELECT 1 FROM {name} LIMIT 0")
        return True
    except duckdb.Error:
        con.execute(f"DROP VIEW IF EXISTS {name}")
        return False


def query(out: str, sql: str, max_rows: int = 100) -> str:
    """Run ``sql`` over the tables of ``out`` and return the result as a printable table."""
    relation = connect(out).sql(sql)
    if relation is None:
        return ""
    return relation.limit(max_rows).__str__() if max_rows else str(relation)
