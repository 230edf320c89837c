"""Decoding and parsing, including the errors bad inputs must produce."""

from __future__ import annotations

import io

import numpy as np
import pretty_midi
import pytest
import soundfile as sf

from encoders.media import MediaError, content_id, decode_audio, midi_duration, parse_midi


def encoded(y: np.ndarray, sr: int, fmt: str) -> bytes:
    buf = io.BytesIO()
    sf.write(buf, y, sr, format=fmt)
    return buf.getvalue()


@pytest.mark.parametrize("fmt", ["WAV", "FLAC", "OGG", "MP3"])
def test_decode_formats_resample_to_22050(fmt):
    sr = 44100
    t = np.arange(sr) / sr
    y = 0.5 * np.sin(2 * np.pi * 440 * t).astype(np.float32)
    out = decode_audio(encoded(y, sr, fmt))
    assert out.dtype == np.float32
    assert abs(len(out) - 22050) < 2000  # mp3 adds encoder padding
    spectrum = np.abs(np.fft.rfft(out[:16384]))
    assert abs(np.argmax(spectrum) * 22050 / 16384 - 440) < 5


def test_decode_stereo_is_downmixed():
    y = np.random.default_rng(0).standard_normal((22050, 2)).astype(np.float32) * 0.1
    assert decode_audio(encoded(y, 22050, "WAV")).ndim == 1


@pytest.mark.parametrize("data, error_type", [
    (b"", "EmptyFile"),
    (b"not audio at all " * 100, "DecodeError"),
])
def test_decode_rejects_bad_bytes(data, error_type):
    with pytest.raises(MediaError) as info:
        decode_audio(data)
    assert info.value.error_type == error_type


def test_decode_rejects_silent_and_nan():
    with pytest.raises(MediaError, match="silent"):
        decode_audio(encoded(np.zeros(22050, np.float32), 22050, "WAV"))
    y = np.full(22050, 0.1, np.float32)
    y[100] = np.nan
    buf = io.BytesIO()
    sf.write(buf, y, 22050, format="WAV", subtype="FLOAT")  # float WAV keeps the NaN
    with pytest.raises(MediaError, match="NaN"):
        decode_audio(buf.getvalue())


def midi_bytes(notes: list[tuple[int, float, float]], program: int = 0) -> bytes:
    pm = pretty_midi.PrettyMIDI()
    inst = pretty_midi.Instrument(program=program)
    inst.notes = [pretty_midi.Note(velocity=90, pitch=p, start=s, end=e) for p, s, e in notes]
    pm.instruments.append(inst)
    buf = io.BytesIO()
    pm.write(buf)
    return buf.getvalue()


def test_parse_midi_and_duration():
    pm = parse_midi(midi_bytes([(60, 0.0, 1.0), (64, 1.0, 2.5)]))
    assert midi_duration(pm) == pytest.approx(2.5, abs=0.01)


@pytest.mark.parametrize("data, error_type", [
    (b"", "EmptyFile"),
    (b"MThd\x00\x00\x00\x06\x00\x01\x00\x02\x01\xe0MTrk\xff\xff\xff\xff garbage", "MidiParseError"),
    (b"RIFF random bytes that are no MIDI file", "MidiParseError"),
])
def test_parse_midi_rejects_bad_bytes(data, error_type):
    with pytest.raises(MediaError) as info:
        parse_midi(data)
    assert info.value.error_type == error_type


def test_parse_midi_rejects_note_less_file():
    with pytest.raises(MediaError) as info:
        parse_midi(midi_bytes([]))
    assert info.value.error_type == "NoNotes"


def test_content_id_is_stable_and_content_based():
    assert content_id(b"abc") == content_id(b"abc") != content_id(b"abd")
    assert len(content_id(b"")) == 32
