"""Exports for researchers: aligned MIDI files (``--export-aligned-midi``) and JAMS segment files (``--export-jams``).

Both are written by the pipeline itself, as its last stage, after the run's tables were checked and published
(they wait on the publishing step's result as a side input), so they describe the published run and nothing
is exported by a run that fails its invariants. A launcher step after ``wait_until_finish`` would not do: the
Dataflow flex template's launcher submits the job and exits (``deploy/flex_main.py``), so only a stage of the
job itself runs on every runner. Files are read and written with Beam's FileSystems (local paths or gs://).

* ``OUT/aligned_midi/<audio_id>/<midi_id>.mid``: for each `alignments` row (each match with is_match), the MIDI
  file re-timed onto the recording (``hashing.retime.retime_midi``; notes starting outside the aligned span
  dropped, ends clamped to it). Named by the two content hashes, so a name is unique and the same on every
  run, like the Lakh MIDI dataset's "aligned" release (one folder per recording, one file per MIDI file).
* ``OUT/jams/<track_id>.jams``: for each ok track, its `segments` rows as a JAMS annotation (namespace
  ``segment_open``) with the track's duration and identifiers in the file metadata.

Each run with a flag first empties its folder, then writes every file afresh: the folder holds exactly the
published run's exports. A pair whose MIDI file cannot be read back (moved, or changed since it was analysed)
is skipped, counted (``aligned_midi_skipped``) and logged; the tables are already published by then.
"""

from __future__ import annotations

import io
import logging
import posixpath
from collections.abc import Iterable, Iterator

import apache_beam as beam
import numpy as np
from apache_beam.io.filesystem import CompressionTypes
from apache_beam.io.filesystems import FileSystems
from apache_beam.metrics import Metrics

log = logging.getLogger("mirmatch")

ALIGNED_MIDI_DIR = "aligned_midi"
JAMS_DIR = "jams"
SEGMENT_NAMESPACE = "segment_open"
SEGMENT_TOOL = ("mirmatch: Laplacian structural segmentation on the CQT fused with learned per-beat embeddings "
                "(encoders.structure.learned)")


def aligned_midi_path(out: str, audio_id: str, midi_id: str) -> str:
    """Where the aligned MIDI of a (MIDI, audio) match is written: ``OUT/aligned_midi/<audio_id>/<midi_id>.mid``."""
    return FileSystems.join(out, ALIGNED_MIDI_DIR, audio_id, f"{midi_id}.mid")


def jams_path(out: str, track_id: str) -> str:
    """Where a track's segments are written as JAMS: ``OUT/jams/<track_id>.jams``."""
    return FileSystems.join(out, JAMS_DIR, f"{track_id}.jams")


def mirmatch_version() -> str:
    from importlib.metadata import PackageNotFoundError, version

    try:
        return version("mirmatch")
    except PackageNotFoundError:
        return "unknown"


def segments_jams(segments: Iterable[tuple[float, float, str]], duration_s: float, track_id: str, uri: str,
                  modality: str, run_id: str | None = None):
    """A ``jams.JAMS`` holding one ``segment_open`` annotation: one observation (time, duration, label) per
    segment (start_s, end_s, label), seconds. The file metadata has the track's duration, title (file name) and
    identifiers (track_id, uri); the sandbox says which run and modality. Validated against the JAMS schema."""
    import jams

    jam = jams.JAMS(file_metadata=jams.FileMetadata(
        title=posixpath.basename(uri.rstrip("/")), duration=float(duration_s),
        identifiers=jams.Sandbox(track_id=track_id, uri=uri)))
    jam.sandbox = jams.Sandbox(mirmatch={"modality": modality, "run_id": run_id})
    ann = jams.Annotation(namespace=SEGMENT_NAMESPACE, time=0.0, duration=float(duration_s),
                          annotation_metadata=jams.AnnotationMetadata(
                              corpus="mirmatch", version=mirmatch_version(), annotation_tools=SEGMENT_TOOL,
                              data_source="machine"))
    for start, end, label in segments:
        ann.append(time=float(start), duration=float(end) - float(start), value=str(label), confidence=None)
    jam.annotations.append(ann)
    jam.validate(strict=True)
    return jam


def _write_bytes(path: str, data: bytes, mime_type: str) -> None:
    with FileSystems.create(path, mime_type=mime_type, compression_type=CompressionTypes.UNCOMPRESSED) as f:
        f.write(data)


def clear_folder(folder: str) -> None:
    """Delete ``folder`` and everything below it, if there is anything (object stores: every name under it)."""
    if FileSystems.exists(folder):
        FileSystems.delete([folder])
        return
    files = [m.path for m in FileSystems.match([FileSystems.join(folder, "**")])[0].metadata_list]
    if files:
        FileSystems.delete(files)


class WriteAlignedMidi(beam.DoFn):
    """An `alignments` row -> the path of its aligned MIDI file, written (nothing when it is skipped)."""

    def __init__(self, out: str):
        self.out = out
        self.written = Metrics.counter("mirmatch", "aligned_midi_written")
        self.skipped = Metrics.counter("mirmatch", "aligned_midi_skipped")

    def process(self, row: dict, run_id: str) -> Iterator[str]:
        from encoders.media import content_id, parse_midi
        from hashing.retime import retime_midi
        from pipelines.sources import path_of_uri

        try:
            with FileSystems.open(path_of_uri(row["midi_uri"]), compression_type=CompressionTypes.UNCOMPRESSED) as f:
                data = f.read()
            if content_id(data) != row["midi_id"]:
                raise ValueError("the file changed since it was analysed")
            aligned = retime_midi(parse_midi(data), np.asarray(row["midi_times_s"]), np.asarray(row["audio_times_s"]))
        except Exception as exc:  # the tables are published: skip this file, count and say why
            self.skipped.inc()
            log.warning("mirmatch: no aligned MIDI for %s on %s: %s: %s", row["midi_uri"], row["audio_uri"],
                        type(exc).__name__, exc)
            return
        buf = io.BytesIO()
        aligned.write(buf)
        path = aligned_midi_path(self.out, row["audio_id"], row["midi_id"])
        _write_bytes(path, buf.getvalue(), "audio/midi")
        self.written.inc()
        yield path


class WriteJams(beam.DoFn):
    """(track id, {'tracks': [tracks rows], 'segments': [segments rows]}) -> the path of its JAMS file.

    A content seen at several uris has one file: the first uri in order, with that uri's segments."""

    def __init__(self, out: str):
        self.out = out
        self.written = Metrics.counter("mirmatch", "jams_written")

    def process(self, element: tuple[str, dict], run_id: str) -> Iterator[str]:
        track_id, grouped = element
        tracks = sorted((t for t in grouped["tracks"] if t["status"] == "ok"), key=lambda t: t["uri"])
        if not tracks:
            return
        track = tracks[0]
        rows = sorted((s for s in grouped["segments"] if s["uri"] == track["uri"]), key=lambda s: s["segment_index"])
        jam = segments_jams([(s["start_s"], s["end_s"], s["label"]) for s in rows], track["duration_s"], track_id,
                            track["uri"], track["modality"], run_id)
        path = jams_path(self.out, track_id)
        _write_bytes(path, jam.dumps(indent=1).encode(), "application/json")
        self.written.inc()
        yield path


def _dedupe_pairs(rows: beam.PCollection) -> beam.PCollection:
    """One `alignments` row per (audio id, MIDI id): copies of a file at several uris share one export."""
    return (rows
            | "Key by pair" >> beam.Map(lambda r: ((r["audio_id"], r["midi_id"]), r))
            | "Group pair" >> beam.GroupByKey()
            | "First uri" >> beam.Map(lambda kv: min(kv[1], key=lambda r: (r["midi_uri"], r["audio_uri"]))))


class ExportOutputs(beam.PTransform):
    """(published, {'alignments', 'tracks', 'segments'}) -> the paths of the exported files.

    ``published`` is the publishing step's output (the run id): the folders are emptied once it exists, and
    the files written once they are empty (side inputs order the steps on every runner)."""

    def __init__(self, out: str, aligned_midi: bool, jams: bool):
        super().__init__()
        self.out, self.aligned_midi, self.jams = out, aligned_midi, jams

    def expand(self, inputs: tuple[beam.PCollection, dict[str, beam.PCollection]]) -> beam.PCollection:
        published, tables = inputs
        folders = ([ALIGNED_MIDI_DIR] if self.aligned_midi else []) + ([JAMS_DIR] if self.jams else [])
        out = self.out

        def clear(run_id: str) -> str:
            for name in folders:
                clear_folder(FileSystems.join(out, name))
            return run_id

        ready = beam.pvalue.AsSingleton(published | "Clear export folders" >> beam.Map(clear))
        written = []
        if self.aligned_midi:
            written.append(_dedupe_pairs(tables["alignments"])
                           | "Write aligned MIDI" >> beam.ParDo(WriteAlignedMidi(out), ready))
        if self.jams:
            by_id = {"tracks": tables["tracks"] | "Key tracks" >> beam.Map(lambda t: (t["track_id"], t)),
                     "segments": tables["segments"] | "Key segments" >> beam.Map(lambda s: (s["track_id"], s))}
            written.append(by_id | "Join segments" >> beam.CoGroupByKey()
                           | "Write JAMS" >> beam.ParDo(WriteJams(out), ready))
        return written | "Exported files" >> beam.Flatten(pipeline=published.pipeline)


def add_exports(published: beam.PCollection, tables: dict[str, beam.PCollection], out: str, aligned_midi: bool,
                jams: bool) -> beam.PCollection | None:
    """Add the export stage to the pipeline when a flag asks for it; returns the exported paths (or None)."""
    if not (aligned_midi or jams):
        return None
    return (published, tables) | "Export" >> ExportOutputs(out, aligned_midi, jams)
