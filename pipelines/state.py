"""Results kept between runs, so that a nightly run only analyses new or changed files.

Layout under the state folder (local or ``gs://``), ``KEY`` being ``encoders.analyze.analysis_key``
(the analysis code's version and the digests of every model it uses):

    STATE/KEY/tracks/ab/abcdef....audio.npz     one track's analysis (or its error), by content hash
    STATE/KEY/pairs/ab/abcdef.../012345....npz  one (MIDI, audio) pair's CQT alignment

Each entry is typed data, never a pickle (``pipelines.state_format``: the arrays plus a JSON header, read
with ``allow_pickle=False``), so reading a shared state folder runs no code a writer put there. Entries are
written to a temporary name and renamed, so a run killed half-way never leaves a truncated entry; an entry
that cannot be read (damaged, tampered with, or written with other fields) is treated as missing and
recomputed. Entries of the older pickled format (``*.pkl``) are never read: ``log_old_format`` says the
state is rebuilt, and ``prune`` removes them with the folders of other analysis keys. A new model version starts an
empty folder of its own, so results of different models never mix; ``log_stale_keys`` says so when a run
finds the folder of its key missing beside those of other keys.
"""

from __future__ import annotations

import logging
import shutil
import uuid
from pathlib import Path

from apache_beam.io.filesystem import CompressionTypes
from apache_beam.io.filesystems import FileSystems

from pipelines.state_format import StateFormatError, dumps, loads

log = logging.getLogger("mirmatch")

RAW = CompressionTypes.UNCOMPRESSED


SUFFIX, OLD_SUFFIX = ".npz", ".pkl"


def track_types() -> tuple[type, ...]:
    """The classes a track entry may hold: an analysis (with its sections and warnings) or a failure."""
    from encoders.analyze import TrackAnalysis, TrackWarning
    from encoders.structure.laplacian import Segment
    from pipelines.analyse import TrackFailure

    return TrackAnalysis, TrackWarning, Segment, TrackFailure


def pair_types() -> tuple[type, ...]:
    """The classes a pair entry may hold."""
    from hashing.align import PairAlignment
    from pipelines.match import PairResult

    return PairResult, PairAlignment


class StateStore:
    """Typed per-track and per-pair results under ``root/key`` (see the module docstring)."""

    def __init__(self, root: str, key: str):
        self.root, self.key = root, key
        self.base = FileSystems.join(root, key)

    def track_path(self, track_id: str, modality: str) -> str:
        return FileSystems.join(self.base, "tracks", track_id[:2], f"{track_id}.{modality}{SUFFIX}")

    def pair_path(self, midi_id: str, audio_id: str) -> str:
        return FileSystems.join(self.base, "pairs", midi_id[:2], midi_id, f"{audio_id}{SUFFIX}")

    def load_track(self, track_id: str, modality: str) -> object | None:
        return self._load(self.track_path(track_id, modality), track_types())

    def save_track(self, track_id: str, modality: str, value: object) -> None:
        self._save(self.track_path(track_id, modality), value)

    def load_pair(self, midi_id: str, audio_id: str) -> object | None:
        return self._load(self.pair_path(midi_id, audio_id), pair_types())

    def save_pair(self, midi_id: str, audio_id: str, value: object) -> None:
        self._save(self.pair_path(midi_id, audio_id), value)

    def _load(self, path: str, allowed: tuple[type, ...]) -> object | None:
        try:
            with FileSystems.open(path, compression_type=RAW) as f:
                data = f.read()
        except FileNotFoundError:
            return None
        except Exception as exc:  # missing on an object store, or unreadable
            if FileSystems.exists(path):
                log.warning("state entry %s is unreadable (%s); recomputing it", path, exc)
            return None
        try:
            return loads(data, allowed)
        except StateFormatError as exc:  # truncated, tampered with, or written by another version
            log.warning("state entry %s is not valid typed state (%s); recomputing it", path, exc)
            return None

    def _save(self, path: str, value: object) -> None:
        tmp = f"{path}.tmp-{uuid.uuid4().hex}"
        with FileSystems.create(tmp, compression_type=RAW) as f:
            f.write(dumps(value))
        FileSystems.rename([tmp], [path])


def stale_keys(root: str | None, key: str) -> list[str]:
    """The other analysis keys kept under ``root`` when ``key`` has nothing there (sorted): results of
    another version of the analysis code or models, which a run under ``key`` cannot reuse. Empty when
    ``key`` has results, or nothing is kept. On object stores, where listing every entry would be slow, at
    most one other key is named."""
    if not root:
        return []
    if _has_folders(root):
        folder = Path(root.removeprefix("file://"))
        if not folder.is_dir() or (folder / key).exists():
            return []
        return sorted(p.name for p in folder.iterdir() if p.is_dir())
    if _first_entry(FileSystems.join(root, key, "**")):
        return []
    found = _first_entry(FileSystems.join(root, "*", "**"))
    prefix = root.rstrip("/") + "/"
    return [found[len(prefix):].split("/", 1)[0]] if found and found.startswith(prefix) else []


def log_stale_keys(root: str | None, key: str) -> list[str]:
    """``stale_keys``, logged: one line saying that every file is analysed again, once, under ``key``."""
    others = stale_keys(root, key)
    if others:
        log.info("mirmatch: the state folder %s has no results of this analysis version (%s) but has some of "
                 "%s: the analysis code or models changed, so every file is analysed again, once (the older "
                 "results are not reused; delete them when no run needs them)", root, key, ", ".join(others))
    return others


def _has_folders(root: str) -> bool:
    """Local disks have folders; object stores only names with a common prefix."""
    return FileSystems.get_scheme(root) in (None, "file")


def _first_entry(pattern: str) -> str | None:
    metadata = FileSystems.match([pattern], limits=[1])[0].metadata_list
    return metadata[0].path if metadata else None



def _entry_patterns(root: str, key: str, suffix: str) -> list[str]:
    return [FileSystems.join(root, key, "tracks", "*", f"*{suffix}"),
            FileSystems.join(root, key, "pairs", "*", "*", f"*{suffix}")]


def _first_match(root: str, patterns: list[str]) -> str | None:
    """The first path matching one of ``patterns``; on local disks ``iglob`` stops at the first match, so
    this is cheap however big the state is."""
    if _has_folders(root):
        import glob

        return next((hit for pattern in patterns for hit in glob.iglob(pattern.removeprefix("file://"))), None)
    return next((hit for pattern in patterns if (hit := _first_entry(pattern))), None)


def old_format_entry(root: str | None) -> str | None:
    """An entry of the older pickled format under ``root`` (any analysis key), or None."""
    return _first_match(root, _entry_patterns(root, "*", OLD_SUFFIX)) if root else None


def log_old_format(root: str | None, key: str) -> bool:
    """One log line when ``root`` holds pickled entries of an older version and none of this format under
    ``key``: they are never read (reading a pickle runs code), so the state is rebuilt once. True if logged."""
    old = old_format_entry(root)
    if old is None or _first_match(root, _entry_patterns(root, key, SUFFIX)):
        return False
    log.info("mirmatch: state written by an older version: rebuilding (%s holds pickled entries such as %s, "
             "which are never read; every file is analysed again, once; `mirmatch state prune` removes the "
             "old entries)", root, old)
    return True


def prune(root: str, key: str) -> tuple[list[str], int]:
    """Remove from ``root`` the folders of analysis keys other than ``key`` and the entries of the older
    pickled format; returns (what was removed, bytes freed). Nothing a run under ``key`` reads is touched."""
    removed, freed = [], 0
    if _has_folders(root):
        folder = Path(root.removeprefix("file://"))
        if not folder.is_dir():
            return [], 0
        for child in sorted(folder.iterdir()):
            if child.is_dir() and child.name != key:
                freed += sum(p.stat().st_size for p in child.rglob("*") if p.is_file())
                shutil.rmtree(child)
                removed.append(str(child))
        for old in sorted((folder / key).rglob(f"*{OLD_SUFFIX}")) if (folder / key).is_dir() else []:
            freed += old.stat().st_size
            old.unlink()
            removed.append(str(old))
        return removed, freed
    prefix = root.rstrip("/") + "/"
    doomed = [m for m in FileSystems.match([FileSystems.join(root, "**")])[0].metadata_list
              if "/" in m.path[len(prefix):]  # files at the root (the kept cluster ids) stay
              and (not m.path[len(prefix):].startswith(f"{key}/") or m.path.endswith(OLD_SUFFIX))]
    for start in range(0, len(doomed), 1000):
        FileSystems.delete([m.path for m in doomed[start:start + 1000]])
    keys = sorted({m.path[len(prefix):].split("/", 1)[0] for m in doomed})
    return [prefix + k for k in keys], sum(m.size_in_bytes for m in doomed)
