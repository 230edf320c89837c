"""Real recordings from Debian packages: distractors, null distributions and real timbres for the audio side.

There are no real MIDI-audio pairs to develop on; real recordings serve as unrelated audio (every decision
must reject them) and as the background renderings are mixed into. The packages are split by package, never
by file (DEVELOPERS.md): settings are fitted and tuned on ``FIT_PACKAGES`` only and evaluated on
``EVAL_PACKAGES``; every other Debian package with recorded music is reserved for held-out evaluation.

The ``.deb`` files are fetched with ``apt-get download`` (no installation, no root needed) into a cache folder
and only their music folders are unpacked.
"""

from __future__ import annotations

import hashlib
import subprocess
import tarfile
from pathlib import Path

FIT_PACKAGES = ("supertux-data", "hedgewars-data")
EVAL_PACKAGES = ("warzone2100-music", "colobot-common-sounds", "extremetuxracer-data", "xmoto-data", "asc-music")
MUSIC_SUFFIXES = (".ogg", ".mp3", ".opus", ".flac")
#: Folders of each package that hold music (sound effects elsewhere in the packages are left out).
MUSIC_FOLDER_MARKERS = ("/music/", "/musics/")


def _deb(package: str, cache: Path) -> Path:
    """The package's .deb in ``cache``, downloaded with ``apt-get download`` when missing."""
    found = sorted(cache.glob(f"{package}_*.deb"))
    if found:
        return found[-1]
    cache.mkdir(parents=True, exist_ok=True)
    try:
        subprocess.run(["apt-get", "download", package], cwd=cache, check=True, capture_output=True, text=True)
    except (OSError, subprocess.CalledProcessError) as exc:
        detail = getattr(exc, "stderr", "") or str(exc)
        raise RuntimeError(f"could not download the Debian package {package} ({detail.strip()[:200]}); run "
                           "`apt-get update` first, or put its .deb file into {cache}") from exc
    return sorted(cache.glob(f"{package}_*.deb"))[-1]


def _is_music(name: str) -> bool:
    lowered = name.lower()
    return lowered.endswith(MUSIC_SUFFIXES) and any(m in lowered for m in MUSIC_FOLDER_MARKERS)


def unpack_music(package: str, cache: str | Path) -> list[Path]:
    """The music files of a Debian package, unpacked once under ``cache/<package>/``, in a stable order."""
    cache = Path(cache)
    target = cache / package
    done = target / ".unpacked"
    if not done.exists():
        deb = _deb(package, cache / "debs")
        data = subprocess.run(["dpkg-deb", "--fsys-tarfile", str(deb)], check=True, capture_output=True).stdout
        import io

        with tarfile.open(fileobj=io.BytesIO(data)) as tar:
            members = [m for m in tar.getmembers() if m.isfile() and _is_music(m.name)]
            for m in members:
                m.name = m.name.lstrip("./")
            tar.extractall(target, members=members, filter="data")
        done.write_text("\n".join(sorted(m.name for m in members)))
    return sorted(p for p in target.rglob("*") if p.is_file() and p.suffix.lower() in MUSIC_SUFFIXES)


def real_recordings(split: str, cache: str | Path = ".cache/real-music") -> dict[str, list[Path]]:
    """{package: music files} of the ``'fit'`` or ``'eval'`` packages."""
    packages = {"fit": FIT_PACKAGES, "eval": EVAL_PACKAGES}[split]
    return {package: unpack_music(package, cache) for package in packages}


def fit_recording_role(path: str | Path) -> str:
    """'train' or 'val' for a recording of the FIT packages, by a blake2b hash of its package and file name
    (about two in three train): training mixes renderings over the 'train' ones only, and the validation
    excerpts (``excerpt_data``, ``--split val``) use the 'val' ones as background and distractors."""
    key = f"{Path(path).parent.name}/{Path(path).name}"
    return "val" if hashlib.blake2b(key.encode(), digest_size=8).digest()[0] % 3 == 0 else "train"
