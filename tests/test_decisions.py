"""The yes/no decisions (hashing.decisions): evidence that counts how much music aligns, decisions that do not
flip when unrelated files join, stable cluster ids, and re-fitting on a user's labels."""

from __future__ import annotations

import shutil
from pathlib import Path

import numpy as np
import pretty_midi
import pytest

from tests.conftest import read_table


def _analyses(paths: list[str]) -> list:
    from pipelines.api import analyze

    return [analyze(p) for p in paths]


def _cut_audio(src: str, dst: Path, start_s: float, seconds: float) -> str:
    import soundfile as sf

    y, sr = sf.read(src, dtype="float32", always_2d=False)
    y = y if y.ndim == 1 else y.mean(axis=1)
    sf.write(dst, y[int(start_s * sr): int((start_s + seconds) * sr)], sr)
    return str(dst)


def test_a_five_second_excerpt_inside_an_unrelated_midi_file_is_not_a_match(tiny_corpus, tmp_path):
    """A jingle aligns well by chance somewhere inside a longer piece: its margin over its nulls is small and
    5 s is too little music to call a transcription, whatever the MIDI file."""
    from pipelines.api import match

    distractor = tiny_corpus["distractors"][0]
    jingles = [_cut_audio(distractor, tmp_path / f"jingle{i}.wav", start, 5.0) for i, start in enumerate((2.0, 9.0))]
    for midi in tiny_corpus["midi"]:
        for jingle in jingles:
            result = match(midi, jingle)
            assert result.aligned_s == pytest.approx(5.0, abs=0.2)
            assert not result.is_match and result.confidence < 0.5


def test_a_twenty_second_piece_matched_whole_is_a_match(tiny_corpus, tmp_path):
    """A short piece, its whole corrupted recording: enough evidence however short."""
    from encoders.training.corpus import write_audio
    from encoders.training.corrupt import corrupted_rendering, crop_midi
    from pipelines.api import match

    pair = tiny_corpus["pairs"][0]
    short = crop_midi(pretty_midi.PrettyMIDI(pair["midi"]), 0.0, 20.0)
    midi_path = tmp_path / "short.mid"
    short.write(str(midi_path))
    y, _ = corrupted_rendering(short, "musescore", np.random.default_rng(3), crop=False)
    audio_path = tmp_path / "short.flac"
    write_audio(audio_path, y)
    result = match(str(midi_path), str(audio_path))
    assert 15.0 < result.aligned_s <= 22.0
    assert result.is_match and result.confidence > 0.9
    for other in tiny_corpus["pairs"][1:]:  # and the short recording matches no other piece
        assert not match(other["midi"], str(audio_path)).is_match


def test_settings_round_trip_and_refuse_other_formats(tmp_path):
    from hashing.decisions import DecisionSettings, MatchSettings, VersionSettings

    settings = DecisionSettings(MatchSettings(cut=0.1), VersionSettings(min_z=3.0)).with_fit(run="x")
    again = DecisionSettings.from_json(settings.to_json())
    assert again == settings and again.fitted_on["run"] == "x"
    with pytest.raises(ValueError, match="format"):
        DecisionSettings.from_json('{"format": 99}')


def test_confidence_needs_enough_aligned_music_and_the_ratio_test():
    from hashing.decisions import MatchSettings, match_confidence, ratio_confidence

    s = MatchSettings()
    assert match_confidence(0.5, s.min_aligned_s - 1, s) == 0.0
    assert match_confidence(0.5, s.min_aligned_s + 1, s) > 0.99
    assert match_confidence(0.0, 60.0, s) < 0.01
    assert ratio_confidence(0.5, 0.5, s) == 1.0  # the best pair
    assert ratio_confidence(0.45, 0.5, s) > 0.99  # a second recording of the same MIDI file
    assert ratio_confidence(0.16, 0.54, s) < 0.5  # a piece in the same groove next to the true one


def test_fitting_on_labels_raises_the_f_measure_on_labels_it_was_not_fitted_on():
    """In a domain where true pairs align with smaller margins than the shipped cut expects (e.g. solo piano
    recordings against ensemble MIDI), re-fitting the cut on half the labels helps on the other half."""
    from hashing.decisions import MatchSettings, f_measure, fit_match_settings, match_confidence

    rng = np.random.default_rng(0)
    margins = np.concatenate([rng.uniform(0.07, 0.14, 40), rng.uniform(-0.08, 0.05, 80)])
    same = np.concatenate([np.ones(40, bool), np.zeros(80, bool)])
    aligned = np.full(len(margins), 30.0)
    order = rng.permutation(len(margins))
    fit, held = order[:60], order[60:]
    shipped = MatchSettings()
    fitted = fit_match_settings(margins[fit], aligned[fit], same[fit], shipped)

    def f(settings):
        decided = [match_confidence(m, a, settings) > 0.5 for m, a in zip(margins[held], aligned[held], strict=True)]
        return f_measure(np.array(decided), same[held])

    assert f(fitted) > f(shipped) + 0.3 and f(fitted) > 0.9


def test_fitting_refuses_one_class_or_too_few_labels():
    from hashing.decisions import fit_match_settings

    with pytest.raises(ValueError, match="at least"):
        fit_match_settings(np.array([0.3, 0.4, 0.5]), np.full(3, 30.0), np.array([True, True, True]))
    with pytest.raises(ValueError, match="at least"):
        fit_match_settings(np.array([0.3, 0.0]), np.full(2, 30.0), np.array([True, False]))


def test_stable_labels_keep_ids_while_clusters_keep_members():
    from hashing.clustering import stable_labels

    previous = {"m": "m", "r": "m", "x": "x"}
    assert stable_labels({"a": "a", "m": "a", "r": "a", "x": "x"}, previous) == {"a": "m", "m": "m", "r": "m",
                                                                               "x": "x"}
    split = stable_labels({"a": "a", "m": "a", "r": "r", "x": "x"}, previous)
    assert split["m"] == "m" and split["r"] not in ("m", "x")
    assert stable_labels({"a": "a", "b": "a"}, {}) == {"a": "a", "b": "a"}  # no history: the smallest member


def test_version_ratio_test_keeps_a_tracks_true_version_and_drops_pieces_in_its_style():
    """Each track's null makes z comparable across kinds of music; pieces in one style still stand out from
    unrelated references, but far less than a track's true version: the ratio test drops them."""
    from hashing.decisions import VersionSettings, decide_version_edges

    refs = [(t, f"ref{t}{k}", 0.40 + 0.01 * (k % 3), True) for t in "abcd" for k in range(8)]
    verified = refs + [("a", "b", 1.0, False),  # true versions: z = (1.0 - 0.41) / 0.05 ~ 11.8
                       ("a", "c", 0.70, False),  # same style as a: z ~ 5.8, under 0.7 x 11.8
                       ("c", "d", 0.72, False)]  # c's own best edge: z ~ 6.2, kept
    rows = {(r["track_a"], r["track_b"]): r for r in decide_version_edges(verified, None, VersionSettings())}
    assert rows[("a", "b")]["accepted"] and rows[("c", "d")]["accepted"]
    assert rows[("a", "c")]["z"] >= VersionSettings().min_z and not rows[("a", "c")]["accepted"]
    assert not any(r["accepted"] for r in rows.values() if r["is_reference"])
    without = decide_version_edges(verified, None, VersionSettings(ratio=0.0))
    assert [r for r in without if (r["track_a"], r["track_b"]) == ("a", "c")][0]["accepted"]
    short = decide_version_edges(verified, {"d": 5.0}, VersionSettings())
    assert not [r for r in short if (r["track_a"], r["track_b"]) == ("c", "d")][0]["accepted"]  # a 5-s jingle


def test_clusters_do_not_chain_through_one_edge_and_ids_survive_a_night_that_adds_a_member():
    """Two pieces (each a MIDI file and its recording, joined by a match) and an unrelated recording with an
    accepted edge into one side of each: the guard keeps the three apart where connected components would chain
    them.
    A new version with edges to both members of a cluster joins it, and the cluster keeps its id; the result does
    not depend on the order of the edges."""
    from hashing.clustering import guarded_clusters, stable_labels

    ids = ["p35m", "p35a", "p37m", "p37a", "x"]
    matches = [("p35m", "p35a"), ("p37m", "p37a")]
    edges = [("x", "p35a", 5.0), ("x", "p37m", 4.5), ("p35m", "p37a", 4.2)]
    labels = guarded_clusters(ids, edges, matches)
    assert labels["p35m"] == labels["p35a"] and labels["p37m"] == labels["p37a"] != labels["p35m"]
    assert labels["x"] == "x"  # one edge to a piece's recording, none to its MIDI file: no majority
    assert guarded_clusters(ids[::-1], edges[::-1], matches[::-1]) == labels
    versions = edges + [("p35m", "p37m", 4.1), ("p35a", "p37a", 4.0)]  # 3 of the 4 links between the pieces
    joined = guarded_clusters(ids, versions, matches)
    assert joined["p35m"] == joined["p37a"] and joined["x"] == "x"
    assert joined == guarded_clusters(ids, versions[::-1], matches)

    night1 = stable_labels(guarded_clusters(["b", "c", "z"], [("b", "c", 6.0)]), {})
    assert night1 == {"b": "b", "c": "b", "z": "z"}
    night2 = stable_labels(guarded_clusters(["a", "b", "c", "z"], [("b", "c", 6.0), ("a", "b", 5.0), ("a", "c", 4.5)]),
                           night1)
    assert night2 == {"a": "b", "b": "b", "c": "b", "z": "z"}  # "a" is the smallest member, the id stays "b"
    half = guarded_clusters(["a", "b", "c"], [("b", "c", 6.0), ("a", "b", 5.0)])
    assert half["a"] == "a" and half["b"] == half["c"]  # one edge of two: no majority


def test_fitting_version_settings_raises_the_f_measure_on_labels_it_was_not_fitted_on():
    """In a domain where true versions stand out less than the shipped cut asks (e.g. folk-tune variants from
    different tune books), re-fitting the z cut on half the labelled pairs helps on the other half."""
    from hashing.decisions import VersionSettings, f_measure, fit_version_settings

    rng = np.random.default_rng(1)
    z = np.concatenate([rng.uniform(2.4, 3.9, 30), rng.uniform(-2.0, 2.0, 90)])
    same = np.concatenate([np.ones(30, bool), np.zeros(90, bool)])
    order = rng.permutation(len(z))
    fit, held = order[:60], order[60:]
    shipped = VersionSettings()
    fitted = fit_version_settings(z[fit], same[fit], shipped)
    assert (fitted.ratio, fitted.link) == (shipped.ratio, shipped.link)

    def f(settings):
        return f_measure(z[held] >= settings.min_z, same[held])

    assert f(fitted) > f(shipped) + 0.5 and f(fitted) > 0.9


def _run(audio: list[str], midi: list[str], out: Path, state: Path, *extra: str) -> None:
    from pipelines.cli import main

    args = ["run", "--out", str(out), "--state", str(state), "--no-report", *extra]
    args += [a for p in audio for a in ("--audio", p)] + [a for p in midi for a in ("--midi", p)]
    assert main(args) == 0


def test_nights_keep_decisions_and_cluster_ids(tiny_corpus, tmp_path):
    """Night 1 lacks one recording; night 2 adds it (its MIDI file's cluster gains a member) and about 10% more
    unrelated files (excerpts of a distractor). Every match clearly accepted on night 1 is accepted on night 2,
    every cluster keeps its id, and a rerun from the same state gives the same ids."""
    audio, midi = list(tiny_corpus["audio"]), list(tiny_corpus["midi"])
    held_back = tiny_corpus["pairs"][1]["audio"]
    state = tmp_path / "state"
    _run([a for a in audio if a != held_back], midi, tmp_path / "night1", state)
    extra = [_cut_audio(tiny_corpus["distractors"][1], tmp_path / "extra.wav", 3.0, 15.0)]
    _run(audio + extra, midi, tmp_path / "night2", state)

    def accepted(out):
        return {(Path(m["midi_uri"]).name, Path(m["audio_uri"]).name): m["confidence"]
                for m in read_table(out, "matches") if m["is_match"]}

    night1, night2 = accepted(tmp_path / "night1"), accepted(tmp_path / "night2")
    assert night1 and all(pair in night2 for pair, conf in night1.items() if conf > 0.9)
    ids1 = {r["track_id"]: r["cluster_id"] for r in read_table(tmp_path / "night1", "clusters")}
    rows2 = read_table(tmp_path / "night2", "clusters")
    ids2 = {r["track_id"]: r["cluster_id"] for r in rows2}
    assert all(ids2[t] == c for t, c in ids1.items())
    gained = [r for r in rows2 if Path(r["uri"]).name == Path(held_back).name]
    assert gained and gained[0]["cluster_size"] >= 2
    shutil.rmtree(tmp_path / "night2")
    _run(audio + extra, midi, tmp_path / "night2", state)
    assert {r["track_id"]: r["cluster_id"] for r in read_table(tmp_path / "night2", "clusters")} == ids2


def _labels_file(path: Path, rows: list[tuple[str, str, str]]) -> str:
    path.write_text("uri_a,uri_b,same\n" + "".join(f"{a},{b},{s}\n" for a, b, s in rows))
    return str(path)


def test_calibrate_writes_settings_that_run_uses_and_refuses_bad_labels(tiny_corpus, pipeline_out, tmp_path, capsys):
    from pipelines.cli import main

    pairs = tiny_corpus["pairs"]
    rows = [(p["midi"], p["audio"], "true") for p in pairs]
    rows += [(pairs[i]["midi"], pairs[(i + 1) % len(pairs)]["audio"], "false") for i in range(len(pairs))]
    rows += [(tiny_corpus["midi"][-1], d, "no") for d in tiny_corpus["distractors"]]
    settings = tmp_path / "settings.json"
    assert main(["calibrate", str(pipeline_out), "--pairs", _labels_file(tmp_path / "l.csv", rows),
                 "--write", str(settings)]) == 0
    text = settings.read_text()
    assert '"match_pairs": 8' in text and '"cut"' in text
    out = tmp_path / "calibrated"
    assert main(["run", "--out", str(out), "--no-state", "--no-report", "--calibration", str(settings),
                 *[a for p in tiny_corpus["audio"] for a in ("--audio", p)],
                 *[a for p in tiny_corpus["midi"] for a in ("--midi", p)]]) == 0
    accepted = {(Path(m["midi_uri"]).name, Path(m["audio_uri"]).name) for m in read_table(out, "matches")
                if m["is_match"]}
    assert accepted == {(Path(p["midi"]).name, Path(p["audio"]).name) for p in pairs}
    capsys.readouterr()
    bad = {
        "unknown uri": [("nowhere.mid", pairs[0]["audio"], "true")] + rows,
        "one class": [r for r in rows if r[2] == "true"],
        "too few": rows[:2] + rows[-1:],
    }
    for name, labelled in bad.items():
        code = main(["calibrate", str(pipeline_out), "--pairs", _labels_file(tmp_path / "bad.csv", labelled),
                     "--write", str(tmp_path / "x.json")])
        err = capsys.readouterr().err
        assert code == 2 and "mirmatch: error:" in err, name
    (tmp_path / "nohead.csv").write_text("a,b\n1,2\n")
    assert main(["calibrate", str(pipeline_out), "--pairs", str(tmp_path / "nohead.csv"), "--write", "x"]) == 2
    assert "uri_a" in capsys.readouterr().err
    with pytest.raises(SystemExit) as exit_info:  # a calibration file that cannot be read is a usage error
        main(["run", "--audio", "a.wav", "--out", str(tmp_path / "o"), "--calibration", str(tmp_path / "none.json")])
    assert exit_info.value.code == 2
