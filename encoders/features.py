"""Spectral and pitch features: Raffel's log-CQT, chroma and beats."""

from __future__ import annotations

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
    magnitude = np.abs(librosa.cqt(y, sr=sr, hop_length=HOP_LENGTH, fmin=librosa.midi_to_hz(FMIN_MIDI),
                                   n_bins=N_BINS, bins_per_octave=12))
    db = librosa.amplitude_to_db(magnitude, ref=np.max, top_db=DB_RANGE)
    scaled = (db + DB_RANGE) / DB_RANGE
    return scaled.T.astype(np.float32), magnitude.T.astype(np.float32)


def chroma_from_cqt(magnitude: np.ndarray) -> np.ndarray:
    """Fold a (n_frames, 48) CQT magnitude into max-normalised (n_frames, 12) chroma."""
    chroma = librosa.feature.chroma_cqt(C=magnitude.T, n_chroma=12, bins_per_octave=12,
                                        fmin=librosa.midi_to_hz(FMIN_MIDI))
    return chroma.T.astype(np.float32)


def estimate_beats(cqt: np.ndarray) -> np.ndarray:
    """Beat times (s) tracked on the onset strength of the log-CQT."""
    envelope = librosa.onset.onset_strength(S=cqt.T * DB_RANGE, sr=SAMPLE_RATE, hop_length=HOP_LENGTH)
    _, beats = librosa.beat.beat_track(onset_envelope=envelope, sr=SAMPLE_RATE, hop_length=HOP_LENGTH,
                                       units="time")
    return np.asarray(beats, dtype=np.float64)


def audio_features(y: np.ndarray, beat_times: np.ndarray | None = None) -> Features:
    """All frame features of a mono 22050 Hz signal; beats are tracked unless given (e.g. from MIDI)."""
    cqt, magnitude = log_cqt(y)
    beats = estimate_beats(cqt) if beat_times is None else np.asarray(beat_times, dtype=np.float64)
    return Features(cqt=cqt, chroma=chroma_from_cqt(magnitude), beat_times=beats)
