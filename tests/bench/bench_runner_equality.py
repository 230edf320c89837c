"""Rows per runner on the long corpus: the in-process run against multi-process and portable runs.

One in-process run analyses the corpus (tests/long_corpus.py) and is the reference; every other run reuses
a copy of its state folder and runs the matching, clustering and publishing stages. Prints one line per
run: the runner, its matches rows and accepted matches, and how many rows of each table differ from the
reference (0 everywhere when the tables do not depend on the runner).

    python tests/bench/bench_runner_equality.py [--repeats 2] [--runners multi_processing-2,multi_processing-4]
"""

from __future__ import annotations

import argparse
import shutil
import sys
import tempfile
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parents[2]))

from tests.conftest import REPO, canonical_rows, read_table  # noqa: E402
from tests.long_corpus import build_long_corpus  # noqa: E402

TABLES = ("tracks", "errors", "matches", "alignments", "clusters", "segments")


def run_into(out: Path, root: Path, state: Path, beam_args: list[str]) -> int:
    from pipelines.cli import main

    return main(["run", "--audio", f"{root}/audio/*", "--midi", f"{root}/midi/*.mid", "--out", str(out),
                 "--state", str(state), *beam_args])


def runner_args(runner: str, endpoint: str | None) -> list[str]:
    if runner == "portable":
        return ["--runner=PortableRunner", f"--job_endpoint={endpoint}", "--environment_type=LOOPBACK"]
    mode, workers = runner.split("-")
    return [f"--direct_running_mode={mode}", f"--direct_num_workers={workers}"]


def describe(out: Path, reference: dict[str, list] | None) -> str:
    matches = read_table(out, "matches")
    line = f"matches rows {len(matches)}, accepted {sum(m['is_match'] for m in matches)}"
    if reference is not None:
        differing = {t: len(set(canonical_rows(out, t)) ^ set(reference[t])) for t in TABLES}
        line += ", rows differing from in-process: " + " ".join(f"{t} {n}" for t, n in differing.items())
    return line


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--repeats", type=int, default=2)
    parser.add_argument("--runners", default="multi_processing-2,multi_processing-4,portable")
    parser.add_argument("--corpus", default=str(REPO / ".cache" / "long-corpus"))
    parser.add_argument("--n-midi", type=int, default=12)
    parser.add_argument("--n-matched", type=int, default=6)
    parser.add_argument("--minutes", type=float, default=10.0, help="length of each looped MIDI file")
    args = parser.parse_args()
    root = Path(args.corpus).resolve()
    build_long_corpus(root, n_midi=args.n_midi, n_matched=args.n_matched, midi_minutes=args.minutes)
    work = Path(tempfile.mkdtemp(prefix="runner-equality-"))
    state = work / "state"
    if run_into(work / "in_process", root, state, []) != 0:
        sys.exit("the in-process run failed")
    reference = {t: canonical_rows(work / "in_process", t) for t in TABLES}
    print(f"in_process: {describe(work / 'in_process', None)}", flush=True)
    service, endpoint = None, None
    if "portable" in args.runners:
        from tests.test_runners import start_job_service

        service, port = start_job_service(work)
        endpoint = f"localhost:{port}"
    try:
        for runner in args.runners.split(","):
            for repeat in range(args.repeats):
                out, copy = work / f"{runner}-{repeat}", work / f"state-{runner}-{repeat}"
                shutil.copytree(state, copy)
                code = run_into(out, root, copy, runner_args(runner, endpoint))
                result = describe(out, reference) if code == 0 else f"exit {code}"
                print(f"{runner} run {repeat + 1}: {result}", flush=True)
    finally:
        if service is not None:
            from tests.test_runners import stop

            stop(service)
    shutil.rmtree(work, ignore_errors=True)


if __name__ == "__main__":
    main()
