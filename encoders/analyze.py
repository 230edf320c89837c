"""Per-track analysis: bytes in, features, codes, version embedding and sections out."""

from __future__ import annotations

from dataclasses import dataclass, field

import numpy as np

from encoders.cover import ftm2d_embedding
from encoders.features import FRAME_RATE, Features, audio_features
from encoders.media import MediaError, content_id, decode_audio, midi_duration, parse_midi
from encoders.render import render_midi
from encoders.structure import Segment
from encoders.structure_learned import learned_segments

MODALITIES = ("audio", "midi")


@dataclass
class TrackAnalysis:
    """Everything later stages need from one track."""

    track_id: str
    uri: str
    modality: str
    duration_s: float
    cqt: np.ndarray  # (n_frames, 48) float32
    frame_codes: np.ndarray  # (n_frames / 8,) uint32
    track_code: np.ndarray  # (32,) uint8
    cover_embedding: np.ndarray  # (d,) float32, L2-normalised
    segments: list[Segment] = field(default_factory=list)


def track_features(data: bytes, modality: str) -> tuple[Features, float]:
    """Decode or render a track and compute its frame features; returns (features, duration_s)."""
    if modality == "audio":
        y = decode_audio(data)
        return audio_features(y), len(y) / 22050.0
    if modality == "midi":
        pm = parse_midi(data)
        y = render_midi(pm)
        return audio_features(y, beat_times=pm.get_beats()), midi_duration(pm)
    raise ValueError(f"modality must be one of {MODALITIES}, got {modality!r}")


def analyze_track(data: bytes, uri: str, modality: str, hasher) -> TrackAnalysis:
    """Run every per-track stage; raises MediaError for unusable input."""
    features, duration = track_features(data, modality)
    n_frames = min(len(features.cqt), int(np.ceil(duration * FRAME_RATE)) + 1)
    if n_frames < 8:
        raise MediaError(f"track too short to analyse ({duration:.2f} s)", "TooShort")
    cqt = features.cqt[:n_frames]
    beats = features.beat_times[features.beat_times < duration]
    if hasattr(hasher, "codes"):  # one forward pass for both (learned encoders)
        frame_codes, track_code = hasher.codes(cqt, modality)
    else:
        frame_codes, track_code = hasher.frame_codes(cqt, modality), hasher.track_code(cqt, modality)
    return TrackAnalysis(
        track_id=content_id(data),
        uri=uri,
        modality=modality,
        duration_s=float(duration),
        cqt=cqt,
        frame_codes=frame_codes,
        track_code=track_code,
        cover_embedding=ftm2d_embedding(features.chroma[:n_frames], FRAME_RATE, beats),
        segments=learned_segments(cqt, features.frame_times[:n_frames], float(duration), beats),
    )
