"""Shared helpers of the benchmarks: timing, peak memory, one printed line per figure."""

from __future__ import annotations

import resource
import sys
import time
from pathlib import Path

import numpy as np

sys.path.insert(0, str(Path(__file__).resolve().parents[2]))


def best_time(fn, repeat: int = 3) -> float:
    """Best wall time of ``repeat`` calls (seconds): the least disturbed by a noisy machine."""
    best = float("inf")
    for _ in range(repeat):
        started = time.perf_counter()
        fn()
        best = min(best, time.perf_counter() - started)
    return best


def best_times(fns: list, rounds: int = 5) -> list[float]:
    """Best wall time of each function, calling them in turn for ``rounds`` rounds: interleaving keeps a
    burst of load on a noisy machine from favouring one side of a ratio."""
    best = [float("inf")] * len(fns)
    for _ in range(rounds):
        for i, fn in enumerate(fns):
            started = time.perf_counter()
            fn()
            best[i] = min(best[i], time.perf_counter() - started)
    return best


def peak_rss_mb() -> float:
    """Peak resident memory of this process so far (MiB)."""
    return resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024.0


def report(name: str, value: float, unit: str = "", detail: str = "") -> None:
    """One figure per line: ``name: value unit (detail)``."""
    print(f"{name}: {value:.4g}{(' ' + unit) if unit else ''}{('  (' + detail + ')') if detail else ''}", flush=True)


def flip_bits(codes: np.ndarray, rate: float, rng: np.random.Generator) -> np.ndarray:
    """Flip each bit of a uint8 or uint32 array independently with probability ``rate``."""
    bits = codes.dtype.itemsize * 8
    noise = np.zeros_like(codes)
    for b in range(bits):
        noise |= (rng.random(codes.shape) < rate).astype(codes.dtype) << codes.dtype.type(b)
    return codes ^ noise
