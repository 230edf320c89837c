"""Learned key-invariant version embeddings (after Doras & Peeters 2019): a chroma CNN trained with triplets.

Input: beat-synchronous chroma (two steps per beat, per-step max-normalised), as a one-channel image of 12
pitch classes by time. Convolutions wrap around the pitch-class axis (circular padding) and never stride
along it, so every feature map is equivariant to transposition (a circular shift of the input shifts the
maps); the maximum over the pitch-class axis then makes the embedding exactly invariant to key. Masked
mean and max pooling over time give one L2-normalised vector per track, whatever its length.
"""

from __future__ import annotations

import functools
from pathlib import Path

import numpy as np
import torch
from torch import nn
from torch.nn import functional as F

from encoders.cover import beat_chroma

STEPS_PER_BEAT = 2
DEFAULT_WEIGHTS = Path(__file__).parent / "weights" / "cover-embedding-v1.pt"
MIN_STEPS = 8
TEMPO_VIEWS = (1.0, 1.5, 2.0 / 3.0)  # beat-period ratios averaged by cover_embedding
CANONICAL_BEAT_S = 0.5  # beats are brought into [0.5, 1.0) s (60-120 per minute)


def subdivide(beat_times: np.ndarray | None, steps: int = STEPS_PER_BEAT) -> np.ndarray | None:
    """Beat times with ``steps - 1`` evenly spaced times inserted between consecutive beats."""
    if beat_times is None or len(beat_times) < 2 or steps == 1:
        return beat_times
    b = np.asarray(beat_times, dtype=np.float64)
    frac = np.arange(steps) / steps
    inner = (b[:-1, None] + np.diff(b)[:, None] * frac[None, :]).ravel()
    return np.concatenate([inner, b[-1:]])


def canonical_beats(beat_times: np.ndarray | None, shortest_s: float = CANONICAL_BEAT_S) -> np.ndarray | None:
    """Beats in one tempo octave: every other beat while the median beat is shorter than ``shortest_s``,
    beats split in two while it is ``2 * shortest_s`` or longer (beat trackers often double a tempo)."""
    if beat_times is None or len(beat_times) < 4:
        return beat_times
    b = np.asarray(beat_times, dtype=np.float64)
    period = float(np.median(np.diff(b)))
    while period < shortest_s and len(b) >= 8:
        b, period = b[::2], 2 * period
    while period >= 2 * shortest_s:
        b, period = subdivide(b, 2), period / 2
    return b


def scaled_beats(beat_times: np.ndarray | None, ratio: float) -> np.ndarray | None:
    """Beat times at ``ratio`` times the beat period (1.5: every one and a half beats), interpolated."""
    if beat_times is None or len(beat_times) < 4 or ratio == 1.0:
        return beat_times
    b = np.asarray(beat_times, dtype=np.float64)
    return np.interp(np.arange(0.0, len(b) - 1 + 1e-9, ratio), np.arange(len(b)), b)


def beat_steps(chroma: np.ndarray, frame_rate: float, beat_times: np.ndarray | None) -> np.ndarray:
    """(n_frames, 12) chroma -> (n_steps, 12) float32 sub-beat chroma (tempo octave canonicalised), each
    step max-normalised."""
    steps = beat_chroma(np.asarray(chroma, dtype=np.float32), frame_rate, subdivide(canonical_beats(beat_times)))
    steps = steps / (steps.max(axis=1, keepdims=True) + 1e-6)
    if len(steps) < MIN_STEPS:
        steps = np.concatenate([steps, np.zeros((MIN_STEPS - len(steps), 12), np.float32)])
    return steps.astype(np.float32)


class _Block(nn.Module):
    """Conv over (pitch class, time): circular along pitch class, zero-padded along time; optional time pool."""

    def __init__(self, c_in: int, c_out: int, pool: bool):
        super().__init__()
        self.conv = nn.Conv2d(c_in, c_out, kernel_size=(3, 5), padding=(0, 2))
        self.norm = nn.LayerNorm(c_out)  # over channels at each position: padding cannot change a track's result
        self.pool = pool

    def forward(self, x: torch.Tensor, mask: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
        x = torch.cat([x[:, :, -1:], x, x[:, :, :1]], dim=2) * mask[:, None, None, :]
        x = F.relu(self.norm(self.conv(x).permute(0, 2, 3, 1)).permute(0, 3, 1, 2)) * mask[:, None, None, :]
        if self.pool:
            x = F.max_pool2d(x, kernel_size=(1, 2), ceil_mode=True)
            mask = F.max_pool1d(mask[:, None], 2, ceil_mode=True)[:, 0]
        return x, mask


class CoverNet(nn.Module):
    """(batch, time, 12) step chroma + (batch, time) mask -> (batch, dim) L2-normalised embeddings."""

    def __init__(self, channels: tuple[int, ...] = (16, 32, 64, 96), dim: int = 128):
        super().__init__()
        self.config = {"channels": list(channels), "dim": dim}
        ins = (1, *channels[:-1])
        self.blocks = nn.ModuleList(_Block(a, b, pool=i < len(channels) - 1)
                                    for i, (a, b) in enumerate(zip(ins, channels, strict=True)))
        self.head = nn.Linear(2 * channels[-1], dim)

    def forward(self, x: torch.Tensor, mask: torch.Tensor | None = None) -> torch.Tensor:
        if mask is None:
            mask = torch.ones(x.shape[:2], dtype=x.dtype, device=x.device)
        h = x.transpose(1, 2)[:, None]  # (B, 1, 12, T)
        for block in self.blocks:
            h, mask = block(h, mask)
        h = h.amax(dim=2)  # max over pitch classes: invariant to circular shifts (key)
        w = mask[:, None]
        mean = (h * w).sum(-1) / w.sum(-1).clamp_min(1.0)
        peak = h.masked_fill(w == 0, -1e4).amax(-1)
        return F.normalize(self.head(torch.cat([mean, peak], dim=1)), dim=1)


def device() -> torch.device:
    """CUDA when torch sees one, else CPU."""
    return torch.device("cuda" if torch.cuda.is_available() else "cpu")


def save_model(model: CoverNet, path: str | Path, meta: dict | None = None) -> None:
    """Write weights plus the architecture config (and training metadata) to ``path``."""
    Path(path).parent.mkdir(parents=True, exist_ok=True)
    state = {k: v.detach().cpu() for k, v in model.state_dict().items()}
    torch.save({"config": model.config, "state_dict": state, "meta": meta or {}}, path)


@functools.lru_cache(maxsize=4)
def load_model(path: str | Path = DEFAULT_WEIGHTS) -> CoverNet:
    """The network stored at ``path``, in eval mode on ``device()`` (cached per path)."""
    blob = torch.load(path, map_location="cpu", weights_only=True)
    cfg = blob["config"]
    model = CoverNet(tuple(cfg["channels"]), cfg["dim"])
    model.load_state_dict(blob["state_dict"])
    return model.eval().to(device())


def embed_steps(model: CoverNet, steps: list[np.ndarray], batch: int = 64) -> np.ndarray:
    """Embed several (n_steps, 12) step-chroma arrays; returns (n, dim) float32."""
    out = []
    dev = next(model.parameters()).device
    with torch.no_grad():
        for i in range(0, len(steps), batch):
            chunk = steps[i:i + batch]
            length = max(len(s) for s in chunk)
            x = np.zeros((len(chunk), length, 12), np.float32)
            m = np.zeros((len(chunk), length), np.float32)
            for j, s in enumerate(chunk):
                x[j, :len(s)], m[j, :len(s)] = s, 1.0
            out.append(model(torch.from_numpy(x).to(dev), torch.from_numpy(m).to(dev)).cpu().numpy())
    return np.concatenate(out).astype(np.float32) if out else np.zeros((0, model.config["dim"]), np.float32)


def cover_embedding(chroma: np.ndarray, frame_rate: float, beat_times: np.ndarray | None = None,
                    weights: str | Path = DEFAULT_WEIGHTS) -> np.ndarray:
    """(n_frames, 12) chroma and beat times -> L2-normalised, key-invariant (dim,) version embedding.

    The mean of the embeddings at the given beat period and at 3/2 and 2/3 of it: beat trackers often
    lock to a dotted or a triplet level, and two of three views then still agree.
    """
    views = [beat_steps(chroma, frame_rate, scaled_beats(beat_times, r)) for r in TEMPO_VIEWS]
    mean = embed_steps(load_model(weights), views).mean(axis=0)
    return (mean / (np.linalg.norm(mean) + 1e-9)).astype(np.float32)
