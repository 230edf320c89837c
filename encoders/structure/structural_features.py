"""Structural features (Serrà, Müller, Grosche & Arcos, "Unsupervised music structure annotation by time series
structure features and segment similarity", IEEE TMM 2014): a baseline for the boundary model.

Beat-synchronous features are delay-embedded (``EMBED`` beats), a mutual k-nearest-neighbour recurrence plot
(k = ``KAPPA`` x beats) is turned into the circular time-lag matrix, smoothed with a Gaussian along time
(``GAUSS_BEATS``) and along lag; the novelty is the distance between consecutive columns of these
"structure features", and its peaks above an adaptive threshold (median over ``PEAK_BEATS`` beats plus
``OFFSET`` of the mean) are the boundaries. Parameters are MSAF's published defaults for the method (on
beat-synchronous features). Serrà et al. label segments by their own similarity; here they are labelled by
``labels.segment_labels`` on the beat cosine similarity, as the boundary model's are.
"""

from __future__ import annotations

import librosa
import numpy as np
import scipy.ndimage

from encoders.structure.labels import segment_labels
from encoders.structure.laplacian import Segment, beat_sync, finite_features

__all__ = ["sf_boundaries", "structural_features_segments"]

EMBED = 3
KAPPA = 0.04
GAUSS_BEATS = 27
PEAK_BEATS = 28
OFFSET = 0.05
LABEL_THRESHOLD = 0.7


def sf_boundaries(x: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
    """Boundary beat indices and the novelty curve from beat features x (n, d)."""
    n = len(x)
    z = (x - x.mean(axis=0)) / np.maximum(x.std(axis=0), 1e-6)
    emb = librosa.feature.stack_memory(z.T, n_steps=EMBED, mode="edge")
    k = max(2, int(KAPPA * n))
    rec = librosa.segment.recurrence_matrix(emb, k=k, width=1, sym=True, mode="connectivity").astype(np.float32)
    lag = librosa.segment.recurrence_to_lag(rec, pad=False)  # (lag, time)
    sf = scipy.ndimage.gaussian_filter1d(lag, sigma=GAUSS_BEATS / 6.0, axis=1)
    sf = scipy.ndimage.gaussian_filter1d(sf, sigma=1.0 / 3.0, axis=0)
    nov = np.r_[0.0, np.sqrt(np.sum(np.diff(sf, axis=1) ** 2, axis=0))]
    nov = (nov - nov.min()) / max(float(np.ptp(nov)), 1e-9)
    th = scipy.ndimage.median_filter(nov, size=PEAK_BEATS, mode="nearest") + OFFSET * nov.mean()
    peaks = [i for i in range(1, n - 1) if nov[i] > nov[i - 1] and nov[i] >= nov[i + 1] and nov[i] > th[i]]
    return np.array(peaks, dtype=int), nov


def structural_features_segments(features: np.ndarray, frame_times: np.ndarray, duration_s: float,
                                 beat_times: np.ndarray | None = None, *, min_segment_s: float = 2.0
                                 ) -> list[Segment]:
    """Labelled sections covering [0, duration_s] by structural features on frame features (n_frames, d)."""
    duration = float(duration_s)
    x, starts = beat_sync(finite_features(features), frame_times, beat_times)
    keep = starts < duration
    x, starts = x[keep], starts[keep]
    if len(x) < 8 or np.ptp(x) <= 0:
        return [Segment(0.0, duration, "A")]
    peaks, _ = sf_boundaries(x)
    chosen: list[int] = []
    for i in peaks:
        if starts[i] >= min_segment_s and duration - starts[i] >= min_segment_s and (
                not chosen or starts[i] - starts[chosen[-1]] >= min_segment_s):
            chosen.append(int(i))
    c = x - x.mean(axis=1, keepdims=True)
    c = c / np.maximum(np.linalg.norm(c, axis=1, keepdims=True), 1e-6)
    sim = (c @ c.T + 1.0) * 0.5
    cuts = [0, *chosen, len(x)]
    labels = segment_labels(sim, list(zip(cuts[:-1], cuts[1:], strict=True)), LABEL_THRESHOLD)
    bounds = [0.0, *[float(starts[i]) for i in chosen], duration]
    return [Segment(a, b, lab) for a, b, lab in zip(bounds[:-1], bounds[1:], labels, strict=True)]
