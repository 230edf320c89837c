"""Arrow schemas of the output tables (see ../shared/CONTRACT.md)."""

from __future__ import annotations

import pyarrow as pa

TABLES: dict[str, pa.Schema] = {
    "tracks": pa.schema([
        ("track_id", pa.string()), ("uri", pa.string()), ("modality", pa.string()),
        ("duration_s", pa.float64()), ("status", pa.string()),
    ]),
    "matches": pa.schema([
        ("midi_id", pa.string()), ("midi_uri", pa.string()), ("audio_id", pa.string()),
        ("audio_uri", pa.string()), ("rank", pa.int32()), ("confidence", pa.float64()),
        ("is_match", pa.bool_()), ("midi_start_s", pa.float64()), ("midi_end_s", pa.float64()),
        ("audio_start_s", pa.float64()), ("audio_end_s", pa.float64()),
        ("dtw_score", pa.float64()), ("hamming_distance", pa.int32()),
    ]),
    "alignments": pa.schema([
        ("midi_id", pa.string()), ("audio_id", pa.string()),
        ("midi_times_s", pa.list_(pa.float64())), ("audio_times_s", pa.list_(pa.float64())),
        ("midi_uri", pa.string()), ("audio_uri", pa.string()),
    ]),
    "clusters": pa.schema([
        ("track_id", pa.string()), ("uri", pa.string()), ("modality", pa.string()),
        ("cluster_id", pa.string()), ("cluster_size", pa.int32()),
        # the most similar other track by verified similarity (hashing.version_align), whether or not it is
        # in the same cluster; null when no candidate was verified
        ("nearest_version_id", pa.string()), ("nearest_version_similarity", pa.float64()),
    ]),
    "segments": pa.schema([
        ("track_id", pa.string()), ("uri", pa.string()), ("segment_index", pa.int32()),
        ("start_s", pa.float64()), ("end_s", pa.float64()), ("label", pa.string()),
    ]),
    "errors": pa.schema([
        ("uri", pa.string()), ("stage", pa.string()), ("error_type", pa.string()), ("message", pa.string()),
        ("severity", pa.string()),  # "error" (the track failed) or "warning" (analysed anyway)
    ]),
}


def error_row(uri: str, stage: str, error_type: str, message: str, severity: str = "error") -> dict:
    """A row of the `errors` table."""
    return {"uri": uri, "stage": stage, "error_type": error_type, "message": message, "severity": severity}
