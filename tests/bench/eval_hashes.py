"""Learned hashes vs the random-projection baseline on the held-out split, in the same run.

Held-out pieces (one in five by name hash, and every demo-corpus piece; never trained on) are rendered
for the MIDI side with FluidR3 and for the audio side with MuseScore General, a soundfont not used in
training, after Raffel-style corruptions. Every MIDI file queries every audio track. Figures per hasher:
MRR, top-1, top-10 and the rank under which 95% of correct matches fall, for stage 1 (track codes) and
stage 2 (hash-sequence DTW) each ranking the whole database; for the cascade (stage 1 keeps K1, stage 2
keeps K2, CQT DTW ranks those), the share of correct matches lost at each pruning stage and the final top-1.

    python tests/bench/eval_hashes.py [--k1 10] [--k2 3]
"""

from __future__ import annotations

import argparse
import time

import numpy as np
from _common import report

from encoders.features import FRAME_RATE
from encoders.hashes import RandomProjectionHasher
from encoders.learned import LearnedHasher
from encoders.training_data import HELDOUT_SOUNDFONT, aligned_pairs
from hashing.align import align_pair
from hashing.cascade import hash_dtw_batch


def rank_figures(ranks: np.ndarray) -> dict[str, float]:
    return {"MRR": float(np.mean(1.0 / ranks)), "top-1": float(np.mean(ranks == 1)),
            "top-10": float(np.mean(ranks <= 10)), "rank95": float(np.percentile(ranks, 95, method="higher"))}


def ranks_of_truth(distances: np.ndarray) -> np.ndarray:
    """1-based rank of the diagonal entry in each row (ties counted against it)."""
    truth = np.diag(distances)[:, None]
    return (distances < truth).sum(1) + 1 + ((distances == truth).sum(1) - 1)


def evaluate(hasher, pairs, k1: int, k2: int) -> dict[str, float]:
    midi = [hasher.frame_codes(p.midi_cqt, "midi") for p in pairs]
    audio = [hasher.frame_codes(p.audio_cqt, "audio") for p in pairs]
    midi_track = np.stack([hasher.track_code(p.midi_cqt, "midi") for p in pairs])
    audio_track = np.stack([hasher.track_code(p.audio_cqt, "audio") for p in pairs])
    stage1 = np.unpackbits(midi_track[:, None, :] ^ audio_track[None, :, :], axis=2).sum(2).astype(float)
    stage2 = np.stack([hash_dtw_batch(q, audio) for q in midi])
    figures = {}
    for name, dist in (("stage1", stage1), ("stage2", stage2)):
        for key, value in rank_figures(ranks_of_truth(dist)).items():
            figures[f"{name} {key}"] = value
    lost1 = lost2 = top1 = 0
    for q in range(len(pairs)):
        kept1 = np.lexsort((np.arange(len(pairs)), stage1[q]))[:k1]
        if q not in kept1:
            lost1 += 1
            continue
        kept2 = kept1[np.lexsort((kept1, stage2[q, kept1]))][:k2]
        if q not in kept2:
            lost2 += 1
            continue
        scores = [align_pair(pairs[q].midi_cqt, pairs[j].audio_cqt, FRAME_RATE).score for j in kept2]
        top1 += int(kept2[int(np.argmin(scores))] == q)
    n = len(pairs)
    figures.update({"lost at stage 1": lost1 / n, "lost at stage 2": lost2 / n, "cascade top-1": top1 / n})
    return figures


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--k1", type=int, default=10, help="stage-1 survivors per query")
    parser.add_argument("--k2", type=int, default=3, help="stage-2 survivors per query")
    parser.add_argument("--weights", default=None, help="learned weights (default: the shipped model)")
    args = parser.parse_args()
    started = time.monotonic()
    pairs = aligned_pairs("heldout", HELDOUT_SOUNDFONT, versions=1, seed=0)
    learned = LearnedHasher(args.weights) if args.weights else LearnedHasher()
    results = {"baseline": evaluate(RandomProjectionHasher(), pairs, args.k1, args.k2),
               "learned": evaluate(learned, pairs, args.k1, args.k2)}
    print(f"held-out: {len(pairs)} pieces, audio rendered with {HELDOUT_SOUNDFONT}; database of {len(pairs)} "
          f"audio tracks; cascade keeps {args.k1} then {args.k2}")
    for key in results["learned"]:
        better = "lower" if key.startswith(("lost", "stage1 rank95", "stage2 rank95")) else "higher"
        report(f"{key} (learned vs baseline, {better} is better)", results["learned"][key], "",
               f"baseline {results['baseline'][key]:.3f}")
    print(f"elapsed: {time.monotonic() - started:.0f} s")


if __name__ == "__main__":
    main()
