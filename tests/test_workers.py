"""`mirmatch run --workers`: local worker processes by default, and progress lines gathered from all of them."""

from __future__ import annotations

import logging
import multiprocessing
import os

from pipelines.pipeline import available_cores, runner_args
from pipelines.progress import PROGRESS_DIR_ENV, Progress, ProgressMonitor


def test_one_worker_process_per_core_by_default():
    n = available_cores()
    expected = ["--direct_running_mode=multi_processing", f"--direct_num_workers={n}"] if n > 1 else []
    assert runner_args([]) == expected
    assert runner_args(["--workers_ignored=1"], 3)[-2:] == [
        "--direct_running_mode=multi_processing", "--direct_num_workers=3"]
    assert runner_args([], 1) == []  # in-process, as before
    explicit = ["--direct_running_mode=multi_threading", "--direct_num_workers=2"]
    assert runner_args(explicit, 4) == explicit  # Beam's own options win
    dataflow = ["--runner=DataflowRunner", "--project=p"]
    assert runner_args(dataflow, 4) == dataflow


def _worker(folder: str, n: int) -> None:
    progress = Progress("analyse", sink=folder)
    progress.set_total(10)
    for _ in range(n):
        progress.step()


def test_progress_from_several_processes_is_summed(caplog):
    caplog.set_level(logging.INFO, logger="mirmatch")
    with ProgressMonitor(poll_s=0.05, every_s=0.0, bar=False) as monitor:
        assert os.environ[PROGRESS_DIR_ENV] == str(monitor.folder)
        ctx = multiprocessing.get_context("spawn")  # like Beam's worker processes: nothing shared but the folder
        workers = [ctx.Process(target=_worker, args=(str(monitor.folder), n)) for n in (4, 6)]
        for w in workers:
            w.start()
        for w in workers:
            w.join()
            assert w.exitcode == 0
    assert PROGRESS_DIR_ENV not in os.environ and not monitor.folder.exists()
    analyse = monitor.stages["analyse"]
    assert analyse.done == 10 and analyse.total == 10
    assert any("[analyse] 10 tracks done of 10 (100%)" in r.getMessage() for r in caplog.records)


def test_progress_without_a_monitor_logs_itself(monkeypatch, caplog):
    monkeypatch.delenv(PROGRESS_DIR_ENV, raising=False)
    caplog.set_level(logging.INFO, logger="mirmatch")
    progress = Progress("align", total=2, unit="audio tracks", bar=False)
    progress.step()
    progress.step()
    assert any("[align] 2 audio tracks done of 2" in r.getMessage() for r in caplog.records)


WORKER_WARNING_SCRIPT = """
import logging, sys
import apache_beam as beam
from apache_beam.options.pipeline_options import PipelineOptions
from pipelines.progress import ProgressMonitor, StageTimer

class Warn(beam.DoFn):
    def setup(self):
        self.timer = StageTimer("analyse")
    def process(self, x):
        logging.getLogger("mirmatch").warning("mirmatch: warning from a worker about %s", x)
        yield x

logging.basicConfig(level=logging.ERROR)
logging.getLogger("mirmatch").setLevel(logging.INFO)
with ProgressMonitor():
    with beam.Pipeline(options=PipelineOptions(["--direct_running_mode=multi_processing",
                                                "--direct_num_workers=2"])) as p:
        p | beam.Create(["input-7"]) | beam.ParDo(Warn())
"""


def test_warnings_of_worker_processes_reach_standard_error():
    """Beam forwards a worker's log records to its own logger in the launcher, which the CLI keeps quiet: the
    mirmatch logger of a local worker writes to the standard error it inherited instead."""
    import re
    import subprocess
    import sys

    from tests.conftest import REPO

    proc = subprocess.run([sys.executable, "-c", WORKER_WARNING_SCRIPT], capture_output=True, text=True, timeout=300,
                          cwd=REPO, env={**os.environ, "PYTHONPATH": str(REPO)})
    assert proc.returncode == 0, proc.stderr[-2000:]
    lines = [line for line in proc.stderr.splitlines() if "warning from a worker about input-7" in line]
    assert len(lines) == 1, proc.stderr[-2000:]
    assert re.match(r"\d{4}-\d\d-\d\d \d\d:\d\d:\d\d mirmatch: ", lines[0])


def test_workers_and_shards_reach_the_run_config():
    from pipelines.cli import build_parser, run_config

    args, beam_args = build_parser().parse_known_args(["run", "--audio", "a/*", "--out", "o", "--workers", "3",
                                                       "--search-shards", "4"])
    cfg = run_config(args, beam_args)
    assert (cfg.workers, cfg.search_shards) == (3, 4)
    args, beam_args = build_parser().parse_known_args(["run", "--audio", "a/*", "--out", "o"])
    assert (run_config(args, beam_args).workers, run_config(args, beam_args).search_shards) == (None, None)


def test_kernel_warm_up_runs_every_stage_without_a_warning(caplog):
    """The launcher's warm-up (pipelines.warmup) analyses its synthetic MIDI and audio and runs the kernels of
    the later stages; a broken stage would only be logged, so the test looks for that warning."""
    import logging

    from pipelines.warmup import compile_kernels

    with caplog.at_level(logging.WARNING, logger="mirmatch"):
        seconds = compile_kernels()
    assert seconds > 0
    assert not [r for r in caplog.records if "compiling the kernels" in r.getMessage()]
