"""The command line: help, errors, query."""

from __future__ import annotations

import subprocess
import sys

import pytest

from pipelines.cli import main
from pipelines.query import query


@pytest.mark.parametrize("command", ["run", "query", "demo", "train"])
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
    assert (defaults.cluster_similarity, defaults.version_candidates) == (0.80, 20)
    with pytest.raises(SystemExit):
        build_parser().parse_args(["run", "--audio", "a", "--midi", "m", "--out", "o", "--version-candidates", "-1"])
    assert "must be 0 or more" in capsys.readouterr().err
