"""Laplacian structural segmentation on learned per-beat embeddings instead of (or with) the CQT.

The same method as ``encoders.structure.laplacian_segments`` (McFee & Ellis 2014: recurrence + path graph,
normalised Laplacian, k-means on the eigenvectors, short segments merged), with the beat features given to
the graphs taken from the unsupervised embeddings of ``encoders.segment_embedding`` (McCallum 2019). The
baseline is untouched; this module reuses its internals and constants.

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

import librosa
import numpy as np

from encoders.segment_embedding import SegmentEmbeddingNet, embed_beats
from encoders.structure import (
    _MAX_BEATS,
    _MIN_BEATS,
    Segment,
    _finite,
    _to_segments,
    beat_sync,
    laplacian_labels,
    path_graph,
    recurrence_graph,
)

__all__ = ["FEATURES", "learned_segments", "segments_from_beat_features"]

FEATURES = ("fused", "learned", "cqt")


def _coarsen(x: np.ndarray, idx: np.ndarray) -> np.ndarray:
    return librosa.util.sync(x.T, idx, aggregate=np.median).T


def _constant(x: np.ndarray) -> bool:
    return bool(np.ptp(x, axis=0).max() <= 1e-6 * (1.0 + np.abs(x).max()))


def segments_from_beat_features(rec_feats: np.ndarray, beat_starts: np.ndarray, duration_s: float,
                                path_feats: np.ndarray | None = None, fuse_feats: np.ndarray | None = None, *,
                                n_sections: int | None = None, max_sections: int = 8,
                                min_segment_s: float = 2.0) -> list[Segment]:
    """Laplacian segmentation from beat-synchronous features (rows aligned with beat_starts, seconds).

    The recurrence graph is built on rec_feats, or is the geometric mean of the recurrence graphs of
    rec_feats and fuse_feats when fuse_feats is given; the path graph is built on path_feats (default
    rec_feats). With only rec_feats this is ``laplacian_segments`` after its beat_sync step. Segments cover
    [0, duration_s] exactly; too short or constant input gives [Segment(0, duration_s, "A")].
    """
    duration = float(duration_s)
    if not np.isfinite(duration) or duration <= 0:
        raise ValueError(f"duration_s must be positive and finite, got {duration_s}")
    single = [Segment(0.0, duration, "A")]
    beat_starts = np.asarray(beat_starts, dtype=np.float64)
    keep = beat_starts < duration
    feats = [np.asarray(f, dtype=np.float64)[keep] if f is not None else None
             for f in (rec_feats, path_feats, fuse_feats)]
    beat_starts = beat_starts[keep]
    n = beat_starts.shape[0]
    if n < _MIN_BEATS or (n_sections if n_sections is not None else max_sections) < 2:
        return single
    if n > _MAX_BEATS:
        idx = np.arange(0, n, -(-n // _MAX_BEATS))
        feats = [_coarsen(f, idx) if f is not None else None for f in feats]
        beat_starts = beat_starts[idx]
    rec_x, path_x, fuse_x = feats
    path_x = rec_x if path_x is None else path_x
    if _constant(rec_x) or _constant(path_x) or (fuse_x is not None and _constant(fuse_x)):
        return single
    rec = recurrence_graph(rec_x)
    if fuse_x is not None:
        rec = np.sqrt(rec * recurrence_graph(fuse_x))
    labels = laplacian_labels(rec, path_graph(path_x), n_sections, max_sections)
    if labels is None:
        return single
    return _to_segments(labels, beat_starts, duration, min_segment_s)


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
    feats = _finite(features)
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
    emb, emb_starts = embed_beats(feats, beat_times, model, frame_times=times)
    if emb.shape[0] != cqt_beats.shape[0] or not np.allclose(emb_starts, beat_starts):
        raise AssertionError("embedding and CQT beat grids differ")  # both use structure.beat_sync's grid
    if feature == "learned":
        return segments_from_beat_features(emb, beat_starts, duration, n_sections=n_sections,
                                           max_sections=max_sections, min_segment_s=min_segment_s)
    return segments_from_beat_features(cqt_beats, beat_starts, duration, path_feats=cqt_beats, fuse_feats=emb,
                                       n_sections=n_sections, max_sections=max_sections,
                                       min_segment_s=min_segment_s)
