"""Unsupervised structural segmentation by Laplacian structural decomposition.

McFee & Ellis, "Analyzing song structure with spectral clustering", ISMIR 2014; follows librosa's
gallery example "Laplacian segmentation" using librosa / scipy / scikit-learn building blocks.

``laplacian_segments`` segments frame features (the CQT baseline); ``segments_from_beat_features`` runs the
same method on features already on the beat grid (``grid.beat_bounds``), which is how
``encoders.structure.learned`` segments with the learned per-beat embeddings.
"""

from __future__ import annotations

import string
from dataclasses import dataclass

import librosa
import numpy as np
import scipy.linalg
import scipy.ndimage
import scipy.sparse.csgraph
import sklearn.neighbors
from sklearn.cluster import KMeans

from encoders.structure.grid import beat_bounds

__all__ = ["Segment", "beat_sync", "finite_features", "laplacian_segments", "segments_from_beat_features"]

_MIN_BEATS = 8  # fewer beat-synchronous frames than this -> single segment
_MAX_BEATS = 2048  # longer inputs are coarsened to bound the O(n^2) memory / O(n^3) time of the graph steps
_REC_WIDTH = 3  # recurrence_matrix width (suppress links to the +-width-1 neighbouring beats)
_TIMELAG_SIZE = (1, 7)  # median filter size in the time-lag domain
_EVEC_SMOOTH = 9  # median filter length (beats) applied to the eigenvectors
_EIGEN_FLOOR = 0.1  # eigenvalue floor for k selection, relative to the max_k-th eigenvalue
_GAP_FRACTION = 0.5  # smallest k whose eigengap is at least this fraction of the largest
_RANDOM_STATE = 0
_EPS = 1e-10


@dataclass(frozen=True)
class Segment:
    """A structural section [start_s, end_s) with its section-type label."""

    start_s: float
    end_s: float
    label: str  # "A", "B", ... in order of first appearance; repeated sections share a label


def beat_sync(
    features: np.ndarray, frame_times: np.ndarray, beat_times: np.ndarray | None
) -> tuple[np.ndarray, np.ndarray]:
    """Aggregate frame features (n_frames, d) between beats (median, as librosa.util.sync), in float64.

    Returns (beat_features (n_beats, d), beat_start_times (n_beats,)) on ``grid.beat_bounds``'s intervals:
    with beat_times None or fewer than 4 beats, fixed ~0.5 s windows. frame_times must be increasing.
    Float32 features are read as they are (each beat's frames converted on their own): no float64 copy of
    the whole track is made.
    """
    feats = np.asarray(features)
    if feats.dtype not in (np.float32, np.float64):
        feats = feats.astype(np.float64)
    times = np.asarray(frame_times, dtype=np.float64).ravel()
    if feats.ndim != 2 or feats.shape[0] != times.shape[0]:
        raise ValueError(f"features {feats.shape} must be (n_frames, d) matching frame_times {times.shape}")
    n = feats.shape[0]
    if n == 0:
        return np.empty((0, feats.shape[1])), np.empty(0)
    bounds = beat_bounds(n, times, beat_times)
    synced = np.empty((len(bounds) - 1, feats.shape[1]))
    for i, (a, b) in enumerate(zip(bounds[:-1], bounds[1:], strict=True)):
        synced[i] = np.median(feats[a:b].astype(np.float64), axis=0)
    return synced, times[bounds[:-1]]


def laplacian_segments(
    features: np.ndarray,
    frame_times: np.ndarray,
    duration_s: float,
    beat_times: np.ndarray | None = None,
    *,
    n_sections: int | None = None,
    max_sections: int = 8,
    min_segment_s: float = 2.0,
) -> list[Segment]:
    """Segment a track into labelled sections covering [0, duration_s] exactly.

    features: (n_frames, d), e.g. log-CQT frames (rows = time); frame_times: (n_frames,) seconds.
    n_sections None picks k in 2..max_sections from the eigengaps of the normalised Laplacian (_choose_k).
    Segments shorter than min_segment_s are merged into a neighbour. Too short or degenerate (constant)
    input gives [Segment(0, duration_s, "A")]. Raises ValueError if duration_s is not positive.
    """
    duration = _checked_duration(duration_s)
    beat_feats, beat_starts = beat_sync(finite_features(features), frame_times, beat_times)
    return segments_from_beat_features(beat_feats, beat_starts, duration, n_sections=n_sections,
                                       max_sections=max_sections, min_segment_s=min_segment_s)


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
    duration = _checked_duration(duration_s)
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


def _checked_duration(duration_s: float) -> float:
    duration = float(duration_s)
    if not np.isfinite(duration) or duration <= 0:
        raise ValueError(f"duration_s must be positive and finite, got {duration_s}")
    return duration


def _coarsen(x: np.ndarray, idx: np.ndarray) -> np.ndarray:
    """Median of the rows between consecutive indices ``idx`` (long tracks: one row per k beats)."""
    return librosa.util.sync(x.T, idx, aggregate=np.median).T


def _constant(x: np.ndarray) -> bool:
    return bool(np.ptp(x, axis=0).max() <= 1e-6 * (1.0 + np.abs(x).max()))


def finite_features(features: np.ndarray) -> np.ndarray:
    """Replace non-finite entries (e.g. log(0) = -inf) by the smallest finite value (0 if none).

    Float32 and float64 arrays keep their type (other types become float64); an all-finite array is
    returned as it is, not copied.
    """
    feats = np.asarray(features)
    if feats.dtype not in (np.float32, np.float64):
        feats = feats.astype(np.float64)
    ok = np.isfinite(feats)
    if ok.all():
        return feats
    return np.where(ok, feats, feats[ok].min() if ok.any() else 0.0).astype(feats.dtype)


def recurrence_graph(x: np.ndarray) -> np.ndarray:
    """Time-lag filtered, symmetric recurrence affinity between beat features x (n, d)."""
    n = x.shape[0]
    width = min(_REC_WIDTH, (n - 1) // 2 - 1)
    rec = recurrence_affinity(x, width)
    rec = np.nan_to_num(rec, nan=0.0, posinf=0.0, neginf=0.0)
    rec_f = librosa.segment.timelag_filter(scipy.ndimage.median_filter)(rec, size=_TIMELAG_SIZE)
    return 0.5 * (rec_f + rec_f.T)  # the filter's edge handling breaks symmetry near the borders


def recurrence_affinity(x: np.ndarray, width: int) -> np.ndarray:
    """Symmetric k-nearest-neighbour recurrence affinity of beat features x (n, d): dense (n, n) float64.

    The same matrix as ``librosa.segment.recurrence_matrix(x.T, width=width, mode="affinity", sym=True)``
    (k = 2 ceil(sqrt(n - 2 width + 1)) neighbours outside the +-(width - 1) band, mutual links only, exp(-d /
    median distance to each row's farthest kept neighbour); neighbours at distance 0 are not links, as there),
    with the same neighbour search (sklearn's), then dense arrays where librosa walks a sparse LIL matrix row
    by row (tens of times slower at 2048 beats).
    """
    x = np.asarray(x, dtype=np.float64)
    t = x.shape[0]
    if width < 1 or width >= (t - 1) // 2:
        raise ValueError(f"width={width} must be at least 1 and at most (n - 1) // 2 = {(t - 1) // 2}")
    k = int(2 * np.ceil(np.sqrt(t - 2 * width + 1)))
    # the nearest neighbours of each beat (itself excluded) as librosa finds them, in column order
    knn = sklearn.neighbors.NearestNeighbors(n_neighbors=min(t - 1, k + 2 * width)).fit(x)
    near_dist, nearest = knn.kneighbors()
    rec = np.zeros((t, t))
    for i in range(t):  # links in column order, as librosa's sparse rows hold them, and the same argsort
        columns = np.sort(nearest[i])
        dist = near_dist[i][np.argsort(nearest[i])]
        link = (np.abs(columns - i) >= width) & (dist != 0)
        columns, dist = columns[link], dist[link]
        keep = np.argsort(dist)[:k]
        rec[i, columns[keep]] = dist[keep]
    rec = np.minimum(rec, rec.T)  # mutual neighbours only
    linked = rec > 0
    farthest = np.where(linked.any(axis=1), rec.max(axis=1), np.nan)
    if not np.isfinite(farthest).any():
        raise ValueError("cannot estimate the affinity bandwidth from an empty graph")
    bandwidth = float(np.nanmedian(farthest))
    return np.where(linked, np.exp(-rec / bandwidth), 0.0)


def path_graph(x: np.ndarray) -> np.ndarray:
    """Local (sequence) graph: adjacent beats weighted by feature similarity."""
    path_dist = np.sum(np.diff(x, axis=0) ** 2, axis=1)
    sigma = np.median(path_dist)
    if sigma <= 0:
        sigma = path_dist.mean() if path_dist.mean() > 0 else 1.0
    path_sim = np.exp(-path_dist / sigma)
    return np.diag(path_sim, k=1) + np.diag(path_sim, k=-1)


def laplacian_labels(rec_f: np.ndarray, rec_path: np.ndarray, n_sections: int | None,
                     max_sections: int) -> np.ndarray | None:
    """Per-beat section-type ids from a recurrence and a path graph; None if the graph is degenerate."""
    n = rec_f.shape[0]
    # Balance the two graphs so that both contribute equally to node degrees (mu* of McFee & Ellis).
    deg_path, deg_rec = rec_path.sum(axis=1), rec_f.sum(axis=1)
    if deg_rec.sum() <= _EPS:
        return None
    mu = deg_path.dot(deg_path + deg_rec) / np.sum((deg_path + deg_rec) ** 2)
    graph = mu * rec_f + (1 - mu) * rec_path

    n_eig = min(n, max_sections + 1 if n_sections is None else n_sections)
    lap = scipy.sparse.csgraph.laplacian(graph, normed=True)
    evals, evecs = scipy.linalg.eigh(lap, subset_by_index=[0, n_eig - 1])
    k = _choose_k(evals, n_eig - 1) if n_sections is None else n_eig
    evecs = scipy.ndimage.median_filter(evecs, size=(_EVEC_SMOOTH, 1))
    norm = np.cumsum(evecs**2, axis=1) ** 0.5
    emb = evecs[:, :k] / np.maximum(norm[:, k - 1 : k], _EPS)
    return KMeans(n_clusters=k, n_init=10, random_state=_RANDOM_STATE).fit_predict(emb)


def _choose_k(evals: np.ndarray, max_k: int) -> int:
    """Pick k in 2..max_k from the eigengaps of the Laplacian spectrum (evals ascending, >= max_k + 1).

    Gaps are taken on a log scale (ratios evals[k] / evals[k - 1]), with eigenvalues floored at a fraction
    of evals[max_k] so that numerically-zero ones do not give arbitrary ratios; the smallest k whose gap is
    at least half the largest one wins (parsimony: a clear gap at small k beats a slightly larger one later).
    """
    lam = evals[: max_k + 1]
    log_lam = np.log(np.maximum(lam, max(_EIGEN_FLOOR * lam[-1], _EPS)))
    gaps = np.diff(log_lam[1:])  # gaps[i] = log(lam[i + 2] / lam[i + 1]), i.e. the gap for k = i + 2
    return 2 + int(np.flatnonzero(gaps >= _GAP_FRACTION * gaps.max())[0])


def _to_segments(
    labels: np.ndarray, beat_starts: np.ndarray, duration: float, min_segment_s: float
) -> list[Segment]:
    """Turn per-beat ids into covering segments, merge short ones, relabel by first appearance."""
    first = np.r_[0, 1 + np.flatnonzero(labels[1:] != labels[:-1])]
    starts = beat_starts[first].astype(np.float64)
    starts[0] = 0.0
    bounds = np.r_[starts, duration]
    ids = labels[first]
    segs = [[float(a), float(b), int(c)] for a, b, c in zip(bounds[:-1], bounds[1:], ids, strict=True)]
    segs = _merge_same_label(segs)
    while len(segs) > 1:
        lengths = np.array([b - a for a, b, _ in segs])
        i = int(np.argmin(lengths))
        if lengths[i] >= min_segment_s and lengths[i] > 0:
            break
        # Absorb the short segment into its longer neighbour.
        if i == 0 or (i < len(segs) - 1 and lengths[i + 1] > lengths[i - 1]):
            segs[i + 1][0] = segs[i][0]
        else:
            segs[i - 1][1] = segs[i][1]
        del segs[i]
        segs = _merge_same_label(segs)
    names: dict[int, str] = {}
    for _, _, lab in segs:
        names.setdefault(lab, _label_name(len(names)))
    return [Segment(a, b, names[lab]) for a, b, lab in segs]


def _merge_same_label(segs: list[list]) -> list[list]:
    """Fuse adjacent segments that carry the same label."""
    out = [list(segs[0])]
    for seg in segs[1:]:
        if seg[2] == out[-1][2]:
            out[-1][1] = seg[1]
        else:
            out.append(list(seg))
    return out


def _label_name(i: int) -> str:
    """0 -> "A", 25 -> "Z", 26 -> "A1", ..."""
    letter = string.ascii_uppercase[i % 26]
    return letter if i < 26 else f"{letter}{i // 26}"
