"""Beam transforms wiring the per-track analysis, the matching cascade and clustering together.

Algorithms live in ``encoders`` and ``hashing``; this module only moves data between them.
"""

from __future__ import annotations

import logging
from collections.abc import Iterable, Iterator
from dataclasses import dataclass

import apache_beam as beam
import numpy as np
from apache_beam.io.filesystems import FileSystems
from apache_beam.metrics import Metrics
from apache_beam.pvalue import TaggedOutput

log = logging.getLogger("mirmatch")

TRACKS, ERRORS, SEGMENTS, FEATURES = "tracks", "errors", "segments", "features"


@dataclass
class Candidate:
    """A MIDI track proposed for one audio track by the Hamming search."""

    midi: object  # encoders.analyze.TrackAnalysis
    hamming_distance: int


def error_row(uri: str, stage: str, error_type: str, message: str) -> dict:
    return {"uri": uri, "stage": stage, "error_type": error_type, "message": message}


class AnalyzeTrack(beam.DoFn):
    """(uri, modality) -> a `tracks` row, plus segments and features, or an `errors` row."""

    def __init__(self, model: str | None):
        self.model = model
        self.ok = Metrics.counter("mirmatch", "tracks_ok")
        self.failed = Metrics.counter("mirmatch", "tracks_error")

    def setup(self) -> None:
        from encoders.hashes import load_hasher

        self.hasher = load_hasher(self.model)

    def process(self, element: tuple[str, str]) -> Iterator:
        from encoders.analyze import analyze_track
        from encoders.media import MediaError, content_id

        uri, modality = element
        track = {"track_id": None, "uri": uri, "modality": modality, "duration_s": None, "status": "error"}
        try:
            with FileSystems.open(uri) as f:
                data = f.read()
        except Exception as exc:
            self.failed.inc()
            yield TaggedOutput(ERRORS, error_row(uri, "read", "UnreadablePath", f"cannot read file: {exc}"))
            yield TaggedOutput(TRACKS, track)
            return
        track["track_id"] = content_id(data)
        try:
            result = analyze_track(data, uri, modality, self.hasher)
        except MediaError as exc:
            stage = "decode" if modality == "audio" else "parse"
            self.failed.inc()
            yield TaggedOutput(ERRORS, error_row(uri, stage, exc.error_type, str(exc)))
            yield TaggedOutput(TRACKS, track)
            return
        except Exception as exc:  # a bug or an input no check anticipated: keep the run going
            log.exception("analysis of %s failed", uri)
            self.failed.inc()
            yield TaggedOutput(ERRORS, error_row(uri, "analyze", type(exc).__name__, str(exc)))
            yield TaggedOutput(TRACKS, track)
            return
        self.ok.inc()
        track.update(duration_s=result.duration_s, status="ok")
        yield TaggedOutput(TRACKS, track)
        for i, seg in enumerate(result.segments):
            yield TaggedOutput(SEGMENTS, {"track_id": result.track_id, "uri": uri, "segment_index": i,
                                          "start_s": seg.start_s, "end_s": seg.end_s, "label": seg.label})
        yield result


class ProposeCandidates(beam.DoFn):
    """Batches of MIDI analyses -> (audio uri, Candidate) for the top-N audio codes by Hamming distance."""

    def __init__(self, n_candidates: int):
        self.n_candidates = n_candidates
        self.proposed = Metrics.counter("mirmatch", "candidates_proposed")
        self._index_key = None

    def process(self, batch: list, audio_codes: list[tuple[str, np.ndarray]]) -> Iterator:
        from hashing.search import HammingIndex

        if not audio_codes:
            return
        key = id(audio_codes)
        if self._index_key != key:  # build the index once per side-input instance, not per batch
            ordered = sorted(audio_codes, key=lambda item: item[0])
            self._uris = [uri for uri, _ in ordered]
            self._index = HammingIndex(np.stack([code for _, code in ordered]))
            self._index_key = key
        distances, indices = self._index.search(np.stack([m.track_code for m in batch]), self.n_candidates)
        for midi, dist_row, idx_row in zip(batch, distances, indices, strict=True):
            for d, i in zip(dist_row, idx_row, strict=True):
                self.proposed.inc()
                yield self._uris[i], Candidate(midi=midi, hamming_distance=int(d))


class RefineCandidates(beam.DoFn):
    """(audio uri, {audio: [analysis], candidates: [...]}) -> (midi uri, pair result) by CQT DTW.

    All MIDI candidates of one audio track meet here, so their scores are normalised against each other
    (``hashing.align.cohort_normalise``) before they become confidences.
    """

    def __init__(self):
        self.aligned = Metrics.counter("mirmatch", "pairs_aligned")

    def process(self, element: tuple[str, dict]) -> Iterator:
        from encoders.features import FRAME_RATE
        from hashing.align import align_pair, cohort_normalise, confidence_from_score

        _, grouped = element
        audios = list(grouped["audio"])
        candidates = sorted(grouped["candidates"], key=lambda c: c.midi.uri)
        if not audios or not candidates:
            return
        audio = audios[0]
        alignments = [align_pair(c.midi.cqt, audio.cqt, FRAME_RATE) for c in candidates]
        self.aligned.inc(len(alignments))
        normalised = cohort_normalise(np.array([a.score for a in alignments]))
        confidences = confidence_from_score(normalised)
        for cand, alignment, conf in zip(candidates, alignments, confidences, strict=True):
            midi = cand.midi
            yield midi.uri, {
                "midi_id": midi.track_id, "midi_uri": midi.uri, "audio_id": audio.track_id,
                "audio_uri": audio.uri, "confidence": float(conf), "dtw_score": alignment.score,
                "hamming_distance": cand.hamming_distance,
                "midi_times_s": alignment.midi_times_s.tolist(),
                "audio_times_s": alignment.audio_times_s.tolist(),
            }


class RankMatches(beam.DoFn):
    """(midi uri, pair results) -> the top-K `matches` rows, and `alignments` rows for the matches."""

    def __init__(self, top_k: int):
        self.top_k = top_k
        self.matched = Metrics.counter("mirmatch", "matches")

    def process(self, element: tuple[str, Iterable[dict]]) -> Iterator:
        _, pairs = element
        ranked = sorted(pairs, key=lambda p: (-p["confidence"], p["audio_uri"]))[: self.top_k]
        for rank, p in enumerate(ranked, start=1):
            is_match = p["confidence"] > 0.5
            mt, at = p["midi_times_s"], p["audio_times_s"]
            yield {
                "midi_id": p["midi_id"], "midi_uri": p["midi_uri"], "audio_id": p["audio_id"],
                "audio_uri": p["audio_uri"], "rank": rank, "confidence": p["confidence"], "is_match": is_match,
                "midi_start_s": mt[0], "midi_end_s": mt[-1], "audio_start_s": at[0], "audio_end_s": at[-1],
                "dtw_score": p["dtw_score"], "hamming_distance": p["hamming_distance"],
            }
            if is_match:
                self.matched.inc()
                yield TaggedOutput("alignments", {
                    "midi_id": p["midi_id"], "audio_id": p["audio_id"], "midi_times_s": mt,
                    "audio_times_s": at, "midi_uri": p["midi_uri"], "audio_uri": p["audio_uri"],
                })


def cluster_rows(tracks: list[tuple[str, str, str, np.ndarray]], match_edges: list[tuple[str, str]],
                 min_similarity: float) -> list[dict]:
    """One `clusters` row per distinct track id, from version embeddings and match edges."""
    from hashing.clustering import cluster_labels

    by_id: dict[str, tuple[str, str, np.ndarray]] = {}
    for track_id, uri, modality, embedding in sorted(tracks, key=lambda t: (t[0], t[1])):
        by_id.setdefault(track_id, (uri, modality, embedding))
    ids = sorted(by_id)
    if not ids:
        return []
    labels = cluster_labels(ids, np.stack([by_id[i][2] for i in ids]), match_edges,
                            min_similarity=min_similarity)
    sizes: dict[str, int] = {}
    for label in labels.values():
        sizes[label] = sizes.get(label, 0) + 1
    return [{"track_id": i, "uri": by_id[i][0], "modality": by_id[i][1], "cluster_id": labels[i],
             "cluster_size": sizes[labels[i]]} for i in ids]
