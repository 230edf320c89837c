"""Locating the General MIDI soundfonts used to render MIDI files."""

from __future__ import annotations

import os
from pathlib import Path

import pretty_midi

#: Soundfont names and where they are installed (pretty_midi's own, Debian packages).
SOUNDFONTS: dict[str, tuple[str, ...]] = {
    "timgm6mb": (str(Path(pretty_midi.__file__).parent / "TimGM6mb.sf2"),),
    "fluidr3": ("/usr/share/sounds/sf2/FluidR3_GM.sf2",),
    "musescore": ("/usr/share/sounds/sf3/MuseScore_General.sf3", "/usr/share/sounds/sf2/MuseScore_General.sf2"),
}

#: The soundfont used to render the MIDI side of every comparison.
MIDI_SIDE_SOUNDFONT = "fluidr3"


def soundfont_path(name: str) -> str:
    """Path of the soundfont ``name`` (a key of SOUNDFONTS, or a path to an .sf2/.sf3 file)."""
    if os.path.isfile(name):
        return name
    for candidate in SOUNDFONTS.get(name, ()):
        if os.path.isfile(candidate):
            return candidate
    raise FileNotFoundError(
        f"soundfont {name!r} not found; install it (make setup installs fluid-soundfont-gm and "
        f"musescore-general-soundfont-small) or pass a path to an .sf2 file"
    )


def available_soundfonts() -> list[str]:
    """Names of the soundfonts installed on this machine."""
    found = []
    for name in SOUNDFONTS:
        try:
            soundfont_path(name)
            found.append(name)
        except FileNotFoundError:
            pass
    return found
