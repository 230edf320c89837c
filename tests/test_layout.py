"""The code layout: what runs on every track never imports what trains (encoders.training)."""

from __future__ import annotations

import ast
import json
import subprocess
import sys
from pathlib import Path

from encoders.analyze import analysis_modules, module_path

REPO = Path(__file__).resolve().parents[1]
TRAINING_ONLY = ("music21", "mir_eval")  # training and evaluation needs: the pipeline runs without them

# A fresh interpreter imports the pipeline and the CLI and analyses a short recording and a short MIDI file
# with the shipped models, then reports every module it has loaded.
ANALYSE_TWO_TRACKS = """
import io, json, sys
import numpy as np, pretty_midi, soundfile as sf
import encoders.analyze as analyze, pipelines.cli, pipelines.pipeline
from encoders.codes import load_hasher

sr = 22050
t = np.arange(12 * sr) / sr
pitch = np.where((t // 3) % 2 == 0, 220.0, 330.0)
wav = io.BytesIO()
sf.write(wav, (0.3 * np.sin(2 * np.pi * pitch * t)).astype(np.float32), sr, format="WAV")
pm = pretty_midi.PrettyMIDI()
piano = pretty_midi.Instrument(program=0)
piano.notes = [pretty_midi.Note(90, 60 + 2 * (i % 4), 0.5 * i, 0.5 * i + 0.45) for i in range(24)]
pm.instruments.append(piano)
mid = io.BytesIO()
pm.write(mid)
hasher = load_hasher()
done = [analyze.analyze_source(wav.getvalue(), "tone.wav", "audio", hasher),
        analyze.analyze_source(mid.getvalue(), "tune.mid", "midi", hasher)]
print(json.dumps({"segments": [len(a.segments) for a in done], "codes": [len(a.frame_codes) for a in done],
                  "modules": sorted(sys.modules)}))
"""


def _is_training(module: str) -> bool:
    return module == "encoders.training" or module.startswith("encoders.training.")


def _is_training_only_dependency(module: str) -> bool:
    return module.split(".")[0] in TRAINING_ONLY


def test_analysing_tracks_loads_no_training_code_nor_its_dependencies():
    proc = subprocess.run([sys.executable, "-c", ANALYSE_TWO_TRACKS], cwd=REPO, capture_output=True, text=True,
                          timeout=600)
    assert proc.returncode == 0, proc.stderr[-3000:]
    result = json.loads(proc.stdout.strip().splitlines()[-1])
    assert all(n >= 1 for n in result["segments"]) and all(n >= 30 for n in result["codes"]), result
    loaded = result["modules"]
    assert {"encoders.analyze", "encoders.codes.learned", "pipelines.analyse", "pipelines.match", "pipelines.versions",
            "pipelines.cli"} <= set(loaded)
    assert not [m for m in loaded if _is_training(m)]
    assert not [m for m in loaded if _is_training_only_dependency(m)]


def test_the_analysis_key_covers_no_training_code():
    modules = analysis_modules()
    assert {"encoders.codes", "encoders.codes.bits", "encoders.versions.embedding", "encoders.structure.sections",
            "encoders.structure"} <= set(modules)  # subpackages are followed, their __init__ included
    assert not [m for m in modules if _is_training(m)]
    assert module_path("encoders.codes") == REPO / "encoders" / "codes" / "__init__.py"
    assert module_path("encoders.codes.load_hasher") is None


def _imports(path: Path) -> set[str]:
    """Every module a source file imports, at any level (function-level imports included)."""
    found = set()
    for node in ast.walk(ast.parse(path.read_text())):
        if isinstance(node, ast.ImportFrom) and node.module:
            found |= {node.module} | {f"{node.module}.{a.name}" for a in node.names}
        elif isinstance(node, ast.Import):
            found |= {a.name for a in node.names}
    return found


def test_run_time_modules_import_no_training_code_nor_its_dependencies():
    """Every module of encoders/ outside encoders/training/, and of hashing/: not even in a function."""
    run_time = [p for p in sorted((REPO / "encoders").rglob("*.py")) if "training" not in p.parts]
    run_time += sorted((REPO / "hashing").glob("*.py"))
    assert len(run_time) > 15
    for path in run_time:
        imported = _imports(path)
        assert not [m for m in imported if _is_training(m) or _is_training_only_dependency(m)], path
