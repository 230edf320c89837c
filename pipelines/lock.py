"""One run at a time per output folder: a lock file ``OUT/_lock.json`` naming its holder, with a heartbeat.

A run creates the lock exclusively (``O_CREAT | O_EXCL`` on local disks; on ``gs://`` an upload with the
precondition ``ifGenerationMatch=0``, which Cloud Storage applies atomically), refreshes its heartbeat every
``HEARTBEAT_S`` seconds while it runs and removes it at the end. A second run into the same folder finds
the lock and refuses (``OutLocked``, naming the holder's host, pid and start time). A lock left by a run
that was killed is recovered when it is provably stale:

- its holder ran on this host and its process is gone, or
- its heartbeat is older than ``STALE_S`` (a holder on another machine, or a reused pid).

Recovery removes the stale lock only if it is still the one that was judged stale (same token on local
disks, same generation on Cloud Storage), then creates a fresh one exclusively, so two runs recovering at
once cannot both win.
"""

from __future__ import annotations

import contextlib
import datetime as dt
import json
import logging
import os
import socket
import threading
import time
import uuid
from dataclasses import asdict, dataclass

log = logging.getLogger("mirmatch")

LOCK_NAME = "_lock.json"
HEARTBEAT_S = 30.0
#: A lock whose heartbeat is older than this is stale whoever holds it (20 missed heartbeats).
STALE_S = 600.0


class OutLocked(RuntimeError):
    """Another run holds the output folder."""


@dataclass
class Holder:
    """Who holds a lock: written as the lock file's JSON."""

    host: str
    pid: int
    started_at: str  # ISO 8601, UTC
    heartbeat: float  # seconds since the epoch, refreshed every HEARTBEAT_S
    token: str

    def describe(self) -> str:
        return f"host {self.host}, pid {self.pid}, started {self.started_at}"


def _holder_of(data: bytes) -> Holder | None:
    try:
        raw = json.loads(data.decode())
        return Holder(str(raw["host"]), int(raw["pid"]), str(raw["started_at"]), float(raw["heartbeat"]),
                      str(raw["token"]))
    except (ValueError, KeyError, TypeError, UnicodeDecodeError):
        return None


def pid_alive(pid: int) -> bool:
    """Whether a process with this id exists on this host."""
    try:
        os.kill(pid, 0)
    except ProcessLookupError:
        return False
    except PermissionError:  # exists, owned by someone else
        return True
    return True


def stale_reason(holder: Holder | None, age_s: float, stale_s: float = STALE_S) -> str | None:
    """Why a lock may be taken over (None: it is held). ``age_s``: seconds since its last heartbeat."""
    if holder is not None and holder.host == socket.gethostname() and not pid_alive(holder.pid):
        return f"its process {holder.pid} on this host is gone"
    if age_s > stale_s:
        return f"no heartbeat for {age_s:.0f} s (more than {stale_s:.0f} s)"
    return None


class _LocalLock:
    """The lock file on a local disk; a version is the holder's token."""

    def __init__(self, path: str):
        self.path = path

    def create(self, data: bytes) -> bool:
        os.makedirs(os.path.dirname(self.path) or ".", exist_ok=True)
        try:
            fd = os.open(self.path, os.O_CREAT | os.O_EXCL | os.O_WRONLY, 0o644)
        except FileExistsError:
            return False
        with os.fdopen(fd, "wb") as f:
            f.write(data)
        return True

    def read(self) -> tuple[bytes, float] | None:
        """(content, seconds since it was last written), None when there is no lock."""
        try:
            with open(self.path, "rb") as f:
                return f.read(), time.time() - os.fstat(f.fileno()).st_mtime
        except FileNotFoundError:
            return None

    def replace(self, data: bytes, token: str) -> bool:
        """Rewrite the lock if it is still ours (heartbeat)."""
        current = self.read()
        if current is None or getattr(_holder_of(current[0]), "token", None) != token:
            return False
        tmp = f"{self.path}.{uuid.uuid4().hex}"
        with open(tmp, "wb") as f:
            f.write(data)
        os.replace(tmp, self.path)
        return True

    def delete(self, token: str | None, content: bytes) -> bool:
        """Remove the lock if it is still the one read (``content``): it is moved aside first, then checked."""
        aside = f"{self.path}.stale-{uuid.uuid4().hex}"
        try:
            os.rename(self.path, aside)
        except FileNotFoundError:
            return False
        with open(aside, "rb") as f:
            moved = f.read()
        if moved != content and (token is None or getattr(_holder_of(moved), "token", None) != token):
            with contextlib.suppress(FileExistsError):  # another run's fresh lock: put it back
                os.link(aside, self.path)
            os.unlink(aside)
            return False
        os.unlink(aside)
        return True


class _GcsLock:
    """The lock object on Cloud Storage; a version is the object's generation (preconditions on it)."""

    def __init__(self, uri: str):
        from google.cloud import storage

        bucket, _, name = uri.removeprefix("gs://").partition("/")
        self.blob = storage.Client().bucket(bucket).blob(name)
        self.generation: int | None = None

    def create(self, data: bytes) -> bool:
        from google.api_core.exceptions import PreconditionFailed

        try:
            self.blob.upload_from_string(data, if_generation_match=0)
        except PreconditionFailed:
            return False
        self.generation = self.blob.generation
        return True

    def read(self) -> tuple[bytes, float] | None:
        from google.api_core.exceptions import NotFound

        try:
            self.blob.reload()
            data = self.blob.download_as_bytes(if_generation_match=self.blob.generation)
        except NotFound:
            return None
        self.read_generation = self.blob.generation
        return data, time.time() - self.blob.updated.timestamp()

    def replace(self, data: bytes, token: str) -> bool:
        from google.api_core.exceptions import PreconditionFailed

        try:
            self.blob.upload_from_string(data, if_generation_match=self.generation)
        except PreconditionFailed:
            return False
        self.generation = self.blob.generation
        return True

    def delete(self, token: str | None, content: bytes) -> bool:
        from google.api_core.exceptions import NotFound, PreconditionFailed

        generation = getattr(self, "read_generation", None)  # of the lock last read, judged stale or ours
        if generation is None:
            return False
        try:
            self.blob.delete(if_generation_match=generation)
        except (NotFound, PreconditionFailed):
            return False
        return True


class OutLock:
    """``with OutLock(out):`` holds ``out`` for one run (see the module docstring); raises OutLocked."""

    def __init__(self, out: str, heartbeat_s: float = HEARTBEAT_S, stale_s: float = STALE_S):
        from apache_beam.io.filesystems import FileSystems

        self.path = FileSystems.join(out, LOCK_NAME)
        local = FileSystems.get_scheme(out) in (None, "file")
        self.store = _LocalLock(self.path.removeprefix("file://")) if local else _GcsLock(self.path)
        self.heartbeat_s, self.stale_s = heartbeat_s, stale_s
        self.holder = Holder(socket.gethostname(), os.getpid(), dt.datetime.now(dt.UTC).isoformat(timespec="seconds"),
                             time.time(), uuid.uuid4().hex)
        self._stop = threading.Event()
        self._thread: threading.Thread | None = None

    def _data(self) -> bytes:
        self.holder.heartbeat = time.time()
        return json.dumps(asdict(self.holder)).encode()

    def acquire(self) -> None:
        for _ in range(5):
            if self.store.create(self._data()):
                self._thread = threading.Thread(target=self._beat, name="mirmatch-lock", daemon=True)
                self._thread.start()
                return
            current = self.store.read()
            if current is None:  # released meanwhile: try again
                continue
            content, age = current
            other = _holder_of(content)
            if other is not None:
                age = min(age, max(0.0, time.time() - other.heartbeat))
            reason = stale_reason(other, age, self.stale_s)
            if reason is None:
                who = other.describe() if other else "a run that is starting"
                raise OutLocked(f"another run is writing into this output folder ({who}; lock {self.path}); "
                                "wait for it to finish, or use another --out")
            if self.store.delete(other.token if other else None, content):
                log.warning("mirmatch: recovered the lock %s left by a run that did not finish (%s; %s)",
                            self.path, other.describe() if other else "unreadable lock", reason)
        raise OutLocked(f"could not take the lock {self.path}: other runs keep taking it")

    def _beat(self) -> None:
        while not self._stop.wait(self.heartbeat_s):
            try:
                if not self.store.replace(self._data(), self.holder.token):
                    log.warning("mirmatch: the lock %s was taken over by another run", self.path)
                    return
            except Exception as exc:  # a passing fault: the next beat retries
                log.debug("lock heartbeat failed: %s", exc)

    def release(self) -> None:
        self._stop.set()
        if self._thread is not None:
            self._thread.join()
            self._thread = None
            current = self.store.read()
            if current is not None and getattr(_holder_of(current[0]), "token", None) == self.holder.token:
                self.store.delete(self.holder.token, current[0])

    def __enter__(self) -> OutLock:
        self.acquire()
        return self

    def __exit__(self, *exc) -> None:
        self.release()
