"""Laplacian structural segmentation on learned per-beat embeddings instead of (or with) the CQT.

The same method as ``encoders.structure.laplacian.laplacian_segments`` (McFee & Ellis 2014: recurrence + path
graph, normalised Laplacian, k-means on the eigenvectors, short segments merged; ``segments_from_beat_features``),
with the beat features given to the graphs taken from the unsupervised embeddings of
``encoders.structure.embedding`` (McCallum 2019). This is the pipeline's segmentation.

``feature`` picks what the graphs are built on:

* ``"fused"`` (default): recurrence affinity = geometric mean of the CQT's and the embeddings' recurrence
  affinities (a link must be supported by both), sequence (path) graph on the CQT. The embeddings
  (8-beat context) say which section a beat belongs to but blur where a repeat starts; the CQT's
  recurrence is exact to the beat but links unrelated beats that sound alike. Picked on the validation
  split (see SEGMENT_MODEL_CARD.md).
* ``"learned"``: both graphs on the embeddings (McCallum's substitution as such).
* ``"cqt"``: both graphs on the beat-synchronous CQT: the baseline ``laplacian_segments`` exactly.
"""

from __future__ import annotations

import numpy as np

from encoders.structure.embedding import SegmentEmbeddingNet, embed_beats
from encoders.structure.laplacian import Segment, beat_sync, finite_features, segments_from_beat_features

__all__ = ["FEATURES", "learned_segments"]

FEATURES = ("fused", "learned", "cqt")


def learned_segments(features: np.ndarray, frame_times: np.ndarray, duration_s: float,
                     beat_times: np.ndarray | None = None, *, feature: str = "fused",
                     model: SegmentEmbeddingNet | None = None, n_sections: int | None = None,
                     max_sections: int = 8, min_segment_s: float = 2.0) -> list[Segment]:
    """Segment a track into labelled sections covering [0, duration_s], like ``laplacian_segments``.

    features: (n_frames, 48) log-CQT (encoders.features.log_cqt; rows = time), frame_times (n_frames,)
    seconds, beat_times as for the baseline (None or fewer than 4 beats: fixed 0.5 s windows). feature:
    "fused", "learned" or "cqt" (module docstring); model: the embedding network (default: the shipped
    weights, encoders/weights/segment-embedding-v1.pt). Raises ValueError for a bad duration or feature.
    """
    duration = float(duration_s)
    if not np.isfinite(duration) or duration <= 0:
        raise ValueError(f"duration_s must be positive and finite, got {duration_s}")
    if feature not in FEATURES:
        raise ValueError(f"feature must be one of {FEATURES}, got {feature!r}")
    feats = finite_features(features)
    times = np.asarray(frame_times, dtype=np.float64).ravel()
    if feats.ndim != 2 or feats.shape[0] != times.shape[0]:
        raise ValueError(f"features {feats.shape} must be (n_frames, d) matching frame_times {times.shape}")
    if feats.shape[0] == 0:
        return [Segment(0.0, duration, "A")]
    cqt_beats, beat_starts = beat_sync(feats, times, beat_times)
    if feature == "cqt":
        return segments_from_beat_features(cqt_beats, beat_starts, duration, n_sections=n_sections,
                                           max_sections=max_sections, min_segment_s=min_segment_s)
    if np.ptp(feats) <= 0:  # silent or constant input: nothing to embed
        return [Segment(0.0, duration, "A")]
    emb, _ = embed_beats(feats, beat_times, model, frame_times=times)  # rows: beat_sync's beats (grid.beat_bounds)
    if feature == "learned":
        return segments_from_beat_features(emb, beat_starts, duration, n_sections=n_sections,
                                           max_sections=max_sections, min_segment_s=min_segment_s)
    return segments_from_beat_features(cqt_beats, beat_starts, duration, path_feats=cqt_beats, fuse_feats=emb,
                                       n_sections=n_sections, max_sections=max_sections,
                                       min_segment_s=min_segment_s)
