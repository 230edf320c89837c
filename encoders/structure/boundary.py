"""Supervised section-boundary detection on audio (after Ullrich, Schlüter & Grill, ISMIR 2014, and Grill &
Schlüter, EUSIPCO 2015): a small CNN scores each beat of the structure grid as the start of a section, from

* a log-CQT context window around the beat: ``context_beats`` beats, ``sub_beats`` sub-beats each
  (``embedding.padded_sub_beats``'s input, the features the pipeline already has), and
* a self-similarity lag patch (SSLM): for the ``context_beats`` beats around it, the similarity of each beat
  to the ``max_lag`` beats before it, which shows where a repetition starts or stops.

It was trained with boundary labels smeared over neighbouring beats (``encoders.training.boundary``). Its
output is peak-picked (``symbolic.pick_peaks``: local maxima above a threshold, sections at least
``min_section_s`` long), so the number of sections follows the data. Labels fuse in the repetition evidence
of the Laplacian method (McFee & Ellis 2014): its per-beat section types on the same beats, the majority in
each segment (``laplacian_segment_labels``; on the validation split, pairwise F .616 against .592 for
labelling by the segments' own similarity, ``labels.segment_labels``, which stays the fallback).
Without a usable beat grid the structure grid falls back to fixed windows (``grid.beat_bounds``), which the
network also saw in training.
"""

from __future__ import annotations

import functools
from dataclasses import asdict, dataclass
from pathlib import Path

import librosa
import numpy as np
import scipy.ndimage
import torch
from torch import nn

from encoders.features import N_BINS
from encoders.structure.embedding import EmbeddingConfig, padded_sub_beats
from encoders.structure.labels import label_name, segment_labels
from encoders.structure.laplacian import Segment, finite_features, laplacian_labels, path_graph, recurrence_graph
from encoders.structure.symbolic import pick_peaks

__all__ = ["BoundaryConfig", "BoundaryNet", "DEFAULT_BOUNDARY_WEIGHTS", "beat_inputs", "boundary_curve",
           "boundary_segments", "label_similarity", "load_boundary_model", "save_boundary_model"]

DEFAULT_BOUNDARY_WEIGHTS = Path(__file__).resolve().parents[1] / "weights" / "segment-boundary-v1.pt"


@dataclass(frozen=True)
class BoundaryConfig:
    context_beats: int = 16
    sub_beats: int = 2
    max_lag: int = 64
    n_bins: int = N_BINS
    width: int = 16
    hidden: int = 64
    # decoding (fitted on the validation split, stored with the weights)
    threshold: float = 0.5
    min_section_s: float = 4.0
    label_threshold: float = 0.6

    def embedding_config(self) -> EmbeddingConfig:
        return EmbeddingConfig(context_beats=self.context_beats, sub_beats=self.sub_beats, n_bins=self.n_bins)


class BoundaryNet(nn.Module):
    """Boundary logits for the beats of one track (or of a training excerpt).

    Fully convolutional over beats, so a track's CQT is convolved once, not once per beat: two trunks turn
    the sub-beat CQT (rows = ``sub_beats`` per beat) and the lag rows (one per beat) into per-beat feature
    vectors; the head reads, for each beat, the mean features of the four 4-beat chunks of its
    ``context_beats``-beat window and outputs a logit.
    """

    def __init__(self, config: BoundaryConfig = BoundaryConfig()):
        super().__init__()
        self.config = config
        w = config.width

        def block(c_in: int, c_out: int, pool: tuple[int, int]) -> list[nn.Module]:
            return [nn.Conv2d(c_in, c_out, 3, padding=1, bias=False), nn.BatchNorm2d(c_out), nn.ReLU(),
                    nn.MaxPool2d(pool)]

        self.cqt = nn.Sequential(*block(1, w, (config.sub_beats, 3)), *block(w, 2 * w, (1, 2)),
                                 *block(2 * w, 2 * w, (1, 2)))
        self.lag = nn.Sequential(*block(1, w // 2, (1, 2)), *block(w // 2, w, (1, 4)))
        self.n_feat = 2 * w * (config.n_bins // 12) + w * (config.max_lag // 8)
        self.head = nn.Sequential(nn.Dropout(0.3), nn.Linear(4 * self.n_feat, config.hidden), nn.ReLU(),
                                  nn.Dropout(0.3), nn.Linear(config.hidden, 1))

    def beat_features(self, seq: torch.Tensor, lags: torch.Tensor) -> torch.Tensor:
        """(b, beats * sub, bins), (b, beats, max_lag) -> (b, beats, n_feat)."""
        a = self.cqt(seq.unsqueeze(1) - 0.5)  # (b, c, beats, f)
        c = self.lag(lags.unsqueeze(1) - 0.5)
        a = a.permute(0, 2, 1, 3).flatten(2)
        c = c.permute(0, 2, 1, 3).flatten(2)
        return torch.cat([a, c], dim=2)

    def logits(self, feats: torch.Tensor) -> torch.Tensor:
        """(b, beats, n_feat) per-beat features padded by context/2 beats -> (b, beats - context) logits."""
        ctx = self.config.context_beats
        kernel = torch.ones(1, 1, 4, 1, dtype=feats.dtype) / 4.0
        chunks = nn.functional.conv2d(feats.unsqueeze(1), kernel).squeeze(1)  # (b, beats - 3, n_feat)
        n = feats.shape[1] - ctx
        window = torch.cat([chunks[:, k * 4: k * 4 + n] for k in range(ctx // 4)], dim=2)
        return self.head(window).squeeze(2)

    def forward(self, seq: torch.Tensor, lags: torch.Tensor) -> torch.Tensor:
        """Padded inputs (``beat_inputs``: context/2 beats of padding each side) -> (b, beats) logits."""
        return self.logits(self.beat_features(seq, lags))


# ------------------------------------------------------------------------------------------------ inputs


def beat_similarity(seq: np.ndarray, sub_beats: int, pad: int) -> tuple[np.ndarray, np.ndarray]:
    """(beat features (n, bins): the sub-beats of each beat averaged, cosine self-similarity (n, n) in [0, 1]
    of the mean-removed features) from a padded sub-beat sequence."""
    core = seq[pad: len(seq) - pad]
    beats = core.reshape(-1, sub_beats, core.shape[1]).mean(axis=1)
    x = beats - beats.mean(axis=1, keepdims=True)
    x = x / np.maximum(np.linalg.norm(x, axis=1, keepdims=True), 1e-6)
    return beats, (x @ x.T + 1.0) * 0.5


def lag_rows(sim: np.ndarray, max_lag: int) -> np.ndarray:
    """(n, max_lag): row i holds sim[i, i - l] for l = 1..max_lag (0.5 before the start)."""
    n = sim.shape[0]
    i = np.arange(n)[:, None]
    j = i - np.arange(1, max_lag + 1)[None, :]
    out = np.full((n, max_lag), 0.5, np.float32)
    ok = j >= 0
    out[ok] = sim[np.broadcast_to(i, j.shape)[ok], j[ok]]
    return out


def beat_inputs(cqt: np.ndarray, frame_times: np.ndarray, beat_times: np.ndarray | None, config: BoundaryConfig
                ) -> dict:
    """Everything the network and the decoding need for one track: padded sub-beat CQT ('seq'), padded
    lag rows ('lags'), beat features and similarity ('beat_feats', 'sim'), beat start times ('starts')."""
    emb_cfg = config.embedding_config()
    seq, bounds = padded_sub_beats(cqt, frame_times, beat_times, emb_cfg)
    pad = (config.context_beats // 2) * config.sub_beats
    feats, sim = beat_similarity(seq, config.sub_beats, pad)
    half = config.context_beats // 2
    lags = np.pad(lag_rows(sim, config.max_lag), ((half, half), (0, 0)), mode="edge")
    return {"seq": seq, "lags": lags, "beat_feats": feats, "sim": sim,
            "starts": np.asarray(frame_times, np.float64)[bounds[:-1]]}


# --------------------------------------------------------------------------------------------- inference


@functools.lru_cache(maxsize=4)
def load_boundary_model(path: str | Path = DEFAULT_BOUNDARY_WEIGHTS) -> BoundaryNet:
    state = torch.load(str(path), map_location="cpu", weights_only=True)
    model = BoundaryNet(BoundaryConfig(**state["config"]))
    model.load_state_dict(state["state_dict"])
    return model.eval()


def save_boundary_model(model: BoundaryNet, path: str | Path) -> None:
    path = Path(path)
    path.parent.mkdir(parents=True, exist_ok=True)
    state = {k: v.detach().clone().to(torch.float16) if v.is_floating_point() else v.detach().clone()
             for k, v in model.state_dict().items()}
    torch.save({"config": asdict(model.config), "state_dict": state}, str(path))


def boundary_curve(inputs: dict, model: BoundaryNet) -> np.ndarray:
    """The network's boundary probability for every beat of a track's ``beat_inputs`` (one pass)."""
    seq = torch.from_numpy(np.ascontiguousarray(inputs["seq"], dtype=np.float32))[None]
    lags = torch.from_numpy(np.ascontiguousarray(inputs["lags"], dtype=np.float32))[None]
    was_training = model.training
    model.eval()
    with torch.no_grad():
        out = torch.sigmoid(model(seq, lags))[0].float().numpy()
    model.train(was_training)
    return out


def label_similarity(inputs: dict) -> np.ndarray:
    """Beat similarity for labels: the cosine similarity, median-filtered along its diagonals (time-lag
    domain) as the Laplacian method filters its recurrence, so that a repeat survives a few odd beats."""
    sim = inputs["sim"]
    if len(sim) < 8:
        return sim
    filt = librosa.segment.timelag_filter(scipy.ndimage.median_filter)(sim, size=(1, 5))
    return 0.5 * (filt + filt.T)


def laplacian_segment_labels(beat_feats: np.ndarray, ranges: list[tuple[int, int]]) -> list[str] | None:
    """Labels of the segments (beat ranges) from the Laplacian method's repetition evidence: its per-beat
    section types (recurrence + path graph on the beat features, k from the eigengap), the most frequent
    one in each segment; "A", "B", ... by first appearance. None when the graph is degenerate."""
    x = np.asarray(beat_feats, np.float64)
    if len(x) < 8 or np.ptp(x) <= 0:
        return None
    types = laplacian_labels(recurrence_graph(x), path_graph(x), None, 8)
    if types is None:
        return None
    names: dict[int, str] = {}
    return [names.setdefault(int(np.bincount(types[a:b]).argmax()), label_name(len(names))) for a, b in ranges]


def boundary_segments(cqt: np.ndarray, frame_times: np.ndarray, duration_s: float,
                      beat_times: np.ndarray | None = None, *, model: BoundaryNet | None = None,
                      threshold: float | None = None, label_threshold: float | None = None) -> list[Segment]:
    """Labelled sections covering [0, duration_s] from the boundary network on a track's log-CQT (rows =
    frames at ``frame_times``) and beats (None or too few: fixed windows)."""
    duration = float(duration_s)
    if not np.isfinite(duration) or duration <= 0:
        raise ValueError(f"duration_s must be positive and finite, got {duration_s}")
    feats = finite_features(cqt)
    times = np.asarray(frame_times, np.float64).ravel()
    if feats.ndim != 2 or feats.shape[0] != times.shape[0]:
        raise ValueError(f"features {feats.shape} must be (n_frames, d) matching frame_times {times.shape}")
    if feats.shape[0] < 2 or np.ptp(feats) <= 0:
        return [Segment(0.0, duration, "A")]
    model = load_boundary_model() if model is None else model
    cfg = model.config
    inputs = beat_inputs(feats.astype(np.float32), times, beat_times, cfg)
    starts = inputs["starts"]
    keep = starts < duration
    curve = boundary_curve(inputs, model)[keep]
    starts = starts[keep]
    idx = pick_peaks(curve, starts, duration, cfg.threshold if threshold is None else threshold, cfg.min_section_s)
    cuts = [0, *idx, len(starts)]
    ranges = list(zip(cuts[:-1], cuts[1:], strict=True))
    labels = laplacian_segment_labels(inputs["beat_feats"][keep], ranges)
    if labels is None:  # too few beats or a degenerate graph: labels from the beat similarity
        sim = label_similarity(inputs)[np.ix_(keep, keep)]
        labels = segment_labels(sim, ranges, cfg.label_threshold if label_threshold is None else label_threshold)
    bounds = [0.0, *[float(starts[i]) for i in idx], duration]
    return [Segment(a, b, lab) for a, b, lab in zip(bounds[:-1], bounds[1:], labels, strict=True)]


