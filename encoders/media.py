"""Decoding audio and parsing MIDI from bytes, with clear, typed errors for bad input."""

from __future__ import annotations

import hashlib
import io
import re

import numpy as np
import pretty_midi
import soundfile as sf

SAMPLE_RATE = 22050
MAX_DURATION_S = 30 * 60.0  # longer inputs are refused until chunked processing lands
MAX_MIDI_NOTES = 200_000
AUDIO_EXTENSIONS = (".wav", ".flac", ".ogg", ".oga", ".mp3", ".aiff", ".aif")
MIDI_EXTENSIONS = (".mid", ".midi")


class MediaError(Exception):
    """A track could not be used; ``error_type`` is a short machine-readable category."""

    def __init__(self, message: str, error_type: str):
        super().__init__(message)
        self.error_type = error_type


def content_id(data: bytes) -> str:
    """Stable content hash of a file's bytes: the ``track_id``."""
    return hashlib.blake2b(data, digest_size=16).hexdigest()


def decode_audio(data: bytes, sr: int = SAMPLE_RATE, max_duration_s: float = MAX_DURATION_S) -> np.ndarray:
    """Decode wav/flac/ogg/mp3 bytes to mono float32 at ``sr`` Hz.

    Raises MediaError for empty, undecodable, non-finite, silent or over-long audio.
    """
    import librosa

    if not data:
        raise MediaError("empty file (0 bytes); remove it or re-export the recording", "EmptyFile")
    try:
        with sf.SoundFile(io.BytesIO(data)) as f:
            native_sr = f.samplerate
            if f.frames / native_sr > max_duration_s:
                raise MediaError(
                    f"recording is {f.frames / native_sr:.0f} s long, over the {max_duration_s:.0f} s limit",
                    "TooLong",
                )
            y = f.read(dtype="float32", always_2d=True)
    except MediaError:
        raise
    except Exception as exc:  # libsndfile raises several types for unreadable input
        reason = re.sub(r"<[^>]* at 0x[0-9a-f]+>", "the file", str(exc))  # no object addresses: reruns match
        raise MediaError(
            f"cannot decode audio ({reason}); supported formats are wav, flac, ogg and mp3", "DecodeError"
        ) from None
    y = y.mean(axis=1)
    if y.size == 0:
        raise MediaError("audio has no samples", "EmptyAudio")
    if not np.isfinite(y).all():
        raise MediaError("audio contains NaN or infinite samples", "InvalidSamples")
    if float(np.max(np.abs(y))) < 1e-4:
        raise MediaError("audio is silent (peak below -80 dBFS)", "SilentAudio")
    if native_sr != sr:
        y = librosa.resample(y, orig_sr=native_sr, target_sr=sr, res_type="soxr_hq")
    return np.ascontiguousarray(y, dtype=np.float32)


def parse_midi(data: bytes, max_duration_s: float = MAX_DURATION_S) -> pretty_midi.PrettyMIDI:
    """Parse MIDI bytes; raises MediaError for empty, corrupt, note-less or over-long files."""
    if not data:
        raise MediaError("empty file (0 bytes); remove it or re-export the MIDI file", "EmptyFile")
    try:
        pm = pretty_midi.PrettyMIDI(io.BytesIO(data))
    except Exception as exc:  # mido raises many types for corrupt files
        raise MediaError(f"cannot parse MIDI ({type(exc).__name__}: {exc})", "MidiParseError") from None
    n_notes = sum(len(inst.notes) for inst in pm.instruments if not inst.is_drum)
    if n_notes == 0:
        raise MediaError("MIDI file has no pitched notes", "NoNotes")
    if n_notes > MAX_MIDI_NOTES:
        raise MediaError(f"MIDI file has {n_notes} notes, over the {MAX_MIDI_NOTES} limit", "TooManyNotes")
    duration = midi_duration(pm)
    if duration > max_duration_s:
        raise MediaError(f"MIDI file lasts {duration:.0f} s, over the {max_duration_s:.0f} s limit", "TooLong")
    return pm


def midi_duration(pm: pretty_midi.PrettyMIDI) -> float:
    """End of the last sounding event, ignoring trailing meta events (tempo, text)."""
    return float(max((inst.get_end_time() for inst in pm.instruments), default=0.0))
