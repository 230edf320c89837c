"""Calibrate the match confidence on the development corpus and evaluate matching on the demo corpus.

The two corpora share no piece (split by piece). Prints one line per figure:
    python tests/bench/eval_matching.py
"""

from __future__ import annotations

import sys
import time
from pathlib import Path

import numpy as np

sys.path.insert(0, str(Path(__file__).resolve().parents[2]))

from encoders.analyze import track_features  # noqa: E402
from encoders.features import FRAME_RATE  # noqa: E402
from encoders.training.corpus import build_demo_corpus  # noqa: E402
from hashing.align import (  # noqa: E402
    SCORE_SCALE,
    SCORE_THRESHOLD,
    align_pair,
    cohort_normalise,
    refine_time_map,
)
from hashing.calibration import Calibration, fit_calibration, precision_recall  # noqa: E402


def score_corpus(truth: dict) -> dict:
    """DTW-align every MIDI file with every audio file, as the pipeline does when nothing is pruned.

    Returns cohort-normalised scores of true and false pairs, the rank of each true audio track for its
    MIDI file, and the mean absolute alignment error of each true pair (s).
    """
    cqt = {}
    for path in truth["midi"] + truth["audio"]:
        modality = "midi" if path.endswith(".mid") else "audio"
        cqt[path] = track_features(Path(path).read_bytes(), modality)[0].cqt
    midis, audios = truth["midi"], truth["audio"]
    alignments = [[align_pair(cqt[m], cqt[a], FRAME_RATE) for a in audios] for m in midis]
    raw = np.array([[al.score for al in row] for row in alignments])
    scores = np.stack([cohort_normalise(raw[:, j]) for j in range(len(audios))], axis=1)
    is_true = np.zeros_like(scores, dtype=bool)
    ranks, align_err = [], []
    for pair in truth["pairs"]:
        i, j = midis.index(pair["midi"]), audios.index(pair["audio"])
        is_true[i, j] = True
        ranks.append(int(np.sum(scores[i] < scores[i, j])) + 1)
        midi_times, audio_times = refine_time_map(cqt[pair["midi"]], cqt[pair["audio"]], FRAME_RATE)
        expected = np.interp(audio_times, pair["audio_times_s"], pair["midi_times_s"])
        inside = audio_times < pair["audio_times_s"][-1] - 2.0  # the release tail maps nowhere
        align_err.append(float(np.mean(np.abs(midi_times[inside] - expected[inside]))))
    return {"pos": scores[is_true], "neg": scores[~is_true], "ranks": np.array(ranks), "align_err": align_err,
            "raw_neg_median": float(np.median(raw[~is_true]))}


def main() -> None:
    started = time.monotonic()
    demo = build_demo_corpus(".cache/demo-corpus", progress=False)
    dev = build_demo_corpus(".cache/dev-corpus", seed=1, exclude=tuple(demo["pieces"]), progress=False)
    dev_scores = score_corpus(dev)
    fitted = fit_calibration(dev_scores["pos"], dev_scores["neg"])
    shipped = Calibration(SCORE_THRESHOLD, SCORE_SCALE)
    print(f"calibration (dev corpus, {len(dev_scores['pos'])} matches / {len(dev_scores['neg'])} non-matches): "
          f"threshold {fitted.threshold:.3f} scale {fitted.scale:.3f}; shipped {shipped.threshold:.3f} "
          f"{shipped.scale:.3f}; median raw non-match score {dev_scores['raw_neg_median']:.3f}")
    demo_scores = score_corpus(demo)
    ranks = demo_scores["ranks"]
    print(f"demo top-1: {np.mean(ranks == 1):.3f}  MRR: {np.mean(1 / ranks):.3f}  ({len(ranks)} MIDI queries)")
    for name, cal in (("fitted", fitted), ("shipped", shipped)):
        p, r = precision_recall(cal.confidence(demo_scores["pos"]), cal.confidence(demo_scores["neg"]))
        print(f"demo is_match with {name} calibration: precision {p:.3f} recall {r:.3f}")
    print(f"demo score range: matches max {demo_scores['pos'].max():.3f}, non-matches min "
          f"{demo_scores['neg'].min():.3f}")
    print("demo is_match table (shipped calibration), cut: precision recall")
    for cut in (0.1, 0.3, 0.5, 0.7, 0.9):
        p, r = precision_recall(shipped.confidence(demo_scores["pos"]), shipped.confidence(demo_scores["neg"]), cut)
        print(f"  confidence > {cut:.1f}: precision {p:.3f} recall {r:.3f}")
    for name, scores in (("demo", demo_scores), ("dev", dev_scores)):
        err = np.array(scores["align_err"]) * 1000
        print(f"{name} alignment error ({len(err)} pairs): mean {err.mean():.1f} ms, median {np.median(err):.1f} ms, "
              f"max {err.max():.1f} ms")
    print(f"elapsed: {time.monotonic() - started:.0f} s")


if __name__ == "__main__":
    main()
