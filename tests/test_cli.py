"""The command line: help, errors, query."""

from __future__ import annotations

import subprocess
import sys

import pytest

from pipelines.cli import main
from pipelines.query import query
from tests.conftest import REPO


@pytest.mark.parametrize("command", ["run", "query", "report", "demo", "train"])
def test_every_subcommand_answers_help(command):
    proc = subprocess.run([sys.executable, "-m", "pipelines", command, "--help"], capture_output=True, text=True)
    assert proc.returncode == 0 and "usage: mirmatch" in proc.stdout


def test_run_without_inputs_fails_with_one_line(tmp_path, capsys):
    code = main(["run", "--audio", str(tmp_path / "none*.wav"), "--midi", str(tmp_path / "none*.mid"),
                 "--out", str(tmp_path / "out")])
    err = capsys.readouterr().err.strip().splitlines()
    assert code == 1
    assert err[-1].startswith("mirmatch: error:") and "no input files" in err[-1]


def test_query_tables_by_name(pipeline_out):
    text = query(str(pipeline_out), "SELECT status, count(*) AS n FROM tracks GROUP BY status ORDER BY status")
    assert "error" in text and "ok" in text
    text = query(str(pipeline_out), "SELECT count(*) AS n FROM matches m JOIN tracks t ON m.midi_id = t.track_id")
    assert "n" in text


def test_query_missing_folder(tmp_path, capsys):
    assert main(["query", str(tmp_path), "SELECT 1"]) == 1
    assert "no mirmatch tables" in capsys.readouterr().err


def test_manifest_input(pipeline_out, tiny_corpus, tmp_path):
    from tests.conftest import read_table

    manifest = tmp_path / "audio.txt"
    manifest.write_text("# audio files\n" + "\n".join(tiny_corpus["audio"][:2]) + "\n\n")
    out = tmp_path / "out"
    assert main(["run", "--audio", f"@{manifest}", "--midi", tiny_corpus["midi"][0], "--out", str(out)]) == 0
    assert len(read_table(out, "tracks")) == 3


def test_demo_summary_on_a_real_run(pipeline_out, tiny_corpus):
    from pipelines.demo import summarise

    truth = {"pairs": [{"midi": p["midi"], "audio": p["audio"]} for p in tiny_corpus["pairs"]]}
    text, figures = summarise(str(pipeline_out), truth)
    assert figures["true_pairs_at_rank_1"] == figures["true_pairs"] == len(truth["pairs"])
    assert figures["false_matches"] == 0 and figures["segments"] > 0
    assert "top matches:" in text and "Parquet tables:" in text


def test_version_options_reach_the_run_config(capsys):
    from pipelines.cli import build_parser, run_config

    args = build_parser().parse_args(["run", "--audio", "a/*", "--midi", "m/*", "--out", "o",
                                      "--cluster-similarity", "0.9", "--version-candidates", "0"])
    cfg = run_config(args, [])
    assert (cfg.cluster_similarity, cfg.version_candidates) == (0.9, 0)
    defaults = run_config(build_parser().parse_args(["run", "--audio", "a", "--midi", "m", "--out", "o"]), [])
    assert (defaults.cluster_similarity, defaults.version_candidates, defaults.calibration) == (None, 20, None)
    with pytest.raises(SystemExit):
        build_parser().parse_args(["run", "--audio", "a", "--midi", "m", "--out", "o", "--version-candidates", "-1"])
    assert "must be 0 or more" in capsys.readouterr().err


def test_export_flags_reach_the_run_config():
    from pipelines.cli import build_parser, run_config

    base = ["run", "--audio", "a/*", "--out", "o"]
    defaults = run_config(build_parser().parse_args(base), [])
    assert (defaults.export_aligned_midi, defaults.export_jams) == (False, False)
    cfg = run_config(build_parser().parse_args(base + ["--export-aligned-midi", "--export-jams"]), [])
    assert (cfg.export_aligned_midi, cfg.export_jams) == (True, True)


def test_version_flag():
    proc = subprocess.run([sys.executable, "-m", "pipelines", "--version"], capture_output=True, text=True)
    assert proc.returncode == 0 and proc.stdout.startswith("mirmatch ") and proc.stdout.split()[1][0].isdigit()


def test_a_mistyped_option_is_a_usage_error_with_a_suggestion(tmp_path, capsys):
    with pytest.raises(SystemExit) as exit_info:
        main(["run", "--audio", "a/*", "--out", str(tmp_path / "out"), "--topk", "3"])
    assert exit_info.value.code == 2
    err = capsys.readouterr().err
    assert "unrecognized arguments: --topk (did you mean --top-k?)" in err
    assert not (tmp_path / "out").exists()  # nothing ran


def test_beam_options_still_reach_beam():
    from pipelines.cli import unknown_options

    beam_args = ["--runner=DataflowRunner", "--project", "p", "--region=r", "--temp_location=gs://t/tmp",
                 "--direct_num_workers=2", "--direct_running_mode=multi_processing", "--job_endpoint=localhost:1",
                 "--environment_type=LOOPBACK", "--experiments=x", "--save_main_session"]
    assert unknown_options(beam_args) == []
    assert unknown_options(beam_args + ["--bogus", "1"]) == ["--bogus"]


def test_run_needs_audio_or_midi_but_not_both(tmp_path, tiny_corpus, capsys):
    from tests.conftest import read_table

    with pytest.raises(SystemExit) as exit_info:
        main(["run", "--out", str(tmp_path / "none")])
    assert exit_info.value.code == 2 and "at least one --audio or --midi" in capsys.readouterr().err
    out = tmp_path / "audio-only"
    assert main(["run", "--audio", f"{tiny_corpus['root']}/audio/*", "--out", str(out), "--no-state"]) == 0
    tracks = read_table(out, "tracks")
    assert {t["modality"] for t in tracks} == {"audio"} and all(t["status"] == "ok" for t in tracks)
    assert read_table(out, "matches") == [] and len(read_table(out, "clusters")) == len(tracks)


def test_a_run_where_no_input_could_be_analysed_exits_3(tmp_path, bad_inputs, capsys):
    from tests.conftest import read_table

    out = tmp_path / "out"
    argv = ["run", "--out", str(out), "--no-state"]
    for path in bad_inputs["audio"]:
        argv += ["--audio", path]
    for path in bad_inputs["midi"]:
        argv += ["--midi", path]
    assert main(argv) == 3
    assert "no input could be analysed" in capsys.readouterr().err.strip().splitlines()[-1]
    assert {t["status"] for t in read_table(out, "tracks")} == {"error"}  # the tables are written all the same


def test_query_shows_every_row_up_to_the_limit(pipeline_out, capsys):
    """The text table is never cut in the middle: every row up to --limit is printed, then the count."""
    from tests.conftest import read_table

    n_segments = len(read_table(pipeline_out, "segments"))
    assert n_segments > 25
    assert main(["query", str(pipeline_out), "SELECT * FROM segments ORDER BY uri, segment_index", "--limit", "0"]) == 0
    lines = capsys.readouterr().out.strip().splitlines()
    assert lines[-1] == f"({n_segments} rows)" and len(lines) == n_segments + 3  # header, rule, rows, count
    assert main(["query", str(pipeline_out), "SELECT * FROM segments", "--limit", "25"]) == 0
    assert capsys.readouterr().out.strip().splitlines()[-1] == "(25 rows)"


@pytest.mark.parametrize("fmt", ["csv", "json", "parquet"])
def test_query_formats_round_trip(fmt, pipeline_out, tmp_path):
    import csv
    import json

    import pyarrow.parquet as pq

    from tests.conftest import read_table

    sql = "SELECT track_id, uri, duration_s, status FROM tracks ORDER BY uri"
    path = tmp_path / f"result.{fmt}"
    assert main(["query", str(pipeline_out), sql, "--format", fmt, "--output", str(path), "--limit", "0"]) == 0
    if fmt == "csv":
        rows = list(csv.DictReader(path.open()))
    elif fmt == "json":
        rows = [json.loads(line) for line in path.read_text().splitlines()]
    else:
        rows = pq.read_table(path).to_pylist()
    expected = sorted(read_table(pipeline_out, "tracks"), key=lambda t: t["uri"])
    assert [r["uri"] for r in rows] == [t["uri"] for t in expected]
    assert [r["status"] for r in rows] == [t["status"] for t in expected]


def test_query_parquet_needs_an_output_file(pipeline_out, capsys):
    with pytest.raises(SystemExit) as exit_info:
        main(["query", str(pipeline_out), "SELECT 1 AS x", "--format", "parquet"])
    assert exit_info.value.code == 2 and "--format parquet needs --output" in capsys.readouterr().err


def _run_env(tmp_path, **extra) -> dict:
    """The environment of a `mirmatch` subprocess with no Google Cloud credentials anywhere."""
    import os

    env = {k: v for k, v in os.environ.items() if k not in ("GOOGLE_APPLICATION_CREDENTIALS", "HTTPS_PROXY",
                                                              "https_proxy")}
    env.update(HOME=str(tmp_path), CLOUDSDK_CONFIG=str(tmp_path / "gcloud"), NO_GCE_CHECK="True",
               PYTHONPATH=str(REPO), **extra)
    return env


def test_gs_input_without_credentials_fails_within_seconds(tmp_path):
    import time

    started = time.monotonic()
    proc = subprocess.run([sys.executable, "-m", "pipelines", "run", "--audio", "gs://some-bucket/audio/*.wav",
                           "--out", str(tmp_path / "out")], capture_output=True, text=True, timeout=60,
                          env=_run_env(tmp_path), cwd=REPO)
    elapsed = time.monotonic() - started
    assert proc.returncode == 1 and elapsed < 20, (proc.returncode, elapsed, proc.stderr)
    last = proc.stderr.strip().splitlines()[-1]
    assert "gs://some-bucket/audio/*.wav" in last and "no Google Cloud credentials" in last
    assert "gcloud auth application-default login" in last and "GOOGLE_APPLICATION_CREDENTIALS" in last
    assert not (tmp_path / "out").exists()


def test_gs_out_without_network_fails_within_seconds(tmp_path, tiny_corpus):
    import time

    credentials = tmp_path / "adc.json"  # well-formed credentials; using them would need the network
    credentials.write_text('{"type": "authorized_user", "client_id": "x", "client_secret": "y", '
                           '"refresh_token": "z"}')
    env = _run_env(tmp_path, GOOGLE_APPLICATION_CREDENTIALS=str(credentials),
                   HTTPS_PROXY="http://127.0.0.1:9")  # a proxy that refuses: no network, on any machine
    started = time.monotonic()
    proc = subprocess.run([sys.executable, "-m", "pipelines", "run", "--midi", tiny_corpus["midi"][0],
                           "--out", "gs://some-bucket/out"], capture_output=True, text=True, timeout=60, env=env,
                          cwd=REPO)
    elapsed = time.monotonic() - started
    assert proc.returncode == 1 and elapsed < 20, (proc.returncode, elapsed, proc.stderr)
    last = proc.stderr.strip().splitlines()[-1]
    assert "gs://some-bucket/out" in last and "127.0.0.1:9 cannot be reached" in last and "check the network" in last


def test_gs_paths_are_found_wherever_they_are_given():
    from pipelines.cloud import check_gcs_access, gcs_paths

    assert gcs_paths(["a/*.wav", "@gs://b/list.txt", None, "--temp_location=gs://b/tmp", "gs://b/out", ""]) == [
        "@gs://b/list.txt", "gs://b/tmp", "gs://b/out"]
    check_gcs_access([])  # nothing on Cloud Storage: no check, no network


def test_progress_bar_on_a_terminal_and_timers_summary(monkeypatch):
    import io

    from pipelines.progress import Progress, timer_summary

    err = io.StringIO()
    monkeypatch.setattr(sys, "stderr", err)
    progress = Progress("analyse", total=3, bar=True)
    for _ in range(3):
        progress.step()
    assert "mirmatch [analyse]" in err.getvalue() and "3/3" in err.getvalue()
    line = timer_summary({"verify": {"n": 40, "mean_ms": 2.0, "max_ms": 9, "total_s": 0.1},
                          "analyse": {"n": 2, "mean_ms": 850.4, "max_ms": 900, "total_s": 1.7}})
    assert line == ("mirmatch: time per element: analyse 2 x 850 ms (max 900, total 2 s); "
                    "verify 40 x 2 ms (max 9, total 0 s)")


def test_run_logs_timestamped_lines_and_stage_timers(tmp_path, tiny_corpus):
    import os
    import re

    pair = tiny_corpus["pairs"][0]
    proc = subprocess.run([sys.executable, "-m", "pipelines", "run", "--audio", pair["audio"], "--midi", pair["midi"],
                           "--out", str(tmp_path / "out")], capture_output=True, text=True, timeout=600,
                          env={**os.environ, "PYTHONPATH": str(REPO)}, cwd=REPO)
    assert proc.returncode == 0, proc.stderr
    lines = proc.stderr.splitlines()
    stamped = [line for line in lines if re.match(r"\d{4}-\d\d-\d\d \d\d:\d\d:\d\d mirmatch: ", line)]
    assert any("mirmatch: run " in line for line in stamped), lines  # the run's start, with its time
    assert any("[analyse] 2 tracks done of 2" in line for line in stamped), lines  # a progress line
    timers, = [line for line in lines if line.startswith("mirmatch: time per element: ")]
    assert re.search(r"analyse 2 x \d+ ms", timers) and re.search(r"search 1 x \d+ ms", timers), timers
    assert re.search(r"align 1 x \d+ ms", timers), timers
