"""--export-aligned-midi and --export-jams: aligned MIDI files that follow the recording, JAMS files that equal the
`segments` table; both written by the pipeline after publishing (pipelines.exports, hashing.retime)."""

from __future__ import annotations

from pathlib import Path

import numpy as np
import pretty_midi
import pytest

from pipelines.cli import main
from pipelines.sources import path_of_uri
from tests.conftest import read_table


@pytest.fixture(scope="module")
def export_out(tiny_corpus, tmp_path_factory) -> Path:
    """A real run over the tiny corpus with both exports."""
    out = tmp_path_factory.mktemp("exports") / "out"
    root = tiny_corpus["root"]
    argv = ["run", "--audio", f"{root}/audio/*", "--midi", f"{root}/midi/*.mid", "--out", str(out),
            "--export-aligned-midi", "--export-jams"]
    assert main(argv) == 0
    return out


def _pitched_onsets(pm: pretty_midi.PrettyMIDI) -> dict[int, np.ndarray]:
    """Onsets (s) of the pitched notes, sorted, by pitch."""
    by_pitch: dict[int, list[float]] = {}
    for inst in pm.instruments:
        if not inst.is_drum:
            for note in inst.notes:
                by_pitch.setdefault(note.pitch, []).append(float(note.start))
    return {p: np.sort(v) for p, v in by_pitch.items()}


def test_aligned_midi_onsets_land_on_the_recordings_true_times(export_out, tiny_corpus):
    """The corpus' audio is a tempo-warped, cropped rendering of each MIDI file with a known time map: the aligned
    MIDI's note onsets are where those notes sound in the recording, and the MIDI's own onsets are not."""
    rows = read_table(export_out, "alignments")
    alignments = {(Path(r["midi_uri"]).name, Path(r["audio_uri"]).name): r for r in rows}
    for pair in tiny_corpus["pairs"]:  # by file name: the truth may name another copy of the corpus
        row = alignments[(Path(pair["midi"]).name, Path(pair["audio"]).name)]
        path = export_out / "aligned_midi" / row["audio_id"] / f"{row['midi_id']}.mid"
        aligned = _pitched_onsets(pretty_midi.PrettyMIDI(str(path)))
        original = _pitched_onsets(pretty_midi.PrettyMIDI(path_of_uri(row["midi_uri"])))
        true_midi, true_audio = np.array(pair["midi_times_s"]), np.array(pair["audio_times_s"])
        lo, hi = row["midi_times_s"][0], row["midi_times_s"][-1]
        errors, unaligned = [], []
        for pitch, onsets in original.items():
            kept = onsets[(onsets >= lo) & (onsets <= hi)]  # notes starting outside the aligned span are dropped
            got = aligned.get(pitch, np.zeros(0))
            assert len(got) == len(kept), f"pitch {pitch}: {len(got)} aligned notes, {len(kept)} in the span"
            known = (kept >= true_midi[0]) & (kept <= true_midi[-1])  # the truth covers the recording's span
            truth = np.interp(kept[known], true_midi, true_audio)
            errors += list(np.abs(got[known] - truth))
            unaligned += list(np.abs(kept[known] - truth))
        errors = np.array(errors)
        assert len(errors) > 100
        assert np.median(errors) < 0.05 and np.percentile(errors, 90) < 0.1, (pair["midi"], np.percentile(errors, 90))
        assert np.median(unaligned) > 1.0  # the warp is real: without re-timing the onsets are seconds off
        flat = np.concatenate(list(aligned.values()))
        assert flat.min() >= row["audio_times_s"][0] - 1e-6 and flat.max() <= row["audio_times_s"][-1] + 1e-6


def test_one_aligned_midi_file_per_alignment_and_nothing_else(export_out):
    rows = read_table(export_out, "alignments")
    assert rows and len(rows) == sum(m["is_match"] for m in read_table(export_out, "matches"))
    expected = {f"{r['audio_id']}/{r['midi_id']}.mid" for r in rows}
    written = {p.relative_to(export_out / "aligned_midi").as_posix()
               for p in (export_out / "aligned_midi").rglob("*") if p.is_file()}
    assert written == expected


def test_jams_files_load_and_equal_the_segments_table(export_out):
    import jams

    tracks = {t["track_id"]: t for t in read_table(export_out, "tracks") if t["status"] == "ok"}
    segments = read_table(export_out, "segments")
    assert sorted(p.stem for p in (export_out / "jams").glob("*.jams")) == sorted(tracks)
    for track_id, track in tracks.items():
        jam = jams.load(str(export_out / "jams" / f"{track_id}.jams"))
        assert jam.file_metadata.duration == pytest.approx(track["duration_s"])
        assert jam.file_metadata.identifiers["track_id"] == track_id
        assert jam.file_metadata.identifiers["uri"] == track["uri"]
        ann = jam.annotations.search(namespace="segment_open")[0]
        intervals, labels = ann.to_interval_values()
        rows = sorted((s for s in segments if s["track_id"] == track_id), key=lambda s: s["segment_index"])
        np.testing.assert_allclose(intervals, [[s["start_s"], s["end_s"]] for s in rows], atol=1e-9)
        assert labels == [s["label"] for s in rows]
        scores = jams.eval.segment(ann, ann)  # usable with mir_eval as it is
        assert scores["F-measure@0.5"] == 1.0 and scores["Pairwise F-measure"] == 1.0


def test_the_next_run_replaces_the_exports(export_out, tiny_corpus):
    stale_midi = export_out / "aligned_midi" / "gone" / "stale.mid"
    stale_midi.parent.mkdir()
    stale_midi.write_bytes(b"MThd")
    stale_jams = export_out / "jams" / "stale.jams"
    stale_jams.write_text("{}")
    before = sorted(p.name for p in (export_out / "jams").glob("*.jams") if p != stale_jams)
    root = tiny_corpus["root"]
    assert main(["run", "--audio", f"{root}/audio/*", "--midi", f"{root}/midi/*.mid", "--out", str(export_out),
                 "--export-aligned-midi", "--export-jams"]) == 0  # reuses the analyses kept in OUT/_state
    assert not stale_midi.exists() and not stale_midi.parent.exists() and not stale_jams.exists()
    assert sorted(p.name for p in (export_out / "jams").glob("*.jams")) == before
    assert len(list((export_out / "aligned_midi").rglob("*.mid"))) == len(read_table(export_out, "alignments"))


def _two_note_midi() -> pretty_midi.PrettyMIDI:
    pm = pretty_midi.PrettyMIDI(initial_tempo=100.0)
    piano = pretty_midi.Instrument(program=0)
    piano.notes = [pretty_midi.Note(90, 60, 0.2, 0.8),  # starts before the span: dropped
                   pretty_midi.Note(90, 62, 1.0, 2.0),
                   pretty_midi.Note(90, 64, 3.5, 6.0),  # ends after the span: end clamped
                   pretty_midi.Note(90, 65, 4.5, 5.0)]  # starts after the span: dropped
    pm.instruments.append(piano)
    return pm


def test_retime_drops_notes_starting_outside_the_span_and_clamps_the_others(tmp_path):
    from hashing.retime import retime_midi

    pm = _two_note_midi()
    aligned = retime_midi(pm, np.array([0.5, 0.5, 2.5, 4.0]), np.array([10.0, 10.1, 12.0, 15.0]))
    notes = [(n.pitch, round(float(n.start), 6), round(float(n.end), 6)) for n in aligned.instruments[0].notes]
    assert notes == [(62, 10.5, 11.5), (64, 14.0, 15.0)]  # repeated MIDI time 0.5 -> its first audio time
    assert [n.pitch for n in pm.instruments[0].notes] == [60, 62, 64, 65]  # the input is left as it was
    written = tmp_path / "a.mid"
    aligned.write(str(written))  # the tempo map stays consistent: the file reads back with the same times
    back = pretty_midi.PrettyMIDI(str(written)).instruments[0].notes
    np.testing.assert_allclose([(n.start, n.end) for n in back], [(10.5, 11.5), (14.0, 15.0)], atol=0.01)  # ticks


def test_a_map_without_two_midi_times_is_refused():
    from hashing.retime import monotonic_map, retime_midi

    with pytest.raises(ValueError, match="spans no MIDI time"):
        retime_midi(_two_note_midi(), np.array([1.0, 1.0]), np.array([0.0, 3.0]))
    with pytest.raises(ValueError, match="differ in length"):
        monotonic_map(np.array([0.0, 1.0]), np.array([0.0]))


def test_a_midi_file_changed_since_its_analysis_is_skipped(tmp_path):
    from encoders.media import content_id
    from pipelines.exports import WriteAlignedMidi

    midi = tmp_path / "tune.mid"
    _two_note_midi().write(str(midi))
    row = {"midi_uri": str(midi), "audio_uri": "rec.wav", "midi_id": content_id(midi.read_bytes()), "audio_id": "a1",
           "midi_times_s": [0.0, 4.0], "audio_times_s": [0.0, 8.0]}
    export = WriteAlignedMidi(str(tmp_path / "out"))
    written = list(export.process(row, "run"))
    assert written == [str(tmp_path / "out" / "aligned_midi" / "a1" / f"{row['midi_id']}.mid")]
    notes = pretty_midi.PrettyMIDI(written[0]).instruments[0].notes
    assert notes[0].start == pytest.approx(0.4, abs=0.01)  # 0.2 s in the MIDI, the recording twice as slow
    assert list(export.process({**row, "midi_id": "0" * 32, "audio_id": "a2"}, "run")) == []
    assert not (tmp_path / "out" / "aligned_midi" / "a2").exists()


def test_the_flex_template_switches_reach_the_run_config():
    from tests.test_runners import load_flex_main

    flex = load_flex_main()
    cfg, _ = flex.parse(["--audio=gs://b/a/*", "--out=gs://b/out", "--export_aligned_midi=true", "--export_jams=false"])
    assert (cfg.export_aligned_midi, cfg.export_jams) == (True, False)
    with pytest.raises(SystemExit, match="true or false"):
        flex.translate(["--export_jams=yes"])


def test_the_exports_are_a_stage_of_the_dataflow_job(tmp_path, monkeypatch):
    """Built offline by DataflowRunner (--dry_run): the export steps are in the job itself, after publishing, so a
    flex template launch (which submits and exits) still exports."""
    pytest.importorskip("google.cloud.dataflow", reason="needs the gcp extra: pip install -e '.[gcp]'")
    import tempfile

    import apache_beam as beam
    from apache_beam.options.pipeline_options import PipelineOptions

    from pipelines.pipeline import build_pipeline
    from tests.test_runners import load_flex_main

    monkeypatch.setattr(tempfile, "tempdir", str(tmp_path))
    cfg, beam_args = load_flex_main().parse([
        "--audio=gs://test-bucket/audio/**", "--midi=gs://test-bucket/midi/*.mid", "--out=gs://test-bucket/out",
        "--export_aligned_midi=true", "--export_jams=true", "--runner=DataflowRunner", "--dry_run=True",
        "--project=test-project", "--region=us-central1", "--temp_location=gs://test-bucket/tmp",
        "--sdk_container_image=example.com/mirmatch:test", "--job_name=mirmatch-exports-dry-run"])
    p = beam.Pipeline(options=PipelineOptions(beam_args))
    build_pipeline(p, [("gs://test-bucket/audio/a.flac", "audio"), ("gs://test-bucket/midi/a.mid", "midi")], cfg)
    result = p.run()
    result.wait_until_finish()
    names = {t.unique_name for t in result.job.proto_pipeline.components.transforms.values()}
    assert {"Export/Clear export folders", "Export/Write aligned MIDI", "Export/Write JAMS"} <= names
