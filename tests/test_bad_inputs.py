"""Every kind of bad input, in one real pipeline run: each ends as a row in `tracks`, explained in `errors`,
and the run completes with exit code 0. Includes a three-hour recording, analysed in bounded memory."""

from __future__ import annotations

import io
import os
from pathlib import Path

import numpy as np
import pretty_midi
import pytest
import soundfile as sf

from tests.conftest import SHARED, read_table, uri

THREE_HOURS_S = 3 * 3600


def midi_bytes(notes: list[tuple[float, float, int]], program: int = 0) -> bytes:
    pm = pretty_midi.PrettyMIDI()
    inst = pretty_midi.Instrument(program)
    inst.notes = [pretty_midi.Note(90, pitch, start, end) for start, end, pitch in notes]
    pm.instruments.append(inst)
    buf = io.BytesIO()
    pm.write(buf)
    return buf.getvalue()


def write_long_recording(path: Path, seconds: int, sr: int = 8000) -> None:
    """A recording of ``seconds`` (one chord a minute, pulsing twice a second), written minute by minute."""
    rng = np.random.default_rng(3)
    t = np.arange(sr * 60) / sr
    with sf.SoundFile(path, "w", sr, 1, "PCM_16") as f:
        for _ in range(seconds // 60):
            chord = 110 * 2 ** (rng.integers(0, 24, 3) / 12)
            tone = sum(0.2 * np.sin(2 * np.pi * hz * t) for hz in chord) * (0.5 + 0.5 * (t % 0.5 < 0.25))
            f.write((tone + 0.01 * rng.standard_normal(len(t))).astype(np.float32))


@pytest.fixture(scope="module")
def bad_suite(tiny_corpus, tmp_path_factory) -> dict:
    """{name: (path, modality, expected status, expected error_type or None)} plus two good files."""
    d = tmp_path_factory.mktemp("bad-suite")
    rng = np.random.default_rng(0)
    good_midi = tiny_corpus["pairs"][0]["midi"]
    good_audio = tiny_corpus["pairs"][0]["audio"]
    cases: dict[str, tuple[str, str, str, str | None]] = {}

    def add(name: str, data: bytes | None, modality: str, status: str, error_type: str | None) -> Path:
        path = d / name
        if data is not None:
            path.write_bytes(data)
        cases[name] = (str(path), modality, status, error_type)
        return path

    midi = Path(good_midi).read_bytes()
    add("truncated.mid", midi[: len(midi) // 2], "midi", "error", "TruncatedMidi")
    add("random-bytes.mid", rng.bytes(4096), "midi", "error", "MidiParseError")
    add("no-notes.mid", midi_bytes([]), "midi", "error", "NoNotes")
    starts = np.sort(rng.uniform(0, 240, 100_000))
    add("100k-notes.mid", midi_bytes([(s, s + 0.25, int(p)) for s, p in zip(starts, rng.integers(40, 90, 100_000),
                                                                              strict=True)]),
        "midi", "ok", "DenseMidi")
    add("zero-length.wav", b"", "audio", "error", "EmptyFile")
    add("zero-length.mid", b"", "midi", "error", "EmptyFile")
    silent = io.BytesIO()
    sf.write(silent, np.zeros(22050 * 10, np.float32), 22050, format="WAV")
    add("silent.wav", silent.getvalue(), "audio", "error", "SilentAudio")
    nan = np.sin(np.arange(22050 * 10) / 10).astype(np.float32)
    nan[1000:5000] = np.nan
    nan_file = io.BytesIO()
    sf.write(nan_file, nan, 22050, format="WAV", subtype="FLOAT")
    add("nan-filled.wav", nan_file.getvalue(), "audio", "error", "InvalidSamples")
    other_audio = sorted(set(tiny_corpus["audio"]) - {good_audio})[0]  # a different piece: matches stay clear
    y, sr = sf.read(other_audio, dtype="float32")
    clipped = io.BytesIO()
    sf.write(clipped, np.clip(y * 12.0, -1.0, 1.0), sr, format="FLAC")
    add("clipped.flac", clipped.getvalue(), "audio", "ok", "ClippedAudio")
    write_long_recording(add("three-hours.wav", None, "audio", "ok", None), THREE_HOURS_S)
    add("text.wav", b"this is a text file, not a recording\n" * 20, "audio", "error", "DecodeError")
    add("image.mp3", b"\x89PNG\r\n\x1a\n" + rng.bytes(2048), "audio", "error", "DecodeError")
    add("score-given-as-audio.wav", midi, "audio", "error", "DecodeError")
    add("missing.flac", None, "audio", "error", "UnreadablePath")
    (d / "a-folder.wav").mkdir()
    add("a-folder.wav", None, "audio", "error", "UnreadablePath")
    os.symlink(d / "nowhere.mid", d / "broken-link.mid")
    add("broken-link.mid", None, "midi", "error", "UnreadablePath")
    cases["good.mid"] = (good_midi, "midi", "ok", None)
    cases["good-audio"] = (good_audio, "audio", "ok", None)
    return cases


@pytest.fixture(scope="module")
def bad_suite_run(bad_suite, tmp_path_factory) -> tuple[int, Path]:
    from pipelines.cli import main

    out = tmp_path_factory.mktemp("bad-suite-run") / "out"
    argv = ["run", "--out", str(out)]
    for path, modality, _, _ in bad_suite.values():
        argv += [f"--{modality}", path]
    return main(argv), out


def test_bad_inputs_exit_zero_and_every_input_is_a_track(bad_suite, bad_suite_run):
    code, out = bad_suite_run
    assert code == 0
    tracks = read_table(out, "tracks")
    assert sorted(t["uri"] for t in tracks) == sorted(uri(path) for path, _, _, _ in bad_suite.values())
    status = {t["uri"]: t["status"] for t in tracks}
    for name, (path, _, expected, _) in bad_suite.items():
        assert status[uri(path)] == expected, name


def test_each_bad_input_is_explained(bad_suite, bad_suite_run):
    _, out = bad_suite_run
    errors: dict[str, list[dict]] = {}
    for e in read_table(out, "errors"):
        errors.setdefault(e["uri"], []).append(e)
    for name, (path, _, status, error_type) in bad_suite.items():
        rows = errors.get(uri(path), [])
        if error_type is None:
            assert rows == [], name
            continue
        assert [r["error_type"] for r in rows] == [error_type], name
        row = rows[0]
        assert row["severity"] == ("error" if status == "error" else "warning"), name
        assert len(row["message"]) > 20 and "0x" not in row["message"], name  # says what, not where in memory
    assert "is a directory" in errors[uri(bad_suite["a-folder.wav"][0])][0]["message"]


def test_three_hour_recording_is_analysed_whole(bad_suite, bad_suite_run):
    _, out = bad_suite_run
    path = uri(bad_suite["three-hours.wav"][0])
    track, = [t for t in read_table(out, "tracks") if t["uri"] == path]
    assert track["duration_s"] == pytest.approx(THREE_HOURS_S, abs=0.1)
    segments = sorted((s for s in read_table(out, "segments") if s["uri"] == path), key=lambda s: s["start_s"])
    assert segments[0]["start_s"] == 0.0 and segments[-1]["end_s"] == pytest.approx(THREE_HOURS_S, abs=1e-6)
    assert len(segments) >= 2
    clusters = [c for c in read_table(out, "clusters") if c["uri"] == path]
    assert len(clusters) == 1


def test_good_pair_still_matches_among_bad_inputs(bad_suite, bad_suite_run):
    _, out = bad_suite_run
    midi, audio = uri(bad_suite["good.mid"][0]), uri(bad_suite["good-audio"][0])
    best = [m for m in read_table(out, "matches") if m["midi_uri"] == midi and m["rank"] == 1]
    assert best and best[0]["audio_uri"] == audio and best[0]["is_match"]


@pytest.mark.skipif(not (SHARED / "tools" / "check_contract.py").exists(), reason="no ../shared checkout")
def test_bad_suite_output_holds_the_contract(bad_suite, bad_suite_run):
    import subprocess
    import sys

    _, out = bad_suite_run
    proc = subprocess.run([sys.executable, str(SHARED / "tools" / "check_contract.py"), str(out),
                           "--inputs", str(len(bad_suite))], capture_output=True, text=True)
    assert proc.returncode == 0, proc.stdout + proc.stderr
