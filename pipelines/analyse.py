"""Analysing tracks: each input file read, hashed, decoded or rendered and analysed once (``encoders.analyze``).

Every analysis (or the reason it failed) is kept in a store keyed by content hash: the state folder that
nightly runs share, or a scratch folder of this run. Later stages load the features they need by track id
from there, so no large array (a long track's CQT is several MB) ever travels through a shuffle.
"""

from __future__ import annotations

import logging
from collections.abc import Iterator
from dataclasses import dataclass, replace

import apache_beam as beam
from apache_beam.io.filesystem import CompressionTypes
from apache_beam.io.filesystems import FileSystems
from apache_beam.metrics import Metrics
from apache_beam.pvalue import TaggedOutput

from pipelines.schemas import error_row

log = logging.getLogger("mirmatch")

TRACKS, ERRORS, SEGMENTS, FEATURES = "tracks", "errors", "segments", "features"


@dataclass
class TrackFailure:
    """Why a track could not be analysed (kept in the state folder like a successful analysis)."""

    stage: str
    error_type: str
    message: str


class AnalyzeTrack(beam.DoFn):
    """(path, modality) -> a `tracks` row (uri ``pipelines.sources.table_uri(path)``), plus segments and
    features, or an `errors` row.

    Each result is kept in the store at ``store_root`` (``pipelines.state``): later stages load features from
    it by track id, and a file whose content (and the analysis version) was seen before is not analysed
    again.
    """

    def __init__(self, model: str | None, store_root: str, analysis_key: str, total: int | None = None):
        self.model, self.store_root, self.analysis_key, self.total = model, store_root, analysis_key, total
        self.ok = Metrics.counter("mirmatch", "tracks_ok")
        self.failed = Metrics.counter("mirmatch", "tracks_error")
        self.analyzed = Metrics.counter("mirmatch", "tracks_analyzed")
        self.reused = Metrics.counter("mirmatch", "tracks_reused")
        self.warned = Metrics.counter("mirmatch", "track_warnings")
        self.segments = Metrics.counter("mirmatch", "segments")

    def setup(self) -> None:
        from encoders.codes import load_hasher
        from pipelines.progress import Progress, StageTimer
        from pipelines.state import StateStore

        self.hasher = load_hasher(self.model)
        self.store = StateStore(self.store_root, self.analysis_key)
        self.progress = Progress("analyse", self.total)
        self.timer = StageTimer("analyse")

    def process(self, element: tuple[str, str], total: int | None = None) -> Iterator:
        from pipelines.sources import table_uri

        if total is not None:  # counted in the pipeline (a side input)
            self.progress.set_total(total)
        path, modality = element
        uri = table_uri(path)  # what the tables name the file by: file:///abs/path, gs://...
        track = {"track_id": None, "uri": uri, "modality": modality, "duration_s": None, "status": "error"}
        try:
            f = FileSystems.open(path, compression_type=CompressionTypes.UNCOMPRESSED)
        except Exception as exc:
            outcome = TrackFailure("read", "UnreadablePath", _read_error(path, exc))
        else:
            with f:
                try:
                    outcome, track["track_id"] = self._outcome(f, path, modality)
                except OSError as exc:  # the file went away or broke while being read
                    outcome = TrackFailure("read", "ReadError", f"reading the file failed: {exc}; retry the run")
        self.progress.step()
        if isinstance(outcome, TrackFailure):
            self.failed.inc()
            yield TaggedOutput(ERRORS, error_row(uri, outcome.stage, outcome.error_type, outcome.message))
            yield TaggedOutput(TRACKS, track)
            return
        result = replace(outcome, uri=uri)  # the same content may have moved or been copied
        self.ok.inc()
        track.update(duration_s=result.duration_s, status="ok")
        yield TaggedOutput(TRACKS, track)
        for warning in result.warnings:
            self.warned.inc()
            yield TaggedOutput(ERRORS, error_row(uri, "check", warning.error_type, warning.message, "warning"))
        self.segments.inc(len(result.segments))
        for i, seg in enumerate(result.segments):
            yield TaggedOutput(SEGMENTS, {"track_id": result.track_id, "uri": uri, "segment_index": i,
                                          "start_s": seg.start_s, "end_s": seg.end_s, "label": seg.label})
        yield result

    def _outcome(self, f, uri: str, modality: str) -> tuple[object, str]:
        """(TrackAnalysis or TrackFailure, track id) of an open file: kept from an earlier run, or computed.

        Small files are read whole; big ones are hashed and decoded block by block."""
        from encoders.analyze import IN_MEMORY_BYTES
        from encoders.media import content_id, content_id_of_file

        size = f.seek(0, 2)
        f.seek(0)
        source = f.read() if size <= IN_MEMORY_BYTES else f
        track_id = content_id(source) if isinstance(source, bytes) else content_id_of_file(f)
        outcome = self.store.load_track(track_id, modality)
        if outcome is not None:
            self.reused.inc()
            return outcome, track_id
        with self.timer.time():  # tracks analysed, not those reused
            outcome = self._analyze(source, uri, modality, track_id)
        self.analyzed.inc()
        unexpected = isinstance(outcome, TrackFailure) and outcome.stage == "analyze"
        if not unexpected:  # a bug or a passing fault is retried by the next run
            self.store.save_track(track_id, modality, outcome)
        return outcome, track_id

    def _analyze(self, source, uri: str, modality: str, track_id: str):
        """A TrackAnalysis, or a TrackFailure for unusable input (or an unexpected error: the run goes on)."""
        from encoders.analyze import analyze_source
        from encoders.media import MediaError

        try:
            return analyze_source(source, uri, modality, self.hasher, track_id)
        except MediaError as exc:
            return TrackFailure("decode" if modality == "audio" else "parse", exc.error_type, str(exc))
        except MemoryError:
            return TrackFailure("analyze", "OutOfMemory", "ran out of memory analysing this track; give the "
                                "workers more memory or split the file")
        except Exception as exc:  # a bug or an input no check anticipated: keep the run going
            log.exception("analysis of %s failed", uri)
            return TrackFailure("analyze", type(exc).__name__, f"{exc} (please report this as a bug)")


def _read_error(uri: str, exc: Exception) -> str:
    """A one-line reason a path could not be read, and what to do."""
    if isinstance(exc, IsADirectoryError):
        return f"cannot read file: {uri} is a directory; pass the files inside it (e.g. '{uri}/*')"
    reason = str(exc).splitlines()[0] if str(exc) else type(exc).__name__
    return f"cannot read file: {reason}; check that the path exists and is readable"


class AnalyseTracks(beam.PTransform):
    """(uri, modality) inputs -> tagged outputs: ``features`` (TrackAnalysis of every ok track), ``tracks``,
    ``errors`` and ``segments`` rows. Every analysis is saved in the store at ``store_root``."""

    def __init__(self, model: str | None, store_root: str, analysis_key: str, total: int | beam.PCollection | None):
        super().__init__()
        self.model, self.store_root, self.analysis_key, self.total = model, store_root, analysis_key, total

    def expand(self, inputs: beam.PCollection) -> beam.pvalue.DoOutputsTuple:
        counted = isinstance(self.total, beam.PCollection)  # the number of inputs, counted in the pipeline
        total = beam.pvalue.AsSingleton(self.total) if counted else None
        return (
            inputs
            | "Spread inputs" >> beam.Reshuffle()
            | "Analyze tracks" >> beam.ParDo(
                AnalyzeTrack(self.model, self.store_root, self.analysis_key, None if counted else self.total),
                total=total).with_outputs(TRACKS, ERRORS, SEGMENTS, main=FEATURES)
        )
