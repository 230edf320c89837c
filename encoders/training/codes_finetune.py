"""Fine-tuning the learned hash encoders towards real recordings (issue 16; ``mirmatch train --realistic``).

Starts from earlier weights (learned-hash-v4 by default) and continues both phases of ``training.codes`` on
``training.realistic_data``'s pairs: the audio side rendered with ``corrupt.realistic_rendering`` over real
recordings of the FIT packages, the MIDI side an imperfect MIDI file. Phase 1 fine-tunes the two frame encoders
(contrastive loss on aligned windows, at ``frame_lr``, no warm-up); phase 2 re-estimates the sequence encoders'
moment statistics and whitening on the new frame codes and fine-tunes their attention on (audio clip, whole
MIDI) pairs. Deterministic for a given seed (one CPU thread, deterministic algorithms).
"""

from __future__ import annotations

import json
import time
from dataclasses import asdict, dataclass, fields
from pathlib import Path

import numpy as np
import torch

from encoders.codes.learned import V4_WEIGHTS, WEIGHTS_DIR, HashNetworks
from encoders.training.codes import TrainConfig, standardised_pairs, train_frames, train_sequences
from encoders.training.realistic_data import realistic_pairs

V5_WEIGHTS = WEIGHTS_DIR / "learned-hash-v5.pt"


@dataclass
class FinetuneConfig:
    base: str = str(V4_WEIGHTS)  # the weights fine-tuned
    seed: int = 0
    n_bach: int = 70  # Bach chorales of the training split rendered (one realistic rendering each)
    debian_versions: int = 2  # realistic renderings per Debian training piece
    max_duration_s: float = 60.0  # first seconds of each piece
    # Phase 1 steps (0: the base's frame encoders unchanged). 1200 rather than 600: validation excerpts' stage-2
    # MRR 0.923 vs 0.887, whole recordings' 0.930 vs 0.901 (v4: 0.760, 0.790).
    frame_steps: int = 1200
    frame_lr: float = 3e-4
    sequence_steps: int = 300  # phase 2 (0: the base's sequence encoders unchanged)
    sequence_lr: float = 3e-4
    sequence_clip: tuple[float, float] = (0.4, 1.0)  # audio clip's share of the recording in phase 2


def load_networks(path: str | Path) -> tuple[HashNetworks, TrainConfig]:
    """The networks saved at ``path`` and the training configuration in its .json."""
    state = torch.load(path, map_location="cpu", weights_only=True)
    nets = HashNetworks(hidden=state["hidden"], sequence_lags=tuple(state["sequence_lags"]),
                        sequence_whiten=state["sequence_whiten"])
    nets.load_state_dict(state["state_dict"])
    known = {f.name for f in fields(TrainConfig)}
    saved = json.loads(Path(path).with_suffix(".json").read_text())["config"]
    cfg = TrainConfig(**{k: tuple(v) if isinstance(v, list) else v for k, v in saved.items() if k in known})
    return nets, cfg


def finetune(out: str | Path = V5_WEIGHTS, ft: FinetuneConfig | None = None, log=print) -> Path:
    """Fine-tune ``ft.base`` on realistic pairs (rendered once, cached) and write the weights to ``out``."""
    ft = ft or FinetuneConfig()
    torch.manual_seed(ft.seed)
    torch.use_deterministic_algorithms(True)
    torch.set_num_threads(1)
    started = time.monotonic()
    nets, cfg = load_networks(ft.base)
    cfg.seed, cfg.lr, cfg.sequence_steps = ft.seed, ft.sequence_lr, ft.sequence_steps
    cfg.sequence_clip = ft.sequence_clip
    pairs = realistic_pairs(ft.n_bach, ft.debian_versions, ft.max_duration_s, ft.seed)
    data = standardised_pairs(pairs)
    log(f"fine-tuning {ft.base}: {len({p.name for p in pairs})} pieces, {len(pairs)} realistic renderings, "
        f"{sum(len(p.audio_cqt) for p in pairs)} audio frames")
    frame_losses: list[float] = []
    if ft.frame_steps:
        log(f"phase 1: frame encoders, {ft.frame_steps} steps at {ft.frame_lr}")
        frame_losses = train_frames(nets, data, cfg, np.random.default_rng([ft.seed, 11]), log, ft.frame_steps,
                                    ft.frame_lr)
    sequence_losses: list[float] = []
    if ft.sequence_steps:
        log(f"phase 2: sequence encoders, {ft.sequence_steps} steps at {ft.sequence_lr}")
        sequence_losses = train_sequences(nets, data, cfg, np.random.default_rng([ft.seed, 12]), log)
    out = Path(out)
    out.parent.mkdir(parents=True, exist_ok=True)
    state_dict = {k: v.detach().clone() for k, v in nets.state_dict().items()}
    if nets.sequence_whiten:
        state_dict["sequence.midi.whitening"] = state_dict["sequence.audio.whitening"]
    torch.save({"hidden": nets.hidden, "sequence_lags": list(nets.sequence_lags),
                "sequence_whiten": nets.sequence_whiten, "state_dict": state_dict}, out)
    meta = {"config": asdict(cfg), "finetune": asdict(ft), "pieces": len({p.name for p in pairs}),
            "renderings": len(pairs),
            "final_frame_loss": float(np.mean(frame_losses[-100:])) if frame_losses else None,
            "final_sequence_loss": float(np.mean(sequence_losses[-100:])) if sequence_losses else None,
            "seconds": round(time.monotonic() - started), "torch": torch.__version__}
    out.with_suffix(".json").write_text(json.dumps(meta, indent=1) + "\n")
    log(f"wrote {out} ({out.stat().st_size / 1e6:.1f} MB) in {meta['seconds']} s")
    return out
