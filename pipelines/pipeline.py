"""The `mirmatch run` pipeline: inputs -> per-track analysis -> matching, clusters, segments -> Parquet."""

from __future__ import annotations

import logging
import time
from dataclasses import dataclass, field
from pathlib import PurePosixPath

import apache_beam as beam
from apache_beam.io.filesystems import FileSystems
from apache_beam.metrics.metric import MetricsFilter
from apache_beam.options.pipeline_options import PipelineOptions

from encoders.media import MIDI_EXTENSIONS
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
    cluster_rows,
    write_audio_index,
)

log = logging.getLogger("mirmatch")


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
    cluster_similarity: float = 0.95
    beam_args: list[str] = field(default_factory=list)


def table_path(out: str, table: str) -> str:
    return FileSystems.join(out, table)


def input_elements(audio: list[str], midi: list[str]) -> list[tuple[str, str]]:
    """(uri, modality) for every distinct input; a path given as both is MIDI iff it has a MIDI suffix."""
    modality = {uri: "audio" for uri in audio}
    for uri in midi:
        if uri not in modality or PurePosixPath(uri).suffix.lower() in MIDI_EXTENSIONS:
            modality[uri] = "midi"
    return sorted(modality.items())


def clear_outputs(out: str) -> None:
    """Remove the tables of an earlier run into ``out`` so a rerun replaces, never appends."""
    existing = [table_path(out, t) for t in (*TABLES, INDEX_DIR) if FileSystems.exists(table_path(out, t))]
    if existing:
        FileSystems.delete(existing)


def write_table(pcoll: beam.PCollection, out: str, table: str) -> None:
    pcoll | f"Write {table}" >> beam.io.WriteToParquet(
        FileSystems.join(table_path(out, table), "part"), TABLES[table], file_name_suffix=".parquet")


def build_pipeline(p: beam.Pipeline, inputs: list[tuple[str, str]], cfg: RunConfig) -> None:
    """Add every stage of `mirmatch run` to ``p``."""
    analyzed = (
        p
        | "Inputs" >> beam.Create(inputs)
        | "Spread inputs" >> beam.Reshuffle()
        | "Analyze tracks" >> beam.ParDo(AnalyzeTrack(cfg.model)).with_outputs(
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
    out = cfg.out
    _ = (
        p
        | "Index trigger" >> beam.Create([None])
        | "Write audio index" >> beam.FlatMap(lambda _, db: write_audio_index(out, db), beam.pvalue.AsList(audio_db))
    )
    ranked = (
        {"audio": audio | "Key audio" >> beam.Map(lambda t: (t.uri, t)), "candidates": candidates}
        | "Join candidates" >> beam.CoGroupByKey()
        | "DTW refine" >> beam.ParDo(RefineCandidates())
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
    similarity = cfg.cluster_similarity
    clusters = (
        p
        | "Cluster trigger" >> beam.Create([None])
        | "Cluster" >> beam.FlatMap(lambda _, tracks, edges: cluster_rows(tracks, edges, similarity),
                                    beam.pvalue.AsList(embeddings), beam.pvalue.AsList(match_edges))
    )
    for table, pcoll in [("tracks", analyzed[TRACKS]), ("errors", analyzed[ERRORS]),
                         ("segments", analyzed[SEGMENTS]), ("matches", ranked.matches),
                         ("alignments", ranked.alignments), ("clusters", clusters)]:
        write_table(pcoll, cfg.out, table)


def run(cfg: RunConfig) -> dict[str, int]:
    """Expand inputs, run the pipeline to completion and return its counters."""
    audio, midi = expand_patterns(cfg.audio), expand_patterns(cfg.midi)
    inputs = input_elements(audio, midi)
    if not inputs:
        raise ValueError("no input files: check the --audio and --midi patterns")
    n_midi = sum(m == "midi" for _, m in inputs)
    log.info("analysing %d files (%d audio, %d MIDI) into %s", len(inputs), len(inputs) - n_midi, n_midi,
             cfg.out)
    clear_outputs(cfg.out)
    started = time.monotonic()
    options = PipelineOptions(cfg.beam_args)
    p = beam.Pipeline(options=options)
    build_pipeline(p, inputs, cfg)
    result = p.run()
    result.wait_until_finish()
    counters = {"inputs": len(inputs), "seconds": round(time.monotonic() - started, 1)}
    try:
        for c in result.metrics().query(MetricsFilter().with_namespace("mirmatch"))["counters"]:
            counters[c.key.metric.name] = counters.get(c.key.metric.name, 0) + c.committed
    except Exception:  # some runners do not report metrics
        pass
    return counters
