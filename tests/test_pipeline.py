"""End to end: the real Beam pipeline on the DirectRunner over a tiny corpus with bad inputs."""

from __future__ import annotations

import subprocess
import sys

import numpy as np
import pytest

from tests.conftest import SHARED, assert_same_tables, assert_true_pairs_first, read_table, uri


def n_inputs(tiny_corpus, bad_inputs) -> int:
    return len(tiny_corpus["audio"]) + len(tiny_corpus["midi"]) + sum(len(v) for v in bad_inputs.values())


def test_every_input_in_tracks_once(pipeline_out, tiny_corpus, bad_inputs):
    tracks = read_table(pipeline_out, "tracks")
    uris = [t["uri"] for t in tracks]
    assert len(uris) == len(set(uris)) == n_inputs(tiny_corpus, bad_inputs)
    status = {t["uri"]: t["status"] for t in tracks}
    for path in bad_inputs["audio"] + bad_inputs["midi"]:
        assert status[uri(path)] == "error"
    assert sum(s == "ok" for s in status.values()) == len(tiny_corpus["audio"]) + len(tiny_corpus["midi"])
    ok = [t for t in tracks if t["status"] == "ok"]
    assert all(len(t["track_id"]) == 32 and t["duration_s"] > 10 for t in ok)
    assert {t["modality"] for t in ok} == {"audio", "midi"}


def test_bad_inputs_explained(pipeline_out, bad_inputs):
    errors = {e["uri"]: e for e in read_table(pipeline_out, "errors")}
    corrupt, = bad_inputs["midi"]
    empty, text = bad_inputs["audio"]
    corrupt, empty, text = uri(corrupt), uri(empty), uri(text)
    assert errors[corrupt]["error_type"] == "MidiParseError" and "cannot parse MIDI" in errors[corrupt]["message"]
    assert errors[empty]["error_type"] == "EmptyFile" and "0 bytes" in errors[empty]["message"]
    assert errors[text]["error_type"] == "DecodeError" and "cannot decode audio" in errors[text]["message"]


def test_true_pairs_rank_first_and_no_false_matches(pipeline_out, tiny_corpus):
    matches = read_table(pipeline_out, "matches")
    assert_true_pairs_first(matches, tiny_corpus)
    for m in matches:
        assert 0.0 <= m["confidence"] <= 1.0 and m["rank"] >= 1
        assert m["midi_start_s"] <= m["midi_end_s"] and m["audio_start_s"] <= m["audio_end_s"]


def test_alignments_follow_the_true_time_map(pipeline_out, tiny_corpus):
    import numpy as np

    alignments = {(a["midi_uri"], a["audio_uri"]): a for a in read_table(pipeline_out, "alignments")}
    for pair in tiny_corpus["pairs"]:
        a = alignments[(uri(pair["midi"]), uri(pair["audio"]))]
        mt, at = np.array(a["midi_times_s"]), np.array(a["audio_times_s"])
        assert (np.diff(mt) >= 0).all() and (np.diff(at) >= 0).all()
        truth = np.interp(at, pair["audio_times_s"], pair["midi_times_s"])
        inside = at < pair["audio_times_s"][-1] - 2  # the rendering's release tail maps nowhere
        assert np.median(np.abs(mt[inside] - truth[inside])) < 0.15


def test_segments_cover_each_track(pipeline_out):
    tracks = {t["track_id"]: t for t in read_table(pipeline_out, "tracks") if t["status"] == "ok"}
    segments: dict[str, list] = {}
    for s in read_table(pipeline_out, "segments"):
        segments.setdefault(s["uri"], []).append(s)
    by_uri = {t["uri"]: t for t in tracks.values()}
    assert set(segments) == set(by_uri)
    for track_uri, rows in segments.items():
        rows.sort(key=lambda s: s["segment_index"])
        assert [s["segment_index"] for s in rows] == list(range(len(rows)))
        assert rows[0]["start_s"] == 0.0
        assert rows[-1]["end_s"] == pytest.approx(by_uri[track_uri]["duration_s"], abs=1e-6)
        assert all(a["end_s"] == pytest.approx(b["start_s"]) for a, b in zip(rows, rows[1:], strict=False))
        assert all(s["end_s"] > s["start_s"] and s["label"] for s in rows)


def test_clusters_hold_matched_pairs(pipeline_out, tiny_corpus):
    clusters = read_table(pipeline_out, "clusters")
    ok = [t for t in read_table(pipeline_out, "tracks") if t["status"] == "ok"]
    assert sorted(c["track_id"] for c in clusters) == sorted({t["track_id"] for t in ok})
    by_uri = {c["uri"]: c for c in clusters}
    for pair in tiny_corpus["pairs"]:
        assert by_uri[uri(pair["midi"])]["cluster_id"] == by_uri[uri(pair["audio"])]["cluster_id"]
    sizes: dict[str, int] = {}
    for c in clusters:
        sizes[c["cluster_id"]] = sizes.get(c["cluster_id"], 0) + 1
    assert all(c["cluster_size"] == sizes[c["cluster_id"]] for c in clusters)
    ids = {c["track_id"] for c in clusters}
    with_nearest = [c for c in clusters if c["nearest_version_id"] is not None]
    assert with_nearest, "some version candidates should have been verified"
    for c in with_nearest:
        assert c["nearest_version_id"] in ids and c["nearest_version_id"] != c["track_id"]
        assert np.isfinite(c["nearest_version_similarity"])


@pytest.mark.skipif(not (SHARED / "tools" / "check_contract.py").exists(), reason="no ../shared checkout")
def test_shared_contract_checker(pipeline_out, tiny_corpus, bad_inputs):
    proc = subprocess.run([sys.executable, str(SHARED / "tools" / "check_contract.py"), str(pipeline_out),
                           "--inputs", str(n_inputs(tiny_corpus, bad_inputs))], capture_output=True, text=True)
    assert proc.returncode == 0, proc.stdout + proc.stderr
    assert "contract: holds" in proc.stdout


def test_rerun_in_multiprocessing_mode_is_identical(pipeline_out, tiny_corpus, bad_inputs, tmp_path):
    """A rerun (2 worker processes this time) writes the same tables, and replaces rather than appends."""
    from pipelines.cli import main

    root = tiny_corpus["root"]
    out = tmp_path / "out"
    argv = ["run", "--audio", f"{root}/audio/*", "--midi", f"{root}/midi/*.mid", "--out", str(out),
            "--direct_running_mode=multi_processing", "--direct_num_workers=2"]
    for path in bad_inputs["audio"]:
        argv += ["--audio", path]
    for path in bad_inputs["midi"]:
        argv += ["--midi", path]
    assert main(argv) == 0
    assert main(argv) == 0  # twice into the same folder: no duplicated rows

    assert_same_tables(out, pipeline_out)


def test_audio_index_persisted_beside_the_tables(pipeline_out):
    import pyarrow.parquet as pq

    from hashing.search import HammingIndex
    from pipelines.audio_index import DATABASE_FILE, INDEX_DIR, INDEX_FILE

    folder = pipeline_out / INDEX_DIR
    database = pq.read_table(folder / DATABASE_FILE).to_pylist()
    ok_audio = [t for t in read_table(pipeline_out, "tracks") if t["status"] == "ok" and t["modality"] == "audio"]
    assert sorted(r["uri"] for r in database) == sorted(t["uri"] for t in ok_audio)
    assert [r["position"] for r in database] == list(range(len(database)))
    index = HammingIndex.from_bytes((folder / INDEX_FILE).read_bytes())
    assert len(index) == len(database)
    codes = np.stack([np.frombuffer(r["track_code"], np.uint8) for r in database])
    distances, indices = index.search(codes, 1)
    assert distances[:, 0].tolist() == [0] * len(database)  # each stored code finds itself
    assert all(len(r["frame_codes"]) % 4 == 0 and len(r["frame_codes"]) > 0 for r in database)
    assert all(len(r["window_codes"]) % 32 == 0 for r in database)  # the 30-second windows' track codes
