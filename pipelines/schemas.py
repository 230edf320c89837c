"""Arrow schemas of the output tables (see ../shared/CONTRACT.md) and how their Parquet files are written.

A column the contract always fills is non-nullable (a Parquet ``required`` field), so a warehouse loading the
files gets NOT NULL columns and a row breaking the contract fails the write instead of being published.
``tracks.track_id`` and ``tracks.duration_s`` stay nullable: an unreadable file has no content hash, and a
track that failed has no duration; so do the ``nearest_version_*`` columns of ``clusters``.
"""

from __future__ import annotations

import pyarrow as pa

#: Version of the output contract (../shared/CONTRACT.md) the files follow; in every file's key-value metadata.
CONTRACT_VERSION = "1"
#: Parquet codec of every table: zstd reads fast everywhere (DuckDB, BigQuery, Spark, pandas) and is small.
CODEC = "zstd"
#: Bytes of rows buffered per Parquet row group (Beam's default): tens of thousands of rows for most tables,
#: within the 100 k - 1 M rows per group that DuckDB and Spark scan best, and bounded memory per writer.
ROW_GROUP_BYTES = 64 * 1024 * 1024
#: Rows per Arrow record batch while buffering: small, as one `alignments` row holds two long lists.
RECORD_BATCH_ROWS = 1000


def _required(name: str, type_: pa.DataType) -> pa.Field:
    return pa.field(name, type_, nullable=False)


def _times(name: str) -> pa.Field:
    """A non-null list of non-null seconds; its Parquet item field is ``element`` (the spec's LIST layout)."""
    return _required(name, pa.list_(pa.field("element", pa.float64(), nullable=False)))


def _required_strings(*names: str) -> list[pa.Field]:
    return [_required(n, pa.string()) for n in names]


TABLES: dict[str, pa.Schema] = {
    "tracks": pa.schema([
        pa.field("track_id", pa.string()),  # null when the file could not be read
        _required("uri", pa.string()), _required("modality", pa.string()),
        pa.field("duration_s", pa.float64()),  # null when status is 'error'
        _required("status", pa.string()),
    ]),
    "matches": pa.schema([
        *_required_strings("midi_id", "midi_uri", "audio_id", "audio_uri"),
        _required("rank", pa.int32()), _required("confidence", pa.float64()), _required("is_match", pa.bool_()),
        *[_required(n, pa.float64()) for n in ("midi_start_s", "midi_end_s", "audio_start_s", "audio_end_s",
                                                "dtw_score")],
        _required("hamming_distance", pa.int32()),
        # the decision's evidence (hashing.decisions): the best null alignment's score, how much better the pair
        # aligns than it (null_score - dtw_score), and the seconds of music aligned on the shorter side
        *[_required(n, pa.float64()) for n in ("null_score", "margin", "aligned_s")],
    ]),
    "alignments": pa.schema([
        *_required_strings("midi_id", "audio_id"), _times("midi_times_s"), _times("audio_times_s"),
        *_required_strings("midi_uri", "audio_uri"),
    ]),
    "clusters": pa.schema([
        *_required_strings("track_id", "uri", "modality", "cluster_id"), _required("cluster_size", pa.int32()),
        # the most similar other track by verified similarity (hashing.version_align), whether or not it is
        # in the same cluster; null when no candidate was verified
        pa.field("nearest_version_id", pa.string()), pa.field("nearest_version_similarity", pa.float64()),
    ]),
    # every verified version pair of the run (not in the contract): its similarity, how far it stands above the
    # two tracks' nulls (z), whether it is one of the reference pairs those nulls come from, and whether it counts
    "version_edges": pa.schema([
        *_required_strings("track_a", "track_b"), _required("similarity", pa.float64()), _required("z", pa.float64()),
        _required("is_reference", pa.bool_()), _required("accepted", pa.bool_()),
    ]),
    "segments": pa.schema([
        *_required_strings("track_id", "uri"), _required("segment_index", pa.int32()),
        _required("start_s", pa.float64()), _required("end_s", pa.float64()), _required("label", pa.string()),
    ]),
    "errors": pa.schema([
        # uri is the input's; an error about a track known only by its id has uri 'track:<track_id>'
        *_required_strings("uri", "stage", "error_type", "message"),
        _required("severity", pa.string()),  # "error" (the track failed) or "warning" (analysed anyway)
    ]),
}


def file_metadata(table: str, *, run_id: str, analysis_key: str, model: str | None) -> dict[str, str]:
    """The key-value metadata written into every Parquet file of ``table``: which code, analysis version,
    model and run wrote it, under which contract version."""
    from pipelines.cli import mirmatch_version

    return {"mirmatch.version": mirmatch_version(), "mirmatch.contract_version": CONTRACT_VERSION,
            "mirmatch.table": table, "mirmatch.run_id": run_id, "mirmatch.analysis_key": analysis_key,
            "mirmatch.model": model or "learned"}


def table_schema(table: str, **metadata: str | None) -> pa.Schema:
    """``TABLES[table]`` with ``file_metadata`` (keyword arguments: run_id, analysis_key, model)."""
    return TABLES[table].with_metadata(file_metadata(table, **metadata))


def error_row(uri: str, stage: str, error_type: str, message: str, severity: str = "error") -> dict:
    """A row of the `errors` table."""
    return {"uri": uri, "stage": stage, "error_type": error_type, "message": message, "severity": severity}
