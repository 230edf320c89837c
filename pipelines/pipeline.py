"""The `mirmatch run` pipeline: inputs -> per-track analysis -> matching, clusters, segments -> Parquet."""

from __future__ import annotations

import datetime as dt
import logging
import time
from dataclasses import dataclass, field
from pathlib import PurePosixPath

import apache_beam as beam
from apache_beam.io.filesystems import FileSystems
from apache_beam.metrics.metric import MetricsFilter
from apache_beam.options.pipeline_options import PipelineOptions

from encoders.media import MIDI_EXTENSIONS
from pipelines.runs import new_run_id, publish_run, remove_incomplete_runs, staged_folder
from pipelines.schemas import TABLES
from pipelines.sources import expand_patterns
from pipelines.stages import (
    ERRORS,
    FEATURES,
    INDEX_DIR,
    SEGMENTS,
    TRACKS,
    AnalyzeTrack,
    ProposeCandidates,
    RankMatches,
    RefineCandidates,
    VerifyVersions,
    attach_sequence,
    cluster_rows,
    version_candidates,
    write_audio_index,
)

log = logging.getLogger("mirmatch")

STATE_DIR = "_state"
OUTPUTS = ("tracks", "errors", "segments", "matches", "alignments", "clusters")


@dataclass
class RunConfig:
    """What `mirmatch run` was asked to do."""

    audio: list[str]
    midi: list[str]
    out: str
    top_k: int = 5
    n_candidates: int = 100  # survivors of the track-code search (stage 1)
    n_refine: int = 10  # survivors of hash-sequence DTW (stage 2), aligned on CQT
    model: str | None = None
    cluster_similarity: float = 0.80  # verified similarity (hashing.version_align); val-calibrated 0.75, model card
    version_candidates: int = 20  # nearest neighbours per track verified by alignment
    version_min_cosine: float = 0.5  # neighbours less similar than this are not verified
    beam_args: list[str] = field(default_factory=list)
    state: str | None = ""  # results kept between runs; "" = OUT/_state, None = keep nothing
    run_id: str | None = None  # default: the start time (pipelines.runs.new_run_id)
    history: bool = True  # keep each run's tables in OUT/history/<table>/run=<id>/

    def state_folder(self) -> str | None:
        if self.state is None:
            return None
        return self.state or FileSystems.join(self.out, STATE_DIR)


def input_elements(audio: list[str], midi: list[str]) -> list[tuple[str, str]]:
    """(uri, modality) for every distinct input; a path given as both is MIDI iff it has a MIDI suffix."""
    modality = {uri: "audio" for uri in audio}
    for uri in midi:
        if uri not in modality or PurePosixPath(uri).suffix.lower() in MIDI_EXTENSIONS:
            modality[uri] = "midi"
    return sorted(modality.items())


def write_table(pcoll: beam.PCollection, folder: str, table: str) -> beam.PCollection:
    """Write ``pcoll`` as Parquet files into ``folder``; returns the written file names."""
    return pcoll | f"Write {table}" >> beam.io.WriteToParquet(
        FileSystems.join(folder, "part"), TABLES[table], file_name_suffix=".parquet")


def build_pipeline(p: beam.Pipeline, inputs: list[tuple[str, str]], cfg: RunConfig, run_id: str | None = None,
                   analysis_key: str | None = None) -> str:
    """Add every stage of `mirmatch run` to ``p``; returns the run id.

    Tables go to this run's partitions; a last step, once every table is written, publishes them as the
    latest tables and records the run (pipelines.runs), so this works the same on every runner.
    """
    from encoders.analyze import analysis_key as current_analysis_key

    run_id = run_id or new_run_id()
    analysis_key = analysis_key or current_analysis_key(cfg.model)
    started_at = dt.datetime.now(dt.UTC)
    state = cfg.state_folder()
    analyzed = (
        p
        | "Inputs" >> beam.Create(inputs)
        | "Spread inputs" >> beam.Reshuffle()
        | "Analyze tracks" >> beam.ParDo(AnalyzeTrack(cfg.model, state, analysis_key, len(inputs))).with_outputs(
            TRACKS, ERRORS, SEGMENTS, main=FEATURES)
    )
    features = analyzed[FEATURES]
    audio = features | "Audio only" >> beam.Filter(lambda t: t.modality == "audio")
    midi = features | "MIDI only" >> beam.Filter(lambda t: t.modality == "midi")

    audio_db = audio | "Audio codes" >> beam.Map(lambda t: (t.uri, t.track_code, t.frame_codes, t.track_id))
    candidates = (
        midi
        | "Batch queries" >> beam.BatchElements(min_batch_size=1, max_batch_size=256)
        | "Hash cascade" >> beam.ParDo(ProposeCandidates(cfg.n_candidates, cfg.n_refine),
                                       beam.pvalue.AsList(audio_db))
    )
    index_folder = staged_folder(cfg.out, run_id, INDEX_DIR, cfg.history)
    index_files = (
        p
        | "Index trigger" >> beam.Create([None])
        | "Write audio index" >> beam.FlatMap(lambda _, db: write_audio_index(index_folder, db),
                                              beam.pvalue.AsList(audio_db))
    )
    ranked = (
        {"audio": audio | "Key audio" >> beam.Map(lambda t: (t.uri, t)), "candidates": candidates}
        | "Join candidates" >> beam.CoGroupByKey()
        | "DTW refine" >> beam.ParDo(RefineCandidates(state, analysis_key))
        | "Group by MIDI" >> beam.GroupByKey()
        | "Rank" >> beam.ParDo(RankMatches(cfg.top_k)).with_outputs("alignments", main="matches")
    )
    match_edges = (
        ranked.matches
        | "Matched only" >> beam.Filter(lambda m: m["is_match"])
        | "Match edges" >> beam.Map(lambda m: (m["midi_id"], m["audio_id"]))
    )
    embeddings = features | "Version embeddings" >> beam.Map(
        lambda t: (t.track_id, t.uri, t.modality, t.cover_embedding))
    sequences = features | "Version sequences" >> beam.Map(lambda t: (t.track_id, t.version_sequence))
    k, min_cosine = cfg.version_candidates, cfg.version_min_cosine
    to_verify = (
        p
        | "Version trigger" >> beam.Create([None])
        | "Version candidates" >> beam.FlatMap(lambda _, tracks: version_candidates(tracks, k, min_cosine),
                                               beam.pvalue.AsList(embeddings))
    )
    first_sent = (
        {"pairs": to_verify, "seq": sequences}
        | "Join first sequence" >> beam.CoGroupByKey()
        | "Send first sequence" >> beam.FlatMap(attach_sequence)
    )
    version_edges = (
        {"pairs": first_sent, "seq": sequences}
        | "Join second sequence" >> beam.CoGroupByKey()
        | "Verify versions" >> beam.ParDo(VerifyVersions())
    )
    similarity = cfg.cluster_similarity
    clusters = (
        p
        | "Cluster trigger" >> beam.Create([None])
        | "Cluster" >> beam.FlatMap(lambda _, tracks, edges, matches: cluster_rows(tracks, edges, matches, similarity),
                                    beam.pvalue.AsList(embeddings), beam.pvalue.AsList(version_edges),
                                    beam.pvalue.AsList(match_edges))
    )
    side: dict[str, beam.pvalue.AsSideInput] = {"written_index": beam.pvalue.AsList(index_files)}
    for table, pcoll in [("tracks", analyzed[TRACKS]), ("errors", analyzed[ERRORS]),
                         ("segments", analyzed[SEGMENTS]), ("matches", ranked.matches),
                         ("alignments", ranked.alignments), ("clusters", clusters)]:
        written = write_table(pcoll, staged_folder(cfg.out, run_id, table, cfg.history), table)
        side[f"written_{table}"] = beam.pvalue.AsList(written)
        side[f"rows_{table}"] = beam.pvalue.AsSingleton(pcoll | f"Count {table}" >> beam.combiners.Count.Globally())
    _ = (
        p
        | "Publish trigger" >> beam.Create([None])
        | "Publish tables" >> beam.Map(publish_run, out=cfg.out, run_id=run_id, tables=[*OUTPUTS, INDEX_DIR],
                                       history=cfg.history, started_at=started_at, inputs=len(inputs),
                                       analysis_key=analysis_key, **side)
    )
    return run_id


def run(cfg: RunConfig) -> dict[str, int]:
    """Expand inputs, run the pipeline to completion, publish its tables and return its counters."""
    from encoders.analyze import analysis_key

    audio, midi = expand_patterns(cfg.audio), expand_patterns(cfg.midi)
    inputs = input_elements(audio, midi)
    if not inputs:
        raise ValueError("no input files: check the --audio and --midi patterns")
    n_midi = sum(m == "midi" for _, m in inputs)
    run_id = cfg.run_id or new_run_id()
    key = analysis_key(cfg.model)
    state = cfg.state_folder()
    log.info("mirmatch: run %s: %d files (%d audio, %d MIDI) into %s%s", run_id, len(inputs),
             len(inputs) - n_midi, n_midi, cfg.out, f", reusing results kept in {state}" if state else "")
    for folder in remove_incomplete_runs(cfg.out):
        log.info("mirmatch: removed %s, left by a run that did not complete", folder)
    started = time.monotonic()
    p = beam.Pipeline(options=PipelineOptions(cfg.beam_args))
    build_pipeline(p, inputs, cfg, run_id, key)
    result = p.run()
    result.wait_until_finish()
    counters = {"inputs": len(inputs), "seconds": round(time.monotonic() - started, 1)}
    try:
        for c in result.metrics().query(MetricsFilter().with_namespace("mirmatch"))["counters"]:
            counters[c.key.metric.name] = counters.get(c.key.metric.name, 0) + c.committed
    except Exception:  # some runners do not report metrics
        pass
    counters["run_id"] = run_id
    return counters
