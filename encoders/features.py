"""Spectral and pitch features: Raffel's log-CQT, chroma and beats."""

from __future__ import annotations

from collections.abc import Callable, Iterable, Iterator
from dataclasses import dataclass

import librosa
import numpy as np

from encoders.media import SAMPLE_RATE

HOP_LENGTH = 1024
FMIN_MIDI = 36  # C2
N_BINS = 48  # four octaves of semitones
DB_RANGE = 80.0
FRAME_RATE = SAMPLE_RATE / HOP_LENGTH


@dataclass
class Features:
    """Frame-level features of one track (rows are frames at FRAME_RATE)."""

    cqt: np.ndarray  # (n_frames, 48) float32 log-magnitude CQT scaled to [0, 1]
    chroma: np.ndarray  # (n_frames, 12) float32 chroma, each frame max-normalised
    beat_times: np.ndarray  # (n_beats,) float64 seconds

    @property
    def frame_times(self) -> np.ndarray:
        return frame_times(len(self.cqt))


def frame_times(n_frames: int) -> np.ndarray:
    """Start time in seconds of each feature frame."""
    return librosa.frames_to_time(np.arange(n_frames), sr=SAMPLE_RATE, hop_length=HOP_LENGTH)


def log_cqt(y: np.ndarray, sr: int = SAMPLE_RATE) -> tuple[np.ndarray, np.ndarray]:
    """Raffel's CQT: 48 semitones from MIDI note 36, hop 1024 at 22050 Hz.

    Returns (log-magnitude scaled to [0, 1] with an 80 dB floor, linear magnitude), both (n_frames, 48).
    """
    magnitude = _cqt_magnitude(y, sr)
    return _log_scaled(magnitude), magnitude


def _cqt_magnitude(y: np.ndarray, sr: int = SAMPLE_RATE) -> np.ndarray:
    return np.abs(librosa.cqt(y, sr=sr, hop_length=HOP_LENGTH, fmin=librosa.midi_to_hz(FMIN_MIDI),
                              n_bins=N_BINS, bins_per_octave=12)).T.astype(np.float32)


def _log_scaled(magnitude: np.ndarray) -> np.ndarray:
    db = librosa.amplitude_to_db(magnitude, ref=np.max, top_db=DB_RANGE)
    return ((db + DB_RANGE) / DB_RANGE).astype(np.float32)


#: Chunked CQT: frames computed per call, and the signal on each side of a chunk that is included so that
#: its edge frames see the same samples as in one call over the whole signal (longer than the longest
#: CQT filter, ~0.7 s at C2).
CHUNK_FRAMES = 4096
CONTEXT_FRAMES = 64


def streamed_cqt_magnitude(blocks: Iterable[np.ndarray], chunk_frames: int = CHUNK_FRAMES,
                           context_frames: int = CONTEXT_FRAMES) -> np.ndarray:
    """The CQT magnitude (n_frames, 48) of a signal given as consecutive blocks, in bounded memory.

    The same frames as ``log_cqt``'s magnitude of the whole signal (to float rounding), computed chunk by
    chunk: only ``chunk_frames + 2 * context_frames`` hops of signal (plus one block) are held at a time.
    """
    hop = HOP_LENGTH
    buffer, buffer_start, total, next_frame = np.zeros(0, np.float32), 0, 0, 0
    chunks: list[np.ndarray] = []
    for block in _blocks_then_end(blocks):
        if block is not None:
            buffer = np.concatenate([buffer, np.asarray(block, np.float32)])
            total += len(block)
        final = block is None
        while True:
            end_frame = next_frame + chunk_frames
            needed = (end_frame + context_frames) * hop
            if not final and total < needed:
                break
            n_frames = 1 + total // hop if final else end_frame
            if next_frame >= n_frames:
                break
            first_sample = max(0, (next_frame - context_frames) * hop)
            segment = buffer[first_sample - buffer_start: min(needed, total) - buffer_start]
            magnitude = _cqt_magnitude(segment)
            offset = next_frame - first_sample // hop
            take = magnitude[offset: offset + min(chunk_frames, n_frames - next_frame)]
            chunks.append(take)
            next_frame += len(take)
            keep_from = max(0, (next_frame - context_frames) * hop)
            buffer, buffer_start = buffer[keep_from - buffer_start:], keep_from
    return np.concatenate(chunks) if chunks else np.zeros((0, N_BINS), np.float32)


def _blocks_then_end(blocks: Iterable[np.ndarray]) -> Iterator[np.ndarray | None]:
    yield from blocks
    yield None


def chroma_from_cqt(magnitude: np.ndarray) -> np.ndarray:
    """Fold a (n_frames, 48) CQT magnitude into max-normalised (n_frames, 12) chroma."""
    chroma = librosa.feature.chroma_cqt(C=magnitude.T, n_chroma=12, bins_per_octave=12,
                                        fmin=librosa.midi_to_hz(FMIN_MIDI))
    return chroma.T.astype(np.float32)


#: Beat tracking's tempogram grows with the track (~3 KB per frame): longer tracks are tracked in windows.
BEAT_WINDOW_FRAMES = 1 << 14  # ~12.7 min


def estimate_beats(cqt: np.ndarray) -> np.ndarray:
    """Beat times (s) tracked on the onset strength of the log-CQT (in ~12.7-minute windows, each with its
    own tempo, on longer tracks: memory stays bounded)."""
    envelope = librosa.onset.onset_strength(S=cqt.T * DB_RANGE, sr=SAMPLE_RATE, hop_length=HOP_LENGTH)
    if len(envelope) <= BEAT_WINDOW_FRAMES:
        _, beats = librosa.beat.beat_track(onset_envelope=envelope, sr=SAMPLE_RATE, hop_length=HOP_LENGTH,
                                           units="time")
        return np.asarray(beats, dtype=np.float64)
    frames = [librosa.beat.beat_track(onset_envelope=envelope[start:start + BEAT_WINDOW_FRAMES], sr=SAMPLE_RATE,
                                      hop_length=HOP_LENGTH, units="frames")[1] + start
              for start in range(0, len(envelope), BEAT_WINDOW_FRAMES)]
    times = librosa.frames_to_time(np.concatenate(frames), sr=SAMPLE_RATE, hop_length=HOP_LENGTH)
    return np.asarray(times, dtype=np.float64)


def audio_features(y: np.ndarray, beat_times: np.ndarray | None = None) -> Features:
    """All frame features of a mono 22050 Hz signal; beats are tracked unless given (e.g. from MIDI)."""
    cqt, magnitude = log_cqt(y)
    return features_from_magnitude(cqt, magnitude, beat_times)


def streamed_audio_features(blocks: Iterable[np.ndarray], beat_times: np.ndarray | None = None,
                            gain: Callable[[], float] | None = None) -> Features:
    """``audio_features`` of a long signal given block by block (``encoders.media.stream_audio``,
    ``encoders.render.render_blocks``). ``gain``, called once the blocks are spent, scales the signal as a
    whole (the CQT is linear): a rendering normalised by its peak, known only at its end."""
    magnitude = streamed_cqt_magnitude(blocks)
    if gain is not None:
        magnitude *= np.float32(gain())
    return features_from_magnitude(_log_scaled(magnitude), magnitude, beat_times)


def features_from_magnitude(cqt: np.ndarray, magnitude: np.ndarray, beat_times: np.ndarray | None) -> Features:
    beats = estimate_beats(cqt) if beat_times is None else np.asarray(beat_times, dtype=np.float64)
    return Features(cqt=cqt, chroma=chroma_from_cqt(magnitude), beat_times=beats)
