"""Learned cross-modal hash encoders (Raffel & Ellis, ISMIR 2015; Raffel's thesis, 2016, ch. 5-6).

One network per modality maps log-CQT frames to a 32-bit code per 8 frames: groups of 3x3 convolutions
with max-pooling over time only (8x downsampling), dense layers, tanh outputs thresholded at 0. A
sequence-level head pools each modality's frame embeddings with attention (Raffel & Ellis's pruning
sequence embedding, ICASSP 2016) into one 256-bit code per track, for the first pruning stage.
"""

from __future__ import annotations

import copy
from dataclasses import dataclass, field
from pathlib import Path

import numpy as np
import torch
from torch import nn

from encoders.codes.bits import DOWNSAMPLE, FRAME_BITS, TRACK_BITS, code_windows, pack_uint32, pad_frames
from encoders.features import N_BINS

MODALITIES = ("audio", "midi")
WEIGHTS_DIR = Path(__file__).resolve().parents[1] / "weights"
V4_WEIGHTS = WEIGHTS_DIR / "learned-hash-v4.pt"  # ``mirmatch train``'s recipe; v5 is fine-tuned from it
DEFAULT_WEIGHTS = WEIGHTS_DIR / "learned-hash-v5.pt"  # ``mirmatch train --realistic``
EMBED_CHUNK_FRAMES = 8192  # frames per forward pass of the frame encoders (a multiple of DOWNSAMPLE)
EMBED_CONTEXT_FRAMES = 64  # frames of context on each side of a chunk (a multiple of DOWNSAMPLE)


def standardise_cqt(cqt: np.ndarray) -> np.ndarray:
    """Per-bin z-score over the whole track: removes level and much of the timbre of each pitch."""
    cqt = np.asarray(cqt, dtype=np.float32)
    return (cqt - cqt.mean(axis=0)) / (cqt.std(axis=0) + 1e-3)


class FrameEncoder(nn.Module):
    """(batch, frames, 48) standardised CQT -> (batch, frames / 8, hidden) embeddings and tanh codes."""

    def __init__(self, channels: tuple[int, ...] = (16, 32, 32), hidden: int = 128, bits: int = FRAME_BITS):
        super().__init__()
        layers, c_in = [], 1
        for c in channels:  # three pools of 2 over time: 8x downsampling, frequency kept
            layers += [nn.Conv2d(c_in, c, 3, padding=1), nn.ReLU(), nn.Conv2d(c, c, 3, padding=1), nn.ReLU(),
                       nn.MaxPool2d((2, 1))]
            c_in = c
        self.conv = nn.Sequential(*layers)
        self.dense = nn.Sequential(nn.Linear(c_in * N_BINS, hidden), nn.ReLU(), nn.Linear(hidden, hidden), nn.ReLU())
        self.out = nn.Linear(hidden, bits)

    def init_he(self) -> None:
        """He (Kaiming) initialisation of the ReLU layers, Glorot of the tanh output, zero biases. With
        torch's default (which shrinks the signal at each of the 8 layers) the codes start out nearly the
        same for every input, and training can sit for hundreds of steps on a collapsed solution."""
        for module in self.modules():
            if isinstance(module, nn.Conv2d | nn.Linear):
                if module is self.out:
                    nn.init.xavier_uniform_(module.weight)
                else:
                    nn.init.kaiming_normal_(module.weight, nonlinearity="relu")
                nn.init.zeros_(module.bias)

    def forward(self, x: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
        h = self.conv(x.unsqueeze(1))  # (b, c, t / 8, 48)
        h = h.permute(0, 2, 1, 3).flatten(2)  # (b, t / 8, c * 48)
        h = self.dense(h)
        return h, torch.tanh(self.out(h))


class SequenceEncoder(nn.Module):
    """Attention pooling of a track's soft frame codes -> one tanh code per sequence (batch, 256).

    The frame codes are what the two modalities share (the contrastive loss made them agree); pooling
    them with attention weights, as first and second moments, keeps that invariance for the whole track.
    ``lags`` (in codes of 8 frames) add lagged second moments, E[c_t c_{t+lag}^T]: how the codes follow
    one another, which tells apart pieces that use the same chords in a different order. ``whiten`` > 0:
    the standardised moments are first projected on their ``whiten`` principal axes (estimated on the
    training tracks of both modalities), scaled by 1 / sqrt(singular value), so that the random projection
    does not spend its bits on a few correlated directions.
    """

    def __init__(self, code_bits: int = FRAME_BITS, bits: int = TRACK_BITS, attention: int = 32,
                 lags: tuple[int, ...] = (), whiten: int = 0):
        super().__init__()
        self.lags = tuple(int(lag) for lag in lags)
        self.score = nn.Sequential(nn.Linear(code_bits, attention), nn.Tanh(), nn.Linear(attention, 1))
        self.register_buffer("upper", torch.triu_indices(code_bits, code_bits), persistent=False)
        n_pooled = code_bits + self.upper.shape[1] + len(self.lags) * code_bits**2
        # Binarisation: pooled moments, centred and scaled with training statistics, then a fixed random
        # projection (sign-random-projection LSH of the pooled moments). A learned projection over-fitted
        # the ~80 training pieces (held-out stage-1 MRR 0.52 against 0.75 with this one).
        self.register_buffer("center", torch.zeros(n_pooled))
        self.register_buffer("scale", torch.ones(n_pooled))
        self.whiten = int(whiten)
        n_projected = self.whiten or n_pooled
        if self.whiten:
            self.register_buffer("whitening", torch.zeros(n_pooled, self.whiten))
        generator = torch.Generator().manual_seed(0)
        self.register_buffer("projection", torch.randn(n_projected, bits, generator=generator) / n_projected**0.5)

    def _moments(self, codes: torch.Tensor, weights: torch.Tensor, mask: torch.Tensor | None) -> torch.Tensor:
        """(b, s, d) codes, (b, s) weights summing to 1 -> (b, n_pooled) weighted moments."""
        mean = torch.einsum("bs,bsi->bi", weights, codes)
        second = torch.einsum("bs,bsi,bsj->bij", weights, codes, codes)
        pooled = [mean, second[:, self.upper[0], self.upper[1]]]
        for lag in self.lags:
            if codes.shape[1] <= lag:  # too short to have a successor at this lag
                pooled.append(codes.new_zeros(len(codes), codes.shape[2] ** 2))
                continue
            w = weights[:, :-lag]
            if mask is not None:
                w = w * mask[:, lag:]
            w = w / w.sum(1, keepdim=True).clamp(min=1e-12)
            pooled.append(torch.einsum("bs,bsi,bsj->bij", w, codes[:, :-lag], codes[:, lag:]).flatten(1))
        return torch.cat(pooled, dim=1)

    def forward(self, codes: torch.Tensor, mask: torch.Tensor | None = None) -> torch.Tensor:
        logits = self.score(codes).squeeze(-1)  # (b, s)
        if mask is not None:
            logits = logits.masked_fill(~mask, -1e9)
        pooled = (self._moments(codes, torch.softmax(logits, dim=1), mask) - self.center) / self.scale
        if self.whiten:
            pooled = pooled @ self.whitening
        return torch.tanh(pooled @ self.projection)

    def pooled_uniform(self, codes: torch.Tensor) -> torch.Tensor:
        """Moments with uniform weights: what ``center`` and ``scale`` are estimated from."""
        weights = codes.new_full(codes.shape[:2], 1.0 / codes.shape[1])
        return self._moments(codes, weights, None)


class HashNetworks(nn.Module):
    """A frame encoder and a sequence encoder per modality."""

    def __init__(self, hidden: int = 128, sequence_lags: tuple[int, ...] = (), sequence_whiten: int = 0):
        super().__init__()
        self.hidden = hidden
        self.sequence_lags = tuple(sequence_lags)
        self.sequence_whiten = int(sequence_whiten)
        self.frame = nn.ModuleDict({m: FrameEncoder(hidden=hidden) for m in MODALITIES})
        self.sequence = nn.ModuleDict({m: SequenceEncoder(lags=self.sequence_lags, whiten=self.sequence_whiten)
                                       for m in MODALITIES})


def inference_device() -> torch.device:
    """CUDA when torch sees one (with TF32 off), else the CPU: where the encoders run their forward passes."""
    if not torch.cuda.is_available():
        return torch.device("cpu")
    # Full fp32 convolutions and products, as on the CPU: with TF32 (cuDNN's default for convolutions)
    # about 1 track-code bit in 1000 came out different from the CPU's.
    torch.backends.cudnn.allow_tf32 = False
    torch.backends.cuda.matmul.allow_tf32 = False
    return torch.device("cuda")


def for_inference(model: nn.Module) -> nn.Module:
    """``model`` compiled for inference on the CPU: TorchScript, frozen, each convolution fused with its batch
    norm and ReLU and run in oneDNN's layout (``torch.jit.optimize_for_inference``). 3-4 times faster on one
    core for the frame and segment encoders, with the same outputs to float rounding (about 1e-6); the
    model is copied, not changed. On a GPU the model itself (eval mode)."""
    if next(model.parameters()).device.type != "cpu":
        return model.eval()
    return torch.jit.optimize_for_inference(torch.jit.script(copy.deepcopy(model).eval()))


@dataclass
class LearnedHasher:
    """Codes from the trained networks; same interface as ``encoders.codes.baseline.RandomProjectionHasher``.

    Inference runs on the GPU when there is one; each track is one batched forward pass over all its
    frames (the networks are convolutional in time). On the CPU the frame encoders run compiled
    (``for_inference``, on first use: later changes to ``nets`` are not seen).
    """

    weights: str | Path = DEFAULT_WEIGHTS
    windows: bool = False  # ``all_codes`` also gives the codes of 30-second windows (``--model ...+windows``)
    name: str = field(init=False)
    nets: HashNetworks = field(init=False, repr=False)
    device: torch.device = field(init=False, repr=False)
    _compiled: dict = field(init=False, repr=False, default_factory=dict)

    def __post_init__(self) -> None:
        path = Path(self.weights)
        if not path.is_file():
            raise FileNotFoundError(f"hash model weights not found at {path}; run `mirmatch train` or pass "
                                    f"--model random-projection")
        state = torch.load(path, map_location="cpu", weights_only=True)
        self.nets = HashNetworks(hidden=int(state["hidden"]), sequence_lags=tuple(state.get("sequence_lags", ())),
                                 sequence_whiten=int(state.get("sequence_whiten", 0)))
        self.nets.load_state_dict(state["state_dict"])
        self.nets.eval()
        self.device = inference_device()
        if self.device.type == "cpu":
            # Beam runs one worker per core: more torch threads per worker only oversubscribe the cores
            # (several times slower under load), and one thread gives the same codes on any machine.
            torch.set_num_threads(1)
        self.nets.to(self.device)
        self.name = f"learned:{path.stem}"

    def _embed(self, cqt: np.ndarray, modality: str) -> tuple[torch.Tensor, torch.Tensor]:
        if modality not in MODALITIES:
            raise ValueError(f"modality must be one of {MODALITIES}, got {modality!r}")
        padded = pad_frames(standardise_cqt(cqt), min_codes=1)
        if modality not in self._compiled:
            self._compiled[modality] = for_inference(self.nets.frame[modality])
        net = self._compiled[modality]
        with torch.inference_mode():
            if len(padded) <= EMBED_CHUNK_FRAMES:
                return net(torch.from_numpy(padded).unsqueeze(0).to(self.device))
            # Long tracks: chunks with enough context on each side that their codes equal a single pass's
            # (the receptive field is ~22 frames), so memory stays bounded whatever the length.
            hs, codes = [], []
            for start in range(0, len(padded), EMBED_CHUNK_FRAMES):
                lo, end = max(0, start - EMBED_CONTEXT_FRAMES), min(len(padded), start + EMBED_CHUNK_FRAMES)
                h, c = net(torch.from_numpy(padded[lo:min(len(padded), end + EMBED_CONTEXT_FRAMES)])
                           .unsqueeze(0).to(self.device))
                first = (start - lo) // DOWNSAMPLE
                hs.append(h[:, first:first + (end - start) // DOWNSAMPLE])
                codes.append(c[:, first:first + (end - start) // DOWNSAMPLE])
            return torch.cat(hs, 1), torch.cat(codes, 1)

    def frame_codes(self, cqt: np.ndarray, modality: str = "audio") -> np.ndarray:
        """(n_frames, 48) log-CQT -> (ceil(n_frames / 8),) uint32 codes."""
        _, codes = self._embed(cqt, modality)
        return pack_uint32(codes[0].cpu().numpy() > 0)

    def track_code(self, cqt: np.ndarray, modality: str = "audio") -> np.ndarray:
        """(n_frames, 48) log-CQT -> (32,) uint8, a 256-bit code of the whole track."""
        _, codes = self._embed(cqt, modality)
        with torch.inference_mode():
            code = self.nets.sequence[modality](codes)
        return np.packbits(code[0].cpu().numpy() > 0)

    def codes(self, cqt: np.ndarray, modality: str = "audio") -> tuple[np.ndarray, np.ndarray]:
        """(frame codes, track code) from one forward pass."""
        _, codes = self._embed(cqt, modality)
        with torch.inference_mode():
            track = self.nets.sequence[modality](codes)
        return pack_uint32(codes[0].cpu().numpy() > 0), np.packbits(track[0].cpu().numpy() > 0)

    def all_codes(self, cqt: np.ndarray, modality: str = "audio") -> tuple[np.ndarray, np.ndarray, np.ndarray]:
        """(frame codes (n,) uint32, track code (32,) uint8, window codes (w, 32) uint8) from one forward pass
        of the frame encoder; the window codes pool the frame codes of each window of ``bits.code_windows``
        (none for a track shorter than about 37 s, or when ``windows`` is off), in one batched pass of the
        sequence encoder."""
        _, codes = self._embed(cqt, modality)
        windows = code_windows(codes.shape[1]) if self.windows else []
        with torch.inference_mode():
            track = self.nets.sequence[modality](codes)
            if windows:
                stacked = torch.cat([codes[:, s:e] for s, e in windows])
                window = np.packbits(self.nets.sequence[modality](stacked).cpu().numpy() > 0, axis=1)
            else:
                window = np.zeros((0, TRACK_BITS // 8), np.uint8)
        return pack_uint32(codes[0].cpu().numpy() > 0), np.packbits(track[0].cpu().numpy() > 0), window

