"""Per-beat embeddings for structural segmentation, learned without labels from temporal proximity (the
network, its inputs and inference; the training is ``encoders.training.structure``).

After McCallum, "Unsupervised learning of deep features for music segmentation" (ICASSP 2019): a small CNN
maps a beat-synchronous log-CQT patch around each beat to a unit vector, trained with a triplet loss whose
positive is a beat close to the anchor in time (same track, at most ``pos_max`` beats away) and whose negative
is a beat far from it (same track, at least ``neg_min`` beats away). No section labels are used: nearby
beats mostly share a section, distant ones mostly do not (repeats of a section are the exception the
loss has to live with). The embeddings then replace the CQT as the features of the Laplacian segmentation
(``encoders.structure.learned``).

Input: each beat interval is split into ``sub_beats`` equal parts (CQT frames averaged in each), and the
patch of beat i spans ``context_beats`` beats centred on it, edges replicated: (context * sub, 48).
"""

from __future__ import annotations

import functools
from dataclasses import asdict, dataclass
from pathlib import Path

import numpy as np
import torch
from torch import nn

from encoders.codes.learned import for_inference
from encoders.features import FRAME_RATE, N_BINS
from encoders.structure.grid import beat_bounds

DEFAULT_WEIGHTS = Path(__file__).resolve().parents[1] / "weights" / "segment-embedding-v1.pt"


@dataclass(frozen=True)
class EmbeddingConfig:
    context_beats: int = 8
    sub_beats: int = 4
    n_bins: int = N_BINS
    width: int = 16
    dim: int = 32


class SegmentEmbeddingNet(nn.Module):
    """(batch, context * sub, n_bins) patches -> (batch, dim) L2-normalised embeddings."""

    def __init__(self, config: EmbeddingConfig = EmbeddingConfig()):
        super().__init__()
        self.config = config
        w = config.width

        def block(c_in: int, c_out: int, pool: bool) -> list[nn.Module]:
            layers = [nn.Conv2d(c_in, c_out, 3, padding=1, bias=False), nn.BatchNorm2d(c_out), nn.ReLU()]
            return layers + ([nn.MaxPool2d(2)] if pool else [])

        self.features = nn.Sequential(*block(1, w, True), *block(w, 2 * w, True), *block(2 * w, 4 * w, True),
                                      *block(4 * w, 4 * w, False))
        t_out = (config.context_beats * config.sub_beats) // 8
        f_out = config.n_bins // 8
        self.head = nn.Linear(4 * w * t_out * f_out, config.dim)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        h = self.features(x.unsqueeze(1) - 0.5)
        return nn.functional.normalize(self.head(h.flatten(1)), dim=1)


# ------------------------------------------------------------------------------------------------ inputs


def normalise_cqt(cqt: np.ndarray) -> np.ndarray:
    """Log-CQT frames scaled to [0, 1] per track (non-finite values to the floor); identity on log_cqt output."""
    x = np.asarray(cqt, dtype=np.float32)
    ok = np.isfinite(x)
    if not ok.all():
        x = np.where(ok, x, x[ok].min() if ok.any() else 0.0)
    lo, hi = float(x.min()) if x.size else 0.0, float(x.max()) if x.size else 0.0
    return (x - lo) / (hi - lo) if hi > lo else np.zeros_like(x)


def sub_beat_features(cqt: np.ndarray, bounds: np.ndarray, sub_beats: int) -> np.ndarray:
    """(n_beats * sub_beats, d): each beat interval split in sub_beats equal parts, frames averaged in each."""
    x = np.asarray(cqt, dtype=np.float32)
    n = len(x)
    starts, ends = bounds[:-1].astype(np.float64), bounds[1:].astype(np.float64)
    frac = np.arange(sub_beats + 1) / sub_beats
    edges = np.round(starts[:, None] + (ends - starts)[:, None] * frac[None, :]).astype(np.int64)
    a, b = edges[:, :-1].ravel(), edges[:, 1:].ravel()
    a = np.clip(a, 0, max(n - 1, 0))
    b = np.clip(np.maximum(b, a + 1), 1, n)
    a = np.minimum(a, b - 1)
    positions, where = np.unique(np.concatenate([a, b]), return_inverse=True)
    csum = prefix_sums(x, positions)
    return ((csum[where[len(a):]] - csum[where[:len(a)]]) / (b - a)[:, None]).astype(np.float32)


#: Rows converted to float64 at a time by ``prefix_sums``.
PREFIX_BLOCK = 1 << 15


def prefix_sums(x: np.ndarray, positions: np.ndarray, block: int = PREFIX_BLOCK) -> np.ndarray:
    """Float64 sums of the first ``positions`` rows of x (n, d): (len(positions), d), positions sorted in [0, n].

    The same values as ``np.cumsum(x, axis=0, dtype=np.float64)`` (with a row of zeros first) at those rows,
    computed a block of rows at a time, the running sum carried: no float64 copy of a long track is held.
    """
    out = np.zeros((len(positions), x.shape[1]), np.float64)
    carry = np.zeros((1, x.shape[1]), np.float64)
    for start in range(0, len(x), block):
        sums = np.cumsum(np.concatenate([carry, x[start:start + block].astype(np.float64)]), axis=0)
        inside = (positions >= start) & (positions <= start + block)
        out[inside] = sums[positions[inside] - start]
        carry = sums[-1:]
    return out


def patch_index(n_beats: int, config: EmbeddingConfig) -> np.ndarray:
    """(n_beats, context * sub) row indices into the sub-beat sequence padded by pad_rows() on each side."""
    span = config.context_beats * config.sub_beats
    return np.arange(n_beats)[:, None] * config.sub_beats + np.arange(span)[None, :]


def pad_rows(config: EmbeddingConfig) -> int:
    return (config.context_beats // 2) * config.sub_beats


def padded_sub_beats(cqt: np.ndarray, frame_times: np.ndarray, beat_times: np.ndarray | None,
                     config: EmbeddingConfig) -> tuple[np.ndarray, np.ndarray]:
    """(padded sub-beat features, beat bounds): the model's input sequence of one track."""
    bounds = beat_bounds(len(cqt), frame_times, beat_times)
    seq = sub_beat_features(normalise_cqt(cqt), bounds, config.sub_beats)
    pad = pad_rows(config)
    return np.pad(seq, ((pad, pad), (0, 0)), mode="edge"), bounds


# --------------------------------------------------------------------------------------------- inference


@functools.lru_cache(maxsize=4)
def load_segment_model(path: str | Path = DEFAULT_WEIGHTS) -> SegmentEmbeddingNet:
    """The shipped (or given) embedding network, in eval mode."""
    state = torch.load(str(path), map_location="cpu", weights_only=True)
    model = SegmentEmbeddingNet(EmbeddingConfig(**state["config"]))
    model.load_state_dict(state["state_dict"])
    return model.eval()


@functools.lru_cache(maxsize=4)
def _compiled_segment_model(path: str | Path = DEFAULT_WEIGHTS) -> nn.Module:
    """``load_segment_model(path)`` compiled for inference (``encoders.codes.learned.for_inference``)."""
    return for_inference(load_segment_model(path))


def embed_beats(cqt: np.ndarray, beat_times: np.ndarray | None, model: SegmentEmbeddingNet | None = None, *,
                frame_times: np.ndarray | None = None, batch: int = 1024) -> tuple[np.ndarray, np.ndarray]:
    """Per-beat embeddings of a track: (n_beats, dim) float32 and each beat's start time (s).

    cqt: (n_frames, 48) log-CQT (encoders.features.log_cqt; other log scales are min-max scaled);
    frame_times default to the pipeline's frame rate. The beat grid is ``grid.beat_bounds``'s, as for
    ``laplacian.beat_sync``: the rows line up with the baseline's beat features.
    """
    net = _compiled_segment_model() if model is None else model  # the shipped weights run compiled
    model = load_segment_model() if model is None else model
    cfg = model.config
    times = np.arange(len(cqt)) / FRAME_RATE if frame_times is None else np.asarray(frame_times, np.float64)
    if len(cqt) == 0:
        return np.empty((0, cfg.dim), np.float32), np.empty(0)
    seq, bounds = padded_sub_beats(cqt, times, beat_times, cfg)
    idx = patch_index(len(bounds) - 1, cfg)
    out = []
    was_training = model.training
    model.eval()
    with torch.no_grad():
        for s in range(0, len(idx), batch):
            out.append(net(torch.from_numpy(seq[idx[s:s + batch]])).numpy())
    model.train(was_training)
    return np.concatenate(out).astype(np.float32), times[bounds[:-1]]


def save_segment_model(model: SegmentEmbeddingNet, path: str | Path) -> None:
    """Write the network's weights and its EmbeddingConfig to ``path``, as ``load_segment_model`` reads them."""
    path = Path(path)
    path.parent.mkdir(parents=True, exist_ok=True)
    state = {k: v.detach().clone() for k, v in model.state_dict().items()}
    torch.save({"config": asdict(model.config), "state_dict": state}, str(path))


__all__ = ["DEFAULT_WEIGHTS", "EmbeddingConfig", "SegmentEmbeddingNet", "embed_beats", "load_segment_model",
           "padded_sub_beats", "save_segment_model"]
