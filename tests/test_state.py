"""The state folder and the run history, without Beam."""

from __future__ import annotations

import datetime as dt
import os

import numpy as np

from pipelines.runs import (
    completed_runs,
    new_run_id,
    publish,
    record_run,
    remove_incomplete_runs,
    staged_folder,
)
from pipelines.state import StateStore, log_stale_keys, stale_keys


def test_state_store_round_trip_and_damaged_entries(tmp_path):
    store = StateStore(str(tmp_path), "key1")
    value = {"codes": np.arange(5, dtype=np.uint32), "name": "x"}
    assert store.load_track("ab" * 16, "audio") is None
    store.save_track("ab" * 16, "audio", value)
    loaded = store.load_track("ab" * 16, "audio")
    assert loaded["name"] == "x" and np.array_equal(loaded["codes"], value["codes"])
    assert store.load_track("ab" * 16, "midi") is None  # the same bytes as MIDI are another entry
    assert StateStore(str(tmp_path), "key2").load_track("ab" * 16, "audio") is None  # another model version
    assert not list(tmp_path.rglob("*.tmp-*"))  # written under a temporary name, then renamed

    path = tmp_path / "key1" / "tracks" / "ab" / f"{'ab' * 16}.audio.pkl"
    path.write_bytes(path.read_bytes()[:10])  # as if truncated
    assert store.load_track("ab" * 16, "audio") is None  # recomputed, not a crash

    store.save_pair("m" * 32, "a" * 32, (1.5, None))
    assert store.load_pair("m" * 32, "a" * 32) == (1.5, None)


def test_analysis_key_names_code_and_model():
    from encoders.analyze import analysis_key, analysis_modules

    modules = analysis_modules()
    assert {"encoders.analyze", "encoders.features", "encoders.codes.learned", "hashing.align",
            "hashing.dtw"} <= set(modules)
    assert not [m for m in modules if m.startswith("encoders.training")]
    assert analysis_key() == analysis_key(None) == analysis_key("learned")
    assert analysis_key("random-projection") != analysis_key()
    assert len(analysis_key()) == 16


def test_stale_keys_name_the_results_of_other_analysis_versions(tmp_path, monkeypatch, caplog):
    import pipelines.state as state

    root = str(tmp_path / "state")
    assert stale_keys(root, "new") == [] and stale_keys(None, "new") == []  # nothing kept yet
    StateStore(root, "old1").save_track("ab" * 16, "audio", 1)
    StateStore(root, "old2").save_pair("m" * 32, "a" * 32, 2)
    assert stale_keys(root, "new") == ["old1", "old2"]
    with caplog.at_level("INFO", logger="mirmatch"):
        assert log_stale_keys(root, "new") == ["old1", "old2"]
    assert "analysed again" in caplog.text and "old1, old2" in caplog.text
    StateStore(root, "new").save_track("cd" * 16, "midi", 3)
    assert stale_keys(root, "new") == []  # this version has results: nothing to say
    # Object stores (no folders): the first entry listed names one other key.
    monkeypatch.setattr(state, "_has_folders", lambda _: False)
    assert stale_keys(root, "new") == []
    named = stale_keys(root, "newer")
    assert len(named) == 1 and named[0] in {"old1", "old2", "new"}
    assert stale_keys(str(tmp_path / "none"), "newer") == []


def test_run_ids_sort_by_time():
    early = new_run_id(dt.datetime(2026, 11, 24, 23, 59, 59, tzinfo=dt.UTC))
    late = new_run_id(dt.datetime(2026, 11, 25, 0, 0, 1, tzinfo=dt.UTC))
    assert early == "20261124T235959Z" and early < late


def test_publish_replaces_latest_and_incomplete_runs_are_removed(tmp_path):
    out = str(tmp_path)
    now = dt.datetime.now(dt.UTC)
    for run_id, rows in (("r1", "one"), ("r2", "two")):
        folder = tmp_path / "history" / "tracks" / f"run={run_id}"
        folder.mkdir(parents=True)
        (folder / "part-0.parquet").write_text(rows)
    publish(out, "r1", ["tracks"])
    record_run(out, "r1", now, now, 1, "k", {"tracks": 1})
    assert (tmp_path / "tracks" / "part-0.parquet").read_text() == "one"
    assert os.readlink(tmp_path / "tracks") == "history/tracks/run=r1"  # a link to the run's partition
    # r2 never completed (no runs row): the next run removes its partition, r1's stays.
    assert completed_runs(out) == ["r1"]
    removed = remove_incomplete_runs(out)
    assert removed == [staged_folder(out, "r2", "tracks")]
    assert (tmp_path / "history" / "tracks" / "run=r1").exists()
    assert not (tmp_path / "history" / "tracks" / "run=r2").exists()
    assert (tmp_path / "tracks" / "part-0.parquet").read_text() == "one"  # latest untouched


def test_publish_without_history_keeps_no_history_and_cleans_its_staging(tmp_path):
    out = str(tmp_path)
    (tmp_path / "_staging" / "r1" / "analyses").mkdir(parents=True)  # scratch analyses of a run without state

    def write(run_id):
        folder = tmp_path / "_published" / run_id / "tracks"
        folder.mkdir(parents=True)
        (folder / f"part-{run_id}.parquet").write_text(run_id)

    write("r0")  # a run that was replaced long ago
    write("r1")
    (tmp_path / "tracks").mkdir()  # an older mirmatch's real folder
    (tmp_path / "tracks" / "old-part.parquet").write_text("old")
    publish(out, "r1", ["tracks"], history=False)
    assert [p.name for p in (tmp_path / "tracks").iterdir()] == ["part-r1.parquet"]
    assert not (tmp_path / "_staging" / "r1").exists()
    assert sorted(p.name for p in (tmp_path / "_published").iterdir()) == ["r1"]
    write("r2")
    publish(out, "r2", ["tracks"], history=False)  # r1's tables stay for the readers still on them
    assert [p.name for p in (tmp_path / "tracks").iterdir()] == ["part-r2.parquet"]
    assert sorted(p.name for p in (tmp_path / "_published").iterdir()) == ["r1", "r2"]
    assert not (tmp_path / "history").exists()
