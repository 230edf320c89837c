"""Nightly reindexing: a state folder makes a second run redo only what is new, with the tables of a full
rebuild; every run keeps its own partition; a run killed half-way is finished by the next one."""

from __future__ import annotations

import os
import signal
import subprocess
import sys
import time
from pathlib import Path

import pytest

from tests.conftest import REPO, assert_same_tables, read_table


def run_argv(out: Path, audio: list[str], midi: list[str], *extra: str) -> list[str]:
    argv = ["run", "--out", str(out), *extra]
    for path in audio:
        argv += ["--audio", path]
    for path in midi:
        argv += ["--midi", path]
    return argv


def run_counters(argv: list[str]) -> dict:
    """Run `mirmatch run` in this process and return its counters."""
    from pipelines.cli import build_parser, run_config
    from pipelines.pipeline import run

    args, beam_args = build_parser().parse_known_args(argv)
    return run(run_config(args, beam_args))


def all_inputs(tiny_corpus, bad_inputs) -> tuple[list[str], list[str]]:
    return (sorted(tiny_corpus["audio"]) + bad_inputs["audio"], sorted(tiny_corpus["midi"]) + bad_inputs["midi"])


def test_second_run_redoes_only_new_files_and_equals_a_full_rebuild(pipeline_out, tiny_corpus, bad_inputs, tmp_path):
    from pipelines.query import query

    audio, midi = all_inputs(tiny_corpus, bad_inputs)
    new_audio, new_midi = sorted(tiny_corpus["audio"])[-1], sorted(tiny_corpus["midi"])[-1]
    out = tmp_path / "out"
    first = run_counters(run_argv(out, [a for a in audio if a != new_audio], [m for m in midi if m != new_midi],
                                  "--run-id", "night-1"))
    second = run_counters(run_argv(out, audio, midi, "--run-id", "night-2"))

    assert first["tracks_analyzed"] == len(audio) + len(midi) - 2
    assert (second["tracks_analyzed"], second["tracks_reused"]) == (2, first["tracks_analyzed"])
    full_pairs = sum(1 for _ in read_table(pipeline_out, "matches"))  # every candidate pair is a matches row here
    assert second["pairs_aligned"] + second["pairs_reused"] == full_pairs
    assert 0 < second["pairs_aligned"] < full_pairs / 2
    assert_same_tables(out, pipeline_out)  # the tables of a full rebuild without any state

    # Both runs are kept, each in its own partition; the latest is easy to pick.
    assert sorted(p.name for p in (out / "history" / "tracks").iterdir()) == ["run=night-1", "run=night-2"]
    runs = query(str(out), "SELECT run_id FROM runs ORDER BY run_id", 0)
    assert "night-1" in runs and "night-2" in runs
    latest = query(str(out), "SELECT count(*) AS n FROM tracks_history WHERE run = (SELECT max(run_id) FROM runs)", 0)
    assert str(len(audio) + len(midi)) in latest


def test_run_killed_half_way_is_completed_by_the_next(pipeline_out, tiny_corpus, bad_inputs, tmp_path):
    audio, midi = all_inputs(tiny_corpus, bad_inputs)
    out = tmp_path / "out"
    argv = run_argv(out, audio, midi)
    proc = subprocess.Popen([sys.executable, "-m", "pipelines", *argv], cwd=REPO, start_new_session=True,
                            stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)
    try:
        deadline = time.monotonic() + 300
        while len(list(out.glob("_state/*/tracks/*/*.npz"))) < 3:
            assert proc.poll() is None, "the run ended before it could be killed"
            assert time.monotonic() < deadline, "no track analysed within 300 s"
            time.sleep(0.1)
        os.killpg(proc.pid, signal.SIGKILL)
    finally:
        if proc.poll() is None:
            os.killpg(proc.pid, signal.SIGKILL)
        proc.wait()
    assert not (out / "tracks").exists()  # nothing half-written is published
    killed_partitions = list((out / "history").glob("*/run=*"))

    counters = run_counters(argv)
    assert counters["tracks_reused"] >= 3
    assert_same_tables(out, pipeline_out)
    partitions = sorted(p.name for p in (out / "history" / "tracks").iterdir())
    assert partitions == [f"run={counters['run_id']}"]  # the killed run's partial partition is gone
    assert all(not p.exists() or p.name == f"run={counters['run_id']}" for p in killed_partitions)


class _Bomb:
    """Unpickling this creates the file ``path``: what a writer could plant in a shared state folder."""

    def __init__(self, path: str):
        self.path = path

    def __reduce__(self):
        return (open, (self.path, "w"))


def test_tampered_state_is_recomputed_never_executed(pipeline_out, tiny_corpus, bad_inputs, tmp_path, caplog):
    """Entries replaced by a pickle bomb or garbage (and an old-format folder beside them): the run reads no
    pickle, recomputes those entries and writes the tables of a full rebuild."""
    import pickle
    import shutil

    audio, midi = all_inputs(tiny_corpus, bad_inputs)
    out = tmp_path / "out"
    shutil.copytree(pipeline_out / "_state", out / "_state")
    marker = tmp_path / "payload-ran"
    tracks = sorted((out / "_state").glob("*/tracks/*/*.npz"))
    pairs = sorted((out / "_state").glob("*/pairs/*/*/*.npz"))
    assert len(tracks) >= 4 and pairs
    tracks[0].write_bytes(pickle.dumps(_Bomb(str(marker))))
    tracks[1].write_bytes(b"\x93NUMPY garbage" * 40)
    pairs[0].write_bytes(pickle.dumps(_Bomb(str(marker))))
    with caplog.at_level("WARNING", logger="mirmatch"):  # in-process, where caplog sees the workers' warnings
        counters = run_counters([*run_argv(out, audio, midi), "--workers", "1"])
    assert not marker.exists()
    assert counters["tracks_analyzed"] == 2 and counters["pairs_aligned"] >= 1
    assert "not valid typed state" in caplog.text
    assert_same_tables(out, pipeline_out)


def test_old_format_state_is_rebuilt_with_one_log_line(tiny_corpus, tmp_path, caplog):
    from encoders.analyze import analysis_key

    pair = tiny_corpus["pairs"][0]
    out = tmp_path / "out"
    old = out / "_state" / analysis_key() / "tracks" / "ab" / f"{'ab' * 16}.audio.pkl"
    old.parent.mkdir(parents=True)
    old.write_bytes(b"an entry of the pickled format")
    with caplog.at_level("INFO", logger="mirmatch"):
        counters = run_counters(run_argv(out, [pair["audio"]], [pair["midi"]]))
    assert caplog.text.count("state written by an older version: rebuilding") == 1
    assert counters["tracks_analyzed"] == 2 and counters["tracks_ok"] == 2
    assert len(list(out.glob("_state/*/tracks/*/*.npz"))) == 2


@pytest.mark.parametrize("flag", ["--no-state", "--no-history"])
def test_runs_without_state_or_history(tiny_corpus, tmp_path, flag):
    from pipelines.cli import main

    out = tmp_path / "out"
    pair = tiny_corpus["pairs"][0]
    assert main(run_argv(out, [pair["audio"]], [pair["midi"]], flag)) == 0
    assert len(read_table(out, "tracks")) == 2
    assert (out / "_state").exists() == (flag != "--no-state")
    assert (out / "history").exists() == (flag != "--no-history")
    assert not list(out.glob("_staging/*"))  # its staged tables were moved, not left behind
