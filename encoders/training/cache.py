"""Corpora cached under ``.cache/``: pickles read back, or built again when missing or unreadable."""

from __future__ import annotations

import pickle
from pathlib import Path


def read_cache(path: Path) -> object | None:
    """The object pickled at ``path``; None when there is none or it cannot be read (truncated, or written
    by an older layout of this code whose classes have moved since), and the caller builds it again."""
    if not path.exists():
        return None
    try:
        return pickle.loads(path.read_bytes())
    except (pickle.UnpicklingError, EOFError, ImportError, AttributeError) as exc:
        print(f"  cached corpus {path} is unreadable ({type(exc).__name__}: {exc}); building it again", flush=True)
        return None
