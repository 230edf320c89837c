"""Entry point of the Dataflow flex template (FLEX_TEMPLATE_PYTHON_PY_FILE in deploy/Dockerfile).

The template launcher calls ``python flex_main.py --audio=... --midi=... --out=... [--top_k=K]
[--cluster_similarity=S]`` followed by the Dataflow options of the job (``--runner``, ``--project``,
``--region``, ``--temp_location``, ``--sdk_container_image``, ...). This maps the template parameters onto the
options of ``mirmatch run``, builds the same pipeline, submits it and exits without waiting: the launcher
must return for the job to start.
"""

from __future__ import annotations

import logging
import sys

#: template parameter name -> `mirmatch run` option (parameter names may not contain '-')
PARAMETERS = {"--top_k": "--top-k", "--cluster_similarity": "--cluster-similarity"}
#: template parameters that are `mirmatch run` switches: "true" gives the switch, "false" leaves it out
SWITCHES = {"--export_aligned_midi": "--export-aligned-midi", "--export_jams": "--export-jams"}


def translate(argv: list[str]) -> list[str]:
    """The template's arguments as `mirmatch run` arguments (``--top_k=5`` -> ``--top-k=5``,
    ``--export_jams=true`` -> ``--export-jams``)."""
    out = ["run"]
    for arg in argv:
        name, sep, value = arg.partition("=")
        if name in SWITCHES:
            if value.lower() not in ("true", "false"):
                raise SystemExit(f"mirmatch: error: {name} must be true or false, got {value!r}")
            out += [SWITCHES[name]] if value.lower() == "true" else []
            continue
        out.append(PARAMETERS.get(name, name) + sep + value)
    return out


def parse(argv: list[str]):
    """(RunConfig, Beam options) for the template's arguments, parsed by the `mirmatch run` parser."""
    from pipelines.cli import build_parser

    args, beam_args = build_parser().parse_known_args(translate(argv))
    from pipelines.cli import run_config

    cfg = run_config(args, beam_args)
    return cfg, beam_args


def launch(argv: list[str]) -> None:
    """Submit the job and return at once (the job matches the inputs and publishes its tables at its end)."""
    import apache_beam as beam
    from apache_beam.options.pipeline_options import PipelineOptions

    from pipelines.pipeline import build_pipeline
    from pipelines.runs import remove_incomplete_runs

    cfg, beam_args = parse(argv)
    logging.info("mirmatch: submitting %d audio and %d MIDI patterns (matched by the job) into %s",
                 len(cfg.audio), len(cfg.midi), cfg.out)
    remove_incomplete_runs(cfg.out)
    p = beam.Pipeline(options=PipelineOptions(beam_args))
    run_id = build_pipeline(p, None, cfg)  # the job graph holds the patterns, not the files
    logging.info("mirmatch: run %s; its tables replace the latest ones when the job completes", run_id)
    p.run()  # no wait_until_finish(): it would keep the launcher from returning


if __name__ == "__main__":
    logging.getLogger().setLevel(logging.INFO)
    launch(sys.argv[1:])
