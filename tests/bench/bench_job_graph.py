"""The size of the Dataflow job graph against the number of input files: it must not grow.

Writes manifests of 1k, 100k and 1M fake ``gs://`` paths, builds the Dataflow job offline from each
(``--runner=DataflowRunner --dry_run=True``, as the flex template launcher does, no network) and prints the
serialised portable pipeline's size; the inputs are matched inside the job (``pipelines.sources.ReadInputs``),
so the graph holds the manifest's path, never its lines. For reference, the size of the graph that lists
every path in it (``beam.Create``, what runs did before) is printed for the smaller manifests:
    python tests/bench/bench_job_graph.py [--sizes 1000 100000 1000000] [--create-sizes 1000 10000]
"""

from __future__ import annotations

import argparse
import logging
import sys
import tempfile
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parents[2]))

from _common import report  # noqa: E402

IMAGE = "us-central1-docker.pkg.dev/test-project/mirmatch/mirmatch:test"


def fake_paths(n: int) -> list[str]:
    """Paths named like a real catalogue's."""
    return [f"gs://catalogue-bucket/audio/label-{i % 997:03d}/album-{i // 13:07d}/track-{i:08d}.flac"
            for i in range(n)]


def graph_bytes(manifest: Path | None, inputs: list[tuple[str, str]] | None, tmp: Path) -> int:
    """Bytes of the serialised portable pipeline of the Dataflow job built from ``manifest`` (or ``inputs``)."""
    import apache_beam as beam
    from apache_beam.options.pipeline_options import PipelineOptions

    from pipelines.pipeline import build_pipeline
    from tests.test_runners import load_flex_main

    audio = f"@{manifest}" if manifest else "gs://catalogue-bucket/audio/**"
    cfg, beam_args = load_flex_main().parse([
        f"--audio={audio}", "--midi=gs://catalogue-bucket/midi/*.mid", "--out=gs://catalogue-bucket/out",
        "--runner=DataflowRunner", "--dry_run=True", "--project=test-project", "--region=us-central1",
        "--temp_location=gs://catalogue-bucket/tmp", f"--sdk_container_image={IMAGE}", "--job_name=graph-size"])
    tempfile.tempdir = str(tmp)
    p = beam.Pipeline(options=PipelineOptions(beam_args))
    build_pipeline(p, inputs, cfg)
    result = p.run()
    result.wait_until_finish()
    return len(result.job.proto_pipeline.SerializeToString())


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--sizes", type=int, nargs="+", default=[1_000, 100_000, 1_000_000])
    parser.add_argument("--create-sizes", type=int, nargs="*", default=[1_000, 10_000])
    args = parser.parse_args()
    logging.getLogger().setLevel(logging.ERROR)
    with tempfile.TemporaryDirectory() as folder:
        tmp = Path(folder)
        sizes = {}
        for n in args.sizes:
            manifest = tmp / f"manifest-{n}.txt"
            manifest.write_text("\n".join(fake_paths(n)) + "\n")
            sizes[n] = graph_bytes(manifest, None, tmp)
            print(f"manifest of {n:>9,} paths ({manifest.stat().st_size / 2**20:6.1f} MB): job graph "
                  f"{sizes[n] / 1024:8.1f} KB", flush=True)
        for n in args.create_sizes:
            inputs = [(path, "audio") for path in fake_paths(n)]
            size = graph_bytes(None, inputs, tmp)
            print(f"paths listed in the graph (beam.Create), {n:>9,} paths: job graph {size / 1024:8.1f} KB",
                  flush=True)
        smallest, largest = min(sizes), max(sizes)
        report(f"job graph, {largest:,} vs {smallest:,} paths", sizes[largest] / sizes[smallest], "x",
               "1.0 = the graph does not grow with the number of files")


if __name__ == "__main__":
    main()
