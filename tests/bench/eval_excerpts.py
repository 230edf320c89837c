"""30-second previews against imperfect MIDI, stage by stage, with real recordings as background and distractors.

Raffel's setting (issue 16). Data: ``encoders.training.excerpt_data`` (built once, cached under
``.cache/enc-excerpts``): each piece of the split is a corrupted MIDI file (tempo changed and warped, a part
dropped, programs changed; the query) and a Raffel-style corrupted rendering in MuseScore General (never trained
on) mixed over a real recording 3-20 dB below it, whole and as a 30-second excerpt. Every real recording of the
split's packages (``val``: the FIT packages, ``heldout``: the EVAL packages) is a distractor, whole and cut into
30-second excerpts. Split by piece; settings are chosen on ``val``, ``heldout`` is run once at the end.

Two databases: *excerpts* (each piece's excerpt and every real excerpt) and *whole* (each piece's whole recording
and every real recording); every corrupted MIDI file queries each. Methods, in the same run:

* each of ``--weights`` (default the shipped model), one track code per track;
* with ``--windows``, the first of them with the window codes (``--model ...+windows``): the track code and the
  codes of 30-second windows of both sides, searched by ``hashing.search.MultiCodeIndex``;
* ``learned-hash-v4``: one track code per track (the reference of every line);
* ``chroma``: the naive baseline (12-bin chroma folded from the CQT, each frame L2-normalised, the best mean cosine
  of the shorter sequence over every lag along the longer; no learning, no warping).

Figures: stage 1 (track codes, ``HashCascade``'s index) and stage 2 (hash-sequence DTW) each ranking the whole
database (MRR, top-1, rank of 95%); how many true pairs survive stage 1 at ``--candidates`` and stage 2 at
``--refine`` (``hashing.cascade.HashCascade``); the final rank after the pipeline's stage 3 (``hashing.align``:
CQT DTW against its nulls, ranked by confidence then margin as ``hashing.decisions.rank_pairs``); and the
networks' time per audio hour.

    python tests/bench/eval_excerpts.py [--split val|heldout] [--weights PATH ...] [--windows] [--max-pieces N]
        [--candidates 100] [--refine 10]
"""

from __future__ import annotations

import argparse
import time
from pathlib import Path

import numpy as np
from _common import report

from encoders.codes.learned import WEIGHTS_DIR, LearnedHasher
from encoders.features import FRAME_RATE
from encoders.training.excerpt_data import excerpt_corpus
from hashing.align import align_pair
from hashing.cascade import HashCascade, hash_dtw_batch
from hashing.decisions import match_confidence, match_margin

V4 = WEIGHTS_DIR / "learned-hash-v4.pt"
CHROMA_POOL = 4  # frames averaged per chroma frame (~5.4 per second)


def rank_of(scores: np.ndarray, truth: int) -> int:
    """1-based rank of ``truth`` when lower scores rank first (ties counted against it)."""
    return int((scores < scores[truth]).sum() + (scores == scores[truth]).sum())


def rank_figures(ranks: list[int]) -> dict[str, float]:
    r = np.asarray(ranks, dtype=float)
    return {"MRR": float(np.mean(1 / r)), "top-1": float(np.mean(r == 1)),
            "rank95": float(np.percentile(r, 95, method="higher"))}


# --- the chroma baseline ---------------------------------------------------------------------------------------

def chroma(cqt: np.ndarray) -> np.ndarray:
    """(n, 48) log-CQT -> (n / CHROMA_POOL, 12) chroma, each frame L2-normalised."""
    folded = cqt.reshape(len(cqt), -1, 12).sum(1)
    n = len(folded) // CHROMA_POOL * CHROMA_POOL or len(folded)
    pooled = folded[:n].reshape(-1, min(CHROMA_POOL, n), 12).mean(1) if n >= CHROMA_POOL else folded
    return pooled / (np.linalg.norm(pooled, axis=1, keepdims=True) + 1e-9)


def best_lag_cosine(a: np.ndarray, b: np.ndarray) -> float:
    """Mean frame cosine of the shorter chroma sequence laid along the longer, at the best lag (FFT)."""
    short, long_ = (a, b) if len(a) <= len(b) else (b, a)
    n = len(long_) + len(short)
    size = 1 << (n - 1).bit_length()
    spec = np.fft.rfft(long_, size, axis=0) * np.conj(np.fft.rfft(short, size, axis=0))
    corr = np.fft.irfft(spec, size, axis=0).sum(1)[: len(long_) - len(short) + 1]
    return float(corr.max() / len(short))


# --- the learned cascade ---------------------------------------------------------------------------------------

def encode(hasher: LearnedHasher, cqts: list[np.ndarray], modality: str, windows: bool):
    """(frame codes, stage-1 codes) per track, and the seconds the networks took."""
    started = time.perf_counter()
    frames, stage1 = [], []
    for cqt in cqts:
        if windows:
            f, t, w = hasher.all_codes(cqt, modality)
            stage1.append(np.vstack([t[None], w]))
        else:
            f, t = hasher.codes(cqt, modality)
            stage1.append(t[None])
        frames.append(f)
    return frames, stage1, time.perf_counter() - started


class Stage3:
    """The pipeline's stage 3 for (query, database item) pairs, each aligned once per run."""

    def __init__(self, midi: list[np.ndarray], audio: list[np.ndarray]):
        self.midi, self.audio, self.cache = midi, audio, {}

    def key(self, q: int, j: int) -> tuple[float, float]:
        """Sort key (lower first): -confidence, -margin."""
        if (q, j) not in self.cache:
            pair = align_pair(self.midi[q], self.audio[j], FRAME_RATE)
            margin = match_margin(pair.score, pair.null_scores)
            self.cache[q, j] = (-match_confidence(margin, pair.aligned_s), -margin)
        return self.cache[q, j]


def evaluate_learned(hasher, windows: bool, midi_cqts, db_cqts, truths, args, stage3: Stage3 | None) -> dict:
    q_frames, q_codes, t_q = encode(hasher, midi_cqts, "midi", windows)
    d_frames, d_codes, t_d = encode(hasher, db_cqts, "audio", windows)
    cascade = HashCascade(d_codes, d_frames, stage1_k=args.candidates, stage2_k=args.refine)
    n = len(db_cqts)
    ranks1, ranks2, kept1, kept2, finals = [], [], 0, 0, []
    for q, truth in enumerate(truths):
        dist, idx = cascade.index.search(q_codes[q], n)
        scores1 = np.empty(n)
        scores1[idx] = dist
        ranks1.append(rank_of(scores1, truth))
        ranks2.append(rank_of(hash_dtw_batch(q_frames[q], d_frames), truth))
        if truth not in idx[: args.candidates]:
            finals.append(np.inf)
            continue
        kept1 += 1
        survivors = cascade.query(q_codes[q], q_frames[q]).indices
        if truth not in survivors:
            finals.append(np.inf)
            continue
        kept2 += 1
        if stage3 is not None:
            order = sorted(survivors, key=lambda j: (stage3.key(q, j), j))
            finals.append(order.index(truth) + 1)
    out = {f"stage1 {k}": v for k, v in rank_figures(ranks1).items()}
    out.update({f"stage2 {k}": v for k, v in rank_figures(ranks2).items()})
    out["pairs kept by stage 1"] = kept1
    out["pairs kept by stage 2"] = kept2
    out["lost to pruning (share)"] = 1 - kept2 / len(truths)
    if stage3 is not None:
        f = np.asarray(finals, dtype=float)
        out["final top-1"] = float(np.mean(f == 1))
        out["final MRR"] = float(np.mean(1 / f))
    out["network s per audio hour"] = (t_q + t_d) / (sum(map(len, midi_cqts + db_cqts)) / FRAME_RATE / 3600)
    return out


def evaluate_chroma(midi_cqts, db_cqts, truths) -> dict:
    db = [chroma(c) for c in db_cqts]
    ranks = []
    for q, truth in enumerate(truths):
        query = chroma(midi_cqts[q])
        ranks.append(rank_of(-np.array([best_lag_cosine(query, d) for d in db]), truth))
    return {f"final {k}": v for k, v in rank_figures(ranks).items()}


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--split", default="val", choices=("val", "heldout"))
    parser.add_argument("--weights", nargs="*", default=[],
                        help="learned weights evaluated beside v4, one code per track (default: the shipped model)")
    parser.add_argument("--windows", action="store_true", help="also the first --weights with the window codes")
    parser.add_argument("--max-pieces", type=int, default=None,
                        help="only the split's first pieces (a smaller corpus, cached on its own)")
    parser.add_argument("--candidates", type=int, default=100)
    parser.add_argument("--refine", type=int, default=10)
    args = parser.parse_args()
    import torch

    torch.set_num_threads(1)
    started = time.monotonic()
    cases, real = excerpt_corpus(args.split, max_pieces=args.max_pieces)
    midi = [c.midi_cqt for c in cases]
    candidates = [LearnedHasher(w) for w in args.weights] or [LearnedHasher()]
    v4 = LearnedHasher(V4)
    print(f"split {args.split}: {len(cases)} corrupted MIDI queries; {len(real)} real recordings "
          f"({sum(len(r.excerpts) for r in real)} real 30-s excerpts); mix {min(c.mix_db for c in cases):.1f}-"
          f"{max(c.mix_db for c in cases):.1f} dB; --candidates {args.candidates} --refine {args.refine}")
    databases = {
        "excerpts": [c.excerpt_cqt for c in cases] + [e for r in real for e in r.excerpts],
        "whole": [c.audio_cqt for c in cases] + [r.cqt for r in real],
    }
    truths = list(range(len(cases)))
    for db_name, db in databases.items():
        print(f"\n== {db_name}: {len(truths)} queries against {len(db)} recordings")
        stage3 = Stage3(midi, db) if db_name == "excerpts" else None
        reference = evaluate_learned(v4, False, midi, db, truths, args, stage3)
        results = {}
        for hasher in candidates:
            if Path(hasher.weights).resolve() != Path(v4.weights).resolve():
                results[f"{hasher.name}, one code"] = evaluate_learned(hasher, False, midi, db, truths, args, stage3)
        if args.windows:
            windowed = LearnedHasher(candidates[0].weights, windows=True)
            results[f"{windowed.name} + windows"] = evaluate_learned(windowed, True, midi, db, truths, args, stage3)
        results[f"{v4.name}, one code"] = reference
        results["chroma"] = evaluate_chroma(midi, db, truths)
        for method, figures in results.items():
            for key, value in figures.items():
                count = f" ({int(value)} of {len(truths)})" if key.startswith("pairs") else ""
                ref = reference.get(key)
                detail = f"v4 one code {ref:.4g}" if ref is not None and figures is not reference else ""
                report(f"{db_name} | {method} | {key}{count}", value, "", detail)
    print(f"elapsed: {time.monotonic() - started:.0f} s")


if __name__ == "__main__":
    main()
