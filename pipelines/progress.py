"""Progress lines for long stages: how many elements are done, how fast, and about how long is left."""

from __future__ import annotations

import logging
import sys
import time
from collections.abc import Iterator
from contextlib import contextmanager

log = logging.getLogger("mirmatch")

#: The stages timed per element (Beam distributions ``mirmatch/<stage>_ms``), in pipeline order.
TIMED_STAGES = ("analyse", "search", "align", "verify")


class Progress:
    """Counts the elements one worker has finished: a progress bar (tqdm) when standard error is a terminal,
    else a log line at most every ``every_s`` seconds.

    On the local runner the stages run in the launching process, so the bar or lines reach the terminal; on
    Dataflow the lines go to the worker logs (the job page shows the Beam counters as well).
    """

    def __init__(self, stage: str, total: int | None = None, unit: str = "tracks", every_s: float = 10.0,
                 bar: bool | None = None):
        self.stage, self.total, self.unit, self.every_s = stage, total, unit, every_s
        self.done = 0
        self.started = self.last = time.monotonic()
        self.bar = _bar(stage, total, unit) if (sys.stderr.isatty() if bar is None else bar) else None

    def step(self, n: int = 1) -> None:
        self.done += n
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
