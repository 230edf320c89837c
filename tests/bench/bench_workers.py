"""`mirmatch run` on every core (the default) against one in-process worker (``--workers 1``), same corpus.

Each run is the CLI in a fresh process, without state (everything analysed) and without the report; the
tables of both runs must be equal. Prints one line per figure: wall time of each, and the default's time as a
ratio of the one-worker run's:
    python tests/bench/bench_workers.py [--corpus .cache/test-corpus] [--rounds 1]
"""

from __future__ import annotations

import argparse
import os
import subprocess
import sys
import tempfile
import time
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parents[2]))

from _common import report  # noqa: E402

from pipelines.pipeline import available_cores  # noqa: E402
from tests.conftest import OUTPUT_TABLES, canonical_rows  # noqa: E402

REPO = Path(__file__).resolve().parents[2]


def cli_run(out: Path, corpus: Path, *extra: str) -> float:
    """Wall time (s) of one `mirmatch run` over ``corpus``'s audio/ and midi/ folders."""
    argv = [sys.executable, "-m", "pipelines", "run", "--audio", f"{corpus}/audio/*", "--midi", f"{corpus}/midi/*",
            "--out", str(out), "--no-state", "--no-report", *extra]
    started = time.perf_counter()
    proc = subprocess.run(argv, capture_output=True, text=True, cwd=REPO,
                          env={**os.environ, "PYTHONPATH": str(REPO)})
    seconds = time.perf_counter() - started
    if proc.returncode != 0:
        raise SystemExit(f"mirmatch run failed ({proc.returncode}):\n{proc.stderr[-3000:]}")
    return seconds


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--corpus", type=Path, default=REPO / ".cache" / "test-corpus")
    parser.add_argument("--rounds", type=int, default=1, help="runs of each, interleaved; the best is kept")
    args = parser.parse_args()
    n_files = sum(1 for _ in (args.corpus / "audio").iterdir()) + sum(1 for _ in (args.corpus / "midi").iterdir())
    with tempfile.TemporaryDirectory(prefix="bench-workers-") as tmp:
        best = {"1": float("inf"), "default": float("inf")}
        for r in range(args.rounds):
            for name, extra in (("1", ["--workers", "1"]), ("default", [])):
                best[name] = min(best[name], cli_run(Path(tmp) / f"{name}-{r}", args.corpus, *extra))
        for table in OUTPUT_TABLES:
            one, default = (canonical_rows(Path(tmp) / f"{n}-0", table) for n in ("1", "default"))
            assert one == default, f"table {table} differs between --workers 1 and the default"
    cores = available_cores()
    report("run_workers_1_s", best["1"], "s", f"{n_files} files, --workers 1 (in-process)")
    report("run_default_s", best["default"], "s", f"{n_files} files, default ({cores} worker processes)")
    report("default_over_workers_1", best["default"] / best["1"], "x", "wall time ratio; tables equal")


if __name__ == "__main__":
    main()
