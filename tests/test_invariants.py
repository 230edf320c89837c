"""The run invariants catch every way rows can go missing, and accept complete runs."""

from __future__ import annotations

import pyarrow as pa
import pyarrow.parquet as pq
import pytest

from pipelines.invariants import RunInvariantError, check_run, violations


def complete_run(top_k: int = 2) -> dict:
    """Two MIDI files (3 and 1 stage-2 survivors), one audio file, one failed input; nothing lost."""
    tracks = [{"uri": "a.mid", "modality": "midi", "status": "ok"},
              {"uri": "b.mid", "modality": "midi", "status": "ok"},
              {"uri": "x.wav", "modality": "audio", "status": "ok"},
              {"uri": "bad.mid", "modality": "midi", "status": "error"}]
    accounts = [{"midi_uri": "a.mid", "survivors": 3, "ranked": 0}, {"midi_uri": "a.mid", "survivors": 0, "ranked": 3},
                {"midi_uri": "b.mid", "survivors": 1, "ranked": 0}, {"midi_uri": "b.mid", "survivors": 0, "ranked": 1}]
    matches = [{"midi_uri": "a.mid"}] * top_k + [{"midi_uri": "b.mid"}]
    return dict(n_inputs=4, top_k=top_k, tracks=tracks, matches=matches,
                errors=[{"uri": "bad.mid", "stage": "parse"}], accounts=accounts, version_pairs=(5, 5))


def test_a_complete_run_breaks_nothing():
    assert violations(**complete_run()) == []


def test_a_pair_lost_between_the_cascade_and_the_ranking_is_caught_even_when_top_k_rows_remain():
    run = complete_run()
    run["accounts"][1] = {"midi_uri": "a.mid", "survivors": 0, "ranked": 2}  # one candidate never arrived
    found = violations(**run)
    assert len(found) == 1 and "lost candidates" in found[0] and "a.mid: 3 kept by stage 2, 2 ranked" in found[0]


def test_a_pair_with_an_errors_row_is_accounted_for():
    run = complete_run()
    run["accounts"][1] = {"midi_uri": "a.mid", "survivors": 0, "ranked": 2}
    run["errors"].append({"uri": "a.mid", "stage": "align"})
    assert violations(**run) == []


def test_missing_matches_rows_a_missing_query_and_a_missing_track_are_caught():
    run = complete_run()
    run["matches"] = run["matches"][1:]
    assert "wrong number of matches rows" in " ".join(violations(**run))
    run = complete_run()
    run["accounts"] = [a for a in run["accounts"] if a["midi_uri"] != "b.mid"]
    assert "never reached the candidate search: b.mid" in " ".join(violations(**run))
    run = complete_run()
    run["tracks"] = run["tracks"][:3]
    assert "expected 4 inputs" in " ".join(violations(**run))
    run = complete_run()
    run["version_pairs"] = (5, 4)
    assert "version pairs" in " ".join(violations(**run))


def test_check_run_reads_the_written_tables_and_fails_with_a_clear_message(tmp_path):
    run = complete_run()
    written = {}
    for table in ("tracks", "matches", "errors"):
        path = tmp_path / f"{table}.parquet"
        pq.write_table(pa.Table.from_pylist(run[table]), path)
        written[table] = [str(path)]
    check_run(n_inputs=4, top_k=2, written=written, accounts=run["accounts"], version_pairs=(5, 5))
    with pytest.raises(RunInvariantError, match="run invariant violated, nothing published: .*lost candidates"):
        check_run(n_inputs=4, top_k=2, written=written, accounts=run["accounts"][:3], version_pairs=(5, 5))


def test_a_broken_invariant_fails_the_run_with_exit_1_and_publishes_nothing(pipeline_out, tiny_corpus, tmp_path,
                                                                             monkeypatch, capsys):
    """A run whose tables break an invariant exits 1 with the reason and leaves the previous tables in place."""
    import shutil

    import pipelines.invariants
    from pipelines.cli import main

    out = tmp_path / "out"
    shutil.copytree(pipeline_out, out)
    before = {p.name: p.stat().st_mtime_ns for p in (out / "matches").iterdir()}
    monkeypatch.setattr(pipelines.invariants, "violations", lambda **_: ["3 MIDI files lost candidates (test)"])
    root = tiny_corpus["root"]
    argv = ["run", "--audio", f"{root}/audio/*", "--midi", f"{root}/midi/*.mid", "--out", str(out), "--no-state",
            "--run-id", "broken", "--workers", "1"]  # in-process: the patched check is not seen by worker processes
    assert main(argv) == 1
    err = capsys.readouterr().err.strip().splitlines()[-1]
    assert err.startswith("mirmatch: run invariant violated, nothing published: 3 MIDI files lost candidates (test)")
    assert {p.name: p.stat().st_mtime_ns for p in (out / "matches").iterdir()} == before  # not replaced
    assert not (out / "history" / "runs" / "run=broken").exists()
