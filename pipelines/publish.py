"""Writing a run's tables to its own partition, checking them, then publishing them as the latest tables."""

from __future__ import annotations

import datetime as dt

import apache_beam as beam
from apache_beam.io.filesystems import FileSystems

from pipelines.invariants import check_run
from pipelines.runs import publish_run, staged_folder
from pipelines.schemas import CODEC, RECORD_BATCH_ROWS, ROW_GROUP_BYTES, table_schema

#: The tables every run writes (../shared/CONTRACT.md), in the order they are published.
OUTPUTS = ("tracks", "errors", "segments", "matches", "alignments", "clusters", "version_edges")


def write_table(pcoll: beam.PCollection, folder: str, table: str, run_id: str, analysis_key: str,
                model: str | None = None) -> beam.PCollection:
    """Write ``pcoll`` as Parquet files ``part-<run_id>-NNNNN-of-NNNNN.parquet`` into ``folder`` (zstd, spec
    LIST layout, the schema's non-null columns as required fields, ``schemas.file_metadata`` in every file);
    returns the written file names. The run id in the names keeps two runs' files apart wherever they meet."""
    schema = table_schema(table, run_id=run_id, analysis_key=analysis_key, model=model)
    return pcoll | f"Write {table}" >> beam.io.WriteToParquet(
        FileSystems.join(folder, f"part-{run_id}"), schema, codec=CODEC, use_compliant_nested_type=True,
        row_group_buffer_size=ROW_GROUP_BYTES, record_batch_size=RECORD_BATCH_ROWS, file_name_suffix=".parquet")


def check_and_publish(_, *, n_inputs: int, top_k: int, accounts: list[dict], version_proposed: int,
                      version_verified: int, publish: dict, **side) -> str:
    """The last step: check the run's invariants on its written tables (``pipelines.invariants``), then publish
    them (``pipelines.runs.publish_run``). A broken invariant fails the run and publishes nothing."""
    if n_inputs == 0:
        raise ValueError("no input files: check the --audio and --midi patterns")
    written = {name.removeprefix("written_"): files for name, files in side.items() if name.startswith("written_")}
    check_run(n_inputs=n_inputs, top_k=top_k, written=written, accounts=accounts,
              version_pairs=(version_proposed, version_verified))
    return publish_run(None, **{**publish, "inputs": n_inputs}, **side)


class PublishRun(beam.PTransform):
    """The tables (a dict table -> PCollection of rows, plus ``index_files``, ``accounts``,
    ``version_proposed`` and ``version_verified``) -> written to this run's partition, checked, and published
    as the latest tables once every one is written, so this works the same on every runner; then, with
    ``keep_runs``, the history is pruned to the newest that many runs. ``settings`` (the run's options and
    decision cuts) are recorded with the run in ``OUT/history/runs``."""

    def __init__(self, out: str, run_id: str, history: bool, n_inputs: int | beam.PCollection, top_k: int,
                 analysis_key: str,
                 extra_tables: tuple[str, ...] = (), model: str | None = None, keep_runs: int | None = None,
                 settings: dict | None = None):
        super().__init__()
        self.out, self.run_id, self.history = out, run_id, history
        self.n_inputs, self.top_k, self.analysis_key = n_inputs, top_k, analysis_key
        self.extra_tables, self.model, self.keep_runs = extra_tables, model, keep_runs
        self.settings = settings or {}
        self.started_at = dt.datetime.now(dt.UTC)

    def expand(self, parts: dict[str, beam.PCollection]) -> beam.PCollection:
        side: dict[str, beam.pvalue.AsSideInput] = {"written_index": beam.pvalue.AsList(parts["index_files"])}
        for table in OUTPUTS:
            written = write_table(parts[table], staged_folder(self.out, self.run_id, table, self.history), table,
                                  self.run_id, self.analysis_key, self.model)
            side[f"written_{table}"] = beam.pvalue.AsList(written)
            side[f"rows_{table}"] = beam.pvalue.AsSingleton(
                parts[table] | f"Count {table}" >> beam.combiners.Count.Globally())
        n_inputs = (self.n_inputs if isinstance(self.n_inputs, int)  # a count in the graph, or of a PCollection
                    else beam.pvalue.AsSingleton(self.n_inputs))
        publish = dict(out=self.out, run_id=self.run_id, tables=[*OUTPUTS, *self.extra_tables],
                       history=self.history, started_at=self.started_at, inputs=None,
                       analysis_key=self.analysis_key, keep_runs=self.keep_runs, settings=self.settings)
        return (
            parts["tracks"].pipeline
            | "Publish trigger" >> beam.Create([None])
            | "Publish tables" >> beam.Map(
                check_and_publish, n_inputs=n_inputs, top_k=self.top_k, publish=publish,
                accounts=beam.pvalue.AsList(parts["accounts"]),
                version_proposed=beam.pvalue.AsSingleton(parts["version_proposed"]),
                version_verified=beam.pvalue.AsSingleton(parts["version_verified"]), **side)
        )
