"""Input patterns (globs on Beam file systems, or @manifest files) to file paths: matched inside the pipeline
(``ReadInputs``), or on the launcher (``expand_patterns``, for small lists)."""

from __future__ import annotations

import os
import sys
from collections.abc import Iterable, Iterator
from pathlib import Path, PurePosixPath

import apache_beam as beam
from apache_beam.io.filesystems import FileSystems
from apache_beam.metrics import Metrics

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


def choose_modality(path: str, modalities: Iterable[str]) -> str:
    """The modality of a path given under ``modalities``: one given as both is MIDI iff it has a MIDI suffix."""
    from encoders.media import MIDI_EXTENSIONS

    given = set(modalities)
    if "midi" in given and ("audio" not in given or PurePosixPath(path).suffix.lower() in MIDI_EXTENSIONS):
        return "midi"
    return "audio"


def _absolute(path: str, cwd: str) -> str:
    """A local path made absolute against the launcher's working directory; other schemes unchanged."""
    if not is_local(path):
        return path
    path = path.removeprefix("file://")
    return os.path.normpath(os.path.join(cwd, path))


def manifest_patterns(element: tuple[str, str], cwd: str) -> Iterator[tuple[str, str]]:
    """(pattern, modality) -> itself, or for ``@manifest`` each pattern it lists (nested manifests too), read
    line by line: a manifest of a million paths is never held whole."""
    pattern, modality = element
    if not pattern.startswith("@"):
        yield _absolute(pattern, cwd), modality
        return
    with FileSystems.open(_absolute(pattern[1:], cwd)) as f:
        for raw in iter(f.readline, b""):
            line = raw.decode("utf-8").strip()
            if line and not line.startswith("#"):
                yield from manifest_patterns((line, modality), cwd)


def match_pattern(element: tuple[str, str]) -> Iterator[tuple[str, str]]:
    """(pattern, modality) -> (path, modality) for each file a glob matches (``FileSystems.match``, what
    ``fileio.MatchAll`` runs); a literal path is kept whether or not it exists, so that a missing one is
    reported as an unreadable input rather than silently dropped; a glob that matches nothing is logged."""
    pattern, modality = element
    if not GLOB_CHARS & set(pattern):
        yield pattern, modality
        return
    matched = FileSystems.match([pattern])[0].metadata_list
    if not matched:
        print(f"mirmatch: warning: pattern {pattern!r} matched no files", file=sys.stderr)
    for metadata in matched:
        yield (os.path.abspath(metadata.path) if is_local(metadata.path) else metadata.path), modality


class ReadInputs(beam.PTransform):
    """``--audio`` and ``--midi`` patterns -> one (path, modality) per distinct input file, matched inside
    the pipeline: the job graph holds the patterns only, so its size does not depend on the number of
    files; manifests are read, and globs matched, by the workers (the same paths as ``expand_patterns``)."""

    def __init__(self, audio: list[str], midi: list[str], cwd: str | None = None):
        super().__init__()
        self.patterns = [(p, "audio") for p in audio] + [(p, "midi") for p in midi]
        self.cwd = cwd or os.getcwd()

    def expand(self, pbegin: beam.pvalue.PBegin) -> beam.PCollection:
        inputs = Metrics.counter("mirmatch", "inputs")

        def distinct(element: tuple[str, Iterable[str]]) -> tuple[str, str]:
            inputs.inc()
            return element[0], choose_modality(element[0], element[1])

        return (
            pbegin
            | "Patterns" >> beam.Create(self.patterns)
            | "Read manifests" >> beam.FlatMap(manifest_patterns, self.cwd)
            | "Spread patterns" >> beam.Reshuffle()
            | "Match patterns" >> beam.FlatMap(match_pattern)
            | "By path" >> beam.GroupByKey()
            | "Distinct paths" >> beam.Map(distinct)
        )
