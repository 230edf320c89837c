"""The pipeline beyond the DirectRunner: a Dataflow job built offline (dry run) and a run on a portable job service."""

from __future__ import annotations

import importlib.util
import socket
import subprocess
import sys
import tempfile
import time
from pathlib import Path

import pytest

from tests.conftest import REPO, assert_true_pairs_first, read_table, uri

#: The composite stages of build_pipeline (the README's diagram), then steps inside them.
STAGES = ["Inputs", "Analyse", "Match", "Index", "Versions", "Publish"]
STEPS = ["Analyse/Spread inputs", "Analyse/Analyze tracks", "Match/Hash cascade/Search shards",
         "Match/Hash cascade/Merge top-K", "Match/Hash cascade/Join frame codes", "Match/Group by audio",
         "Match/DTW refine", "Match/Group by MIDI", "Match/Rank", "Index/Write audio index", "Versions/Verify versions",
         "Versions/Cluster", "Publish/Publish tables"]
TABLES = ["tracks", "errors", "segments", "matches", "alignments", "clusters"]
LOOPBACK = {"localhost", "127.0.0.1", "::1", "", None}


def load_flex_main():
    """deploy/flex_main.py, the flex template's entry point (not a package: loaded by path)."""
    spec = importlib.util.spec_from_file_location("flex_main", REPO / "deploy" / "flex_main.py")
    module = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(module)
    return module


@pytest.fixture
def no_network(monkeypatch) -> list:
    """Refuse every connection and name lookup that leaves this machine; the list records the attempts."""
    attempts: list = []
    connect, getaddrinfo = socket.socket.connect, socket.getaddrinfo

    def guarded_connect(sock, address):
        if sock.family in (socket.AF_INET, socket.AF_INET6) and address[0] not in LOOPBACK:
            attempts.append(address)
            raise OSError(f"test_runners: network access refused: {address}")
        return connect(sock, address)

    def guarded_getaddrinfo(host, *args, **kwargs):
        if host not in LOOPBACK:
            attempts.append(host)
            raise socket.gaierror(f"test_runners: name lookup refused: {host}")
        return getaddrinfo(host, *args, **kwargs)

    monkeypatch.setattr(socket.socket, "connect", guarded_connect)
    monkeypatch.setattr(socket, "getaddrinfo", guarded_getaddrinfo)
    return attempts


def test_dataflow_dry_run_builds_the_whole_job_offline(no_network, tmp_path, monkeypatch):
    """The flex template's arguments build a complete Dataflow job description without touching the network.

    ``--dry_run=True`` makes DataflowRunner translate the pipeline (overrides, pickled DoFns, portable proto,
    worker environment, staged-artifact list) and stop right before the first API or Cloud Storage call. The
    inputs are given as (uri, modality) elements: globbing gs:// patterns would need Cloud Storage.
    """
    pytest.importorskip("google.cloud.dataflow", reason="needs the gcp extra: pip install -e '.[gcp]'")
    import apache_beam as beam
    from apache_beam.options.pipeline_options import GoogleCloudOptions, PipelineOptions
    from apache_beam.portability.api import beam_runner_api_pb2

    from pipelines.pipeline import build_pipeline

    monkeypatch.setattr(tempfile, "tempdir", str(tmp_path))  # the runner's local artifact copies land here
    image = "us-central1-docker.pkg.dev/test-project/mirmatch/mirmatch:test"
    # What the flex template launcher passes: the template parameters, then the job's Dataflow options.
    cfg, beam_args = load_flex_main().parse([
        "--audio=gs://test-bucket/audio/**", "--midi=gs://test-bucket/midi/*.mid", "--out=gs://test-bucket/out",
        "--top_k=3", "--cluster_similarity=0.85", "--runner=DataflowRunner", "--dry_run=True",
        "--project=test-project", "--region=us-central1",
        "--temp_location=gs://test-bucket/tmp", f"--sdk_container_image={image}", "--job_name=mirmatch-dry-run"])
    assert (cfg.audio, cfg.midi, cfg.out, cfg.top_k, cfg.cluster_similarity) == (
        ["gs://test-bucket/audio/**"], ["gs://test-bucket/midi/*.mid"], "gs://test-bucket/out", 3, 0.85)
    inputs = [("gs://test-bucket/audio/a.flac", "audio"), ("gs://test-bucket/audio/b.mp3", "audio"),
              ("gs://test-bucket/midi/a.mid", "midi")]

    p = beam.Pipeline(options=PipelineOptions(beam_args))
    build_pipeline(p, inputs, cfg)
    result = p.run()
    result.wait_until_finish()

    assert no_network == [], f"the dry run reached for the network: {no_network}"
    job = result.job  # apiclient.Job: the request that run() would send
    assert job.proto.name == "mirmatch-dry-run" and job.proto.type_.name == "JOB_TYPE_BATCH"
    gcp = job.options.view_as(GoogleCloudOptions)
    assert (gcp.project, gcp.region) == ("test-project", "us-central1")
    assert gcp.staging_location.startswith("gs://test-bucket/tmp/mirmatch-dry-run.")

    # Runner v2 sends the portable pipeline; its top-level transforms are the stages of build_pipeline.
    components = job.proto_pipeline.components
    transforms = components.transforms
    top = {transforms[t].unique_name for root in job.proto_pipeline.root_transform_ids
           for t in transforms[root].subtransforms}
    missing = [s for s in STAGES if s not in top]
    assert not missing, f"stages missing from the Dataflow job: {missing}; it has {sorted(top)}"
    names = {t.unique_name for t in transforms.values()}
    missing = [s for s in STEPS + [f"Publish/Write {t}" for t in TABLES] if s not in names]
    assert not missing, f"steps missing from the Dataflow job: {missing}"

    # Every table is written to this run's history partition under --out, then published by the last stage.
    patterns = {}
    for t in transforms.values():
        for item in t.display_data:
            labelled = beam_runner_api_pb2.LabelledPayload.FromString(item.payload)
            if labelled.label == "File Pattern":
                patterns[t.unique_name.split("/")[1]] = labelled.string_value  # Publish/Write <table>/...
    run_id = next(iter(patterns.values())).split("/run=")[1].split("/")[0]
    for table in TABLES:
        assert patterns[f"Write {table}"].startswith(
            f"gs://test-bucket/out/history/{table}/run={run_id}/part-"), patterns

    # The workers run the template's image: one Docker environment, nothing left to install at start-up
    # but the pickled main session and the submission's package list (both staged by a real run).
    environments = list(components.environments.values())
    assert [e.urn for e in environments] == ["beam:env:docker:v1"]
    assert beam_runner_api_pb2.DockerPayload.FromString(environments[0].payload).container_image == image
    staged = {beam_runner_api_pb2.ArtifactStagingToRolePayload.FromString(d.role_payload).staged_name
              for d in environments[0].dependencies}
    assert staged <= {"pickled_main_session", "submission_environment_dependencies.txt"}, staged


def start_job_service(tmp_path: Path) -> tuple[subprocess.Popen, int]:
    """Start Beam's local job service on a port the OS picks; return it once it accepts connections."""
    port_file, log = tmp_path / "job_service.port", tmp_path / "job_service.log"
    with open(log, "wb") as out:
        proc = subprocess.Popen(
            [sys.executable, "-m", "apache_beam.runners.portability.local_job_service_main", "--port", "0",
             "--port_file", str(port_file), "--staging_dir", str(tmp_path / "staging")],
            stdout=out, stderr=subprocess.STDOUT, cwd=REPO)
    deadline = time.monotonic() + 60
    while time.monotonic() < deadline:
        if proc.poll() is not None:
            raise RuntimeError(f"job service exited with {proc.returncode}: {log.read_text()[-2000:]}")
        if port_file.exists():
            port = int(port_file.read_text())
            try:
                socket.create_connection(("localhost", port), timeout=1).close()
                return proc, port
            except OSError:
                pass
        time.sleep(0.2)
    stop(proc)
    raise RuntimeError(f"job service not listening after 60 s: {log.read_text()[-2000:]}")


def stop(proc: subprocess.Popen) -> None:
    if proc.poll() is None:
        proc.terminate()
        try:
            proc.wait(timeout=10)
        except subprocess.TimeoutExpired:
            proc.kill()
            proc.wait(timeout=10)


@pytest.fixture
def job_service(tmp_path):
    proc, port = start_job_service(tmp_path)
    try:
        yield f"localhost:{port}"
    finally:
        stop(proc)


def test_portable_runner_runs_the_whole_pipeline(job_service, tiny_corpus, bad_inputs, tmp_path):
    """`mirmatch run` on a portable job service (the Fn API path of Flink, Spark and Dataflow) gives the tables."""
    from pipelines.cli import main

    root = tiny_corpus["root"]
    out = tmp_path / "out"
    argv = ["run", "--audio", f"{root}/audio/*", "--midi", f"{root}/midi/*.mid", "--out", str(out),
            "--runner=PortableRunner", f"--job_endpoint={job_service}", "--environment_type=LOOPBACK", "--no-report"]
    for path in bad_inputs["audio"]:
        argv += ["--audio", path]
    for path in bad_inputs["midi"]:
        argv += ["--midi", path]
    assert main(argv) == 0

    tracks = read_table(out, "tracks")
    uris = [t["uri"] for t in tracks]
    n_inputs = len(tiny_corpus["audio"]) + len(tiny_corpus["midi"]) + sum(len(v) for v in bad_inputs.values())
    assert len(uris) == len(set(uris)) == n_inputs
    status = {t["uri"]: t["status"] for t in tracks}
    bad = {uri(p) for p in bad_inputs["audio"] + bad_inputs["midi"]}
    assert all(status[u] == "error" for u in bad)
    assert sum(s == "ok" for s in status.values()) == len(tiny_corpus["audio"]) + len(tiny_corpus["midi"])
    assert {e["uri"] for e in read_table(out, "errors")} == bad

    assert_true_pairs_first(read_table(out, "matches"), tiny_corpus)
    true_pairs = {(uri(p["midi"]), uri(p["audio"])) for p in tiny_corpus["pairs"]}
    alignments = {(a["midi_uri"], a["audio_uri"]) for a in read_table(out, "alignments")}
    assert true_pairs <= alignments
    ok_ids = {t["track_id"] for t in tracks if t["status"] == "ok"}
    assert sorted(c["track_id"] for c in read_table(out, "clusters")) == sorted(ok_ids)
    assert {s["track_id"] for s in read_table(out, "segments")} == ok_ids
