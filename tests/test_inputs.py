"""Inputs matched inside the pipeline (``ReadInputs``): the same (path, modality) elements as expanding the
patterns on the launcher, with the graph holding patterns only."""

from __future__ import annotations

import apache_beam as beam
from apache_beam.testing.util import assert_that, equal_to

from pipelines.pipeline import input_elements
from pipelines.sources import ReadInputs, expand_patterns


def test_read_inputs_equals_expanding_on_the_launcher(tmp_path, monkeypatch):
    for name in ("a.wav", "b.flac", "c.mid", "d.mid", "both.mid", "both.wav"):
        (tmp_path / name).write_bytes(b"x")
    (tmp_path / "sub").mkdir()
    (tmp_path / "sub" / "e.wav").write_bytes(b"x")
    (tmp_path / "inner.txt").write_text(f"{tmp_path}/sub/*.wav\n")
    (tmp_path / "list.txt").write_text(f"# a manifest\n\n{tmp_path}/b.flac\nc.mid\n@{tmp_path}/inner.txt\n"
                                       f"{tmp_path}/missing.wav\n")
    monkeypatch.chdir(tmp_path)  # relative paths are resolved against the launcher's working directory
    audio = [f"{tmp_path}/*.wav", f"@{tmp_path}/list.txt", f"{tmp_path}/nothing-*.ogg", "both.mid"]
    midi = [f"{tmp_path}/*.mid", f"{tmp_path}/c.mid"]
    expected = input_elements(expand_patterns(audio), expand_patterns(midi))
    assert (str(tmp_path / "missing.wav"), "audio") in expected and (str(tmp_path / "both.mid"), "midi") in expected
    assert (str(tmp_path / "sub" / "e.wav"), "audio") in expected and (str(tmp_path / "c.mid"), "midi") in expected
    with beam.Pipeline() as p:
        assert_that(p | ReadInputs(audio, midi), equal_to(expected))
