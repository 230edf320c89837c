"""What every run must satisfy, checked from its tables before they are published.

A loss anywhere in the pipeline (a runner dropping elements, a join with an empty side, an early return)
shows up here as a broken count, and the run fails instead of publishing incomplete tables:

* every input appears in ``tracks`` exactly once;
* every ok MIDI file was queried, and every candidate that stage 2 kept reached the ranking or has an
  ``errors`` row (stage ``align``) saying why it was not aligned;
* each MIDI file has min(top-k, ranked candidates) rows in ``matches``;
* every version pair proposed for verification was verified, or has an ``errors`` row (stage ``verify``).
"""

from __future__ import annotations

import io
from collections import Counter
from collections.abc import Iterable

MAX_LISTED = 5
INVARIANT_MARK = "mirmatch: run invariant violated"


class RunInvariantError(RuntimeError):
    """A run's tables break an invariant: something was lost on the way. Nothing was published."""


def violations(*, n_inputs: int, top_k: int, tracks: list[dict], matches: list[dict], errors: list[dict],
               accounts: Iterable[dict], version_pairs: tuple[int, int]) -> list[str]:
    """The invariants (module docstring) that the rows of a run break, one sentence each.

    ``tracks`` rows need uri, modality and status; ``matches`` rows midi_uri; ``errors`` rows uri and stage;
    ``accounts`` are {midi_uri, survivors, ranked} records (``pipelines.match``); ``version_pairs`` is
    (proposed, verified).
    """
    found = []
    uris = Counter(t["uri"] for t in tracks)
    if len(uris) != n_inputs or any(n > 1 for n in uris.values()):
        repeated = sorted(u for u, n in uris.items() if n > 1)
        found.append(f"tracks has {len(tracks)} rows for {len(uris)} distinct uris, expected {n_inputs} inputs "
                     f"once each" + (f" (repeated: {_listed(repeated)})" if repeated else ""))
    survivors, ranked = Counter(), Counter()
    queried = set()
    for a in accounts:
        queried.add(a["midi_uri"])
        survivors[a["midi_uri"]] += a["survivors"]
        ranked[a["midi_uri"]] += a["ranked"]
    midi_ok = sorted(t["uri"] for t in tracks if t["modality"] == "midi" and t["status"] == "ok")
    not_queried = [u for u in midi_ok if u not in queried]
    if not_queried:
        found.append(f"{len(not_queried)} ok MIDI files never reached the candidate search: {_listed(not_queried)}")
    failed = Counter(e["uri"] for e in errors if e["stage"] == "align")
    rows = Counter(m["midi_uri"] for m in matches)
    lost = [u for u in midi_ok if u in queried and survivors[u] != ranked[u] + failed[u]]
    if lost:
        u = lost[0]
        found.append(f"{len(lost)} MIDI files lost candidates between the hash cascade and the ranking, e.g. "
                     f"{u}: {survivors[u]} kept by stage 2, {ranked[u]} ranked, {failed[u]} with an errors row")
    short = [u for u in midi_ok if u in queried and rows[u] != min(top_k, ranked[u])]
    if short:
        u = short[0]
        found.append(f"{len(short)} MIDI files have the wrong number of matches rows, e.g. {u}: {rows[u]} rows "
                     f"for {ranked[u]} ranked candidates and --top-k {top_k}")
    proposed, verified = version_pairs
    if proposed != verified and not any(e["stage"] == "verify" for e in errors):
        found.append(f"{proposed} version pairs were proposed but {verified} verified, with no errors row")
    return found


def _listed(items: list[str]) -> str:
    more = f", and {len(items) - MAX_LISTED} more" if len(items) > MAX_LISTED else ""
    return ", ".join(items[:MAX_LISTED]) + more


def read_rows(paths: Iterable[str], columns: list[str]) -> list[dict]:
    """``columns`` of the Parquet files at ``paths`` (any Beam file system), as rows."""
    import pyarrow.parquet as pq
    from apache_beam.io.filesystem import CompressionTypes
    from apache_beam.io.filesystems import FileSystems

    rows: list[dict] = []
    for path in sorted(paths):
        with FileSystems.open(path, compression_type=CompressionTypes.UNCOMPRESSED) as f:
            rows += pq.read_table(io.BytesIO(f.read()), columns=columns).to_pylist()
    return rows


def check_run(*, n_inputs: int, top_k: int, written: dict[str, list[str]], accounts: Iterable[dict],
              version_pairs: tuple[int, int]) -> None:
    """Raise RunInvariantError when the run's written tables (``written``: table -> its files) break an
    invariant."""
    found = violations(
        n_inputs=n_inputs, top_k=top_k, accounts=accounts, version_pairs=version_pairs,
        tracks=read_rows(written["tracks"], ["uri", "modality", "status"]),
        matches=read_rows(written["matches"], ["midi_uri"]),
        errors=read_rows(written["errors"], ["uri", "stage"]))
    if found:
        raise RunInvariantError(f"{INVARIANT_MARK}, nothing published: " + "; ".join(found)
                                + ". This is a bug or a runner fault: please report it with the runner options")
