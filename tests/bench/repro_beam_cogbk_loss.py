"""Minimal reproduction, without mirmatch, of elements lost by Beam's multi-process DirectRunner.

A CoGroupByKey joins 40 x 10 elements of about 2 MB each (a NumPy array inside a dataclass, pickled by
Beam's fallback coder) with 50 small keyed elements. With ``--direct_running_mode=multi_processing
--direct_num_workers=2`` some runs deliver fewer elements than were emitted, with no error and exit 0
(apache-beam 2.77.0, Python 3.11: 3 of 5 runs lost 20, 70 and 20 of 400). In-process, multi-threaded, with
one worker process, with 0.5 MB elements, or with a plain GroupByKey instead of the CoGroupByKey, none
were lost in any run tried. What is lost comes in runs of 5 consecutive elements of one input (about 10 MB,
the size at which the SDK worker flushes an output stream to the data channel): whole data chunks vanish.

mirmatch no longer sends large elements through joins (candidates carry ids; analyses are loaded by id),
and checks at the end of every run that nothing was lost (``pipelines.invariants``).

    python tests/bench/repro_beam_cogbk_loss.py [--runs 5] [--mb 2]

prints one line per run: emitted, received, lost.
"""

from __future__ import annotations

import argparse
import os
import sys
import tempfile

HERE = os.path.dirname(os.path.abspath(__file__))
sys.path.insert(0, HERE)  # worker processes unpickle Payload from _beam_payload: they get HERE on PYTHONPATH
os.environ["PYTHONPATH"] = os.pathsep.join(filter(None, [HERE, os.environ.get("PYTHONPATH")]))

import apache_beam as beam  # noqa: E402
import numpy as np  # noqa: E402
from _beam_payload import Payload  # noqa: E402
from apache_beam.options.pipeline_options import PipelineOptions  # noqa: E402

N_INPUTS, PER_INPUT, N_KEYS = 40, 10, 50


def emit(i: int, mb: float, marks: str):
    """Ten keyed copies of one ~``mb`` MB payload; a marker file per emitted element."""
    payload = Payload(i, np.full(int(mb * 2**20 / 4), i, np.float32))
    for j in range(PER_INPUT):
        open(os.path.join(marks, f"out_{i}_{j}"), "w").close()
        yield f"k{(i * 7 + j) % N_KEYS:03d}", (payload, j)


def receive(element, marks: str) -> None:
    """A marker file per element that came out of the join."""
    _, grouped = element
    for payload, j in grouped["big"]:
        open(os.path.join(marks, f"in_{payload.index}_{j}"), "w").close()


def run_once(mb: float, beam_args: list[str]) -> tuple[int, int, list[str]]:
    marks = tempfile.mkdtemp(prefix="beam-loss-")
    with beam.Pipeline(options=PipelineOptions(beam_args)) as p:
        big = (p | "Inputs" >> beam.Create(range(N_INPUTS)) | beam.Reshuffle()
               | "Emit" >> beam.FlatMap(emit, mb=mb, marks=marks))
        small = p | "Keys" >> beam.Create([f"k{k:03d}" for k in range(N_KEYS)]) | beam.Map(lambda k: (k, k))
        _ = {"small": small, "big": big} | beam.CoGroupByKey() | beam.Map(receive, marks=marks)
    names = os.listdir(marks)
    emitted = {n[4:] for n in names if n.startswith("out_")}
    received = {n[3:] for n in names if n.startswith("in_")}
    return len(emitted), len(received), sorted(emitted - received)


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--runs", type=int, default=5)
    parser.add_argument("--mb", type=float, default=2.0, help="size of each payload")
    args, beam_args = parser.parse_known_args()
    beam_args = beam_args or ["--direct_running_mode=multi_processing", "--direct_num_workers=2"]
    print(f"apache-beam {beam.__version__}, {' '.join(beam_args)}, {args.mb} MB elements")
    for run in range(args.runs):
        emitted, received, lost = run_once(args.mb, beam_args)
        print(f"run {run + 1}: emitted {emitted}, received {received}, lost {len(lost)} {lost[:10]}", flush=True)


if __name__ == "__main__":
    main()
