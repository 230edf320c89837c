"""Long inputs in bounded memory: block decoding, chunked CQT and codes, pooled DTW, a capped structure grid
all give what the one-piece computations give."""

from __future__ import annotations

import io

import numpy as np
import pytest
import soundfile as sf

from encoders.media import AudioStats, MediaError, decode_audio, stream_audio


def tone(seconds: float, sr: int, rng: np.random.Generator, channels: int = 1) -> np.ndarray:
    t = np.arange(int(seconds * sr)) / sr
    y = 0.3 * np.sin(2 * np.pi * 220 * t * (1 + 0.05 * np.sin(t))) + 0.02 * rng.standard_normal(len(t))
    return np.repeat(y[:, None], channels, axis=1).astype(np.float32) if channels > 1 else y.astype(np.float32)


def encoded(y: np.ndarray, sr: int, fmt: str = "FLAC", subtype: str | None = None) -> io.BytesIO:
    buf = io.BytesIO()
    sf.write(buf, y, sr, format=fmt, subtype=subtype)
    buf.seek(0)
    return buf


def test_stream_audio_equals_decoding_in_one_piece(rng):
    data = encoded(tone(30.0, 44100, rng, channels=2), 44100)
    whole = decode_audio(data.getvalue())
    stats = AudioStats()
    blocks = list(stream_audio(data, block_s=7.0, stats=stats))
    streamed = np.concatenate(blocks)
    assert len(blocks) > 1 and abs(len(streamed) - len(whole)) <= 1
    n = min(len(whole), len(streamed))
    assert np.abs(streamed[:n] - whole[:n]).max() < 1e-3
    assert stats.native_sr == 44100 and stats.duration_s == pytest.approx(30.0)
    assert stats.samples == len(streamed) and stats.clipped == 0


def test_stream_audio_rejects_what_decode_audio_rejects(rng):
    y = tone(20.0, 22050, rng)
    y[300_000:300_010] = np.nan  # in the second block
    with pytest.raises(MediaError) as err:
        list(stream_audio(encoded(y, 22050, "WAV", "FLOAT"), block_s=5.0))
    assert err.value.error_type == "InvalidSamples"
    with pytest.raises(MediaError) as err:
        list(stream_audio(encoded(np.zeros(22050 * 3, np.float32), 22050, "WAV")))
    assert err.value.error_type == "SilentAudio"
    with pytest.raises(MediaError) as err:
        list(stream_audio(encoded(tone(5.0, 8000, rng), 8000), max_duration_s=4.0))
    assert err.value.error_type == "TooLong"


def test_streamed_cqt_equals_one_call(rng):
    from encoders.features import log_cqt, streamed_cqt_magnitude

    y = tone(60.3, 22050, rng)
    _, whole = log_cqt(y)
    blocks = [y[i:i + 50_000] for i in range(0, len(y), 50_000)]
    chunked = streamed_cqt_magnitude(blocks, chunk_frames=200)
    assert chunked.shape == whole.shape
    assert np.abs(chunked - whole).max() <= 1e-5 * np.abs(whole).max()


def test_learned_codes_chunking_is_exact(monkeypatch, rng):
    import encoders.codes.learned as learned

    hasher = learned.LearnedHasher()
    cqt = rng.random((3001, 48), dtype=np.float32)
    whole = hasher.codes(cqt, "midi")
    monkeypatch.setattr(learned, "EMBED_CHUNK_FRAMES", 512)
    chunked = hasher.codes(cqt, "midi")
    assert np.array_equal(chunked[0], whole[0]) and np.array_equal(chunked[1], whole[1])


def test_huge_pairs_are_aligned_on_pooled_frames(monkeypatch, rng):
    from scipy.ndimage import gaussian_filter1d

    import hashing.align as align

    def smooth(n: int) -> np.ndarray:  # music-like: features change over tenths of a second, not per frame
        return gaussian_filter1d(rng.random((n, 48)), 6.0, axis=0).astype(np.float32)

    midi = smooth(400)
    audio = np.concatenate([smooth(300), midi, smooth(300)])  # the MIDI's frames from 15 s on
    exact = align.align_pair(midi, audio.astype(np.float32), 20.0)
    monkeypatch.setattr(align, "MAX_DTW_CELLS", 60_000)
    assert align.pooling_factor(len(midi), len(audio)) == 3
    pooled = align.align_pair(midi, audio.astype(np.float32), 20.0)
    for result, tolerance in ((exact, 0.06), (pooled, 0.2)):  # 3 frames pooled: 0.15 s resolution
        assert np.median(np.abs(result.midi_times_s - (result.audio_times_s - 15.0))) < tolerance
        assert result.audio_times_s[0] == pytest.approx(15.0, abs=0.3)
        assert result.audio_times_s[-1] == pytest.approx(35.0, abs=0.3)


def test_structure_grid_caps_the_number_of_units():
    from encoders.structure.grid import structure_grid

    beats = np.arange(0, 10_800, 0.5)
    grid = structure_grid(beats, 10_800.0, max_units=2048)
    assert len(grid) <= 2048 and grid[0] == 0.0 and np.all(np.diff(grid) > 0)
    assert len(structure_grid(np.array([]), 10_800.0, max_units=2048)) == 2048
    short = np.arange(0, 60, 0.5)
    assert np.array_equal(structure_grid(short, 60.0), short)


def test_beats_of_long_tracks_are_tracked_in_windows_without_gaps():
    from encoders.features import BEAT_WINDOW_FRAMES, FRAME_RATE, estimate_beats

    n = 2 * BEAT_WINDOW_FRAMES + 5000  # three windows
    cqt = np.zeros((n, 48), np.float32)
    cqt[::11, 10:20] = 1.0  # a pulse every 11 frames (~0.51 s)
    beats = estimate_beats(cqt)
    period = 11 / FRAME_RATE
    assert len(beats) == pytest.approx(n / 11, rel=0.05)
    assert np.all(np.diff(beats) > 0) and np.diff(beats).max() < 2.5 * period


def test_render_blocks_put_together_are_the_one_piece_rendering():
    import pretty_midi

    from encoders.render import render_blocks, render_midi
    from tests.test_media import midi_bytes

    data = midi_bytes([(60 + i % 12, 0.3 * i, 0.3 * i + 0.5) for i in range(40)])
    pm = pretty_midi.PrettyMIDI(io.BytesIO(data))
    blocks = list(render_blocks(pm, block_s=1.0))
    raw = np.concatenate(blocks)
    assert len(blocks) > 5 and all(len(b) >= 22050 for b in blocks[:-1])
    assert np.array_equal((0.9 * raw / np.abs(raw).max()).astype(np.float32), render_midi(pm))


ANALYSIS_PEAK = """
import json, resource, sys
from pathlib import Path
from encoders.analyze import analyze_source
from encoders.codes import load_hasher
hasher = load_hasher()
base = resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024
result = analyze_source(Path(sys.argv[1]).read_bytes(), sys.argv[1], "midi", hasher)
print(json.dumps({"duration_s": result.duration_s, "base_mb": base,
                  "peak_mb": resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024}))
"""


def test_forty_minute_midi_is_analysed_in_bounded_memory(tiny_corpus, tmp_path):
    """A 40-minute MIDI file (a Debian piece looped, as a game's music loops) is rendered and analysed block by
    block: status ok in a run, and analysing it adds a bounded amount of memory to the process (measured
    about 440 MB over imports and models, where its one-piece rendering alone would be 211 MB of samples and
    the one-piece CQT several times that)."""
    import json
    import subprocess
    import sys

    from encoders.training.corpus import DEMO_COLLECTIONS, debian_midi_files, usable_pieces
    from pipelines.cli import main
    from tests.conftest import REPO, read_table, uri
    from tests.long_corpus import looped

    _, pm = next(usable_pieces(debian_midi_files(DEMO_COLLECTIONS), 40.0, 240.0))
    long_midi = tmp_path / "forty-minutes.mid"
    looped(pm, 40 * 60.0).write(str(long_midi))
    out = tmp_path / "out"
    audio = tiny_corpus["pairs"][0]["audio"]
    assert main(["run", "--midi", str(long_midi), "--audio", audio, "--out", str(out), "--no-report"]) == 0
    track, = [t for t in read_table(out, "tracks") if t["uri"] == uri(str(long_midi))]
    assert track["status"] == "ok" and 40 * 60 <= track["duration_s"] < 45 * 60
    assert not [e for e in read_table(out, "errors") if e["uri"] == uri(str(long_midi))]
    segments = sorted((s for s in read_table(out, "segments") if s["uri"] == track["uri"]), key=lambda s: s["start_s"])
    assert segments[-1]["end_s"] == pytest.approx(track["duration_s"], abs=1e-6)

    proc = subprocess.run([sys.executable, "-c", ANALYSIS_PEAK, str(long_midi)], cwd=REPO, capture_output=True,
                          text=True, timeout=600)
    assert proc.returncode == 0, proc.stderr[-2000:]
    measured = json.loads(proc.stdout.strip().splitlines()[-1])
    assert measured["duration_s"] == track["duration_s"]
    assert measured["peak_mb"] - measured["base_mb"] < 700, measured
