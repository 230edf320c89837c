"""The corpora's splits: the shipped weights were trained and evaluated on exactly these, so they are pinned."""

from __future__ import annotations

import hashlib

from encoders.training.splits import (
    hash_piece_split,
    in_hash_split,
    is_hash_validation,
    segment_piece_split,
    version_family_split,
)

NAMES = [f"{prefix}_{i:04d}" for prefix in ("simutrans", "bach_bwv", "essen_x") for i in range(300)]


def _digest(values) -> str:
    return hashlib.blake2b("|".join(map(str, values)).encode(), digest_size=8).hexdigest()


def test_every_split_assigns_the_pieces_it_assigned_when_the_weights_were_trained():
    # Digests of the assignments of 900 names, computed with the functions the shipped weights were trained with.
    assert _digest(hash_piece_split(n) for n in NAMES) == "1a859f133d7361ed"
    assert _digest(is_hash_validation(n) for n in NAMES) == "b6ecfd8297bff971"
    assert _digest(in_hash_split(n, s, {"simutrans_0003"}) for n in NAMES
                   for s in ("train", "val", "heldout")) == "de4f53bf6360af87"
    assert _digest(segment_piece_split(n) for n in NAMES) == "a56a5aa7742dd388"
    assert _digest(version_family_split(n) for n in NAMES) == "2b6e54dd10a8cfa0"


def test_the_three_splits_differ():
    """One function per corpus: they give different assignments (salted hashes, other shares)."""
    hashes = [hash_piece_split(n) for n in NAMES]
    segments = [segment_piece_split(n) for n in NAMES]
    families = [version_family_split(n) for n in NAMES]
    assert hashes != segments != families and "val" not in hashes
    for labels, share in ((hashes, 0.2), (segments, 0.2), (families, 0.25)):
        assert abs(labels.count("heldout") / len(labels) - share) < 0.06
