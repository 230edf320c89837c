"""Progress lines for long stages: how many elements are done, how fast, and about how long is left."""

from __future__ import annotations

import logging
import os
import sys
import threading
import time
import uuid
from collections.abc import Iterator
from contextlib import contextmanager
from pathlib import Path

log = logging.getLogger("mirmatch")

#: The stages timed per element (Beam distributions ``mirmatch/<stage>_ms``), in pipeline order.
TIMED_STAGES = ("analyse", "search_shard", "search", "align", "verify")

#: Environment variable naming the local folder where workers append their progress (``ProgressMonitor``).
#: Worker processes of the local runner inherit the launcher's environment; remote workers (Dataflow) do not
#: have it and log their lines themselves.
PROGRESS_DIR_ENV = "MIRMATCH_PROGRESS_DIR"
#: The launching process's pid, set beside ``PROGRESS_DIR_ENV``: a process with another pid is a local worker.
LAUNCHER_PID_ENV = "MIRMATCH_LAUNCHER_PID"


def log_to_stderr_in_workers() -> None:
    """In a worker process of a local `mirmatch run` (multi_processing), send the ``mirmatch`` logger's lines
    (warnings about inputs or state) to the standard error the worker inherited, timestamped as the launcher's
    lines: Beam would forward them to its own logger in the launcher, which the command line keeps quiet."""
    launcher = os.environ.get(LAUNCHER_PID_ENV)
    if not launcher or launcher == str(os.getpid()) or getattr(log, "mirmatch_worker", False):
        return
    handler = logging.StreamHandler(sys.stderr)
    handler.setFormatter(logging.Formatter("%(asctime)s %(message)s", "%Y-%m-%d %H:%M:%S"))
    log.addHandler(handler)
    log.setLevel(logging.INFO)
    log.propagate = False
    log.mirmatch_worker = True


class Progress:
    """Counts the elements one worker has finished: a progress bar (tqdm) when standard error is a terminal,
    else a log line at most every ``every_s`` seconds.

    Under ``mirmatch run`` on the local runner (one process or several), ``$MIRMATCH_PROGRESS_DIR`` is set: each
    worker appends its steps to a small file there and the launcher's ``ProgressMonitor`` draws one bar or
    line per stage over all workers. On Dataflow the lines go to the worker logs (the job page shows the Beam
    counters as well).
    """

    def __init__(self, stage: str, total: int | None = None, unit: str = "tracks", every_s: float = 10.0,
                 bar: bool | None = None, sink: str | None = None):
        log_to_stderr_in_workers()
        self.stage, self.total, self.unit, self.every_s = stage, total, unit, every_s
        self.done = 0
        self.started = self.last = time.monotonic()
        sink = os.environ.get(PROGRESS_DIR_ENV) if sink is None else sink
        self._sink = _StepFile(sink, stage, unit, total) if sink else None
        show = sys.stderr.isatty() if bar is None else bar
        self.bar = _bar(stage, total, unit) if show and self._sink is None else None

    def set_total(self, total: int) -> None:
        """The number of elements expected, once known (the run counts its inputs inside the pipeline)."""
        if total == self.total:
            return
        self.total = total
        if self.bar is not None:
            self.bar.total = total
        if self._sink is not None:
            self._sink.write(f"t {total}")

    def step(self, n: int = 1) -> None:
        self.done += n
        if self._sink is not None:
            self._sink.write(f"s {n}")
            return
        if self.bar is not None:
            self.bar.update(n)
            if self.total and self.done >= self.total:
                self.bar.close()
            return
        now = time.monotonic()
        if now - self.last >= self.every_s or (self.total and self.done == self.total):
            self.last = now
            log.info("mirmatch: %s", self.line(now))

    def line(self, now: float | None = None) -> str:
        elapsed = max((now or time.monotonic()) - self.started, 1e-9)
        rate = self.done / elapsed
        text = f"[{self.stage}] {self.done} {self.unit} done"
        if self.total:
            text += f" of {self.total} ({100 * self.done / self.total:.0f}%)"
        text += f", {rate:.1f}/s"
        if self.total and rate > 0 and self.done < self.total:
            text += f", about {format_seconds((self.total - self.done) / rate)} left"
        return text


class _StepFile:
    """One worker's progress of one stage: lines appended to ``<folder>/<stage>.<pid>.<random>`` (``u unit``,
    ``t total``, ``s steps``), each a single ``write`` of a few bytes so that a reader never sees half a line."""

    def __init__(self, folder: str, stage: str, unit: str, total: int | None):
        self.path = Path(folder) / f"{stage}.{os.getpid()}.{uuid.uuid4().hex[:8]}"
        self.write(f"u {unit}")
        if total:
            self.write(f"t {total}")

    def write(self, line: str) -> None:
        try:
            fd = os.open(self.path, os.O_WRONLY | os.O_APPEND | os.O_CREAT, 0o644)
        except OSError:  # the run's progress folder is gone (the launcher finished): nothing to report to
            return
        try:
            os.write(fd, (line + "\n").encode())
        finally:
            os.close(fd)


class ProgressMonitor:
    """The launcher's side of the progress lines: sets ``$MIRMATCH_PROGRESS_DIR`` to a fresh local folder,
    reads what the workers append there every ``poll_s`` seconds and shows one bar (a terminal) or timestamped
    line per stage, summed over all worker processes.

    >>> with ProgressMonitor():
    ...     pipeline.run().wait_until_finish()
    """

    def __init__(self, poll_s: float = 1.0, every_s: float = 10.0, bar: bool | None = None):
        self.poll_s, self.every_s, self.bar = poll_s, every_s, bar
        self.stages: dict[str, Progress] = {}
        self._offsets: dict[Path, int] = {}
        self._stop = threading.Event()

    def __enter__(self) -> ProgressMonitor:
        import tempfile

        self.folder = Path(tempfile.mkdtemp(prefix="mirmatch-progress-"))
        self._previous = {name: os.environ.get(name) for name in (PROGRESS_DIR_ENV, LAUNCHER_PID_ENV)}
        os.environ[PROGRESS_DIR_ENV] = str(self.folder)
        os.environ[LAUNCHER_PID_ENV] = str(os.getpid())
        self._thread = threading.Thread(target=self._loop, name="mirmatch-progress", daemon=True)
        self._thread.start()
        return self

    def __exit__(self, *exc) -> None:
        import shutil

        self._stop.set()
        self._thread.join()
        self.poll()
        for progress in self.stages.values():
            if progress.bar is not None:
                progress.bar.close()
        for name, value in self._previous.items():
            if value is None:
                os.environ.pop(name, None)
            else:
                os.environ[name] = value
        shutil.rmtree(self.folder, ignore_errors=True)

    def _loop(self) -> None:
        while not self._stop.wait(self.poll_s):
            try:
                self.poll()
            except Exception:  # progress must never break a run
                log.debug("reading progress failed", exc_info=True)

    def poll(self) -> None:
        """Read what the workers appended since the last poll and advance each stage's bar or line."""
        steps: dict[str, int] = {}
        for path in sorted(self.folder.iterdir()):
            stage = path.name.split(".", 1)[0]
            offset = self._offsets.get(path, 0)
            with open(path, "rb") as f:
                f.seek(offset)
                data = f.read()
            complete = data[: data.rfind(b"\n") + 1]
            self._offsets[path] = offset + len(complete)
            for line in complete.decode().splitlines():
                kind, _, value = line.partition(" ")
                progress = self._stage(stage, value if kind == "u" else None)
                if kind == "t":
                    progress.set_total(max(int(value), progress.total or 0))
                elif kind == "s":
                    steps[stage] = steps.get(stage, 0) + int(value)
        for stage, n in steps.items():
            self.stages[stage].step(n)

    def _stage(self, stage: str, unit: str | None) -> Progress:
        if stage not in self.stages:
            self.stages[stage] = Progress(stage, unit=unit or "tracks", every_s=self.every_s, bar=self.bar, sink="")
        return self.stages[stage]


def format_seconds(seconds: float) -> str:
    if seconds < 90:
        return f"{seconds:.0f} s"
    if seconds < 5400:
        return f"{seconds / 60:.0f} min"
    return f"{seconds / 3600:.1f} h"


def _bar(stage: str, total: int | None, unit: str):
    from tqdm import tqdm

    return tqdm(total=total, desc=f"mirmatch [{stage}]", unit=f" {unit}", file=sys.stderr, dynamic_ncols=True)


class StageTimer:
    """Milliseconds per element of a stage, kept in the Beam distribution ``mirmatch/<stage>_ms``; the run's
    summary prints their count, mean and maximum (``timer_summary``)."""

    def __init__(self, stage: str):
        from apache_beam.metrics import Metrics

        log_to_stderr_in_workers()
        self.distribution = Metrics.distribution("mirmatch", f"{stage}_ms")

    @contextmanager
    def time(self) -> Iterator[None]:
        """Time the block (put no ``yield`` of the DoFn inside: downstream work would be counted too)."""
        started = time.perf_counter()
        try:
            yield
        finally:
            self.distribution.update(round((time.perf_counter() - started) * 1000))


def timer_summary(timers: dict[str, dict]) -> str:
    """One line of the stage timers (``pipeline.run``'s ``counters["timers"]``), in pipeline order."""
    parts = [f"{stage} {t['n']} x {t['mean_ms']:.0f} ms (max {t['max_ms']}, total {format_seconds(t['total_s'])})"
             for stage in TIMED_STAGES if (t := timers.get(stage)) and t["n"]]
    return "mirmatch: time per element: " + ("; ".join(parts) if parts else "no stage timed")
