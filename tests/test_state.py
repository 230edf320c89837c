"""The state folder and the run history, without Beam."""

from __future__ import annotations

import datetime as dt
import os

import numpy as np
import pytest

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

    path = tmp_path / "key1" / "tracks" / "ab" / f"{'ab' * 16}.audio.npz"
    path.write_bytes(path.read_bytes()[:10])  # as if truncated
    assert store.load_track("ab" * 16, "audio") is None  # recomputed, not a crash

    store.save_pair("m" * 32, "a" * 32, (1.5, None))
    assert store.load_pair("m" * 32, "a" * 32) == (1.5, None)


def _analysis():
    from encoders.analyze import TrackAnalysis, TrackWarning
    from encoders.structure.laplacian import Segment

    rng = np.random.default_rng(0)
    return TrackAnalysis(track_id="ab" * 16, uri="file:///x.wav", modality="audio", duration_s=12.5,
                         cqt=rng.random((40, 48), dtype=np.float32),
                         frame_codes=rng.integers(0, 2**32, 5, dtype=np.uint32),
                         track_code=rng.integers(0, 256, 32, dtype=np.uint8),
                         cover_embedding=rng.random(16, dtype=np.float32),
                         segments=[Segment(0.0, 6.0, "A"), Segment(6.0, 12.5, "B")],
                         warnings=[TrackWarning("ClippedAudio", "2% clipped")],
                         version_sequence=rng.random((7, 12)).astype(np.float16),
                         window_codes=rng.integers(0, 256, (3, 32), dtype=np.uint8))


def test_typed_entries_round_trip_dataclasses_field_by_field(tmp_path):
    from hashing.align import PairAlignment
    from pipelines.analyse import TrackFailure
    from pipelines.match import PairResult

    store = StateStore(str(tmp_path), "key")
    analysis = _analysis()
    store.save_track(analysis.track_id, "audio", analysis)
    loaded = store.load_track(analysis.track_id, "audio")
    assert type(loaded) is type(analysis) and loaded.segments == analysis.segments
    assert loaded.warnings == analysis.warnings and loaded.uri == analysis.uri and loaded.duration_s == 12.5
    for name in ("cqt", "frame_codes", "track_code", "cover_embedding", "version_sequence", "window_codes"):
        a, b = getattr(analysis, name), getattr(loaded, name)
        assert a.dtype == b.dtype and a.shape == b.shape and np.array_equal(a, b), name
    assert loaded.stage1_codes().shape == (4, 32) and np.array_equal(loaded.stage1_codes()[0], analysis.track_code)
    store.save_track("cd" * 16, "midi", TrackFailure("parse", "BadMidi", "not a MIDI file"))
    assert store.load_track("cd" * 16, "midi") == TrackFailure("parse", "BadMidi", "not a MIDI file")

    times = np.linspace(0, 10, 7)
    pair = PairResult(PairAlignment(np.float64(0.42), times, times * 1.1), refined=(times, times + 1))
    store.save_pair("m" * 32, "a" * 32, pair)
    back = store.load_pair("m" * 32, "a" * 32)
    assert isinstance(back, PairResult) and back.alignment.score == pair.alignment.score
    assert np.array_equal(back.alignment.audio_times_s, times * 1.1) and np.array_equal(back.refined[1], times + 1)
    assert store.load_track("m" * 32, "audio") is None  # a track entry never yields a pair's classes
    # A track entry read as a pair (classes not allowed there) is rejected, not built.
    (tmp_path / "key" / "pairs" / "ab").mkdir(parents=True)
    (tmp_path / "key" / "pairs" / "ab" / ("ab" * 16)).mkdir()
    src = tmp_path / "key" / "tracks" / "ab" / f"{'ab' * 16}.audio.npz"
    (tmp_path / "key" / "pairs" / "ab" / ("ab" * 16) / f"{'cd' * 16}.npz").write_bytes(src.read_bytes())
    assert store.load_pair("ab" * 16, "cd" * 16) is None


def test_entries_with_other_fields_are_treated_as_missing(tmp_path, monkeypatch):
    """A class that gained (or lost) a field since the entry was written: the entry is recomputed."""
    import dataclasses

    import pipelines.state as state
    from pipelines.state_format import StateFormatError, dumps, loads

    @dataclasses.dataclass
    class Old:
        score: float
        times: np.ndarray

    @dataclasses.dataclass
    class New:
        score: float
        times: np.ndarray
        spread: float = 0.0

    New.__qualname__ = Old.__qualname__  # the same class, one version later
    data = dumps(Old(0.5, np.arange(3.0)))
    assert loads(data, [Old]).score == 0.5
    with pytest.raises(StateFormatError, match="fields"):
        loads(data, [New])
    store = StateStore(str(tmp_path), "k")
    monkeypatch.setattr(state, "pair_types", lambda: (New,))
    path = tmp_path / "k" / "pairs" / "mm" / ("m" * 32)
    path.mkdir(parents=True)
    (path / f"{'a' * 32}.npz").write_bytes(data)
    assert store.load_pair("m" * 32, "a" * 32) is None


def test_tampered_entries_are_rejected_and_never_executed(tmp_path):
    """A pickle bomb under an entry's name, an .npz holding an object array, or garbage: never run, missing."""
    import pickle

    from pipelines.state_format import FORMAT

    marker = tmp_path / "payload-ran"

    class Bomb:
        def __reduce__(self):
            return (open, (str(marker), "w"))

    store = StateStore(str(tmp_path / "state"), "k")
    store.save_track("ab" * 16, "audio", _analysis())
    path = tmp_path / "state" / "k" / "tracks" / "ab" / f"{'ab' * 16}.audio.npz"
    bomb = pickle.dumps(Bomb())
    pickle.loads(bomb)  # the payload works: it creates the marker when unpickled
    assert marker.exists()
    marker.unlink()
    import io

    objects = io.BytesIO()
    header = np.frombuffer(f'{{"format": {FORMAT}, "value": {{"@array": "a0"}}}}'.encode(), np.uint8)
    np.savez(objects, header=header, a0=np.array([Bomb()], dtype=object))
    for tampered in (bomb, objects.getvalue(), b"\x00garbage" * 50, b""):
        path.write_bytes(tampered)
        assert store.load_track("ab" * 16, "audio") is None
        assert not marker.exists()


def test_old_format_is_named_once_and_pruned(tmp_path, caplog, capsys):
    from pipelines.cli import main
    from pipelines.state import log_old_format, old_format_entry

    root = tmp_path / "out" / "_state"
    old = root / "k" / "tracks" / "ab" / f"{'ab' * 16}.audio.pkl"
    old.parent.mkdir(parents=True)
    old.write_bytes(b"x" * 1000)
    assert old_format_entry(str(root)) == str(old)
    with caplog.at_level("INFO", logger="mirmatch"):
        assert log_old_format(str(root), "k")
    assert "state written by an older version: rebuilding" in caplog.text
    StateStore(str(root), "k").save_track("cd" * 16, "audio", 1)
    assert not log_old_format(str(root), "k")  # rebuilt already: nothing more to say

    from encoders.analyze import analysis_key

    key = analysis_key()
    StateStore(str(root), key).save_track("cd" * 16, "audio", 2)
    (root / key / "tracks" / "ef").mkdir()
    (root / key / "tracks" / "ef" / f"{'ef' * 16}.audio.pkl").write_bytes(b"y" * 500)
    StateStore(str(root), "other").save_pair("m" * 32, "a" * 32, np.zeros(1000))
    assert main(["state", "prune", str(tmp_path / "out")]) == 0
    err = capsys.readouterr().err
    assert "freed" in err and str(root / "k") in err
    assert sorted(p.name for p in root.iterdir()) == [key]
    assert not list(root.rglob("*.pkl")) and StateStore(str(root), key).load_track("cd" * 16, "audio") == 2
    assert main(["state", "prune", "--state", str(root)]) == 0
    assert "freed 0.0 MB" in capsys.readouterr().err


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
