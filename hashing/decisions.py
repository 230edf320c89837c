"""The yes/no decisions users act on: ``is_match`` for a (MIDI, audio) pair, and which verified version pairs
join a cluster, with the settings they use (shipped defaults, or re-fitted on a user's labels by
``mirmatch calibrate``).

**Matches.** A pair's CQT DTW score (``hashing.align``) alone changes scale with the kind of music and with
how much music is aligned: short stretches of unrelated music align well by chance. So each pair is also
aligned against a *null* of itself: the MIDI file's features reversed in time (and that reversal rotated by
half its length), which keep the pair's lengths, instruments, register and key but not the order of its
music. The evidence of a pair is the margin by which its real alignment beats the best null alignment,
``min(null scores) - score``: about 0 (within +-0.1) for unrelated music of any kind and length, 0.2 to 0.7 for a
MIDI file and a recording of it. It depends on the pair alone, so adding unrelated files to a collection
never changes a pair's decision. A pair with less than ``min_aligned_s`` of aligned music is never a match.

**Versions.** A verified version similarity (``hashing.version_align``) also changes scale with the kind of
music (unrelated orchestral recordings reach similarities that folk-tune variants do not). Each track's
similarity to a few unrelated reference tracks (``reference_tracks``) gives its own null; an edge counts when
its similarity stands out from the null of both its ends by ``min_z`` robust standard deviations, and passes a
ratio test: its z is at least ``ratio`` times the best z of each of its ends (``decide_version_edges``). Pieces in
one style (a composer's game tunes, one package's themes) stand out from unrelated references too, but less than
a track's true version. Clusters join accepted edges under a guard against chaining
(``hashing.clustering.guarded_clusters``).
"""

from __future__ import annotations

import datetime as dt
import hashlib
import json
from dataclasses import asdict, dataclass, field, replace

import numpy as np

#: Shipped settings, chosen on the ``fit`` decision collection (``tests/bench/eval_decisions.py``).
MATCH_MARGIN_CUT = 0.19
MATCH_MARGIN_SCALE = 0.03
MIN_ALIGNED_S = 10.0
#: A pair's margin must reach this share of the best margin of its MIDI file and of its recording (a ratio test):
#: two pieces in one style and groove align better than their nulls (margins up to about 0.17 on the test corpus)
#: but far less well than either's true match; several recordings of one MIDI file keep similar margins.
MATCH_RATIO = 0.4
RATIO_SCALE = 0.05
VERSION_MIN_Z = 4.0
#: An edge's z must reach this share of the best z of each of its ends (chosen on the fit collection: 0.5, 0.6, 0.7,
#: 0.8 tried; encoders/weights/DECISIONS.md).
VERSION_RATIO = 0.7
#: Two groups of tracks join only when accepted edges join more than this share of their pairs of members (a
#: majority): a third piece joins a pair only with edges to both (``hashing.clustering.guarded_clusters``).
CLUSTER_LINK = 0.5
#: Tracks shorter than this take part in no version edge: 5-second jingles align with each other by chance.
VERSION_MIN_DURATION_S = 10.0
VERSION_MIN_SPREAD = 0.05
REFERENCE_TRACKS = 8
#: Pairs at least this confident get the sharper time map (``hashing.align.refine_time_map``: mean alignment
#: error 43 -> 31 ms on the demo corpus); the others keep the coarse one.
REFINE_MIN_CONFIDENCE = 0.1
#: A pair is reported as a match (``is_match``) when its confidence is above this: the calibrated 0.5.
MATCH_CONFIDENCE = 0.5
CALIBRATION_FORMAT = 1


@dataclass(frozen=True)
class MatchSettings:
    """confidence = logistic((margin - cut) / scale), 0 below ``min_aligned_s``, and at most the ratio test's
    (``ratio_confidence``); is_match when > 0.5."""

    cut: float = MATCH_MARGIN_CUT
    scale: float = MATCH_MARGIN_SCALE
    min_aligned_s: float = MIN_ALIGNED_S
    ratio: float = MATCH_RATIO


@dataclass(frozen=True)
class VersionSettings:
    """A verified version edge counts when it stands ``min_z`` robust deviations above both ends' nulls and at
    least ``ratio`` times the best z of each end; clusters join groups linked on more than ``link`` of their pairs
    of members."""

    min_z: float = VERSION_MIN_Z
    min_spread: float = VERSION_MIN_SPREAD
    min_duration_s: float = VERSION_MIN_DURATION_S
    ratio: float = VERSION_RATIO
    link: float = CLUSTER_LINK


@dataclass(frozen=True)
class DecisionSettings:
    """Every setting the decisions use, and what they were fitted on (recorded in calibration files)."""

    match: MatchSettings = field(default_factory=MatchSettings)
    versions: VersionSettings = field(default_factory=VersionSettings)
    fitted_on: dict = field(default_factory=lambda: {"source": "shipped defaults (tests/bench/eval_decisions.py)"})

    def to_json(self) -> str:
        return json.dumps({"format": CALIBRATION_FORMAT, **asdict(self)}, indent=1, sort_keys=True)

    @classmethod
    def from_json(cls, text: str) -> DecisionSettings:
        data = json.loads(text)
        if data.get("format") != CALIBRATION_FORMAT:
            raise ValueError(f"calibration file format {data.get('format')!r}, this mirmatch reads "
                             f"{CALIBRATION_FORMAT}: fit it again with `mirmatch calibrate`")
        return cls(MatchSettings(**data["match"]), VersionSettings(**data["versions"]), data.get("fitted_on", {}))

    def with_fit(self, **fitted_on) -> DecisionSettings:
        stamp = dt.datetime.now(dt.UTC).strftime("%Y-%m-%dT%H:%M:%SZ")
        return replace(self, fitted_on={**fitted_on, "fitted_at": stamp})


def match_margin(score: float, null_scores: tuple[float, ...] | list[float]) -> float:
    """How much better a pair aligns than its best null alignment (lower scores are better)."""
    return float(min(null_scores) - score) if len(null_scores) else 0.0


def match_confidence(margin: float, aligned_s: float, settings: MatchSettings | None = None) -> float:
    """A pair's confidence in [0, 1] from its margin and how much music it aligns (s)."""
    s = settings or MatchSettings()
    if aligned_s < s.min_aligned_s:
        return 0.0
    z = np.clip((margin - s.cut) / s.scale, -60, 60)
    return float(1.0 / (1.0 + np.exp(-z)))


def ratio_confidence(margin: float, best_margin: float, settings: MatchSettings | None = None) -> float:
    """The ratio test as a confidence: 0.5 where ``margin`` is ``settings.ratio`` times ``best_margin`` (the best
    margin of the pair's MIDI file and of its recording in the run), near 1 for the best pair itself."""
    s = settings or MatchSettings()
    if best_margin <= 0 or margin >= best_margin:
        return 1.0
    z = np.clip((margin / best_margin - s.ratio) / RATIO_SCALE, -60, 60)
    return float(1.0 / (1.0 + np.exp(-z)))


def is_match(confidence: float) -> bool:
    """Whether a pair with this confidence is reported as a match (the confidence is calibrated: 0.5)."""
    return bool(confidence > MATCH_CONFIDENCE)


def reference_tracks(track_ids: list[str], track_id: str, n: int = REFERENCE_TRACKS) -> list[str]:
    """``n`` other tracks to compare ``track_id`` with for its null: chosen by a hash of both ids, so the choice
    is the same on every run and worker and mostly stays when tracks are added."""
    ranked = sorted((hashlib.blake2b(f"{track_id}|{other}".encode(), digest_size=8).digest(), other)
                    for other in track_ids if other != track_id)
    return [other for _, other in ranked[:n]]


def null_model(reference_similarities: list[float], min_spread: float = VERSION_MIN_SPREAD) -> tuple[float, float]:
    """(location, spread) of a track's similarities to unrelated tracks: median and scaled MAD, spread at least
    ``min_spread``; (0, min_spread) without references."""
    x = np.asarray(reference_similarities, dtype=np.float64)
    if len(x) == 0:
        return 0.0, min_spread
    location = float(np.median(x))
    spread = float(1.4826 * np.median(np.abs(x - location)))
    return location, max(spread, min_spread)


def edge_z(similarity: float, null_a: tuple[float, float], null_b: tuple[float, float]) -> float:
    """How far a version edge stands above the nulls of both its ends: the smaller of the two z-scores."""
    return float(min((similarity - null_a[0]) / null_a[1], (similarity - null_b[0]) / null_b[1]))


def version_decision(similarity: float, null_a: tuple[float, float], null_b: tuple[float, float],
                     long_enough: bool, settings: VersionSettings | None = None,
                     min_similarity: float | None = None) -> tuple[float, bool]:
    """(z, counts as a version edge) of a verified candidate pair: z (``edge_z``) at least ``settings.min_z``,
    both tracks at least ``settings.min_duration_s`` long (``long_enough``), and the similarity at least
    ``min_similarity`` when one is given."""
    s = settings or VersionSettings()
    z = edge_z(similarity, null_a, null_b)
    return z, bool(z >= s.min_z and long_enough and (min_similarity is None or similarity >= min_similarity))


def decide_version_edges(verified: list[tuple[str, str, float, bool]], durations: dict[str, float] | None = None,
                         settings: VersionSettings | None = None,
                         min_similarity: float | None = None) -> list[dict]:
    """The decision on every verified pair (a, b, similarity, is_reference) of a run, one dict per pair in order of
    (a, b): track_a < track_b, similarity, z (``edge_z`` against both ends' nulls, made of their reference pairs'
    similarities), is_reference, accepted. A candidate pair is accepted when ``version_decision`` says so and its
    z is at least ``settings.ratio`` times the best z of each end among the candidate pairs that could count (both
    tracks long enough): the ratio test. Tracks missing from ``durations`` count as long enough."""
    s = settings or VersionSettings()
    durations = durations or {}

    def long_enough(track_id: str) -> bool:
        return durations.get(track_id, np.inf) >= s.min_duration_s

    references: dict[str, list[float]] = {}
    for a, b, similarity, is_reference in verified:
        if is_reference:
            references.setdefault(a, []).append(similarity)
            references.setdefault(b, []).append(similarity)
    nulls = {track_id: null_model(sims, s.min_spread) for track_id, sims in references.items()}
    fallback = null_model([], s.min_spread)
    rows = []
    for a, b, similarity, is_reference in sorted(verified, key=lambda e: (min(e[0], e[1]), max(e[0], e[1]))):
        a, b = min(a, b), max(a, b)
        z, counts = version_decision(similarity, nulls.get(a, fallback), nulls.get(b, fallback),
                                     long_enough(a) and long_enough(b), s, min_similarity)
        rows.append({"track_a": a, "track_b": b, "similarity": float(similarity), "z": float(z),
                     "is_reference": bool(is_reference), "accepted": bool(counts and not is_reference)})
    best: dict[str, float] = {}
    for r in rows:
        if not r["is_reference"] and long_enough(r["track_a"]) and long_enough(r["track_b"]):
            for t in (r["track_a"], r["track_b"]):
                best[t] = max(best.get(t, -np.inf), r["z"])
    for r in rows:
        if r["accepted"]:
            r["accepted"] = bool(r["z"] >= s.ratio * max(best[r["track_a"]], best[r["track_b"]]))
    return rows


def rank_pairs(pairs: list[dict], top_k: int) -> list[dict]:
    """The ``top_k`` pairs of one MIDI file, most confident first, then by margin (ties by audio uri, so reruns
    agree)."""
    return sorted(pairs, key=lambda p: (-p["confidence"], -p["margin"], p["audio_uri"]))[:top_k]


#: Fewest labelled pairs (of each class) a calibration is fitted on.
MIN_LABELS_PER_CLASS = 3


def best_cut(values: np.ndarray, labels: np.ndarray) -> float:
    """The cut on ``values`` (higher = more likely the same) with the best F-measure of ``values > cut`` on
    ``labels``; among equally good cuts, the middle of the widest gap, so it sits between the two classes."""
    values, labels = np.asarray(values, dtype=np.float64), np.asarray(labels, dtype=bool)
    order = np.sort(np.unique(values))
    candidates = np.concatenate([[order[0] - 1e-6], (order[1:] + order[:-1]) / 2, [order[-1] + 1e-6]])
    best, chosen = -1.0, []
    for cut in candidates:
        predicted = values > cut
        tp = np.sum(predicted & labels)
        f = 2 * tp / max(1, np.sum(predicted) + np.sum(labels))
        if f > best + 1e-12:
            best, chosen = f, [cut]
        elif abs(f - best) <= 1e-12:
            chosen.append(cut)
    return float((min(chosen) + max(chosen)) / 2)


def f_measure(predicted: np.ndarray, labels: np.ndarray) -> float:
    """F1 of boolean decisions against boolean labels (1.0 when both are empty)."""
    predicted, labels = np.asarray(predicted, dtype=bool), np.asarray(labels, dtype=bool)
    denominator = np.sum(predicted) + np.sum(labels)
    return float(2 * np.sum(predicted & labels) / denominator) if denominator else 1.0


def check_labels(labels: np.ndarray, what: str) -> None:
    """Refuse a fit on too few labels or on one class only, saying what is missing."""
    labels = np.asarray(labels, dtype=bool)
    same, different = int(labels.sum()), int((~labels).sum())
    if min(same, different) < MIN_LABELS_PER_CLASS:
        raise ValueError(f"{what}: {same} labelled same and {different} labelled different; calibrating needs at "
                         f"least {MIN_LABELS_PER_CLASS} of each")


def fit_match_settings(margins: np.ndarray, aligned_s: np.ndarray, labels: np.ndarray,
                       base: MatchSettings | None = None) -> MatchSettings:
    """Match settings re-fitted on labelled (MIDI, audio) pairs: the margin cut with the best F-measure among
    pairs with enough aligned music (``min_aligned_s`` is kept); the slope stays."""
    base = base or MatchSettings()
    labels = np.asarray(labels, dtype=bool)
    check_labels(labels, "match pairs")
    enough = np.asarray(aligned_s) >= base.min_aligned_s
    usable = np.where(enough, np.asarray(margins, dtype=np.float64), -np.inf)
    finite = np.isfinite(usable)
    cut = best_cut(usable[finite], labels[finite]) if finite.any() else base.cut
    return replace(base, cut=cut)


def fit_version_settings(z_scores: np.ndarray, labels: np.ndarray,
                         base: VersionSettings | None = None) -> VersionSettings:
    """Version settings re-fitted on labelled version pairs: the z cut (``edge_z``) with the best F-measure."""
    base = base or VersionSettings()
    check_labels(labels, "version pairs")
    return replace(base, min_z=best_cut(np.asarray(z_scores), np.asarray(labels, dtype=bool)))
