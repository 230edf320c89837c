"""The stage-1 index of the audio track codes, written with each run for later runs and tools (``OUT/index/``)."""

from __future__ import annotations

from collections.abc import Iterator

import apache_beam as beam
import numpy as np
from apache_beam.io.filesystems import FileSystems

INDEX_DIR = "index"
INDEX_FILE = "audio_track_codes.faissindex"
DATABASE_FILE = "audio_database.parquet"


def write_audio_index(folder: str, audio_db: list[tuple[str, str, np.ndarray, np.ndarray]]) -> Iterator[str]:
    """Persist the stage-1 index and the audio database into ``folder`` (published as ``OUT/index/``).

    ``audio_track_codes.faissindex`` is a faiss IndexBinaryFlat whose row i is row i of
    ``audio_database.parquet`` (track_id, uri, track_code, frame_codes as little-endian uint32, window_codes:
    the track's 30-second window codes, 32 bytes each, ``hashing.search.MultiCodeIndex``).
    """
    import pyarrow as pa
    import pyarrow.parquet as pq

    from hashing.search import HammingIndex

    ordered = sorted(audio_db, key=lambda item: item[0])
    codes = [np.atleast_2d(code) for _, _, code, _ in ordered]  # the track code, then its window codes
    width = codes[0].shape[1] if codes else 32
    index = HammingIndex(np.stack([c[0] for c in codes]) if codes else np.zeros((0, width), np.uint8))
    table = pa.table({
        "position": pa.array(range(len(ordered)), pa.int64()),
        "track_id": pa.array([tid for _, tid, _, _ in ordered], pa.string()),
        "uri": pa.array([uri for uri, _, _, _ in ordered], pa.string()),
        "track_code": pa.array([c[0].tobytes() for c in codes], pa.binary()),
        "window_codes": pa.array([c[1:].tobytes() for c in codes], pa.binary()),
        "frame_codes": pa.array([frames.astype("<u4").tobytes() for _, _, _, frames in ordered], pa.binary()),
    })
    sink = pa.BufferOutputStream()
    pq.write_table(table, sink, compression="zstd")
    for name, data in ((INDEX_FILE, index.to_bytes()), (DATABASE_FILE, sink.getvalue().to_pybytes())):
        path = FileSystems.join(folder, name)
        with FileSystems.create(path) as f:
            f.write(data)
        yield path


class WriteAudioIndex(beam.PTransform):
    """The audio database (uri, track id, track code, frame codes) -> the written index files, from one worker
    (the faiss index is one object; its rows are a few dozen bytes per recording)."""

    def __init__(self, folder: str):
        super().__init__()
        self.folder = folder

    def expand(self, audio_db: beam.PCollection) -> beam.PCollection:
        folder = self.folder
        return (
            audio_db.pipeline
            | "Index trigger" >> beam.Create([None])
            | "Write audio index" >> beam.FlatMap(lambda _, db: write_audio_index(folder, db),
                                                  beam.pvalue.AsList(audio_db))
        )
