"""Version retrieval and clustering on held-out tune families: the learned embedding against 2D-FTM.

Held-out families (split by family, never by version) are rendered with a soundfont, transpositions and
GM programs unseen in training (encoders/training/versions_data.py). Each version with another version in
the set queries all the others: MAP, mean rank of the first version, top-10 hit rate; "other arrangements only"
leaves the other renderings of the query's own score out (only other harmonisations / variants count).
Clusters come from hashing.clustering.cluster_labels with each embedding's similarity threshold
calibrated on the validation families in this run; ARI against the true families. Beats are tracked on
the audio, as the pipeline does for recordings (--beats score: the score's grid, as for MIDI files).

"verified": as the pipeline clusters, each version's 20 nearest neighbours by embedding are re-scored by
Qmax alignment of their beat chroma (hashing.version_align) and ranked first; the clusters come from the
verified edges above a threshold calibrated on validation
(encoders.training.versions_eval.calibrate_verified_threshold).

    python tests/bench/eval_covers.py [--weights PATH] [--beats tracked|score]
"""

from __future__ import annotations

import argparse
import time

import numpy as np
import torch
from _common import report

from encoders.features import FRAME_RATE
from encoders.training.versions import eval_embeddings
from encoders.training.versions_data import CoverItem, cover_corpus
from encoders.training.versions_eval import (
    calibrate_threshold,
    calibrate_verified_threshold,
    clustering_ari,
    retrieval_metrics,
    similarity_metrics,
    verified_clustering_ari,
    verified_similarities,
)
from encoders.versions.baseline import ftm2d_embedding
from encoders.versions.chroma import version_sequence
from encoders.versions.embedding import DEFAULT_WEIGHTS, load_models


def embeddings(items: list[CoverItem], method: str, beats: str, weights: str) -> np.ndarray:
    """One embedding per version with ``method`` ('learned' or 'ftm2d')."""
    if method == "ftm2d":
        chromas = [it.chroma.astype(np.float32) for it in items]
        grids = [it.tracked_beats if beats == "tracked" else it.beat_times for it in items]
        return np.stack([ftm2d_embedding(c, FRAME_RATE, b) for c, b in zip(chromas, grids, strict=True)])
    return eval_embeddings(load_models(weights), items, beats)  # as cover_embedding does for one track


def sequences(items: list[CoverItem], beats: str) -> list[np.ndarray]:
    """The pipeline's alignment sequences (``version_sequence``) of each version."""
    return [version_sequence(it.chroma, FRAME_RATE, it.tracked_beats if beats == "tracked" else it.beat_times)
            for it in items]


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--weights", default=str(DEFAULT_WEIGHTS))
    parser.add_argument("--beats", choices=("tracked", "score"), default="tracked")
    args = parser.parse_args()
    torch.set_num_threads(1)
    val, held = cover_corpus("val"), cover_corpus("heldout")
    fonts = sorted({it.soundfont for it in held})
    subsets = {"all": held, "bach": [it for it in held if it.source == "bach"],
               "essen": [it for it in held if it.source == "essen"]}
    for name, items in subsets.items():
        fams = [it.family for it in items]
        n_fam = len({f for f in fams if fams.count(f) >= 2})
        print(f"held-out {name}: {len(items)} versions, {n_fam} families with >= 2 versions, "
              f"{len(set(fams)) - n_fam} singletons (distractors); soundfonts {fonts}", flush=True)
    figures: dict[str, dict[str, float]] = {}
    for method in ("ftm2d", "learned"):
        started = time.perf_counter()
        e_val = embeddings(val, method, args.beats, args.weights)
        s_val = sequences(val, args.beats)
        threshold, _ = calibrate_threshold(e_val, [it.family for it in val])
        verified_threshold, _ = calibrate_verified_threshold(e_val, s_val, [it.family for it in val])
        for name, items in subsets.items():
            e, seqs = embeddings(items, method, args.beats, args.weights), sequences(items, args.beats)
            fams = [it.family for it in items]
            m = retrieval_metrics(e, fams)
            m["ari"] = clustering_ari(e, fams, threshold)
            m["map_other_arrangement"] = retrieval_metrics(e, fams, [it.name for it in items])["map"]
            verified = similarity_metrics(verified_similarities(e, seqs), fams)
            m.update({f"verified_{key}": value for key, value in verified.items()})
            m["verified_ari"] = verified_clustering_ari(e, seqs, fams, verified_threshold)
            m["threshold"] = threshold
            figures[f"{method}/{name}"] = m
        print(f"{method}: embedded and evaluated in {time.perf_counter() - started:.1f} s, "
              f"threshold {threshold:.2f}, verified {verified_threshold:.2f} (calibrated on {len(val)} validation "
              "versions)", flush=True)
    for name in subsets:
        base, ours = figures[f"ftm2d/{name}"], figures[f"learned/{name}"]
        detail = f"{int(ours['queries'])} queries, beats {args.beats}"
        for key, label in (("map", "MAP"), ("mean_first_rank", "mean rank of first version"),
                           ("top10", "top-10 hit rate"), ("ari", "cluster ARI"),
                           ("map_other_arrangement", "MAP, other arrangements only"),
                           ("verified_map", "verified MAP"), ("verified_mean_first_rank", "verified mean first rank"),
                           ("verified_top10", "verified top-10"), ("verified_ari", "verified cluster ARI")):
            report(f"{name} {label} (learned / 2D-FTM)", ours[key] / max(base[key], 1e-9), "x",
                   f"learned {ours[key]:.3f}, 2D-FTM {base[key]:.3f}; {detail}")
        print(f"{name}: learned verified MAP {ours['verified_map']:.3f} vs learned alone {ours['map']:.3f}; "
              f"verified ARI {ours['verified_ari']:.3f} vs {ours['ari']:.3f}")


if __name__ == "__main__":
    main()
