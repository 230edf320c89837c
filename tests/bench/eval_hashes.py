"""Learned hashes vs the random-projection baseline on the held-out split, in the same run.

Held-out pieces (one in five by name hash, and every demo-corpus piece; never trained on) of the Debian
MIDI collections and of music21's Bach chorales and Essen folksongs are rendered for the MIDI side with
FluidR3 and for the audio side with MuseScore General, a soundfont not used in training, after Raffel-style
corruptions. Two databases: the Debian pieces alone, and all held-out pieces; every MIDI file of a database
queries every audio track of it. Figures per hasher: MRR, top-1, top-10 and the rank under which 95% of
correct matches fall, for stage 1 (track codes) and stage 2 (hash-sequence DTW) each ranking the whole
database; for the cascade (stage 1 keeps K1, stage 2 keeps K2, CQT DTW ranks those), the share of correct
matches lost at each pruning stage and the final top-1, for each budget "K1:K2" of ``--budgets`` (K1 a
count or a share of the database, e.g. "10%:10").

    python tests/bench/eval_hashes.py [--budgets 10:3,10%:3,10%:10,25%:10] [--weights PATH] [--split val]
"""

from __future__ import annotations

import argparse
import math
import time

import numpy as np
from _common import report

from encoders.codes.baseline import RandomProjectionHasher
from encoders.codes.learned import LearnedHasher
from encoders.features import FRAME_RATE
from encoders.training.codes_data import HELDOUT_SOUNDFONT, TRAINING_COLLECTIONS, aligned_pairs
from encoders.training.splits import MUSIC21_SOURCES
from hashing.align import align_pair
from hashing.cascade import hash_dtw_batch

#: Figures where lower is better; every other figure is better higher.
LOWER_IS_BETTER = ("rank95", "lost")


def rank_figures(ranks: np.ndarray) -> dict[str, float]:
    return {"MRR": float(np.mean(1.0 / ranks)), "top-1": float(np.mean(ranks == 1)),
            "top-10": float(np.mean(ranks <= 10)), "rank95": float(np.percentile(ranks, 95, method="higher"))}


def ranks_of_truth(distances: np.ndarray) -> np.ndarray:
    """1-based rank of the diagonal entry in each row (ties counted against it)."""
    truth = np.diag(distances)[:, None]
    return (distances < truth).sum(1) + 1 + ((distances == truth).sum(1) - 1)


def track_code_distances(hasher, midi_cqts: list[np.ndarray], audio_cqts: list[np.ndarray]) -> np.ndarray:
    """Stage-1 Hamming distances between track codes: MIDI rows, audio columns."""
    midi_track = np.stack([hasher.track_code(c, "midi") for c in midi_cqts])
    audio_track = np.stack([hasher.track_code(c, "audio") for c in audio_cqts])
    return np.unpackbits(midi_track[:, None, :] ^ audio_track[None, :, :], axis=2).sum(2).astype(float)


def distances(hasher, pairs) -> tuple[np.ndarray, np.ndarray]:
    """(stage-1 Hamming distances of track codes, stage-2 hash-DTW costs): MIDI rows, audio columns."""
    midi = [hasher.frame_codes(p.midi_cqt, "midi") for p in pairs]
    audio = [hasher.frame_codes(p.audio_cqt, "audio") for p in pairs]
    stage1 = track_code_distances(hasher, [p.midi_cqt for p in pairs], [p.audio_cqt for p in pairs])
    stage2 = np.stack([hash_dtw_batch(q, audio) for q in midi])
    return stage1, stage2


def cascade(pairs, stage1: np.ndarray, stage2: np.ndarray, k1: int, k2: int, cqt_scores: dict) -> dict[str, float]:
    """Shares of correct matches lost at each pruning stage, and the final top-1 of the CQT DTW."""
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
        for j in kept2:
            if (q, j) not in cqt_scores:
                cqt_scores[q, j] = align_pair(pairs[q].midi_cqt, pairs[j].audio_cqt, FRAME_RATE).score
        top1 += int(kept2[int(np.argmin([cqt_scores[q, j] for j in kept2]))] == q)
    n = len(pairs)
    return {"lost at stage 1": lost1 / n, "lost at stage 2": lost2 / n, "lost to pruning": (lost1 + lost2) / n,
            "cascade top-1": top1 / n}


def evaluate(hasher, pairs, budgets: list[tuple[int, int]], cqt_scores: dict) -> dict[str, float]:
    stage1, stage2 = distances(hasher, pairs)
    figures = {}
    for name, dist in (("stage1", stage1), ("stage2", stage2)):
        for key, value in rank_figures(ranks_of_truth(dist)).items():
            figures[f"{name} {key}"] = value
    for k1, k2 in budgets:
        for key, value in cascade(pairs, stage1, stage2, k1, k2, cqt_scores).items():
            figures[f"keep {k1} then {k2}: {key}"] = value
    return figures


def parse_budgets(text: str, n: int) -> list[tuple[int, int]]:
    """"10:3,10%:10" -> [(10, 3), (ceil(0.1 n), 10)], each K capped at the database size ``n``."""
    budgets = []
    for item in text.split(","):
        k1, k2 = item.strip().split(":")
        k1 = math.ceil(float(k1[:-1]) / 100 * n) if k1.endswith("%") else int(k1)
        budgets.append((min(k1, n), min(int(k2), n)))
    return sorted(set(budgets))


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--budgets", default="10:3,10%:3,10%:10,25%:10",
                        help="comma-separated K1:K2 cascade budgets (stage-1 and stage-2 survivors per query); "
                             "K1 may be a share of the database (10%%); the pipeline keeps 100 then 10")
    parser.add_argument("--weights", default=None, help="learned weights (default: the shipped model)")
    parser.add_argument("--split", default="heldout", choices=("heldout", "val"),
                        help="'val': the music21 validation pieces, to choose training settings")
    args = parser.parse_args()
    started = time.monotonic()
    debian = [] if args.split == "val" else aligned_pairs(args.split, HELDOUT_SOUNDFONT, versions=1, seed=0,
                                                           collections=TRAINING_COLLECTIONS)
    music21 = aligned_pairs(args.split, HELDOUT_SOUNDFONT, versions=1, seed=0, collections=MUSIC21_SOURCES)
    learned = LearnedHasher(args.weights) if args.weights else LearnedHasher()
    databases = {"debian": debian, "all": debian + music21} if debian else {"val": music21}
    for db, pairs in databases.items():
        n = len(pairs)
        budgets = parse_budgets(args.budgets, n)
        cqt_scores: dict = {}  # CQT DTW scores do not depend on the hasher: computed once per pair
        results = {"baseline": evaluate(RandomProjectionHasher(), pairs, budgets, cqt_scores),
                   "learned": evaluate(learned, pairs, budgets, cqt_scores)}
        print(f"\n== database '{db}': {n} held-out pieces ({args.split}), audio rendered with "
              f"{HELDOUT_SOUNDFONT}; {n} MIDI queries against {n} audio tracks; {learned.name}")
        wins = 0
        for key in results["learned"]:
            lower = any(word in key for word in LOWER_IS_BETTER)
            ours, base = results["learned"][key], results["baseline"][key]
            wins += (ours < base) if lower else (ours > base)
            report(f"{key} ({'lower' if lower else 'higher'} is better)", ours, "", f"baseline {base:.3f}")
        print(f"learned strictly better on {wins} of {len(results['learned'])} figures")
    print(f"elapsed: {time.monotonic() - started:.0f} s")


if __name__ == "__main__":
    main()
