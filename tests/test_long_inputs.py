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
