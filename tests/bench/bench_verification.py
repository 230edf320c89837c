"""Cost of version verification (Qmax alignment of beat chroma) per candidate pair, against the pipeline's
other per-pair alignment, CQT DTW of a MIDI-audio pair, measured in the same run on tracks of the same length.

Tracks of ``--minutes`` minutes: random sparse chroma on beats of 0.6 s (canonical tempo), and random log-CQT
frames at the pipeline's frame rate for the DTW reference. Also extrapolates the verification work of the
scale target (1.18M tracks, 20 candidates each, half of them shared by both ends).

    python tests/bench/bench_verification.py [--minutes 3]
"""

from __future__ import annotations

import argparse

import numpy as np
from _common import best_times, report

from encoders.features import FRAME_RATE
from hashing.align import align_pair
from hashing.version_align import qmax_score


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--minutes", type=float, default=3.0)
    args = parser.parse_args()
    rng = np.random.default_rng(0)
    n_beats, n_frames = int(args.minutes * 60 / 0.6), int(args.minutes * 60 * FRAME_RATE)
    a, b = (rng.random((n_beats, 12)).astype(np.float32) ** 4 for _ in range(2))
    a, b = (x / np.linalg.norm(x, axis=1, keepdims=True) for x in (a, b))
    midi, audio = (rng.random((n_frames, 48)).astype(np.float32) for _ in range(2))
    qmax_score(a, b)  # compile
    verify_s, dtw_s = best_times([lambda: qmax_score(a, b), lambda: align_pair(midi, audio, FRAME_RATE)], rounds=3)
    report("verification per pair / CQT DTW per pair", verify_s / dtw_s, "x",
           f"Qmax {verify_s * 1e3:.1f} ms ({n_beats} beats each), CQT DTW {dtw_s * 1e3:.0f} ms ({n_frames} frames)")
    pairs = 1_180_000 * 20 * 0.5
    report("scale target: verification CPU-hours", pairs * verify_s / 3600, "h",
           f"{pairs:.3g} pairs of {args.minutes:g}-minute tracks, one core each")


if __name__ == "__main__":
    main()
