"""`mirmatch demo`: build the bundled demo corpus and run the pipeline on it."""

from __future__ import annotations

import json
from pathlib import Path

from pipelines.query import connect
from pipelines.sources import table_uri

DEFAULT_CORPUS = ".cache/demo-corpus"
DEFAULT_OUT = "demo-out"
REAL_DISTRACTOR_FOLDER = "/games/asc/music/"


def summarise(out: str, truth: dict) -> tuple[str, dict]:
    """A short human summary of a demo run, and its figures checked against the corpus' truth."""
    con = connect(out)
    tracks = dict(con.execute("SELECT status, count(*) FROM tracks GROUP BY status").fetchall())
    best = {row[0]: row[1:] for row in con.execute(
        "SELECT midi_uri, audio_uri, confidence, is_match FROM matches WHERE rank = 1").fetchall()}
    matched = con.execute("SELECT midi_uri, audio_uri FROM matches WHERE is_match").fetchall()
    true_pairs = {(table_uri(p["midi"]), table_uri(p["audio"])) for p in truth["pairs"]}
    found_at_1 = sum(1 for m, a in true_pairs if m in best and best[m][0] == a and best[m][2])
    false_matches = [pair for pair in matched if tuple(pair) not in true_pairs]
    n_clusters, multi = con.execute(
        "SELECT count(DISTINCT cluster_id), count(DISTINCT cluster_id) FILTER (WHERE cluster_size > 1) "
        "FROM clusters").fetchall()[0]
    n_segments = con.execute("SELECT count(*) FROM segments").fetchall()[0][0]
    real = con.execute(
        "SELECT count(*), count(*) FILTER (WHERE cluster_size > 1) FROM clusters WHERE uri LIKE ?",
        [f"%{REAL_DISTRACTOR_FOLDER}%"]).fetchall()[0]
    real_matched = con.execute("SELECT count(*) FROM matches WHERE is_match AND audio_uri LIKE ?",
                               [f"%{REAL_DISTRACTOR_FOLDER}%"]).fetchall()[0][0]
    figures = {"tracks_ok": tracks.get("ok", 0), "tracks_error": tracks.get("error", 0),
               "true_pairs": len(true_pairs), "true_pairs_at_rank_1": found_at_1,
               "false_matches": len(false_matches), "clusters": n_clusters, "multi_track_clusters": multi,
               "segments": n_segments, "real_distractors": real[0], "real_distractors_matched": real_matched,
               "real_distractors_in_clusters": real[1]}
    top = con.sql("SELECT regexp_extract(midi_uri, '[^/]+$') AS midi, regexp_extract(audio_uri, '[^/]+$') "
                  "AS audio, round(confidence, 3) AS confidence FROM matches WHERE is_match "
                  "ORDER BY confidence DESC LIMIT 5")
    lines = [
        f"tracks: {figures['tracks_ok']} ok, {figures['tracks_error']} error",
        f"true MIDI-audio pairs found at rank 1 with is_match: {found_at_1}/{len(true_pairs)}",
        f"false matches (is_match true on a wrong pair): {len(false_matches)}",
        f"clusters: {n_clusters} ({multi} with more than one track); segments: {n_segments}",
        f"real recordings among the distractors (asc-music): {real[0]}, matched {real_matched}, in clusters of "
        f"size > 1: {real[1]}",
        "top matches:", str(top),
        f"Parquet tables: {Path(out).resolve()}/<table>/*.parquet",
        f"try: mirmatch query {out} \"SELECT * FROM matches WHERE rank = 1\"",
    ]
    return "\n".join(lines), figures


def load_truth(corpus: str) -> dict:
    return json.loads((Path(corpus) / "truth.json").read_text())
