"""One run at a time per --out: a second run refuses while the first holds the lock; stale locks are recovered."""

from __future__ import annotations

import json
import os
import socket
import subprocess
import sys
import time

import pytest

from pipelines.lock import LOCK_NAME, OutLock, OutLocked
from tests.conftest import REPO, read_table


def _write_lock(out, host: str, pid: int, heartbeat: float) -> None:
    out.mkdir(parents=True, exist_ok=True)
    (out / LOCK_NAME).write_text(json.dumps({"host": host, "pid": pid, "started_at": "2026-01-01T00:00:00+00:00",
                                             "heartbeat": heartbeat, "token": "t" * 32}))
    os.utime(out / LOCK_NAME, (heartbeat, heartbeat))  # as if last written at its heartbeat


def _dead_pid() -> int:
    proc = subprocess.Popen([sys.executable, "-c", "pass"])
    proc.wait()
    return proc.pid


def test_lock_is_exclusive_and_released(tmp_path):
    out = tmp_path / "out"
    with OutLock(str(out)) as lock:
        assert json.loads((out / LOCK_NAME).read_text())["pid"] == os.getpid()
        with pytest.raises(OutLocked, match=f"host {socket.gethostname()}, pid {os.getpid()}, started "):
            OutLock(str(out)).acquire()
        assert lock.holder.token in (out / LOCK_NAME).read_text()
    assert not (out / LOCK_NAME).exists()


def test_heartbeat_keeps_a_long_run_from_looking_stale(tmp_path):
    out = tmp_path / "out"
    with OutLock(str(out), heartbeat_s=0.05, stale_s=0.5):
        first = json.loads((out / LOCK_NAME).read_text())["heartbeat"]
        time.sleep(1.0)
        assert json.loads((out / LOCK_NAME).read_text())["heartbeat"] > first + 0.5
        with pytest.raises(OutLocked):  # twice the stale age has passed, but the heartbeat is fresh
            OutLock(str(out), stale_s=0.5).acquire()


def test_stale_locks_are_recovered(tmp_path, caplog):
    out = tmp_path / "out"
    here = socket.gethostname()
    _write_lock(out, here, _dead_pid(), time.time())  # killed on this host: its process is gone
    with caplog.at_level("WARNING", logger="mirmatch"), OutLock(str(out)):
        assert json.loads((out / LOCK_NAME).read_text())["pid"] == os.getpid()
    assert "is gone" in caplog.text and "recovered the lock" in caplog.text

    _write_lock(out, "another-host", 1, time.time() - 3600)  # another machine, no heartbeat for an hour
    with OutLock(str(out)):
        pass
    assert "no heartbeat for" in caplog.text

    _write_lock(out, "another-host", 1, time.time())  # another machine, alive
    with pytest.raises(OutLocked, match="host another-host, pid 1"):
        OutLock(str(out)).acquire()
    sleeper = subprocess.Popen([sys.executable, "-c", "import time; time.sleep(60)"])
    try:
        _write_lock(out, here, sleeper.pid, time.time() - 60)  # alive on this host
        with pytest.raises(OutLocked, match=f"pid {sleeper.pid}"):
            OutLock(str(out)).acquire()
    finally:
        sleeper.kill()
        sleeper.wait()
    with OutLock(str(out)):  # its process is gone now
        pass


def test_a_second_concurrent_run_refuses(tiny_corpus, tmp_path):
    from pipelines.cli import main

    out = tmp_path / "out"
    pairs = tiny_corpus["pairs"]
    argv = ["run", "--out", str(out), "--no-report"]
    for pair in pairs:
        argv += ["--audio", pair["audio"], "--midi", pair["midi"]]
    first = subprocess.Popen([sys.executable, "-m", "pipelines", *argv], cwd=REPO, stdout=subprocess.DEVNULL,
                             stderr=subprocess.PIPE, text=True)
    try:
        deadline = time.monotonic() + 120
        while not (out / LOCK_NAME).exists():
            assert first.poll() is None, "the first run ended before taking the lock"
            assert time.monotonic() < deadline, "no lock within 120 s"
            time.sleep(0.05)
        holder = json.loads((out / LOCK_NAME).read_text())
        second = subprocess.run([sys.executable, "-m", "pipelines", *argv], cwd=REPO, stderr=subprocess.PIPE,
                                text=True, timeout=300)
        assert first.poll() is None, "the first run ended before the second was refused: the test proves nothing"
        assert second.returncode == 1
        last = second.stderr.strip().splitlines()[-1]
        assert "another run is writing into this output folder" in last
        assert f"host {holder['host']}, pid {first.pid}, started {holder['started_at']}" in last
        assert first.wait(timeout=600) == 0, first.stderr.read()
    finally:
        if first.poll() is None:
            first.kill()
            first.wait()
    assert not (out / LOCK_NAME).exists()
    assert len(read_table(out, "tracks")) == 2 * len(pairs)
    assert main(argv) == 0  # released: the next run goes ahead
