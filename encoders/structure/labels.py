"""Section labels from a beat self-similarity: segments that repeat one another share a label (A A B A).

Two segments are compared along their common diagonal of the beat-by-beat similarity (segment t against
segment s shifted by the lag between their starts, allowing a beat or two of slack either way): the mean
similarity over the shorter segment's beats, with a penalty for a length mismatch. A segment takes the label
of the earliest earlier segment it matches at least ``threshold``; otherwise a new one.
"""

from __future__ import annotations

import string

import numpy as np

__all__ = ["label_name", "segment_labels", "segment_similarity"]

_SLACK = 2  # beats of misalignment tried either way


def segment_similarity(sim: np.ndarray, a: tuple[int, int], b: tuple[int, int]) -> float:
    """Similarity of beat ranges a = [a0, a1) and b = [b0, b1) of ``sim`` (n, n), in [0, 1]."""
    la, lb = a[1] - a[0], b[1] - b[0]
    if la <= 0 or lb <= 0:
        return 0.0
    length = min(la, lb)
    best = 0.0
    for shift in range(-_SLACK, _SLACK + 1):
        i0, j0 = a[0], b[0] + shift
        i = np.arange(length) + i0
        j = np.arange(length) + j0
        ok = (j >= b[0] - _SLACK) & (j < b[1] + _SLACK) & (j >= 0) & (j < sim.shape[1])
        if ok.sum() < max(2, length // 2):
            continue
        best = max(best, float(np.mean(sim[i[ok], j[ok]])) * ok.sum() / length)
    return best * min(la, lb) / max(la, lb) ** 0.5 / min(la, lb) ** 0.5


def segment_labels(sim: np.ndarray, ranges: list[tuple[int, int]], threshold: float) -> list[str]:
    """Labels ("A", "B", ...) of consecutive beat ranges; repeats (similarity >= threshold) share one."""
    ids: list[int] = []
    n_ids = 0
    for k, r in enumerate(ranges):
        scores = [(segment_similarity(sim, ranges[m], r), m) for m in range(k)]
        best = max(scores, default=(0.0, -1))
        if best[0] >= threshold:
            ids.append(ids[best[1]])
        else:
            ids.append(n_ids)
            n_ids += 1
    return [label_name(i) for i in ids]


def label_name(i: int) -> str:
    """0 -> "A", 25 -> "Z", 26 -> "A1", ..."""
    letter = string.ascii_uppercase[i % 26]
    return letter if i < 26 else f"{letter}{i // 26}"
