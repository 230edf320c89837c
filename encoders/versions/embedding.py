"""Learned key-invariant version embeddings (after Doras & Peeters 2019): chroma CNNs trained with triplets.

Two networks of the same architecture, whose embeddings are concatenated (an ensemble of two inputs):
* "beat": beat-synchronous chroma (two steps per beat, tempo octave canonicalised, 3 tempo views);
* "fixed": chroma at a fixed hop (FIXED_HOP_S), trained with time stretches of 0.5-2x, so it does not depend
  on the beat tracker (3 stretch views).
Each input is per-step max-normalised, a one-channel image of 12 pitch classes by time. Convolutions wrap
around the pitch-class axis (circular padding) and never stride along it, so every feature map is
equivariant to transposition (a circular shift of the input shifts the maps); the maximum over the
pitch-class axis then makes the embedding exactly invariant to key. Masked mean and max pooling over time
give one L2-normalised vector per track, whatever its length. The inputs come from ``encoders.versions.chroma``.
"""

from __future__ import annotations

import functools
from pathlib import Path

import numpy as np
import torch
from torch import nn
from torch.nn import functional as F

from encoders.codes.learned import inference_device
from encoders.versions.chroma import FIXED_HOP_S, beat_steps, fixed_steps, scaled_beats

DEFAULT_WEIGHTS = Path(__file__).resolve().parents[1] / "weights" / "cover-embedding-v2.pt"
TEMPO_VIEWS = (1.0, 1.5, 2.0 / 3.0)  # beat-period ratios averaged by cover_embedding
FIXED_STRETCHES = (1.0, 1.5, 2.0 / 3.0)  # hop multipliers averaged by cover_embedding for the fixed-rate net
INPUTS = ("beat", "fixed")


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
        h, mask = self.feature_map(x, mask)
        return self.embed(*self.pooled_stats(h, mask))

    def feature_map(self, x: torch.Tensor, mask: torch.Tensor | None = None) -> tuple[torch.Tensor, torch.Tensor]:
        """(B, T, 12) inputs and (B, T) mask -> (B, C, ceil(T / 8)) key-invariant features and their mask."""
        if mask is None:
            mask = torch.ones(x.shape[:2], dtype=x.dtype, device=x.device)
        h = x.transpose(1, 2)[:, None]  # (B, 1, 12, T)
        for block in self.blocks:
            h, mask = block(h, mask)
        return h.amax(dim=2), mask  # max over pitch classes: invariant to circular shifts (key)

    @staticmethod
    def pooled_stats(h: torch.Tensor, mask: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor, torch.Tensor]:
        """Masked sum over time, weight and maximum of a feature map: (B, C), (B, 1), (B, C)."""
        w = mask[:, None]
        return (h * w).sum(-1), w.sum(-1), h.masked_fill(w == 0, -1e4).amax(-1)

    def embed(self, total: torch.Tensor, weight: torch.Tensor, peak: torch.Tensor) -> torch.Tensor:
        """The L2-normalised embedding from ``pooled_stats`` (of one pass, or summed and maxed over chunks)."""
        mean = total / weight.clamp_min(1.0)
        return F.normalize(self.head(torch.cat([mean, peak], dim=1)), dim=1)


def device() -> torch.device:
    """CUDA when torch sees one (full fp32, as the hash encoders run), else CPU."""
    return inference_device()


def save_models(models: dict[str, CoverNet], path: str | Path, meta: dict | None = None) -> None:
    """Write each input's network (weights plus architecture config) and training metadata to ``path``."""
    Path(path).parent.mkdir(parents=True, exist_ok=True)
    nets = {name: {"config": m.config, "state_dict": {k: v.detach().cpu() for k, v in m.state_dict().items()}}
            for name, m in models.items()}
    torch.save({"nets": nets, "meta": meta or {}}, path)


@functools.lru_cache(maxsize=4)
def load_models(path: str | Path = DEFAULT_WEIGHTS) -> dict[str, CoverNet]:
    """The networks stored at ``path`` by input name, in eval mode on ``device()`` (cached per path)."""
    blob = torch.load(path, map_location="cpu", weights_only=True)
    out = {}
    for name, net in blob["nets"].items():
        model = CoverNet(tuple(net["config"]["channels"]), net["config"]["dim"])
        model.load_state_dict(net["state_dict"])
        out[name] = model.eval().to(device())
    return out


def load_model(path: str | Path = DEFAULT_WEIGHTS, name: str = "beat") -> CoverNet:
    """One network (``name``: 'beat' or 'fixed') of the file at ``path``."""
    return load_models(path)[name]


def pad_steps(steps: list[np.ndarray]) -> tuple[np.ndarray, np.ndarray]:
    """Several (n_steps, 12) step-chroma arrays as one zero-padded batch: (b, longest, 12) float32 inputs and
    the (b, longest) float32 mask (1 on real steps) that ``CoverNet`` takes."""
    length = max(len(s) for s in steps)
    x = np.zeros((len(steps), length, 12), np.float32)
    m = np.zeros((len(steps), length), np.float32)
    for j, s in enumerate(steps):
        x[j, :len(s)], m[j, :len(s)] = s, 1.0
    return x, m


def embed_steps(model: CoverNet, steps: list[np.ndarray], batch: int = 64) -> np.ndarray:
    """Embed several (n_steps, 12) step-chroma arrays; returns (n, dim) float32."""
    out = []
    dev = next(model.parameters()).device
    with torch.no_grad():
        for i in range(0, len(steps), batch):
            x, m = pad_steps(steps[i:i + batch])
            out.append(model(torch.from_numpy(x).to(dev), torch.from_numpy(m).to(dev)).cpu().numpy())
    return np.concatenate(out).astype(np.float32) if out else np.zeros((0, model.config["dim"]), np.float32)


#: Longer step sequences are embedded in chunks (``embed_long``): memory stays bounded whatever the length.
CHUNK_STEPS = 8192
#: Steps of context on each side of a chunk: more than the half receptive field of the network (34 steps),
#: a multiple of its time downsampling (8), so that a chunk's features equal those of one pass.
CONTEXT_STEPS = 64
DOWNSAMPLE = 8


def embed_long(model: CoverNet, steps: np.ndarray, chunk: int = CHUNK_STEPS, context: int = CONTEXT_STEPS
               ) -> np.ndarray:
    """Embed one (n_steps, 12) step-chroma sequence chunk by chunk: (dim,) float32, the same as
    ``embed_steps(model, [steps])[0]`` to float rounding, holding only a chunk's feature maps at a time (a
    3-hour recording's fixed-rate view in one pass needs about 1 GB)."""
    dev = next(model.parameters()).device
    total = weight = peak = None
    with torch.no_grad():
        for start in range(0, len(steps), chunk):
            lo, end = max(0, start - context), min(len(steps), start + chunk)
            x = torch.from_numpy(np.ascontiguousarray(steps[lo:min(len(steps), end + context)], np.float32))
            h, mask = model.feature_map(x[None].to(dev))
            first = (start - lo) // DOWNSAMPLE
            n = -(-(end - start) // DOWNSAMPLE)
            s, w, p = model.pooled_stats(h[..., first:first + n], mask[:, first:first + n])
            total, weight = (s, w) if total is None else (total + s, weight + w)
            peak = p if peak is None else torch.maximum(peak, p)
        return model.embed(total, weight, peak)[0].cpu().numpy().astype(np.float32)


def input_views(name: str, chroma: np.ndarray, frame_rate: float, beat_times: np.ndarray | None) -> list[np.ndarray]:
    """The step-chroma views one network sees of a track: TEMPO_VIEWS of the beats, or FIXED_STRETCHES of the hop."""
    if name == "fixed":
        return [fixed_steps(chroma, frame_rate, FIXED_HOP_S * r) for r in FIXED_STRETCHES]
    return [beat_steps(chroma, frame_rate, scaled_beats(beat_times, r)) for r in TEMPO_VIEWS]


def combine(parts: list[np.ndarray]) -> np.ndarray:
    """Concatenate per-network (n, dim) embeddings, each L2-normalised and weighted equally; unit-norm rows."""
    unit = [p / (np.linalg.norm(p, axis=-1, keepdims=True) + 1e-9) for p in parts]
    return (np.concatenate(unit, axis=-1) / np.sqrt(len(unit))).astype(np.float32)


def cover_embedding(chroma: np.ndarray, frame_rate: float, beat_times: np.ndarray | None = None,
                    weights: str | Path = DEFAULT_WEIGHTS) -> np.ndarray:
    """(n_frames, 12) chroma and beat times -> L2-normalised, key-invariant version embedding.

    Per network, the mean of the embeddings of its views (beat periods x 1, 3/2, 2/3: trackers often lock to
    a dotted or triplet level; fixed hops x 1, 3/2, 2/3), then the networks' vectors concatenated.
    """
    parts = []
    for name, model in load_models(weights).items():
        views = input_views(name, chroma, frame_rate, beat_times)
        if max(len(v) for v in views) <= CHUNK_STEPS:
            parts.append(embed_steps(model, views).mean(axis=0))
        else:  # long recordings: one view at a time, in chunks
            parts.append(np.mean([embed_long(model, v) for v in views], axis=0))
    return combine(parts)
