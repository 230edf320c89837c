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
from encoders.corpus import build_demo_corpus  # noqa: E402
from encoders.features import FRAME_RATE  # noqa: E402
from hashing.align import SCORE_SCALE, SCORE_THRESHOLD, align_pair  # noqa: E402
from hashing.calibration import Calibration, fit_calibration, precision_recall  # noqa: E402


def score_corpus(truth: dict) -> dict:
    """DTW-align every MIDI file with every audio file; scores, ranks and alignment errors."""
    cqt = {}
    for path in truth["midi"] + truth["audio"]:
        modality = "midi" if path.endswith(".mid") else "audio"
        cqt[path] = track_features(Path(path).read_bytes(), modality)[0].cqt
    true_audio = {p["midi"]: p for p in truth["pairs"]}
    pos, neg, ranks, align_err = [], [], [], []
    for midi in truth["midi"]:
        scored = []
        for audio in truth["audio"]:
            a = align_pair(cqt[midi], cqt[audio], FRAME_RATE)
            scored.append((a.score, audio))
            pair = true_audio.get(midi)
            if pair and pair["audio"] == audio:
                pos.append(a.score)
                expected = np.interp(a.audio_times_s, pair["audio_times_s"], pair["midi_times_s"])
                inside = a.audio_times_s < pair["audio_times_s"][-1] - 2.0
                align_err.append(float(np.mean(np.abs(a.midi_times_s[inside] - expected[inside]))))
            else:
                neg.append(a.score)
        if midi in true_audio:
            order = [audio for _, audio in sorted(scored)]
            ranks.append(order.index(true_audio[midi]["audio"]) + 1)
    return {"pos": np.array(pos), "neg": np.array(neg), "ranks": np.array(ranks), "align_err": align_err}


def main() -> None:
    started = time.monotonic()
    demo = build_demo_corpus(".cache/demo-corpus", progress=False)
    dev = build_demo_corpus(".cache/dev-corpus", seed=1, exclude=tuple(demo["pieces"]), progress=False)
    dev_scores = score_corpus(dev)
    fitted = fit_calibration(dev_scores["pos"], dev_scores["neg"])
    shipped = Calibration(SCORE_THRESHOLD, SCORE_SCALE)
    print(f"calibration (dev corpus, {len(dev_scores['pos'])} matches / {len(dev_scores['neg'])} non-matches): "
          f"threshold {fitted.threshold:.3f} scale {fitted.scale:.3f}; shipped {shipped.threshold:.3f} "
          f"{shipped.scale:.3f}")
    demo_scores = score_corpus(demo)
    ranks = demo_scores["ranks"]
    print(f"demo top-1: {np.mean(ranks == 1):.3f}  MRR: {np.mean(1 / ranks):.3f}  ({len(ranks)} MIDI queries)")
    for name, cal in (("fitted", fitted), ("shipped", shipped)):
        p, r = precision_recall(cal.confidence(demo_scores["pos"]), cal.confidence(demo_scores["neg"]))
        print(f"demo is_match with {name} calibration: precision {p:.3f} recall {r:.3f}")
    print(f"demo score range: matches max {demo_scores['pos'].max():.3f}, non-matches min "
          f"{demo_scores['neg'].min():.3f}")
    err = np.array(demo_scores["align_err"]) * 1000
    print(f"demo alignment error: mean {err.mean():.1f} ms, median {np.median(err):.1f} ms, max {err.max():.1f} ms")
    print(f"elapsed: {time.monotonic() - started:.0f} s")


if __name__ == "__main__":
    main()
