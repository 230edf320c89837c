"""Decoding audio and parsing MIDI from bytes, with clear, typed errors for bad input."""

from __future__ import annotations

import hashlib
import io
import re
from collections.abc import Iterator
from dataclasses import dataclass
from typing import BinaryIO

import numpy as np
import pretty_midi
import soundfile as sf
import soxr

SAMPLE_RATE = 22050
MAX_DURATION_S = 30 * 60.0  # recordings decoded in one piece (longer recordings: stream_audio)
MAX_MIDI_DURATION_S = 4 * 3600.0  # longer MIDI files are refused (a long concert lasts about 3 hours)
LONG_AUDIO_S = 10 * 60.0  # recordings longer than this are decoded and analysed in blocks
MAX_AUDIO_DURATION_S = 12 * 3600.0  # longer recordings are refused
STREAM_BLOCK_S = 60.0
MAX_MIDI_NOTES = 200_000
SILENT_PEAK = 1e-4  # -80 dBFS: quieter recordings are refused as silent
CLIP_LEVEL = 0.999  # of full scale
CLIPPED_SHARE_WARNING = 0.001  # a recording with this share of clipped samples gets a warning
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


def content_id_of_file(f: BinaryIO, block_bytes: int = 1 << 23) -> str:
    """``content_id`` of an open file, read block by block from its start (for files too big to hold)."""
    digest = hashlib.blake2b(digest_size=16)
    f.seek(0)
    while block := f.read(block_bytes):
        digest.update(block)
    return digest.hexdigest()


def decode_audio(data: bytes, sr: int = SAMPLE_RATE, max_duration_s: float = MAX_DURATION_S) -> np.ndarray:
    """Decode wav/flac/ogg/mp3 bytes to mono float32 at ``sr`` Hz.

    Raises MediaError for empty, undecodable, non-finite, silent or over-long audio.
    """
    import librosa

    if not data:
        raise MediaError("empty file (0 bytes); remove it or re-export the recording", "EmptyFile")
    with _open_sound(io.BytesIO(data)) as f:
        native_sr = f.samplerate
        if f.frames / native_sr > max_duration_s:
            raise MediaError(
                f"recording is {f.frames / native_sr:.0f} s long, over the {max_duration_s:.0f} s limit",
                "TooLong",
            )
        try:
            y = f.read(dtype="float32", always_2d=True)
        except Exception as exc:  # libsndfile raises several types for unreadable input
            raise _decode_error(exc) from None
    y = y.mean(axis=1)
    if y.size == 0:
        raise MediaError("audio has no samples", "EmptyAudio")
    if not np.isfinite(y).all():
        raise MediaError("audio contains NaN or infinite samples", "InvalidSamples")
    _check_audible(float(np.max(np.abs(y))))
    if native_sr != sr:
        y = librosa.resample(y, orig_sr=native_sr, target_sr=sr, res_type="soxr_hq")
    return np.ascontiguousarray(y, dtype=np.float32)


@dataclass
class AudioStats:
    """What ``stream_audio`` saw of a recording, filled in as its blocks are read."""

    native_sr: int = 0
    duration_s: float = 0.0
    samples: int = 0  # at the output rate
    peak: float = 0.0
    clipped: int = 0  # native samples at full scale

    @property
    def clipped_share(self) -> float:
        return self.clipped / max(1, round(self.duration_s * self.native_sr))


def audio_duration(f: BinaryIO) -> float:
    """Duration in seconds from a recording's header (nothing else is read); MediaError if unreadable."""
    with _open_sound(f) as sound:
        return sound.frames / sound.samplerate


def _open_sound(f: BinaryIO) -> sf.SoundFile:
    """libsndfile's reader over an open file, from its start."""
    f.seek(0)
    try:
        return sf.SoundFile(f)
    except Exception as exc:  # libsndfile raises several types for unreadable input
        raise _decode_error(exc) from None


def _decode_error(exc: Exception) -> MediaError:
    reason = re.sub(r"<[^>]*>", "the file", str(exc))  # no object reprs (addresses, paths): reruns match
    return MediaError(f"cannot decode audio ({reason}); supported formats are wav, flac, ogg and mp3", "DecodeError")


def _check_audible(peak: float) -> None:
    if peak < SILENT_PEAK:
        raise MediaError("audio is silent (peak below -80 dBFS)", "SilentAudio")


def stream_audio(f: BinaryIO, sr: int = SAMPLE_RATE, block_s: float = STREAM_BLOCK_S,
                 max_duration_s: float = MAX_AUDIO_DURATION_S, stats: AudioStats | None = None) -> Iterator[np.ndarray]:
    """Decode a (long) recording block by block: mono float32 blocks at ``sr`` Hz, resampled as one stream.

    Memory stays at a few blocks whatever the length. Raises MediaError like ``decode_audio`` (non-finite
    samples as soon as a block has them; silence at the end). ``stats`` collects duration, peak, clipping.
    """
    stats = stats if stats is not None else AudioStats()
    with _open_sound(f) as sound:
        stats.native_sr, stats.duration_s = sound.samplerate, sound.frames / sound.samplerate
        if stats.duration_s > max_duration_s:
            raise MediaError(f"recording is {stats.duration_s:.0f} s long, over the {max_duration_s:.0f} s "
                             "limit; split it into parts", "TooLong")
        resampler = None if sound.samplerate == sr else soxr.ResampleStream(sound.samplerate, sr, 1, "float32", "HQ")
        block_frames = max(1, int(block_s * sound.samplerate))
        while True:
            try:
                block = sound.read(block_frames, dtype="float32", always_2d=True)
            except Exception as exc:
                raise MediaError(f"cannot decode audio after {stats.samples / sr:.0f} s ({exc}); the file may be "
                                 "truncated", "DecodeError") from None
            last = len(block) < block_frames
            mono = np.ascontiguousarray(block.mean(axis=1), dtype=np.float32)
            if not np.isfinite(mono).all():
                raise MediaError(f"audio contains NaN or infinite samples (after {stats.samples / sr:.0f} s)",
                                 "InvalidSamples")
            if mono.size:
                stats.peak = max(stats.peak, float(np.abs(mono).max()))
                stats.clipped += int(np.count_nonzero(np.abs(mono) >= CLIP_LEVEL))
            out = mono if resampler is None else resampler.resample_chunk(mono, last=last)
            stats.samples += len(out)
            if len(out):
                yield out
            if last:
                break
    if stats.samples == 0:
        raise MediaError("audio has no samples", "EmptyAudio")
    _check_audible(stats.peak)


def clipped_share(y: np.ndarray) -> float:
    """Share of samples at full scale (|y| >= CLIP_LEVEL): clipping, when much above 0.1%."""
    return float(np.count_nonzero(np.abs(y) >= CLIP_LEVEL)) / max(1, y.size)


def parse_midi(data: bytes, max_duration_s: float = MAX_MIDI_DURATION_S) -> pretty_midi.PrettyMIDI:
    """Parse MIDI bytes; raises MediaError for empty, corrupt, note-less or over-long files."""
    if not data:
        raise MediaError("empty file (0 bytes); remove it or re-export the MIDI file", "EmptyFile")
    try:
        pm = pretty_midi.PrettyMIDI(io.BytesIO(data))
    except EOFError:
        raise MediaError("cannot parse MIDI: the file ends in the middle of a track (truncated, or an "
                         "incomplete download); re-export or download it again", "TruncatedMidi") from None
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
