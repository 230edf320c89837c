"""Expanding input patterns (globs on Beam file systems, or @manifest files) to file paths."""

from __future__ import annotations

import os
import sys
from pathlib import Path

from apache_beam.io.filesystems import FileSystems

GLOB_CHARS = set("*?[")


def is_local(path: str) -> bool:
    """True for a path on a local disk (no ``scheme://``)."""
    return FileSystems.get_scheme(path) in (None, "file")


def table_uri(path: str) -> str:
    """The URI a table row names a file by: ``file:///abs/path`` (RFC 8089, special characters percent-encoded)
    for a local path, whatever directory the run started in; ``gs://...`` and other schemes unchanged.
    Beam opens the path, not this URI; a track's identity is its content hash, never its URI."""
    if not is_local(path):
        return path
    return Path(os.path.abspath(path.removeprefix("file://"))).as_uri()


def path_of_uri(uri: str) -> str:
    """The path Beam's file systems open for a table's URI: ``file:///abs/path`` back to ``/abs/path``
    (percent-decoded); other schemes unchanged. The inverse of ``table_uri``."""
    if uri.startswith("file://"):
        from urllib.parse import unquote, urlparse

        return unquote(urlparse(uri).path)
    return uri


def read_manifest(path: str) -> list[str]:
    """Paths listed one per line in a text manifest (blank lines and # comments ignored)."""
    with FileSystems.open(path) as f:
        lines = f.read().decode("utf-8").splitlines()
    return [line.strip() for line in lines if line.strip() and not line.lstrip().startswith("#")]


def expand_patterns(patterns: list[str]) -> list[str]:
    """Sorted, de-duplicated paths matched by ``patterns`` (local ones made absolute).

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
    return sorted(os.path.abspath(p) if is_local(p) else p for p in paths)
