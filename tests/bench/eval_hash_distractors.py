"""How the hash cascade holds up as the database grows: held-out queries among unseen distractors.

The 190 held-out MIDI files of ``eval_hashes.py`` query their 190 audio tracks plus N Essen folksongs never
trained on or tuned on (tunes 200 to 200 + N of the fixed draw; the training and validation tunes are among
the first 200), rendered like the held-out audio (MuseScore General, Raffel-style corruptions). Monophonic
tunes in one style are hard distractors, for the folksong queries above all. Prints, for the learned model
and the random-projection baseline: stage-1 MRR, top-1, top-10 and rank of 95% over the whole database, and the share of
true matches lost at the pipeline's default budgets (stage 1 keeps 100, stage 2 keeps 10).

    python tests/bench/eval_hash_distractors.py [--distractors 800] [--weights PATH]

Rendering 800 distractors takes about 20 minutes on 2 cores (cached under .cache/hash-data).
"""

from __future__ import annotations

import argparse
import pickle
import time
from multiprocessing import Pool
from pathlib import Path

import numpy as np
from _common import report
from eval_hashes import LOWER_IS_BETTER, rank_figures, ranks_of_truth, track_code_distances

from encoders.codes.baseline import RandomProjectionHasher
from encoders.codes.learned import LearnedHasher
from encoders.training.codes_data import HELDOUT_SOUNDFONT, N_ESSEN, TRAINING_COLLECTIONS, aligned_pairs
from encoders.training.splits import MUSIC21_SOURCES
from hashing.cascade import hash_dtw_batch

STAGE1_KEEP, STAGE2_KEEP = 100, 10  # the pipeline's defaults (--candidates, --refine)


def _render(job: tuple) -> np.ndarray | None:
    from encoders.features import log_cqt
    from encoders.training.corrupt import corrupted_rendering
    from encoders.training.music21_midi import midi_from_spec

    name, spec, seed = job
    pm = midi_from_spec(name, spec)
    if pm is None:
        return None
    y, _ = corrupted_rendering(pm, HELDOUT_SOUNDFONT, np.random.default_rng(seed))
    return log_cqt(y)[0]


def distractors(n: int, cache_dir: Path = Path(".cache/hash-data")) -> list[np.ndarray]:
    """Audio CQT of ``n`` unseen Essen tunes (cached)."""
    cache = cache_dir / f"distractors-essen-{n}-{HELDOUT_SOUNDFONT}.pkl"
    if not cache.exists():
        from encoders.training.music21_midi import music21_sources

        tunes = music21_sources(("essen",), n_essen=N_ESSEN + n, seed=0)[N_ESSEN:]
        jobs = [(name, spec, 900_000 + i) for i, (name, spec) in enumerate(tunes)]
        with Pool(2) as pool:
            rendered = [c for c in pool.imap(_render, jobs, chunksize=4) if c is not None]
        cache.parent.mkdir(parents=True, exist_ok=True)
        cache.write_bytes(pickle.dumps(rendered))
    return pickle.loads(cache.read_bytes())


def evaluate(hasher, pairs, audio: list[np.ndarray]) -> dict[str, float]:
    """Stage-1 figures over the whole database and the cascade's losses at the pipeline's budgets."""
    n = len(pairs)
    stage1 = track_code_distances(hasher, [p.midi_cqt for p in pairs], audio)  # query i's truth is column i
    figures = {f"stage1 {key}": value for key, value in rank_figures(ranks_of_truth(stage1)).items()}
    frame_codes = [hasher.frame_codes(a, "audio") for a in audio]
    lost1 = lost2 = 0
    for q, pair in enumerate(pairs):
        kept = np.lexsort((np.arange(len(audio)), stage1[q]))[:STAGE1_KEEP]
        if q not in kept:
            lost1 += 1
            continue
        costs = hash_dtw_batch(hasher.frame_codes(pair.midi_cqt, "midi"), [frame_codes[j] for j in kept])
        lost2 += q not in kept[np.lexsort((kept, costs))][:STAGE2_KEEP]
    return {**figures, "lost at stage 1": lost1 / n, "lost at stage 2": lost2 / n,
            "lost to pruning": (lost1 + lost2) / n}


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--distractors", type=int, default=800, help="unseen Essen tunes added to the database")
    parser.add_argument("--weights", default=None, help="learned weights (default: the shipped model)")
    args = parser.parse_args()
    started = time.monotonic()
    pairs = (aligned_pairs("heldout", HELDOUT_SOUNDFONT, versions=1, seed=0, collections=TRAINING_COLLECTIONS)
             + aligned_pairs("heldout", HELDOUT_SOUNDFONT, versions=1, seed=0, collections=MUSIC21_SOURCES))
    extra = distractors(args.distractors)
    audio = [p.audio_cqt for p in pairs] + extra
    learned = LearnedHasher(args.weights) if args.weights else LearnedHasher()
    ours, base = evaluate(learned, pairs, audio), evaluate(RandomProjectionHasher(), pairs, audio)
    print(f"\n== {len(pairs)} held-out MIDI queries against {len(audio)} audio tracks ({len(extra)} unseen Essen "
          f"distractors); keep {STAGE1_KEEP} then {STAGE2_KEEP}; {learned.name}")
    for key in ours:
        lower = any(word in key for word in LOWER_IS_BETTER)
        report(f"{key} ({'lower' if lower else 'higher'} is better)", ours[key], "", f"baseline {base[key]:.3f}")
    print(f"elapsed: {time.monotonic() - started:.0f} s")


if __name__ == "__main__":
    main()
