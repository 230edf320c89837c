"""Binary codes of a track for the matching cascade: 32-bit frame codes and a 256-bit track code.

* ``bits``: code sizes, packing and padding, shared by every encoder;
* ``learned``: the learned encoders (one network per modality), the default;
* ``baseline``: signs of random projections, the non-learned baseline.

``load_hasher`` returns the encoder named by ``--model``; every encoder has ``frame_codes`` and
``track_code`` (the learned one also ``codes``, both from one forward pass).
"""

from __future__ import annotations

from encoders.codes.baseline import RandomProjectionHasher


def load_hasher(model: str | None = None):
    """The hash model named by ``--model``: the shipped learned encoders by default (``None``, "default",
    "learned"), a path to trained weights (``mirmatch train``), or the non-learned baseline
    ("random-projection" or "random-projection:SEED")."""
    if model in ("random-projection",):
        return RandomProjectionHasher()
    if model and model.startswith("random-projection:"):
        return RandomProjectionHasher(seed=int(model.split(":", 1)[1]))
    from encoders.codes.learned import LearnedHasher  # torch is imported only when needed

    if model in (None, "", "default", "learned"):
        return LearnedHasher()
    if model.endswith(".pt"):
        return LearnedHasher(model)
    raise ValueError(f"unknown model {model!r}; use 'learned', a .pt weights file, 'random-projection' or "
                     f"'random-projection:SEED'")
