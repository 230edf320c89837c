"""The CUDA paths of the torch encoders against their CPU paths, on a machine with a GPU.

Learned hash codes (frame and track codes) and the cover embedding, computed on CUDA and on the CPU from
the same inputs: agreement, and time per 3-minute track (batch of one, as the pipeline runs). Needs no
fluidsynth or audio files. Prints one line per figure:
    python tests/bench/gpu_check.py
"""

from __future__ import annotations

import sys
import time
from pathlib import Path

import numpy as np
import torch

sys.path.insert(0, str(Path(__file__).resolve().parents[2]))

from _common import report  # noqa: E402

from encoders.features import FRAME_RATE  # noqa: E402


def music_like(n_frames: int, width: int, rng: np.random.Generator) -> np.ndarray:
    """Non-negative features that change over tenths of a second, like a CQT or chroma."""
    from scipy.ndimage import gaussian_filter1d

    return gaussian_filter1d(rng.random((n_frames, width)), 3.0, axis=0).astype(np.float32)


def timed(fn, repeat: int = 5) -> tuple[object, float]:
    result, best = None, float("inf")
    for _ in range(repeat):
        if torch.cuda.is_available():
            torch.cuda.synchronize()
        started = time.perf_counter()
        result = fn()
        if torch.cuda.is_available():
            torch.cuda.synchronize()
        best = min(best, time.perf_counter() - started)
    return result, best


def main() -> None:
    if not torch.cuda.is_available():
        sys.exit("no CUDA device: nothing to check")
    import encoders.versions.embedding as embedding
    from encoders.codes.learned import LearnedHasher

    torch.set_num_threads(1)  # as the pipeline's CPU workers run
    rng = np.random.default_rng(0)
    report("device", 1.0, "", torch.cuda.get_device_name(0))
    n = int(180 * FRAME_RATE)
    tracks = [music_like(n, 48, rng) for _ in range(8)]

    gpu = LearnedHasher()
    cpu = LearnedHasher()
    cpu.nets.to("cpu")
    cpu.device = torch.device("cpu")
    assert gpu.device.type == "cuda", "the learned hasher did not pick the GPU"
    frame_differ = track_differ = frame_bits = track_bits = 0
    for cqt in tracks:
        for modality in ("audio", "midi"):
            (gf, gt), (cf, ct) = gpu.codes(cqt, modality), cpu.codes(cqt, modality)
            frame_differ += int((np.unpackbits(gf.view(np.uint8)) != np.unpackbits(cf.view(np.uint8))).sum())
            track_differ += int((np.unpackbits(gt) != np.unpackbits(ct)).sum())
            frame_bits, track_bits = frame_bits + gf.size * 32, track_bits + gt.size * 8
    report("hash codes: frame bits that differ on CUDA and CPU", frame_differ, "bits", f"of {frame_bits}")
    report("hash codes: track bits that differ on CUDA and CPU", track_differ, "bits", f"of {track_bits}")
    _, gpu_s = timed(lambda: gpu.codes(tracks[0], "audio"))
    _, cpu_s = timed(lambda: cpu.codes(tracks[0], "audio"))
    report("hash codes per 3-min track: CUDA speed-up over CPU (1 thread)", cpu_s / gpu_s, "x",
           f"{gpu_s * 1e3:.1f} vs {cpu_s * 1e3:.1f} ms")
    long_cqt = music_like(int(3 * 3600 * FRAME_RATE), 48, rng)
    torch.cuda.reset_peak_memory_stats()
    _, long_s = timed(lambda: gpu.codes(long_cqt, "audio"), repeat=1)
    report("hash codes of a 3-hour track on CUDA (chunked)", long_s, "s",
           f"peak GPU memory {torch.cuda.max_memory_allocated() / 2**20:.0f} MiB")

    chroma = [music_like(n, 12, rng) for _ in range(8)]
    beats = np.arange(0.0, 180.0, 0.5)
    on_gpu = [embedding.cover_embedding(c, FRAME_RATE, beats) for c in chroma]
    _, cover_gpu_s = timed(lambda: embedding.cover_embedding(chroma[0], FRAME_RATE, beats))
    embedding.device = lambda: torch.device("cpu")  # load the CPU copies of the networks
    embedding.load_models.cache_clear()
    on_cpu = [embedding.cover_embedding(c, FRAME_RATE, beats) for c in chroma]
    _, cover_cpu_s = timed(lambda: embedding.cover_embedding(chroma[0], FRAME_RATE, beats))
    cosine = [float(np.dot(a.ravel(), b.ravel())) for a, b in zip(on_gpu, on_cpu, strict=True)]
    report("cover embedding: cosine of CUDA and CPU vectors (min)", min(cosine), "")
    report("cover embedding per 3-min track: CUDA speed-up over CPU", cover_cpu_s / cover_gpu_s, "x",
           f"{cover_gpu_s * 1e3:.1f} vs {cover_cpu_s * 1e3:.1f} ms")


if __name__ == "__main__":
    main()
