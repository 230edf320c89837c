"""Matching MIDI files to recordings: the hash cascade proposes candidates, CQT DTW aligns and ranks them.

Only ids and small codes travel between stages: a candidate is a ``CandidateRef`` (ids, uris, a Hamming
distance), and the stage that aligns a pair loads both tracks' CQTs by id from the analysis store
(``pipelines.state.StateStore``). Every stage-2 survivor is accounted for: it is ranked, or has an
`errors` row saying why it could not be aligned (``pipelines.invariants`` checks this at the end of the run).
"""

from __future__ import annotations

import logging
from collections import OrderedDict
from collections.abc import Iterable, Iterator
from dataclasses import dataclass
from typing import NamedTuple

import apache_beam as beam
import numpy as np
from apache_beam.metrics import Metrics
from apache_beam.pvalue import TaggedOutput

from pipelines.schemas import error_row

log = logging.getLogger("mirmatch")

ALIGN_STAGE = "align"
ERRORS, ACCOUNTS, ALIGNMENTS = "errors", "accounts", "alignments"


class CandidateRef(NamedTuple):
    """A (MIDI, audio) pair that survived the hash cascade, by id."""

    midi_id: str
    midi_uri: str
    audio_id: str
    audio_uri: str
    hamming_distance: int
    hash_dtw: float = 0.0  # stage 2's hash-sequence DTW distance (lower is closer)


def query_of(track) -> tuple[str, str, np.ndarray, np.ndarray]:
    """What the cascade needs of a track: (uri, track id, stage-1 codes (1 + n_windows, 32) uint8, frame codes);
    a few KB."""
    return track.uri, track.track_id, track.stage1_codes(), track.frame_codes


class SearchShard(beam.DoFn):
    """(shard, {'rows': [(audio uri, audio id, stage-1 codes)], 'queries': [batches of (midi uri, stage-1 codes)]})
    -> (midi uri, [Hit]) for every query: the shard's ``k`` nearest audio tracks by track-code Hamming
    distance (stage 1), ties by audio uri (``hashing.shards.search_shard``).

    One worker holds one shard's codes (a few dozen bytes a recording) and its faiss index, never the database.
    """

    CHUNK = 1024  # queries per faiss call

    def __init__(self, k: int):
        self.k = k

    def setup(self) -> None:
        from pipelines.progress import StageTimer

        self.timer = StageTimer("search_shard")

    def process(self, element: tuple[int, dict]) -> Iterator[tuple[str, list]]:
        from hashing.shards import search_shard

        _, grouped = element
        queries = [q for batch in grouped["queries"] for q in batch]
        if not queries:
            return
        rows = sorted(grouped["rows"], key=lambda row: row[0])
        codes = [code for _, _, code in rows]  # (1 + windows, bytes) each: the track code and window codes
        keys, ids = [uri for uri, _, _ in rows], [track_id for _, track_id, _ in rows]
        for start in range(0, len(queries), self.CHUNK):
            chunk = queries[start:start + self.CHUNK]
            with self.timer.time():
                hits = search_shard(codes, keys, ids, [code for _, code in chunk], self.k)
            for (midi_uri, _), found in zip(chunk, hits, strict=True):
                yield midi_uri, found


class MergeTopK(beam.CombineFn):
    """Per-shard top-K lists of one query -> the global top-K (``hashing.shards.merge_top_k``)."""

    def __init__(self, k: int):
        self.k = k

    def create_accumulator(self) -> list:
        return []

    def add_input(self, accumulator: list, hits: list) -> list:
        from hashing.shards import merge_top_k

        return merge_top_k([accumulator, hits], self.k)

    def merge_accumulators(self, accumulators: Iterable[list]) -> list:
        from hashing.shards import merge_top_k

        return merge_top_k(accumulators, self.k)

    def extract_output(self, accumulator: list) -> list:
        return accumulator


def wanted_frames(element: tuple[str, list]) -> Iterator[tuple[str, tuple[str, int, str]]]:
    """(midi uri, stage-1 hits) -> (audio id, (midi uri, Hamming distance, audio uri)) for each hit: the keys
    the audio frame codes are joined by."""
    midi_uri, hits = element
    for hit in hits:
        yield hit.track_id, (midi_uri, hit.distance, hit.key)


def attach_frames(element: tuple[str, dict]) -> Iterator:
    """(audio id, {'frames': [(audio uri, frame codes)], 'wanted': [(midi uri, distance, audio uri)]}) ->
    (midi uri, (audio uri, audio id, distance, frame codes)) for each query that wants this recording."""
    audio_id, grouped = element
    frames = dict(grouped["frames"])  # audio uri -> frame codes (copies of one file share an id and codes)
    for midi_uri, distance, audio_uri in grouped["wanted"]:
        yield midi_uri, (audio_uri, audio_id, distance, frames[audio_uri])


class RefineCandidatesByHash(beam.DoFn):
    """(midi uri, {'query': [(midi id, frame codes)], 'candidates': [(audio uri, audio id, distance, frames)]})
    -> (audio uri, CandidateRef) for the ``n_refine`` best by hash-sequence DTW (stage 2, ties by audio uri),
    and one ``accounts`` record per query: how many candidates stage 2 kept."""

    def __init__(self, n_candidates: int, n_refine: int):
        self.n_candidates, self.n_refine = n_candidates, n_refine
        self.queries = Metrics.counter("mirmatch", "midi_queries")
        self.proposed = Metrics.counter("mirmatch", "candidates_proposed")
        self.searched = Metrics.counter("mirmatch", "stage1_candidates")

    def setup(self) -> None:
        from pipelines.progress import StageTimer

        self.timer = StageTimer("search")

    def process(self, element: tuple[str, dict]) -> Iterator:
        from hashing.cascade import refine_by_frame_codes

        midi_uri, grouped = element
        (midi_id, frame_codes), = grouped["query"]
        candidates = sorted(grouped["candidates"])  # by audio uri: the database order, which breaks DTW ties
        self.queries.inc()
        self.searched.inc(len(candidates))
        kept, dtw = [], []
        if candidates:
            with self.timer.time():
                kept, dtw = refine_by_frame_codes(frame_codes, [c[3] for c in candidates], self.n_refine)
        yield TaggedOutput(ACCOUNTS, {"midi_uri": midi_uri, "survivors": len(kept), "ranked": 0})
        for i, d in zip(kept, dtw, strict=True):
            audio_uri, audio_id, distance, _ = candidates[i]
            self.proposed.inc()
            yield audio_uri, CandidateRef(midi_id, midi_uri, audio_id, audio_uri, int(distance), float(d))


class ProposeCandidates(beam.PTransform):
    """Audio and MIDI (uri, track id, track code, frame codes) -> (audio uri, CandidateRef) for the audio
    tracks that survive the cascade (``hashing.cascade``), and ``accounts`` records.

    Stage 1 is sharded: audio track codes go to ``shards`` shards by track id (default: one per
    ``hashing.shards.DEFAULT_SHARD_ROWS`` recordings), every batch of MIDI queries goes to every shard, and
    the per-shard top-``n_candidates`` are merged by a combiner. Stage 2 gets the survivors' frame codes by
    key (a join on audio track id), so no worker ever holds the whole audio database.
    """

    def __init__(self, n_candidates: int, n_refine: int, shards: int | None = None):
        super().__init__()
        self.n_candidates, self.n_refine, self.shards = n_candidates, n_refine, shards

    def expand(self, inputs: tuple[beam.PCollection, beam.PCollection]) -> beam.pvalue.DoOutputsTuple:
        from hashing.shards import shard_count, shard_of

        audio, midi = inputs
        shards = self.shards
        n_shards = beam.pvalue.AsSingleton(
            audio | "Count audio" >> beam.combiners.Count.Globally()
            | "Shard count" >> beam.Map(lambda n: shard_count(n, shards)))
        rows = audio | "Shard audio codes" >> beam.Map(
            lambda a, n: (shard_of(a[1], n), (a[0], a[1], a[2])), n_shards)
        queries = (
            midi
            | "Query codes" >> beam.Map(lambda m: (m[0], m[2]))
            | "Batch queries" >> beam.BatchElements(min_batch_size=1, max_batch_size=256)
            | "To every shard" >> beam.FlatMap(lambda batch, n: [(s, batch) for s in range(n)], n_shards)
        )
        top = (
            {"rows": rows, "queries": queries}
            | "Group shards" >> beam.CoGroupByKey()
            | "Search shards" >> beam.ParDo(SearchShard(self.n_candidates))
            | "Merge top-K" >> beam.CombinePerKey(MergeTopK(self.n_candidates))
        )
        frames = audio | "Frame codes by id" >> beam.Map(lambda a: (a[1], (a[0], a[3])))
        joined = (
            {"frames": frames, "wanted": top | "Wanted frames" >> beam.FlatMap(wanted_frames)}
            | "Join frame codes" >> beam.CoGroupByKey()
            | "Attach frame codes" >> beam.FlatMap(attach_frames)
        )
        query_frames = midi | "Query frames" >> beam.Map(lambda m: (m[0], (m[1], m[3])))
        return (
            {"query": query_frames, "candidates": joined}
            | "Group by query" >> beam.CoGroupByKey()
            | "Hash DTW" >> beam.ParDo(RefineCandidatesByHash(self.n_candidates, self.n_refine))
            .with_outputs(ACCOUNTS, main="candidates")
        )


@dataclass
class PairResult:
    """The CQT DTW of one (MIDI, audio) pair, and its sharper time map once it has been needed."""

    alignment: object  # hashing.align.PairAlignment
    refined: tuple[np.ndarray, np.ndarray] | None = None


class MissingAnalysis(LookupError):
    """A pair's analysis is not in the store (it is written there before any candidate can name it)."""


class LoadedTracks:
    """The analyses of the last few tracks loaded from the store, by (track id, modality)."""

    def __init__(self, store, size: int = 8):
        self.store, self.size = store, size
        self._cache: OrderedDict[tuple[str, str], object] = OrderedDict()

    def get(self, track_id: str, modality: str):
        """The TrackAnalysis of ``track_id``, or None when the store has none (or only a failure)."""
        from encoders.analyze import TrackAnalysis

        key = (track_id, modality)
        if key in self._cache:
            self._cache.move_to_end(key)
            return self._cache[key]
        analysis = self.store.load_track(track_id, modality)
        if not isinstance(analysis, TrackAnalysis):
            return None
        self._cache[key] = analysis
        if len(self._cache) > self.size:
            self._cache.popitem(last=False)
        return analysis


class RefineCandidates(beam.DoFn):
    """(audio uri, [CandidateRef]) -> (midi uri, pair result) by CQT DTW, or an `errors` row per pair that
    could not be aligned.

    Each pair's confidence comes from the pair alone (``hashing.decisions``: its DTW score against its own null
    alignments, and how much music it aligns), so it does not change with the other files of the collection.
    The DTW of a pair aligned in an earlier run is reused from the store; the tracks' analyses are loaded from
    the store only for the pairs that still need aligning.
    """

    def __init__(self, store_root: str, analysis_key: str, settings=None):
        from hashing.decisions import MatchSettings

        self.store_root, self.analysis_key = store_root, analysis_key
        self.settings = settings or MatchSettings()
        self.aligned = Metrics.counter("mirmatch", "pairs_aligned")
        self.reused = Metrics.counter("mirmatch", "pairs_reused")
        self.failed = Metrics.counter("mirmatch", "pairs_failed")

    def setup(self) -> None:
        from pipelines.progress import Progress, StageTimer
        from pipelines.state import StateStore

        self.store = StateStore(self.store_root, self.analysis_key)
        self.tracks = LoadedTracks(self.store)
        self.progress = Progress("align", unit="audio tracks")
        self.timer = StageTimer("align")

    def process(self, element: tuple[str, Iterable[CandidateRef]]) -> Iterator:
        from hashing.decisions import REFINE_MIN_CONFIDENCE, match_confidence, match_margin

        _, refs = element
        aligned = []
        failures = []
        with self.timer.time():  # one audio track with its candidates
            for ref in sorted(refs):
                try:
                    aligned.append((ref, self._pair(ref)))
                except Exception as exc:
                    failures.append(self._failure(ref, exc))
        yield from failures
        if not aligned:
            return
        margins = [match_margin(pair.alignment.score, pair.alignment.null_scores) for _, pair in aligned]
        for (ref, pair), margin in zip(aligned, margins, strict=True):
            conf = match_confidence(margin, pair.alignment.aligned_s, self.settings)
            midi_times, audio_times = pair.alignment.midi_times_s, pair.alignment.audio_times_s
            if conf >= REFINE_MIN_CONFIDENCE:
                try:
                    midi_times, audio_times = self._refined(ref, pair)
                except Exception as exc:
                    yield self._failure(ref, exc)
                    continue
            yield ref.midi_uri, {
                "midi_id": ref.midi_id, "midi_uri": ref.midi_uri, "audio_id": ref.audio_id,
                "audio_uri": ref.audio_uri, "confidence": float(conf), "dtw_score": pair.alignment.score,
                "hamming_distance": ref.hamming_distance, "null_score": min(pair.alignment.null_scores),
                "margin": margin, "aligned_s": pair.alignment.aligned_s, "audio_best_margin": max(margins),
                "midi_times_s": midi_times.tolist(), "audio_times_s": audio_times.tolist(),
            }
        self.progress.step()

    def _failure(self, ref: CandidateRef, exc: Exception) -> TaggedOutput:
        """The `errors` row of a pair that could not be aligned: an analysis missing from the store, or an
        unexpected error (a bug or an input no check anticipated: logged, accounted for, the run goes on)."""
        self.failed.inc()
        if isinstance(exc, MissingAnalysis):
            error_type, message = "MissingAnalysis", str(exc)
        else:
            log.exception("aligning %s with %s failed", ref.midi_uri, ref.audio_uri)
            error_type, message = type(exc).__name__, f"{exc} (please report this as a bug)"
        return TaggedOutput(ERRORS, error_row(ref.midi_uri, ALIGN_STAGE, error_type,
                                              f"not aligned with {ref.audio_uri}: {message}"))

    def _analyses(self, ref: CandidateRef) -> tuple[object, object]:
        """The (MIDI, audio) TrackAnalysis of a pair, loaded from the store only when its CQTs are needed."""
        midi, audio = self.tracks.get(ref.midi_id, "midi"), self.tracks.get(ref.audio_id, "audio")
        if midi is None or audio is None:
            missing = f"audio {ref.audio_uri}" if audio is None else f"MIDI {ref.midi_uri}"
            raise MissingAnalysis(f"the analysis of {missing} is not in the store {self.store.base}; was it "
                                  "deleted during the run? Run again")
        return midi, audio

    def _pair(self, ref: CandidateRef) -> PairResult:
        from encoders.features import FRAME_RATE
        from hashing.align import align_pair

        cached = self.store.load_pair(ref.midi_id, ref.audio_id)
        if cached is not None and getattr(cached.alignment, "null_scores", ()):
            self.reused.inc()
            return cached
        midi, audio = self._analyses(ref)
        self.aligned.inc()
        pair = PairResult(align_pair(midi.cqt, audio.cqt, FRAME_RATE))
        self.store.save_pair(ref.midi_id, ref.audio_id, pair)
        return pair

    def _refined(self, ref: CandidateRef, pair: PairResult) -> tuple[np.ndarray, np.ndarray]:
        from encoders.features import FRAME_RATE
        from hashing.align import refine_time_map

        if pair.refined is None:
            midi, audio = self._analyses(ref)
            pair.refined = refine_time_map(midi.cqt, audio.cqt, FRAME_RATE)
            self.store.save_pair(ref.midi_id, ref.audio_id, pair)
        return pair.refined


class RankMatches(beam.DoFn):
    """(midi uri, pair results) -> the top-K `matches` rows, `alignments` rows for the matches, and an
    ``accounts`` record of how many pairs arrived."""

    def __init__(self, top_k: int, settings=None):
        from hashing.decisions import MatchSettings

        self.top_k = top_k
        self.settings = settings or MatchSettings()
        self.matched = Metrics.counter("mirmatch", "matches")

    def process(self, element: tuple[str, Iterable[dict]]) -> Iterator:
        from hashing.decisions import is_match, rank_pairs, ratio_confidence

        midi_uri, pairs = element
        pairs = list(pairs)
        midi_best = max(p["margin"] for p in pairs)
        pairs = [{**p, "confidence": min(p["confidence"], ratio_confidence(
            p["margin"], max(midi_best, p["audio_best_margin"]), self.settings))} for p in pairs]
        yield TaggedOutput(ACCOUNTS, {"midi_uri": midi_uri, "survivors": 0, "ranked": len(pairs)})
        for rank, p in enumerate(rank_pairs(pairs, self.top_k), start=1):
            matched = is_match(p["confidence"])
            mt, at = p["midi_times_s"], p["audio_times_s"]
            yield {
                "midi_id": p["midi_id"], "midi_uri": p["midi_uri"], "audio_id": p["audio_id"],
                "audio_uri": p["audio_uri"], "rank": rank, "confidence": p["confidence"], "is_match": matched,
                "midi_start_s": mt[0], "midi_end_s": mt[-1], "audio_start_s": at[0], "audio_end_s": at[-1],
                "dtw_score": p["dtw_score"], "hamming_distance": p["hamming_distance"],
                "null_score": p["null_score"], "margin": p["margin"], "aligned_s": p["aligned_s"],
            }
            if matched:
                self.matched.inc()
                yield TaggedOutput(ALIGNMENTS, {
                    "midi_id": p["midi_id"], "audio_id": p["audio_id"], "midi_times_s": mt,
                    "audio_times_s": at, "midi_uri": p["midi_uri"], "audio_uri": p["audio_uri"],
                })


class MatchMidiToAudio(beam.PTransform):
    """Analysed tracks -> ``matches`` and ``alignments`` rows, ``errors`` rows of pairs that could not be
    aligned, and ``accounts`` records (stage-2 survivors and ranked pairs per MIDI query) for the run's
    invariants. Also returns ``audio_db``, the side input the stage-1 index is written from."""

    def __init__(self, store_root: str, analysis_key: str, n_candidates: int, n_refine: int, top_k: int,
                 settings=None, shards: int | None = None):
        super().__init__()
        self.settings, self.shards = settings, shards
        self.store_root, self.analysis_key = store_root, analysis_key
        self.n_candidates, self.n_refine, self.top_k = n_candidates, n_refine, top_k

    def expand(self, features: beam.PCollection) -> dict[str, beam.PCollection]:
        audio_db = (features | "Audio only" >> beam.Filter(lambda t: t.modality == "audio")
                    | "Audio codes" >> beam.Map(query_of))
        midi = (features | "MIDI only" >> beam.Filter(lambda t: t.modality == "midi")
                | "MIDI codes" >> beam.Map(query_of))
        proposed = (audio_db, midi) | "Hash cascade" >> ProposeCandidates(self.n_candidates, self.n_refine,
                                                                         self.shards)
        refined = (
            proposed.candidates
            | "Group by audio" >> beam.GroupByKey()
            | "DTW refine" >> beam.ParDo(RefineCandidates(self.store_root, self.analysis_key, self.settings))
            .with_outputs(ERRORS, main="pairs")
        )
        ranked = (
            refined.pairs
            | "Group by MIDI" >> beam.GroupByKey()
            | "Rank" >> beam.ParDo(RankMatches(self.top_k, self.settings))
            .with_outputs(ALIGNMENTS, ACCOUNTS, main="matches")
        )
        accounts = ((proposed[ACCOUNTS], ranked[ACCOUNTS]) | "Merge accounts" >> beam.Flatten())
        return {"matches": ranked.matches, "alignments": ranked[ALIGNMENTS], "errors": refined[ERRORS],
                "accounts": accounts, "audio_db": audio_db}
