"""Nightly reindexing: how much a run after adding ~10% new files redoes, against a full rebuild.

On the demo corpus (48 files): night 1 runs on ~90% of the files with a state folder; night 2 runs on all
of them with the same state; a full rebuild runs on all of them without state. Prints one line per figure
(work and wall time of night 2 as a ratio of the full rebuild's, measured in the same run) and checks that
night 2's tables equal the full rebuild's:
    python tests/bench/bench_incremental.py [--corpus .cache/demo-corpus]
"""

from __future__ import annotations

import argparse
import sys
import tempfile
import time
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parents[2]))

from _common import report  # noqa: E402

from encoders.training.corpus import build_demo_corpus  # noqa: E402
from pipelines.cli import build_parser, run_config  # noqa: E402
from pipelines.pipeline import run  # noqa: E402
from tests.conftest import OUTPUT_TABLES, canonical_rows  # noqa: E402


def mirmatch_run(out: Path, audio: list[str], midi: list[str], *extra: str) -> tuple[dict, float]:
    argv = ["run", "--out", str(out), *extra]
    for path in audio:
        argv += ["--audio", path]
    for path in midi:
        argv += ["--midi", path]
    args, beam_args = build_parser().parse_known_args(argv)
    started = time.perf_counter()
    counters = run(run_config(args, beam_args))
    return counters, time.perf_counter() - started


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--corpus", default=".cache/demo-corpus")
    parser.add_argument("--new-share", type=float, default=0.1, help="share of files added on night 2")
    args = parser.parse_args()
    truth = build_demo_corpus(args.corpus, progress=False)
    audio, midi = sorted(truth["audio"]), sorted(truth["midi"])
    every = max(2, round(1 / args.new_share))
    new = set(sorted(audio + midi)[::every])  # spread over both modalities, matched and unmatched files
    with tempfile.TemporaryDirectory() as tmp:
        nightly, rebuild = Path(tmp) / "nightly", Path(tmp) / "rebuild"
        mirmatch_run(nightly, [a for a in audio if a not in new], [m for m in midi if m not in new])
        second, second_s = mirmatch_run(nightly, audio, midi)
        full, full_s = mirmatch_run(rebuild, audio, midi, "--no-state")
        same = all(canonical_rows(nightly, t) == canonical_rows(rebuild, t) for t in OUTPUT_TABLES)
    n = len(audio) + len(midi)
    report("files added on night 2", len(new) / n, "of all files", f"{len(new)} of {n}")
    report("tracks analysed on night 2 / full rebuild", second["tracks_analyzed"] / full["tracks_analyzed"], "",
           f"{second['tracks_analyzed']} vs {full['tracks_analyzed']}; {second['tracks_reused']} reused")
    report("pairs aligned on night 2 / full rebuild", second["pairs_aligned"] / full["pairs_aligned"], "",
           f"{second['pairs_aligned']} vs {full['pairs_aligned']}; {second['pairs_reused']} reused")
    report("wall time of night 2 / full rebuild", second_s / full_s, "",
           f"{second_s:.1f} s vs {full_s:.1f} s, Beam's fixed start-up and the cheap stages included")
    report("night 2 tables equal the full rebuild's", float(same), "(1 = yes)")
    if not same:
        sys.exit("night 2's tables differ from the full rebuild's")


if __name__ == "__main__":
    main()
