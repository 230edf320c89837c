"""Expanding input patterns (globs on Beam file systems, or @manifest files) to file paths."""

from __future__ import annotations

import sys

from apache_beam.io.filesystems import FileSystems

GLOB_CHARS = set("*?[")


def read_manifest(path: str) -> list[str]:
    """Paths listed one per line in a text manifest (blank lines and # comments ignored)."""
    with FileSystems.open(path) as f:
        lines = f.read().decode("utf-8").splitlines()
    return [line.strip() for line in lines if line.strip() and not line.lstrip().startswith("#")]


def expand_patterns(patterns: list[str]) -> list[str]:
    """Sorted, de-duplicated paths matched by ``patterns``.

    A literal path that does not exist is kept, so that it is reported as an unreadable input rather than
    silently dropped; a glob that matches nothing prints a warning.
    """
    paths: set[str] = set()
    for pattern in patterns:
        if pattern.startswith("@"):
            paths.update(expand_patterns(read_manifest(pattern[1:])))
            continue
        matched = [m.path for m in FileSystems.match([pattern])[0].metadata_list]
        if matched:
            paths.update(matched)
        elif GLOB_CHARS & set(pattern):
            print(f"mirmatch: warning: pattern {pattern!r} matched no files", file=sys.stderr)
        else:
            paths.add(pattern)
    return sorted(paths)
