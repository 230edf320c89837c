"""Results kept between runs, so that a nightly run only analyses new or changed files.

Layout under the state folder (local or ``gs://``), ``KEY`` being ``encoders.analyze.analysis_key``
(the analysis code's version and the digests of every model it uses):

    STATE/KEY/tracks/ab/abcdef....audio.pkl     one track's analysis (or its error), by content hash
    STATE/KEY/pairs/ab/abcdef.../012345....pkl  one (MIDI, audio) pair's CQT alignment

Entries are written to a temporary name and renamed, so a run killed half-way never leaves a truncated
entry; an entry that cannot be read is treated as missing and recomputed. A new model version starts an
empty folder of its own, so results of different models never mix; ``log_stale_keys`` says so when a run
finds the folder of its key missing beside those of other keys.
"""

from __future__ import annotations

import logging
import pickle
import uuid
from pathlib import Path

from apache_beam.io.filesystem import CompressionTypes
from apache_beam.io.filesystems import FileSystems

log = logging.getLogger("mirmatch")

RAW = CompressionTypes.UNCOMPRESSED


class StateStore:
    """Pickled per-track and per-pair results under ``root/key`` (see the module docstring)."""

    def __init__(self, root: str, key: str):
        self.root, self.key = root, key
        self.base = FileSystems.join(root, key)

    def track_path(self, track_id: str, modality: str) -> str:
        return FileSystems.join(self.base, "tracks", track_id[:2], f"{track_id}.{modality}.pkl")

    def pair_path(self, midi_id: str, audio_id: str) -> str:
        return FileSystems.join(self.base, "pairs", midi_id[:2], midi_id, f"{audio_id}.pkl")

    def load_track(self, track_id: str, modality: str) -> object | None:
        return self._load(self.track_path(track_id, modality))

    def save_track(self, track_id: str, modality: str, value: object) -> None:
        self._save(self.track_path(track_id, modality), value)

    def load_pair(self, midi_id: str, audio_id: str) -> object | None:
        return self._load(self.pair_path(midi_id, audio_id))

    def save_pair(self, midi_id: str, audio_id: str, value: object) -> None:
        self._save(self.pair_path(midi_id, audio_id), value)

    def _load(self, path: str) -> object | None:
        try:
            with FileSystems.open(path, compression_type=RAW) as f:
                return pickle.loads(f.read())
        except FileNotFoundError:
            return None
        except Exception as exc:  # missing on an object store, truncated, or from an older Python
            if FileSystems.exists(path):
                log.warning("state entry %s is unreadable (%s); recomputing it", path, exc)
            return None

    def _save(self, path: str, value: object) -> None:
        tmp = f"{path}.tmp-{uuid.uuid4().hex}"
        with FileSystems.create(tmp, compression_type=RAW) as f:
            f.write(pickle.dumps(value, protocol=pickle.HIGHEST_PROTOCOL))
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

