"""Shared fixtures: a tiny real corpus (Debian MIDI files, fluidsynth renderings) and one pipeline run."""

from __future__ import annotations

import os
from pathlib import Path

import numpy as np
import pyarrow.parquet as pq
import pytest

REPO = Path(__file__).resolve().parents[1]
SHARED = REPO.parent / "shared"


@pytest.fixture(scope="session")
def tiny_corpus(tmp_path_factory) -> dict:
    """4 MIDI files, 3 corrupted renderings of them and 2 distractors, 30 s each at most."""
    from encoders.training.corpus import build_demo_corpus

    # resolved: the cached truth names the files by the path they were built under (.cache may be a link)
    root = Path(os.environ.get("MIRMATCH_TEST_CACHE", REPO / ".cache" / "test-corpus")).resolve()
    truth = build_demo_corpus(root, n_midi=4, n_matched=3, n_distractors=2, max_duration_s=30.0,
                              min_duration_s=20.0, progress=False)
    truth["root"] = str(root)
    return truth


@pytest.fixture(scope="session")
def bad_inputs(tmp_path_factory) -> dict[str, list[str]]:
    """A corrupt MIDI file, a zero-byte file and a non-audio file given as audio, and a missing path."""
    d = tmp_path_factory.mktemp("bad")
    corrupt = d / "corrupt.mid"
    # Fixed garbage (random bytes made this a truncated file in about 1% of runs: a flaky test).
    garbage = np.random.default_rng(0).bytes(64)
    corrupt.write_bytes(b"MThd\x00\x00\x00\x06\x00\x01\x00\x02\x01\xe0MTrk\xff\xff\xff\xff" + garbage)
    empty = d / "empty.wav"
    empty.write_bytes(b"")
    text = d / "notes.wav"
    text.write_text("this is a text file, not a recording\n" * 20)
    return {"midi": [str(corrupt)], "audio": [str(empty), str(text)]}


def read_table(out: str | Path, table: str) -> list[dict]:
    files = sorted(Path(out).glob(f"{table}/**/*.parquet"))
    rows = []
    for f in files:
        rows += pq.read_table(f).to_pylist()
    return rows


OUTPUT_TABLES = ("tracks", "errors", "matches", "alignments", "clusters", "segments", "version_edges")


def canonical_rows(folder: str | Path, table: str) -> list[tuple]:
    """A table's rows, floats rounded to 1e-6, in a fixed order: for comparing two runs."""
    rows = read_table(folder, table)
    for r in rows:
        for k, v in r.items():
            if isinstance(v, float):
                r[k] = round(v, 6)
            elif isinstance(v, list):
                r[k] = tuple(round(x, 6) for x in v)
    return sorted((tuple(sorted(r.items())) for r in rows), key=repr)


def assert_same_tables(a: str | Path, b: str | Path) -> None:
    """Every output table of run folders ``a`` and ``b`` has the same rows."""
    for table in OUTPUT_TABLES:
        assert canonical_rows(a, table) == canonical_rows(b, table), table


def synthetic_form(form: str, section_s: float, rng: np.random.Generator, frame_rate: float, floor: float,
                   peak: tuple[float, float], noise: float, clip: tuple[float, float] | None = None):
    """CQT-like frames (48 bins) with a known form: each section type loops its own 4 random 'chords'
    (1 s each, 5 active bins in ``peak`` over ``floor``), plus Gaussian ``noise``.

    Returns (features (n, 48) float64 or float32 when clipped, frame times, duration)."""
    patterns = {}
    for name in sorted(set(form)):
        chords = np.full((4, 48), floor)
        for chord in chords:
            chord[rng.choice(48, 5, replace=False)] = rng.uniform(peak[0], peak[1], 5)
        patterns[name] = chords
    duration = section_s * len(form)
    times = np.arange(int(duration * frame_rate)) / frame_rate
    section = np.minimum((times // section_s).astype(int), len(form) - 1)
    chord_idx = (times % section_s).astype(int) % 4
    feats = np.stack([patterns[form[s]][c] for s, c in zip(section, chord_idx, strict=True)])
    feats = feats + rng.normal(0.0, noise, feats.shape)
    if clip is not None:
        feats = np.clip(feats, *clip).astype(np.float32)
    return feats, times, duration


def uri(path: str) -> str:
    """The uri the tables name an input path by (``file:///abs/path``)."""
    from pipelines.sources import table_uri

    return table_uri(str(path))


def assert_true_pairs_first(matches: list[dict], truth: dict) -> None:
    """Every true pair of ``truth`` is at rank 1 with is_match, and no other pair has is_match."""
    best = {m["midi_uri"]: m for m in matches if m["rank"] == 1}
    for pair in truth["pairs"]:
        top = best[uri(pair["midi"])]
        assert top["audio_uri"] == uri(pair["audio"]), f"wrong rank-1 audio for {pair['midi']}"
        assert top["is_match"] and top["confidence"] > 0.5
    true_pairs = {(uri(p["midi"]), uri(p["audio"])) for p in truth["pairs"]}
    false = [(m["midi_uri"], m["audio_uri"]) for m in matches
             if m["is_match"] and (m["midi_uri"], m["audio_uri"]) not in true_pairs]
    assert not false, f"false matches: {false}"


@pytest.fixture(scope="session")
def pipeline_out(tiny_corpus, bad_inputs, tmp_path_factory) -> Path:
    """The output folder of one real `mirmatch run` on the DirectRunner over the tiny corpus + bad inputs."""
    from pipelines.cli import main

    out = tmp_path_factory.mktemp("run") / "out"
    root = tiny_corpus["root"]
    argv = ["run", "--audio", f"{root}/audio/*", "--midi", f"{root}/midi/*.mid", "--out", str(out)]
    for path in bad_inputs["audio"]:
        argv += ["--audio", path]
    for path in bad_inputs["midi"]:
        argv += ["--midi", path]
    assert main(argv) == 0
    return out


@pytest.fixture
def rng() -> np.random.Generator:
    return np.random.default_rng(0)
