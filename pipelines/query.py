"""`mirmatch query`: SQL over the output tables with DuckDB."""

from __future__ import annotations

import duckdb

from pipelines.schemas import TABLES


def connect(out: str) -> duckdb.DuckDBPyConnection:
    """An in-memory DuckDB connection with one view per table found under ``out``."""
    con = duckdb.connect()
    found = 0
    for table in TABLES:
        pattern = f"{out.rstrip('/')}/{table}/**/*.parquet"
        try:
            con.execute(f"CREATE VIEW {table} AS SELECT * FROM read_parquet('{pattern}', "
                        "hive_partitioning = true, union_by_name = true)")
            con.execute(f"SELECT 1 FROM {table} LIMIT 0")
            found += 1
        except duckdb.Error:
            con.execute(f"DROP VIEW IF EXISTS {table}")
    if not found:
        raise FileNotFoundError(f"no mirmatch tables under {out}; run `mirmatch run --out {out} ...` first")
    return con


def query(out: str, sql: str, max_rows: int = 100) -> str:
    """Run ``sql`` over the tables of ``out`` and return the result as a printable table."""
    relation = connect(out).sql(sql)
    if relation is None:
        return ""
    return relation.limit(max_rows).__str__() if max_rows else str(relation)
