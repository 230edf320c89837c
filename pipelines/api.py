"""The notebook API: match, segment and compare single files in Python, without running a Beam pipeline.

The non-Beam entry point of mirmatch, beside the CLI (``pipelines.cli``): each function calls the very functions
the pipeline's stages call, in the same order, so a result here is the pipeline's for the same files:

* analysis: ``encoders.analyze.analyze_source`` with the hash model of ``--model`` (``pipelines.analyse``);
* matching: the hash cascade (``hashing.cascade.HashCascade``), CQT DTW and its null alignments
  (``hashing.align.align_pair``), the decision (``hashing.decisions``: margin, confidence, ``is_match``) and the
  sharper time map of a likely match (``refine_time_map``), as ``pipelines.match.RefineCandidates`` and
  ``RankMatches`` do;
* versions: the embeddings' cosine similarity (``hashing.clustering.knn_graph``, faiss) and its verification by
  Qmax (``hashing.version_align.verified_similarity``), as ``pipelines.versions`` does.

It lives in ``pipelines/`` because it needs both rooms below: ``encoders`` (media -> vectors) and ``hashing``
(comparing them); ``hashing`` does not import the analysis, and ``encoders`` imports ``hashing`` only for one
array helper, so neither room may hold a facade over the other.

A pair's confidence depends on the pair alone (its DTW score against its own null alignments, and how much
music it aligns: ``hashing.decisions``), so :func:`match` on one pair gives exactly the run's confidence.

Every function takes paths (local, or ``gs://...`` through Beam's file systems) or analyses from
:func:`analyze`, which saves decoding a file again for each call. The examples read the tiny test corpus
(``tests/conftest.py`` builds it; ``MIRMATCH_CORPUS`` names another copy) and are run by
``tests/test_notebook_api.py``.
"""

from __future__ import annotations

import functools
import os
from collections.abc import Sequence
from dataclasses import dataclass
from pathlib import PurePosixPath

import numpy as np

from encoders.analyze import TrackAnalysis
from encoders.structure.laplacian import Segment

__all__ = ["MatchResult", "VersionSimilarity", "analyze", "match", "segment", "version_similarity"]

Track = str | os.PathLike | TrackAnalysis


@functools.lru_cache(maxsize=4)
def _hasher(model: str | None):
    from encoders.codes import load_hasher

    return load_hasher(model)


def _open(uri: str):
    """A binary file object: local paths with ``open``, other schemes (gs://) with Beam's FileSystems."""
    if "://" in uri and not uri.startswith("file://"):
        from apache_beam.io.filesystem import CompressionTypes
        from apache_beam.io.filesystems import FileSystems

        return FileSystems.open(uri, compression_type=CompressionTypes.UNCOMPRESSED)
    from pipelines.sources import path_of_uri

    return open(path_of_uri(uri), "rb")


def analyze(path: str | os.PathLike, modality: str | None = None, model: str | None = None) -> TrackAnalysis:
    """Analyse one file as ``mirmatch run`` does: decode (audio) or render (MIDI), CQT, codes, version
    embedding and sequence, segments.

    Parameters
    ----------
    path : str or PathLike
        A local path or a URI (``gs://...`` with the gcp extra).
    modality : "audio", "midi" or None
        None: "midi" for .mid/.midi files, else "audio".
    model : str or None
        The hash model, as ``--model`` (default: the shipped learned encoders).

    Returns
    -------
    encoders.analyze.TrackAnalysis: ``track_id`` (content hash, as in the tables), ``duration_s``, ``cqt`` (n, 48),
    ``segments``, ... Raises encoders.media.MediaError for a file the pipeline would list in `errors`.

    >>> import os
    >>> corpus = os.environ.get("MIRMATCH_CORPUS", ".cache/test-corpus")
    >>> track = analyze(f"{corpus}/midi/simutrans_37-inevitably-engrossed.mid")
    >>> track.modality, track.cqt.shape[1], len(track.track_id)
    ('midi', 48, 32)
    """
    from encoders.analyze import IN_MEMORY_BYTES, analyze_source
    from encoders.media import MIDI_EXTENSIONS, content_id

    uri = os.fspath(path)
    if modality is None:
        modality = "midi" if PurePosixPath(uri).suffix.lower() in MIDI_EXTENSIONS else "audio"
    with _open(uri) as f:  # as pipelines.analyse: small files whole, big ones block by block
        size = f.seek(0, 2)
        f.seek(0)
        if size <= IN_MEMORY_BYTES:
            data = f.read()
            return analyze_source(data, uri, modality, _hasher(model), content_id(data))
        return analyze_source(f, uri, modality, _hasher(model))


def _analysis(track: Track, modality: str | None, model: str | None) -> TrackAnalysis:
    if isinstance(track, TrackAnalysis):
        return track
    return analyze(track, modality, model)


@dataclass
class MatchResult:
    """The match of one (MIDI, audio) pair, as its `matches` row and `alignments` time map would give it."""

    midi_uri: str
    audio_uri: str
    midi_id: str
    audio_id: str
    confidence: float  # in [0, 1], calibrated (hashing.decisions.match_confidence)
    is_match: bool  # confidence above 0.5
    dtw_score: float  # raw normalised CQT DTW cost, lower is better (~1 for unrelated tracks)
    null_score: float  # the best null alignment's score (hashing.align.null_features)
    margin: float  # null_score - dtw_score: about 0 for unrelated music, 0.2-0.7 for a match
    aligned_s: float  # seconds of music aligned on the shorter side
    hamming_distance: int  # track-code Hamming distance (the cascade's stage 1)
    hash_dtw_distance: float  # hash-sequence DTW distance (stage 2)
    midi_times_s: np.ndarray  # (n,) monotonic time map, MIDI side, seconds
    audio_times_s: np.ndarray  # (n,) the same points on the recording, seconds

    @property
    def midi_start_s(self) -> float:
        return float(self.midi_times_s[0])

    @property
    def midi_end_s(self) -> float:
        return float(self.midi_times_s[-1])

    @property
    def audio_start_s(self) -> float:
        return float(self.audio_times_s[0])

    @property
    def audio_end_s(self) -> float:
        return float(self.audio_times_s[-1])

    def to_audio_time(self, midi_times_s: np.ndarray | float) -> np.ndarray:
        """MIDI times (s) -> recording times (s), linear between the map's points, clamped to the aligned span."""
        return np.interp(midi_times_s, self.midi_times_s, self.audio_times_s)

    def aligned_midi(self):
        """The MIDI file re-timed onto the recording (a ``pretty_midi.PrettyMIDI``), as
        ``--export-aligned-midi`` writes it (``hashing.retime.retime_midi``)."""
        from encoders.media import parse_midi
        from hashing.retime import retime_midi

        with _open(self.midi_uri) as f:
            return retime_midi(parse_midi(f.read()), self.midi_times_s, self.audio_times_s)


def match(midi: Track, audio: Track, *, model: str | None = None, calibration: str | None = None) -> MatchResult:
    """Match one MIDI file with one recording: confidence, is_match, the aligned span and the time map.

    Parameters
    ----------
    midi, audio : path or TrackAnalysis
    model : str or None
        The hash model, as ``--model``.
    calibration : str or None
        Decision settings written by ``mirmatch calibrate``, as ``--calibration`` (default: the shipped ones).

    Returns
    -------
    MatchResult, with the time map as arrays (``midi_times_s``, ``audio_times_s``).

    >>> import os
    >>> corpus = os.environ.get("MIRMATCH_CORPUS", ".cache/test-corpus")
    >>> result = match(f"{corpus}/midi/simutrans_37-inevitably-engrossed.mid",
    ...                f"{corpus}/audio/simutrans_37-inevitably-engrossed.timgm6mb.wav")
    >>> result.is_match, result.confidence > 0.9
    (True, True)
    >>> bool(result.audio_start_s < result.audio_end_s), len(result.midi_times_s) == len(result.audio_times_s)
    (True, True)
    >>> other = match(f"{corpus}/midi/simutrans_53-Where-Thomassons-Lie.mid",
    ...               f"{corpus}/audio/simutrans_37-inevitably-engrossed.timgm6mb.wav")
    >>> other.is_match, other.confidence < 0.1
    (False, True)
    """
    from encoders.features import FRAME_RATE
    from hashing.align import align_pair
    from hashing.align import refine_time_map as refine
    from hashing.cascade import HashCascade
    from hashing.decisions import REFINE_MIN_CONFIDENCE, is_match, match_confidence, match_margin
    from pipelines.pipeline import RunConfig

    settings = RunConfig([], [], "", calibration=calibration).decisions().match

    m, a = _analysis(midi, "midi", model), _analysis(audio, "audio", model)
    cascade = HashCascade(a.track_code[None, :], [a.frame_codes])  # a database of one: the pair always survives
    proposed = cascade.query(m.track_code, m.frame_codes)
    alignment = align_pair(m.cqt, a.cqt, FRAME_RATE)
    margin = match_margin(alignment.score, alignment.null_scores)
    confidence = match_confidence(margin, alignment.aligned_s, settings)
    midi_times, audio_times = alignment.midi_times_s, alignment.audio_times_s
    if confidence >= REFINE_MIN_CONFIDENCE:
        midi_times, audio_times = refine(m.cqt, a.cqt, FRAME_RATE)
    return MatchResult(midi_uri=m.uri, audio_uri=a.uri, midi_id=m.track_id, audio_id=a.track_id,
                       confidence=confidence, is_match=is_match(confidence), dtw_score=alignment.score,
                       null_score=min(alignment.null_scores), margin=margin, aligned_s=alignment.aligned_s,
                       hamming_distance=int(proposed.hamming[0]), hash_dtw_distance=float(proposed.dtw_distance[0]),
                       midi_times_s=np.asarray(midi_times, dtype=np.float64),
                       audio_times_s=np.asarray(audio_times, dtype=np.float64))


def segment(path: Track, *, model: str | None = None) -> list[Segment]:
    """The structural sections of a track, as its `segments` rows: ``Segment(start_s, end_s, label)``, covering
    [0, duration] without gaps; repeated sections share a label ("A", "B", ... in order of appearance).

    >>> import os
    >>> corpus = os.environ.get("MIRMATCH_CORPUS", ".cache/test-corpus")
    >>> sections = segment(f"{corpus}/audio/simutrans_37-inevitably-engrossed.timgm6mb.wav")
    >>> len(sections) >= 2, sections[0].start_s, sections[0].label
    (True, 0.0, 'A')
    >>> all(s.end_s == t.start_s for s, t in zip(sections, sections[1:]))
    True
    """
    return list(_analysis(path, None, model).segments)


@dataclass
class VersionSimilarity:
    """How alike two tracks are as versions of one composition; ``float()`` gives ``similarity``."""

    similarity: float  # verified similarity: cosine + Qmax term (hashing.version_align.verified_similarity)
    cosine: float  # cosine similarity of the version embeddings
    z: float | None  # robust deviations above both tracks' nulls (hashing.decisions.edge_z); None without references
    is_version: bool | None  # whether a run keeps the pair as a version edge; None without references

    def __float__(self) -> float:
        return self.similarity


def version_similarity(path_a: Track, path_b: Track, *, references: Sequence[Track] = (), model: str | None = None,
                       min_similarity: float | None = None, calibration: str | None = None) -> VersionSimilarity:
    """The verified version similarity of two tracks (audio or MIDI, any mix), as a run scores a pair, and the
    run's decision on it.

    A run decides against each track's null: its similarities to a few unrelated reference tracks
    (``hashing.decisions``). Give ``references`` (tracks unrelated to both; a run uses 8) to get ``z`` and
    ``is_version``; without them both are None. ``min_similarity`` is ``--cluster-similarity``'s optional floor.
    In a run a pair is only verified when one track is among the other's ``--version-candidates`` nearest
    neighbours; the run also applies a ratio test against each track's best edge among its neighbours, and joins
    clusters only where accepted edges link a majority of their members (``hashing.decisions``,
    ``hashing.clustering.guarded_clusters``), so two tracks with ``is_version`` usually, not always, share a
    cluster.

    >>> import os
    >>> corpus = os.environ.get("MIRMATCH_CORPUS", ".cache/test-corpus")
    >>> others = [f"{corpus}/audio/distractor_freedink_insper.musescore.flac",
    ...           f"{corpus}/audio/distractor_simutrans_21-Dusty-Eyes.timgm6mb.wav",
    ...           f"{corpus}/midi/simutrans_53-Where-Thomassons-Lie.mid",
    ...           f"{corpus}/midi/simutrans_37-inevitably-engrossed.mid",
    ...           f"{corpus}/audio/simutrans_37-inevitably-engrossed.timgm6mb.wav",
    ...           f"{corpus}/midi/simutrans_14-Last-journey-of-the-Niagara.mid"]
    >>> same = version_similarity(f"{corpus}/midi/simutrans_06-A-busy-day-at-the-depot.mid",
    ...                           f"{corpus}/audio/simutrans_06-A-busy-day-at-the-depot.musescore.flac",
    ...                           references=others)
    >>> different = version_similarity(f"{corpus}/midi/simutrans_06-A-busy-day-at-the-depot.mid",
    ...                                f"{corpus}/audio/distractor_freedink_insper.musescore.flac",
    ...                                references=others[1:])
    >>> same.is_version, different.is_version, float(same) > float(different)
    (True, False, True)
    """
    from hashing.decisions import null_model, version_decision
    from pipelines.pipeline import RunConfig

    settings = RunConfig([], [], "", calibration=calibration).decisions().versions
    a, b = _analysis(path_a, None, model), _analysis(path_b, None, model)
    similarity, cosine = verified_pair(a, b)
    if not references:
        return VersionSimilarity(similarity=similarity, cosine=cosine, z=None, is_version=None)
    refs = [_analysis(r, None, model) for r in references]
    nulls = [null_model([verified_pair(t, r)[0] for r in refs], settings.min_spread) for t in (a, b)]
    long_enough = min(a.duration_s, b.duration_s) >= settings.min_duration_s
    z, is_version = version_decision(similarity, nulls[0], nulls[1], long_enough, settings, min_similarity)
    return VersionSimilarity(similarity=similarity, cosine=cosine, z=z, is_version=is_version)


def verified_pair(a: TrackAnalysis, b: TrackAnalysis) -> tuple[float, float]:
    """(verified similarity, cosine) of two analysed tracks, computed as the run verifies a pair: the smaller
    id first, the cosine from faiss, then ``hashing.version_align.verified_similarity``."""
    from hashing.clustering import knn_graph
    from hashing.version_align import verified_similarity

    a, b = sorted((a, b), key=lambda t: (t.track_id, t.uri))
    _, _, cos = knn_graph(np.stack([a.cover_embedding, b.cover_embedding]), 1, -np.inf)
    cosine = float(cos[0]) if len(cos) else float(np.dot(a.cover_embedding, b.cover_embedding))
    return verified_similarity(cosine, a.version_sequence, b.version_sequence), cosine

