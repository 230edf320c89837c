"""Per-track analysis: bytes in, features, codes, version embedding and sections out.

One recording's analysis reads as a straight line through the run-time modules: decode or render
(``media``, ``render``) -> frame features (``features``) -> codes (``codes``, the hasher passed in) ->
version features (``versions``) -> sections (``structure``). Nothing here, nor anything it imports,
imports ``encoders.training`` (corpora, trainers, evaluations): ``analysis_modules`` lists what it runs.
"""

from __future__ import annotations

import ast
import hashlib
from dataclasses import dataclass, field
from pathlib import Path
from typing import BinaryIO

import numpy as np

from encoders.features import FRAME_RATE, Features, audio_features, streamed_audio_features
from encoders.media import (
    CLIPPED_SHARE_WARNING,
    LONG_AUDIO_S,
    SAMPLE_RATE,
    AudioStats,
    MediaError,
    audio_duration,
    clipped_share,
    content_id,
    content_id_of_file,
    decode_audio,
    midi_duration,
    parse_midi,
    stream_audio,
)
from encoders.render import check_rendered_peak, render_blocks, render_midi
from encoders.structure.grid import structure_grid
from encoders.structure.laplacian import Segment
from encoders.structure.sections import track_segments
from encoders.versions.chroma import version_sequence
from encoders.versions.embedding import cover_embedding

MODALITIES = ("audio", "midi")
#: Bumped when the analysis changes in a way its code digest would not show (e.g. a dependency's output).
ANALYSIS_VERSION = 3  # 2: faster CPU inference; 3: sections by the symbolic (MIDI) and boundary-CNN (audio) methods
#: The modules whose results the state folder keeps: the per-track analysis, the hash encoders it is given
#: (``encoders.codes.load_hasher``) and the pair alignment.
ANALYSIS_ENTRY_POINTS = ("encoders.analyze", "encoders.codes", "hashing.align")
_ROOT = Path(__file__).resolve().parents[1]
_OWN_PACKAGES = ("encoders", "hashing")


def module_path(name: str) -> Path | None:
    """The source file of one of our modules or packages (``pkg/__init__.py``); None for other names
    (a function or class imported from a module, or another project's module)."""
    base = _ROOT / name.replace(".", "/")
    for path in (base.with_suffix(".py"), base / "__init__.py"):
        if path.is_file():
            return path
    return None


def analysis_modules(entry_points: tuple[str, ...] = ANALYSIS_ENTRY_POINTS) -> list[str]:
    """Our modules the analysis runs: the entry points and, transitively, every ``encoders`` or ``hashing``
    module or package they import (read from the source, function-level imports included), with the
    packages that hold them (importing ``a.b.c`` runs ``a/__init__.py`` and ``a/b/__init__.py``)."""
    seen: set[str] = set()
    todo = list(entry_points)
    while todo:
        name = todo.pop()
        path = module_path(name)
        if name in seen or path is None:
            continue
        seen.add(name)
        todo += [".".join(name.split(".")[:i]) for i in range(1, name.count(".") + 1)]
        for node in ast.walk(ast.parse(path.read_text())):
            if isinstance(node, ast.ImportFrom) and node.module:
                names = [node.module] + [f"{node.module}.{a.name}" for a in node.names]
            elif isinstance(node, ast.Import):
                names = [a.name for a in node.names]
            else:
                continue
            todo += [n for n in names if n.split(".")[0] in _OWN_PACKAGES]
    return sorted(seen)


def analysis_key(model: str | None = None) -> str:
    """A short digest naming this version of the per-track analysis and pair alignment.

    It covers ANALYSIS_VERSION, the hash model named by ``--model`` (a weights file by content), the
    shipped weights and the source of every module the analysis runs (``analysis_modules``): results kept
    in a state folder under one key can be reused exactly, and a change of that code or model starts a
    new key (training code, the pipeline wiring or the docs do not).
    """
    digest = hashlib.blake2b(f"v{ANALYSIS_VERSION}|{model or 'learned'}".encode(), digest_size=8)
    weights = (model or "").removesuffix("+windows")  # encoders.codes.WINDOWS_SUFFIX
    files = [(Path(weights).name, Path(weights))] if weights.endswith(".pt") else []
    files += [(name, module_path(name)) for name in analysis_modules()]  # by module name: two files are learned.py
    files += [(path.name, path) for path in sorted((_ROOT / "encoders" / "weights").glob("*.pt"))]
    files += [(path.name, path) for path in sorted((_ROOT / "encoders" / "weights").glob("symbolic-*.json"))]
    for label, path in files:
        digest.update(label.encode())
        digest.update(hashlib.blake2b(path.read_bytes(), digest_size=16).digest())
    return digest.hexdigest()


@dataclass
class TrackWarning:
    """Something wrong with a track that was still analysed (e.g. clipping)."""

    error_type: str
    message: str


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
    warnings: list[TrackWarning] = field(default_factory=list)
    #: (n_beats, 12) float16 chroma on canonical-tempo beats, aligned to verify version candidates
    version_sequence: np.ndarray = field(default_factory=lambda: np.zeros((0, 12), np.float16))
    #: (n_windows, 32) uint8 track codes of overlapping 30-second windows (``encoders.codes.bits.code_windows``;
    #: none for tracks under ~37 s): stage 1 searches them with the track code
    window_codes: np.ndarray = field(default_factory=lambda: np.zeros((0, 32), np.uint8))

    def stage1_codes(self) -> np.ndarray:
        """(1 + n_windows, 32) uint8: the track code, then the window codes (what stage 1 searches)."""
        return np.concatenate([self.track_code[None, :], self.window_codes.reshape(-1, len(self.track_code))])


def track_features(data: bytes, modality: str) -> tuple[Features, float]:
    """Decode or render a track and compute its frame features; returns (features, duration_s)."""
    features, duration, _, _ = _features_and_warnings(data, modality)
    return features, duration


def _features_and_warnings(data: bytes, modality: str) -> tuple[Features, float, list[TrackWarning], object]:
    """(features, duration, warnings, the parsed MIDI file or None for a recording)."""
    if modality == "audio":
        y = decode_audio(data)
        return audio_features(y), len(y) / SAMPLE_RATE, audio_warnings(y), None
    if modality == "midi":
        pm = parse_midi(data)
        duration = midi_duration(pm)
        if duration > LONG_MIDI_S:
            return long_midi_features(pm), duration, midi_warnings(pm, duration), pm
        y = render_midi(pm)
        return audio_features(y, beat_times=pm.get_beats()), duration, midi_warnings(pm, duration), pm
    raise ValueError(f"modality must be one of {MODALITIES}, got {modality!r}")


#: MIDI files lasting longer than this are rendered and turned into CQT frames block by block.
LONG_MIDI_S = LONG_AUDIO_S


def long_midi_features(pm) -> Features:
    """Frame features of a long MIDI file in bounded memory: one synthesizer renders it a minute at a time
    (``encoders.render.render_blocks``, its state carried over) and each block becomes CQT frames as it
    comes (``streamed_audio_features``); the peak normalisation of ``render_midi`` is applied to the CQT at
    the end, so the features equal those of the one-piece rendering (to float rounding)."""
    peak = 0.0

    def blocks():
        nonlocal peak
        for block in render_blocks(pm):
            peak = max(peak, float(np.max(np.abs(block))) if block.size else 0.0)
            yield block

    def gain() -> float:
        check_rendered_peak(peak)
        return 0.9 / peak

    return streamed_audio_features(blocks(), beat_times=pm.get_beats(), gain=gain)


#: Average notes per second above which a MIDI file gets a warning (dense piano music has ~10-20).
DENSE_MIDI_NOTES_PER_S = 100.0


def midi_warnings(pm, duration_s: float) -> list[TrackWarning]:
    """Problems of a parsed MIDI file that do not stop its analysis."""
    n_notes = sum(len(inst.notes) for inst in pm.instruments)
    rate = n_notes / max(duration_s, 1e-3)
    if rate > DENSE_MIDI_NOTES_PER_S:
        return [TrackWarning("DenseMidi", f"{n_notes} notes in {duration_s:.0f} s ({rate:.0f} per second); "
                             "analysed anyway, but this looks generated rather than a transcription")]
    return []


def audio_warnings(y: np.ndarray | None = None, share: float | None = None) -> list[TrackWarning]:
    """Problems of a decoded recording (or of its clipped share) that do not stop its analysis."""
    share = clipped_share(y) if share is None else share
    if share >= CLIPPED_SHARE_WARNING:
        return [TrackWarning("ClippedAudio", f"{100 * share:.1f}% of the samples are clipped at full scale; "
                             "analysed anyway, but matches may be less confident (re-export without clipping)")]
    return []


#: Files up to this size are read whole; bigger ones are hashed and decoded block by block.
IN_MEMORY_BYTES = 64 << 20


def analyze_source(source: bytes | BinaryIO, uri: str, modality: str, hasher, track_id: str | None = None
                   ) -> TrackAnalysis:
    """Every per-track stage on a file's bytes or on an open file (``track_id``: its content id, when known);
    raises MediaError for unusable input. Recordings longer than LONG_AUDIO_S are decoded and analysed block
    by block (``analyze_long_audio``), MIDI files longer than LONG_MIDI_S rendered and analysed block by
    block (``long_midi_features``), so memory stays bounded."""
    if isinstance(source, bytes | bytearray):
        data = bytes(source)
    else:
        track_id = track_id or content_id_of_file(source)
        if modality == "midi":
            size = source.seek(0, 2)
            raise MediaError(f"MIDI file of {size / 2**20:.0f} MB is far too big for a score; is it a MIDI file?",
                             "TooLarge")
        if audio_duration(source) > LONG_AUDIO_S:
            return analyze_long_audio(source, uri, hasher, track_id)
        source.seek(0)
        data = source.read()
    features, duration, warnings, pm = _features_and_warnings(data, modality)
    return analysis_from_features(track_id or content_id(data), uri, modality, features, duration, hasher, warnings,
                                  pm=pm)


def analyze_long_audio(f: BinaryIO, uri: str, hasher, track_id: str) -> TrackAnalysis:
    """Analyse a long recording from an open file in bounded memory: blocks are decoded, resampled and
    turned into CQT frames one after another (``encoders.features.streamed_audio_features``)."""
    stats = AudioStats()
    features = streamed_audio_features(stream_audio(f, stats=stats))
    return analysis_from_features(track_id, uri, "audio", features, stats.samples / SAMPLE_RATE, hasher,
                                  audio_warnings(share=stats.clipped_share))


def analysis_from_features(track_id: str, uri: str, modality: str, features: Features, duration: float,
                           hasher, warnings: list[TrackWarning] | None = None, pm=None) -> TrackAnalysis:
    """Codes, version embedding and sections of a track whose frame features are known (``pm``: the parsed
    MIDI file of a MIDI track, whose notes give its sections; ``encoders.structure.sections``)."""
    n_frames = min(len(features.cqt), int(np.ceil(duration * FRAME_RATE)) + 1)
    if n_frames < 8:
        raise MediaError(f"track too short to analyse ({duration:.2f} s)", "TooShort")
    cqt = features.cqt[:n_frames]
    beats = features.beat_times[features.beat_times < duration]
    frame_codes, track_code, window_codes = hasher.all_codes(cqt, modality)
    return TrackAnalysis(
        track_id=track_id,
        uri=uri,
        modality=modality,
        duration_s=float(duration),
        cqt=cqt,
        frame_codes=frame_codes,
        track_code=track_code,
        cover_embedding=cover_embedding(features.chroma[:n_frames], FRAME_RATE, beats),
        segments=track_segments(cqt, features.frame_times[:n_frames], float(duration),
                                structure_grid(beats, float(duration)), pm=pm),
        warnings=list(warnings or []),
        version_sequence=version_sequence(features.chroma[:n_frames], FRAME_RATE, beats),
        window_codes=window_codes,
    )
