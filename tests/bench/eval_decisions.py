"""The pipeline's yes/no decisions on collections with real recordings: ``is_match`` and version clusters.

Runs ``mirmatch run`` on a decision collection (``encoders.training.decision_data``: Debian MIDI files with
corrupted renderings, whole, as 30-second excerpts and as 20-second pieces; real recordings of Debian packages
whole, as 5-second jingles and 30-second excerpts; chorale and Essen version families), with ``--top-k`` equal
to ``--refine`` so that every refined pair is in `matches`, then scores the decisions against the truth, beside
the previous decisions (the baseline, recomputed from the same run's rows):

* matches: the DTW score against the median of the recording's candidates, logistic cut (hashing.align's
  ``cohort_normalise`` and ``confidence_from_score``);
* clusters: the version decision before the ratio test and the guard against chaining (z >= 4 against both
  ends' nulls, tracks of 10 s or more, Leiden communities of the accepted edges and the matches,
  ``hashing.clustering.cluster_graph``), recomputed from the same run's `version_edges` rows.

    python tests/bench/eval_decisions.py --split fit|eval [--out DIR] [--calibration FILE]

Prints one line per figure. Settings are chosen on ``fit`` only; ``eval`` uses packages, pieces and families
that ``fit`` never sees.
"""

from __future__ import annotations

import argparse
import itertools
import re
import subprocess
import sys
from collections import defaultdict
from pathlib import Path

import numpy as np

from encoders.training.decision_data import build_decision_collection
from hashing.align import cohort_normalise, confidence_from_score
from hashing.clustering import cluster_graph
from hashing.decisions import VersionSettings, decide_version_edges
from pipelines.query import query_arrow
from pipelines.sources import path_of_uri

#: The version decision before the ratio test (ratio 0) and the guard (Leiden instead): the same z cut.
BASELINE_VERSIONS = VersionSettings(min_z=4.0, ratio=0.0)
#: (whole, excerpts, short pieces) per split: the held-out Debian pieces number 18
PAIRS = {"fit": (10, 10, 4), "eval": (7, 7, 4)}


def run_pipeline(truth: dict, out: str, calibration: str | None) -> None:
    root = Path(truth["midi"][0]).parents[1]
    command = [sys.executable, "-m", "pipelines", "run", "--audio", str(root / "audio" / "*"),
               "--midi", str(root / "midi" / "*"), "--out", out, "--top-k", "10", "--refine", "10", "--no-report",
               "--direct_running_mode=multi_processing", "--direct_num_workers=2"]
    if calibration:
        command += ["--calibration", calibration]
    subprocess.run(command, check=True)


def rows(out: str, sql: str) -> list[dict]:
    return query_arrow(out, sql).to_pylist()


def baseline_matches(matches: list[dict]) -> dict[tuple[str, str], bool]:
    """The previous decision on the same rows: each recording's scores against their median."""
    by_audio: dict[str, list[dict]] = defaultdict(list)
    for m in matches:
        by_audio[m["audio_uri"]].append(m)
    decided = {}
    for group in by_audio.values():
        conf = confidence_from_score(cohort_normalise(np.array([m["dtw_score"] for m in group])))
        for m, c in zip(group, np.atleast_1d(conf), strict=True):
            decided[(m["midi_uri"], m["audio_uri"])] = bool(c > 0.5)
    return decided


def match_figures(truth: dict, matches: list[dict], name: str, decided: dict[tuple[str, str], bool]) -> None:
    path = {m["midi_uri"]: path_of_uri(m["midi_uri"]) for m in matches}
    path.update({m["audio_uri"]: path_of_uri(m["audio_uri"]) for m in matches})
    true = {(p["midi"], p["audio"]): p["kind"] for p in truth["pairs"]}
    family = {f: fam for fam, files in truth["families"].items() for f in files}
    by_kind: dict[str, list[bool]] = defaultdict(list)
    false_matches, same_family = [], 0
    for (midi_uri, audio_uri), accepted in decided.items():
        key = (path[midi_uri], path[audio_uri])
        if key in true:
            continue
        if accepted and family.get(key[0]) and family.get(key[0]) == family.get(key[1]):
            same_family += 1  # two versions of one tune: related, not a transcription; counted apart
        elif accepted:
            false_matches.append(key)
    seen = {(path[m["midi_uri"]], path[m["audio_uri"]]) for m in matches}
    decided_by_path = {(path[a], path[b]): v for (a, b), v in decided.items()}
    for key, kind in true.items():
        found = decided_by_path.get(key, False)
        by_kind[kind].append(found)
        by_kind["all"].append(found)
    tp = sum(by_kind["all"])
    precision = tp / max(1, tp + len(false_matches))
    print(f"{name}: is_match precision {precision:.3f} ({tp} true, {len(false_matches)} false accepted; "
          f"{same_family} pairs of versions of one tune accepted, not counted)")
    for kind in ("all", "whole", "excerpt", "short"):
        hits = by_kind[kind]
        print(f"{name}: is_match recall {kind} {np.mean(hits):.3f} ({sum(hits)}/{len(hits)})")
    pruned = sum(key not in seen for key in true)
    print(f"{name}: true pairs lost before refinement {pruned}/{len(true)}")
    for key in false_matches[:10]:
        print(f"{name}:   false match {Path(key[0]).name} -> {Path(key[1]).name}")


def pairwise(groups: dict[str, str], members: set[str]) -> set[tuple[str, str]]:
    """Pairs of ``members`` that share a group."""
    by_group: dict[str, list[str]] = defaultdict(list)
    for track, group in groups.items():
        if track in members:
            by_group[group].append(track)
    return {tuple(sorted(p)) for g in by_group.values() for p in itertools.combinations(sorted(g), 2)}


def cluster_figures(truth: dict, tracks: list[dict], labels: dict[str, str], name: str) -> None:
    """Pairwise precision and recall of clusters per family kind; real recordings in clusters of size > 1."""
    path_of = {t["track_id"]: path_of_uri(t["uri"]) for t in tracks}
    families = {f"{fam.split(':')[0]}": [] for fam in truth["families"]}
    true_group: dict[str, str] = {}
    for fam, files in truth["families"].items():
        for f in files:
            true_group[f] = fam
    for p in truth["pairs"]:  # a MIDI file and its recording: a family of the game-music kind
        true_group[p["midi"]] = true_group[p["audio"]] = f"game:{Path(p['midi']).stem}"
    families["game"] = []
    for f, kind in truth["kinds"].items():  # a real recording and the excerpts cut from it
        if kind == "real":
            true_group[f] = "real:" + Path(f).name.split("_", 2)[-1].rsplit(".", 1)[0]
        elif kind in ("jingle", "real_excerpt"):
            true_group[f] = "real:" + re.sub(r"^(jingle|real_excerpt)_\d\d_", "", Path(f).name).rsplit(".", 1)[0]
    families["real"] = []
    predicted = {path_of[t]: label for t, label in labels.items() if t in path_of}
    for kind in sorted(families):
        members = {f for f, fam in true_group.items() if fam.startswith(kind + ":")}
        truth_pairs = pairwise(true_group, members)
        found_pairs = pairwise(predicted, set(predicted))
        touching = {p for p in found_pairs if p[0] in members or p[1] in members}
        tp = len(truth_pairs & found_pairs)
        precision = tp / max(1, len(touching))
        recall = tp / max(1, len(truth_pairs))
        print(f"{name}: clusters {kind}: pairwise precision {precision:.3f} recall {recall:.3f} "
              f"({tp} of {len(truth_pairs)} true pairs, {len(touching)} predicted)")
    real = {f for f, kind in truth["kinds"].items() if kind in ("real", "jingle", "real_excerpt")}
    sizes: dict[str, int] = defaultdict(int)
    for label in predicted.values():
        sizes[label] += 1
    merged = sorted(f for f in real if f in predicted and sizes[predicted[f]] > 1)
    merged = [f for f in merged if any(predicted[g] == predicted[f] and true_group.get(g) != true_group.get(f)
                                       for g in predicted)]  # with something other than its own excerpts
    print(f"{name}: real recordings in a cluster with another recording or MIDI file: {len(merged)} of "
          f"{len(real & set(predicted))}")
    by_label: dict[str, list[str]] = defaultdict(list)
    for f in merged:
        by_label[predicted[f]].append(Path(f).name)
    for label, names in sorted(by_label.items())[:12]:
        others = [Path(f).name for f, lab in predicted.items() if lab == label and f not in real]
        print(f"{name}:   cluster {label[:8]}: {', '.join(names)}" + (f" + {', '.join(others)}" if others else ""))


def absolute(truth: dict) -> dict:
    """The truth with every path absolute, as the tables' uris name files."""
    import os

    a = os.path.abspath
    truth = dict(truth)
    truth["pairs"] = [{**p, "midi": a(p["midi"]), "audio": a(p["audio"])} for p in truth["pairs"]]
    truth["families"] = {k: [a(f) for f in v] for k, v in truth["families"].items()}
    truth["kinds"] = {a(k): v for k, v in truth["kinds"].items()}
    truth["midi"], truth["audio"] = [a(f) for f in truth["midi"]], [a(f) for f in truth["audio"]]
    return truth


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--split", choices=("fit", "eval"), default="fit")
    parser.add_argument("--out", default=None, help="output folder (default .cache/decisions/<split>-out)")
    parser.add_argument("--calibration", default=None)
    parser.add_argument("--no-run", action="store_true", help="score the tables already in --out")
    args = parser.parse_args()
    n_whole, n_excerpts, n_short = PAIRS[args.split]
    truth = absolute(build_decision_collection(f".cache/decisions/{args.split}", args.split, n_whole=n_whole,
                                               n_excerpts=n_excerpts, n_short=n_short))
    out = args.out or f".cache/decisions/{args.split}-out"
    if not args.no_run:
        run_pipeline(truth, out, args.calibration)
    matches = rows(out, "SELECT * FROM matches")
    print(f"{args.split}: {len(truth['midi'])} MIDI files, {len(truth['audio'])} recordings, "
          f"{len(truth['pairs'])} true pairs, {len(truth['families'])} version families")
    match_figures(truth, matches, f"{args.split} new", {(m["midi_uri"], m["audio_uri"]): m["is_match"]
                                                        for m in matches})
    baseline = baseline_matches(matches)
    match_figures(truth, matches, f"{args.split} baseline", baseline)
    tracks = rows(out, "SELECT track_id, uri, duration_s FROM tracks WHERE status = 'ok'")
    clusters = {r["track_id"]: r["cluster_id"] for r in rows(out, "SELECT track_id, cluster_id FROM clusters")}
    cluster_figures(truth, tracks, clusters, f"{args.split} new")
    edges = rows(out, "SELECT * FROM version_edges")
    verified = [(e["track_a"], e["track_b"], e["similarity"], e["is_reference"]) for e in edges]
    durations = {t["track_id"]: t["duration_s"] for t in tracks}
    decided = decide_version_edges(verified, durations, BASELINE_VERSIONS)
    match_edges = [(m["midi_id"], m["audio_id"]) for m in matches if m["is_match"]]
    old = cluster_graph(list(clusters), [(e["track_a"], e["track_b"], e["z"]) for e in decided if e["accepted"]],
                        match_edges)
    cluster_figures(truth, tracks, old, f"{args.split} baseline (z >= 4, Leiden)")


if __name__ == "__main__":
    main()
