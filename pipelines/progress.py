"""Progress lines for long stages: how many elements are done, how fast, and about how long is left."""

from __future__ import annotations

import logging
import time

log = logging.getLogger("mirmatch")


class Progress:
    """Counts the elements one worker has finished and logs a line at most every ``every_s`` seconds.

    On the local runner the stages run in the launching process, so the lines reach the terminal; on
    Dataflow they go to the worker logs (the job page shows the Beam counters as well).
    """

    def __init__(self, stage: str, total: int | None = None, unit: str = "tracks", every_s: float = 10.0):
        self.stage, self.total, self.unit, self.every_s = stage, total, unit, every_s
        self.done = 0
        self.started = self.last = time.monotonic()

    def step(self, n: int = 1) -> None:
        self.done += n
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
