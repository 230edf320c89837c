"""Which pieces each corpus trains on, validates on and holds out.

Every split goes by a blake2b hash of a piece's name (or of a tune family's), never by frame or clip: a
piece is in one split only, whatever else is in the corpus. The three corpora are split differently, each
function naming the one it serves; the shipped weights were trained, and their figures measured, on exactly
these splits, so none of them may change.

* hash encoders (``codes_data``): ``hash_piece_split`` holds out one piece in five; among the music21
  pieces left, ``is_hash_validation`` sets apart another hash bucket for choosing settings (rendered with
  the training pieces, never trained on); ``in_hash_split`` combines both, plus pieces held out by name.
* segment embedding (``structure_data``): ``segment_piece_split``, one piece in five each for held out and
  validation.
* version embedding (``versions_data``): ``version_family_split``, by tune family (every version of a
  tune in one split): a quarter held out, a tenth for validation.
"""

from __future__ import annotations

import hashlib

HELDOUT_SHARE = 5  # hash encoders: one piece in five is held out
MUSIC21_SOURCES = ("bach", "essen")  # name prefixes of the music21 pieces of the hash encoders' corpus


def _first_byte(text: str) -> int:
    return hashlib.blake2b(text.encode(), digest_size=8).digest()[0]


def hash_piece_split(name: str) -> str:
    """'heldout' for one piece in HELDOUT_SHARE (by a hash of its name), else 'train'."""
    return "heldout" if _first_byte(name) % HELDOUT_SHARE == 0 else "train"


def is_hash_validation(name: str) -> bool:
    """Music21 pieces of a second hash bucket: rendered with the training split (so that every other
    piece keeps its corruption seed) but never trained on; used to choose training settings."""
    return name.split("_", 1)[0] in MUSIC21_SOURCES and _first_byte(name) % HELDOUT_SHARE == 1


def in_hash_split(name: str, split: str, held_out_extra: set[str]) -> bool:
    """Whether ``name`` belongs to ``split``: 'heldout' (``hash_piece_split``, or named in
    ``held_out_extra``), 'train' (everything else, validation pieces included: ``training.codes.train``
    drops them) or 'val'."""
    held = hash_piece_split(name) == "heldout" or name in held_out_extra
    if split == "heldout":
        return held
    return not held and (split == "train" or is_hash_validation(name))


def segment_piece_split(name: str) -> str:
    """'heldout' for one piece in five, 'val' for another one in five, else 'train' (blake2b of the name)."""
    bucket = _first_byte(f"segment:{name}") % 5
    return "heldout" if bucket == 0 else "val" if bucket == 1 else "train"


def version_family_split(family: str) -> str:
    """'heldout' for about a quarter of the families, 'val' for a tenth, else 'train' (blake2b)."""
    bucket = _first_byte(f"cover:{family}") % 20
    return "heldout" if bucket < 5 else "val" if bucket < 7 else "train"
