"""Sharded exact search: the database split by track id, each shard searched alone, the top-K lists merged.

A database too large for one worker is split into shards by a hash of each track's id (:func:`shard_of`,
the same on every worker and every run); each shard has its own index over its rows in key order, every query
is searched in every shard, and :func:`merge_top_k` merges the per-shard top-K lists into the global top-K.
Ties are broken by key (the audio uri in the pipeline), so the merged lists equal one search over the whole
database in key order: faiss's exact searches keep the lowest positions among equal distances
(``tests/test_shards.py`` checks this against one index over everything).
"""

from __future__ import annotations

import hashlib
import heapq
import math
from collections.abc import Iterable
from typing import NamedTuple

import numpy as np

#: Database rows per shard when no shard count is given: 100k 256-bit codes are 3.2 MB of codes, a flat
#: search of a 3-minute MIDI query over them takes about a millisecond, and a million recordings make 10 shards.
DEFAULT_SHARD_ROWS = 100_000


class Hit(NamedTuple):
    """One database row found for a query: its distance, then the key ties are broken by, then the rest."""

    distance: int
    key: str
    track_id: str


def shard_of(track_id: str, n_shards: int) -> int:
    """The shard (0 .. n_shards - 1) of a track, from a hash of its id: deterministic across processes and runs
    (unlike Python's ``hash``), and even for any ids."""
    if n_shards < 1:
        raise ValueError(f"n_shards must be 1 or more, got {n_shards}")
    digest = hashlib.blake2b(track_id.encode("utf-8"), digest_size=8).digest()
    return int.from_bytes(digest, "little") % n_shards


def shard_count(n_rows: int, shards: int | None = None, rows_per_shard: int = DEFAULT_SHARD_ROWS) -> int:
    """``shards`` when given, else one shard per ``rows_per_shard`` database rows (at least one)."""
    if shards is not None:
        if shards < 1:
            raise ValueError(f"shards must be 1 or more, got {shards}")
        return shards
    return max(1, math.ceil(n_rows / rows_per_shard))


def search_shard(codes: np.ndarray | list[np.ndarray], keys: list[str], track_ids: list[str],
                 queries: np.ndarray | list[np.ndarray], k: int) -> list[list[Hit]]:
    """The top-``k`` rows of one shard for each query, best first, ties by key.

    Parameters
    ----------
    codes : np.ndarray, shape (n, bytes), uint8: the shard's packed track codes, rows in ``keys`` order
        (sorted), so that faiss's lowest-position-first tie order is key order; or a list of n (r_i, bytes)
        arrays when tracks have several codes (window codes): a track's distance is then the least over every
        pair of query and track codes (``hashing.search.MultiCodeIndex``, ties by position, i.e. by key)
    keys, track_ids : lists of n str: each row's key (unique, sorted) and track id
    queries : np.ndarray, shape (q, bytes), uint8, or a list of q (r, bytes) arrays
    k : int

    Returns
    -------
    list of q lists of at most k :class:`Hit`
    """
    from hashing.search import HammingIndex, MultiCodeIndex

    if any(a >= b for a, b in zip(keys, keys[1:], strict=False)):
        raise ValueError("keys must be unique and sorted")
    if not len(codes) or not len(queries):
        return [[] for _ in range(len(queries))]
    codes, queries = _single_rows(codes), _single_rows(queries)
    if isinstance(codes, list) or isinstance(queries, list):  # several codes for some track: one query at a time
        index = MultiCodeIndex(codes)  # an (n, bytes) array is one code per track
        found = [index.search(query, k) for query in queries]
        return [[Hit(int(d), keys[i], track_ids[i]) for d, i in zip(drow, irow, strict=True)]
                for drow, irow in found]
    distances, indices = HammingIndex(codes).search(queries, k)
    return [[Hit(int(d), keys[i], track_ids[i]) for d, i in zip(drow, irow, strict=True)]
            for drow, irow in zip(distances, indices, strict=True)]


def _single_rows(codes: np.ndarray | list[np.ndarray]) -> np.ndarray | list[np.ndarray]:
    """One (n, bytes) array when every entry has exactly one code, else the list of (r_i, bytes) arrays."""
    if isinstance(codes, np.ndarray):
        return codes
    blocks = [np.atleast_2d(np.asarray(c, dtype=np.uint8)) for c in codes]
    if all(len(b) == 1 for b in blocks):
        return np.concatenate(blocks)
    return blocks


def merge_top_k(lists: Iterable[list[Hit]], k: int) -> list[Hit]:
    """The ``k`` best of several top-K lists (each best first), ordered by (distance, key): the global top-K
    when each list holds its shard's top-K. Associative and commutative, so a combiner may merge in any order."""
    return list(heapq.nsmallest(k, {hit.key: hit for hits in lists for hit in hits}.values()))
