"""The `mirmatch run` pipeline: inputs -> per-track analysis -> matching, clusters, segments -> Parquet."""

from __future__ import annotations

import logging
import time
from dataclasses import dataclass, field

import apache_beam as beam
from apache_beam.io.filesystems import FileSystems
from apache_beam.metrics.metric import MetricsFilter
from apache_beam.options.pipeline_options import PipelineOptions

from pipelines.analyse import ERRORS, FEATURES, SEGMENTS, TRACKS, AnalyseTracks
from pipelines.audio_index import INDEX_DIR, WriteAudioIndex
from pipelines.exports import add_exports
from pipelines.lock import OutLock
from pipelines.match import MatchMidiToAudio
from pipelines.publish import PublishRun
from pipelines.runs import new_run_id, remove_incomplete_runs, scratch_folder, staged_folder
from pipelines.sources import ReadInputs, choose_modality
from pipelines.state import log_old_format, log_stale_keys
from pipelines.versions import CLUSTER_IDS_FILE, ClusterVersions

log = logging.getLogger("mirmatch")

STATE_DIR = "_state"


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
    #: an absolute floor on the verified similarity of a version edge, on top of the decision (hashing.decisions);
    #: None: the decision alone
    cluster_similarity: float | None = None
    version_candidates: int = 20  # nearest neighbours per track verified by alignment
    version_min_cosine: float = 0.5  # neighbours less similar than this are not verified
    beam_args: list[str] = field(default_factory=list)
    state: str | None = ""  # results kept between runs; "" = OUT/_state, None = keep nothing
    run_id: str | None = None  # default: the start time (pipelines.runs.new_run_id)
    history: bool = True  # keep each run's tables in OUT/history/<table>/run=<id>/
    export_aligned_midi: bool = False  # OUT/aligned_midi/<audio_id>/<midi_id>.mid (pipelines.exports)
    export_jams: bool = False  # OUT/jams/<track_id>.jams
    keep_runs: int | None = None  # prune the history to the newest N completed runs after publishing
    calibration: str | None = None  # decision settings fitted by `mirmatch calibrate` (default: the shipped ones)
    #: worker processes of the local runner (None: one per core; 1: in-process); see ``runner_args``
    workers: int | None = None
    #: shards of the stage-1 search (None: one per hashing.shards.DEFAULT_SHARD_ROWS recordings)
    search_shards: int | None = None

    def decisions(self):
        """The decision settings of this run (``hashing.decisions.DecisionSettings``): ``--calibration``'s file,
        or the shipped defaults."""
        from apache_beam.io.filesystems import FileSystems

        from hashing.decisions import DecisionSettings

        if not self.calibration:
            return DecisionSettings()
        with FileSystems.open(self.calibration) as f:
            return DecisionSettings.from_json(f.read().decode("utf-8"))

    def settings(self) -> dict:
        """The options and decision cuts of this run, as recorded in ``OUT/history/runs`` (for the report)."""
        from dataclasses import asdict

        from hashing.decisions import MATCH_CONFIDENCE

        decisions = self.decisions()
        return {"top_k": self.top_k, "candidates": self.n_candidates, "refine": self.n_refine,
                "model": self.model, "cluster_similarity": self.cluster_similarity,
                "version_candidates": self.version_candidates, "version_min_cosine": self.version_min_cosine,
                "match_confidence": MATCH_CONFIDENCE, "match_decision": asdict(decisions.match),
                "version_decision": asdict(decisions.versions), "calibration": self.calibration,
                "calibration_fitted_on": decisions.fitted_on, "state": self.state_folder(), "history": self.history}

    def state_folder(self) -> str | None:
        if self.state is None:
            return None
        return self.state or FileSystems.join(self.out, STATE_DIR)


def input_elements(audio: list[str], midi: list[str]) -> list[tuple[str, str]]:
    """(uri, modality) for every distinct input; a path given as both is MIDI iff it has a MIDI suffix."""
    given: dict[str, set[str]] = {}
    for modality, uris in (("audio", audio), ("midi", midi)):
        for uri in uris:
            given.setdefault(uri, set()).add(modality)
    return sorted((uri, choose_modality(uri, modalities)) for uri, modalities in given.items())


def available_cores() -> int:
    """The cores this process may run on (its CPU affinity where the system has one)."""
    import os

    try:
        return len(os.sched_getaffinity(0))
    except AttributeError:  # not Linux
        return os.cpu_count() or 1


def runner_args(beam_args: list[str], workers: int | None = None) -> list[str]:
    """Beam's options for a run: on the local DirectRunner, ``workers`` processes (default one per core) in
    ``multi_processing`` mode, or the in-process runner for 1 worker.

    Options given to Beam directly win: another ``--runner`` (Dataflow, portable) or an explicit
    ``--direct_running_mode`` / ``--direct_num_workers`` leaves ``beam_args`` as they are."""
    from apache_beam.options.pipeline_options import StandardOptions

    runner = PipelineOptions(beam_args).view_as(StandardOptions).runner
    if runner not in (None, "DirectRunner", "direct", "BundleBasedDirectRunner"):
        return list(beam_args)
    if any(arg.startswith(("--direct_running_mode", "--direct_num_workers")) for arg in beam_args):
        return list(beam_args)
    n = available_cores() if workers is None else workers
    if n <= 1:
        return list(beam_args)
    return [*beam_args, "--direct_running_mode=multi_processing", f"--direct_num_workers={n}"]


def build_pipeline(p: beam.Pipeline, inputs: list[tuple[str, str]] | None, cfg: RunConfig, run_id: str | None = None,
                   analysis_key: str | None = None) -> str:
    """Add every stage of `mirmatch run` to ``p`` (the README's diagram, one composite transform a stage);
    returns the run id. Analyses are kept in the state folder, or in a scratch folder of the run without one.

    ``inputs`` None: the patterns of ``cfg`` are matched and its manifests read inside the pipeline
    (``pipelines.sources.ReadInputs``), so the job graph does not grow with the number of files, and the
    number of inputs the run's checks need is counted there; a list of (path, modality) is put into the
    graph as it is (tests, small runs)."""
    from encoders.analyze import analysis_key as current_analysis_key

    run_id = run_id or new_run_id()
    key = analysis_key or current_analysis_key(cfg.model)
    store = cfg.state_folder() or scratch_folder(cfg.out, run_id)
    decisions = cfg.decisions()
    if inputs is None:
        elements = p | "Inputs" >> ReadInputs(cfg.audio, cfg.midi)
        n_inputs = elements | "Count inputs" >> beam.combiners.Count.Globally()
    else:
        elements, n_inputs = p | "Inputs" >> beam.Create(inputs), len(inputs)
    analysed = elements | "Analyse" >> AnalyseTracks(cfg.model, store, key, n_inputs)
    matched = analysed[FEATURES] | "Match" >> MatchMidiToAudio(store, key, cfg.n_candidates, cfg.n_refine, cfg.top_k,
                                                                  decisions.match, cfg.search_shards)
    index = matched["audio_db"] | "Index" >> WriteAudioIndex(staged_folder(cfg.out, run_id, INDEX_DIR, cfg.history))
    match_edges = matched["matches"] | "Match edges" >> beam.FlatMap(
        lambda m: [(m["midi_id"], m["audio_id"])] if m["is_match"] else [])
    versions = (analysed[FEATURES], match_edges) | "Versions" >> ClusterVersions(
        cfg.version_candidates, cfg.version_min_cosine, cfg.cluster_similarity, decisions.versions,
        FileSystems.join(cfg.state_folder(), CLUSTER_IDS_FILE) if cfg.state_folder() else None)
    errors = (analysed[ERRORS], matched["errors"], versions["errors"]) | "All errors" >> beam.Flatten()
    tables = {"tracks": analysed[TRACKS], "errors": errors, "segments": analysed[SEGMENTS],
              "matches": matched["matches"], "alignments": matched["alignments"], "clusters": versions["clusters"],
              "version_edges": versions["version_edges"],
              "index_files": index, "accounts": matched["accounts"], "version_proposed": versions["proposed"],
              "version_verified": versions["verified"]}
    published = tables | "Publish" >> PublishRun(cfg.out, run_id, cfg.history, n_inputs, cfg.top_k, key,
                                                 (INDEX_DIR,), cfg.model, cfg.keep_runs, cfg.settings())
    add_exports(published, tables, cfg.out, cfg.export_aligned_midi, cfg.export_jams)
    return run_id


def stage_timers(result) -> dict[str, dict]:
    """stage -> {n, mean_ms, max_ms, total_s} of the per-element timers (``pipelines.progress.StageTimer``)."""
    timers = {}
    for d in result.metrics().query(MetricsFilter().with_namespace("mirmatch"))["distributions"]:
        stage, value = d.key.metric.name.removesuffix("_ms"), d.committed
        if value is None or not value.count:
            continue
        t = timers.setdefault(stage, {"n": 0, "sum": 0, "max_ms": 0})
        t["n"] += value.count
        t["sum"] += value.sum
        t["max_ms"] = max(t["max_ms"], value.max)
    return {stage: {"n": t["n"], "mean_ms": round(t["sum"] / t["n"], 1), "max_ms": t["max_ms"],
                    "total_s": round(t["sum"] / 1000, 1)} for stage, t in timers.items()}


def run(cfg: RunConfig) -> dict[str, int]:
    """Expand inputs, run the pipeline to completion, publish its tables and return its counters."""
    from encoders.analyze import analysis_key
    from pipelines.cloud import check_gcs_access, gcs_paths
    from pipelines.progress import ProgressMonitor

    check_gcs_access(gcs_paths([*cfg.audio, *cfg.midi, cfg.out, cfg.state, *cfg.beam_args]))  # fail fast
    run_id = cfg.run_id or new_run_id()
    key = analysis_key(cfg.model)
    state = cfg.state_folder()
    log.info("mirmatch: run %s: %d audio and %d MIDI patterns, matched in the pipeline, into %s%s", run_id,
             len(cfg.audio), len(cfg.midi), cfg.out, f", reusing results kept in {state}" if state else "")
    if not log_old_format(state, key):
        log_stale_keys(state, key)
    with OutLock(cfg.out):  # one run at a time per --out: a second one refuses (pipelines.lock)
        for folder in remove_incomplete_runs(cfg.out):
            log.info("mirmatch: removed %s, left by a run that did not complete", folder)
        started = time.monotonic()
        args = runner_args(cfg.beam_args, cfg.workers)
        if args != cfg.beam_args:
            log.info("mirmatch: %s worker processes (--workers)", args[-1].split("=")[1])
        if "--direct_running_mode=multi_processing" in args:  # fill numba's caches before the workers start
            from pipelines.warmup import compile_kernels

            log.info("mirmatch: kernels compiled before the workers start in %.1f s", compile_kernels(cfg.model))
        p = beam.Pipeline(options=PipelineOptions(args))
        build_pipeline(p, None, cfg, run_id, key)
        with ProgressMonitor():  # progress lines from every worker process (pipelines.progress)
            result = p.run()
            result.wait_until_finish()
        counters = {"seconds": round(time.monotonic() - started, 1)}
        try:
            for c in result.metrics().query(MetricsFilter().with_namespace("mirmatch"))["counters"]:
                counters[c.key.metric.name] = counters.get(c.key.metric.name, 0) + c.committed
            counters["timers"] = stage_timers(result)
        except Exception:  # some runners do not report metrics
            pass
    counters["run_id"] = run_id
    return counters
