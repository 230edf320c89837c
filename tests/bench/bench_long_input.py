"""Memory and time of analysing long recordings, block by block, against the one-piece path.

Writes synthetic recordings (8 kHz mono WAV, one chord a minute) of 20, 60 and 180 minutes, analyses each in
a fresh process and prints its peak resident memory and time; the reference is the one-piece path
(``analyze_source`` on the whole file's bytes) on the 20-minute recording, measured in the same run:
    python tests/bench/bench_long_input.py [--minutes 20 60 180]
"""

from __future__ import annotations

import argparse
import json
import subprocess
import sys
import tempfile
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parents[2]))

from _common import report  # noqa: E402

REPO = Path(__file__).resolve().parents[2]
CHILD = """
import json, resource, sys, time
from pathlib import Path
from encoders.analyze import analyze_long_audio, analyze_source
from encoders.codes import load_hasher
path, mode = sys.argv[1], sys.argv[2]
hasher = load_hasher()
started = time.perf_counter()
if mode == "streamed":
    with open(path, "rb") as f:
        result = analyze_long_audio(f, path, hasher, "bench")
else:
    result = analyze_source(Path(path).read_bytes(), path, "audio", hasher)
print(json.dumps({"seconds": time.perf_counter() - started, "duration_s": result.duration_s,
                  "peak_mb": resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024}))
"""


def measure(path: Path, mode: str) -> dict:
    proc = subprocess.run([sys.executable, "-c", CHILD, str(path), mode], cwd=REPO, capture_output=True,
                          text=True)
    if proc.returncode:
        sys.exit(f"the {mode} analysis of {path.name} failed:\n{proc.stderr[-3000:]}")
    return json.loads(proc.stdout.strip().splitlines()[-1])


def main() -> None:
    from tests.test_bad_inputs import write_long_recording

    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--minutes", type=int, nargs="+", default=[20, 60, 180])
    args = parser.parse_args()
    with tempfile.TemporaryDirectory() as tmp:
        paths = {m: Path(tmp) / f"{m}min.wav" for m in args.minutes}
        for m, path in paths.items():
            write_long_recording(path, m * 60)
        shortest = min(args.minutes)
        reference = measure(paths[shortest], "one-piece")
        report(f"one-piece analysis of {shortest} min", reference["peak_mb"], "MiB peak",
               f"{reference['seconds']:.1f} s")
        for m in args.minutes:
            streamed = measure(paths[m], "streamed")
            report(f"streamed analysis of {m} min: peak memory / one-piece {shortest} min",
                   streamed["peak_mb"] / reference["peak_mb"], "",
                   f"{streamed['peak_mb']:.0f} vs {reference['peak_mb']:.0f} MiB; {streamed['seconds']:.1f} s, "
                   f"{streamed['seconds'] / reference['seconds']:.2f}x the one-piece time of {shortest} min")


if __name__ == "__main__":
    main()
