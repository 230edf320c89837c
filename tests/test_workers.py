"""`mirmatch run --workers`: local worker processes by default, and progress lines gathered from all of them."""

from __future__ import annotations

import logging
import multiprocessing

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
        import os

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
