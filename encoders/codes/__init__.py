"""Binary codes of a track for the matching cascade: 32-bit frame codes and a 256-bit track code.

* ``bits``: code sizes, packing and padding, shared by every encoder;
* ``learned``: the learned encoders (one network per modality), the default;
* ``baseline``: signs of random projections, the non-learned baseline.

``load_hasher`` returns the encoder named by ``--model``; every encoder has ``frame_codes`` and
``track_code`` (the learned one also ``codes``, both from one forward pass).
"""

from __future__ import annotations

from encoders.codes.baseline import RandomProjectionHasher

#: Appended to any ``--model`` name, turns on the stage-1 window codes (``bits.code_windows``).
WINDOWS_SUFFIX = "+windows"


def load_hasher(model: str | None = None):
    """The hash model named by ``--model``: the shipped learned encoders by default (``None``, "default",
    "learned"), a path to trained weights (``mirmatch train``), or the non-learned baseline
    ("random-projection" or "random-projection:SEED"). Any of them followed by "+windows" also gives each
    track over ~37 s the track codes of its 30-second windows, which stage 1 searches too (off by default:
    with learned-hash-v4 they did not help 30-second excerpts, and cost 17-20% more network time; see
    ``encoders/weights/MODEL_CARD.md``)."""
    windows = bool(model) and model.endswith(WINDOWS_SUFFIX)
    if windows:
        model = model[: -len(WINDOWS_SUFFIX)]
    if model in ("random-projection",):
        return RandomProjectionHasher(windows=windows)
    if model and model.startswith("random-projection:"):
        return RandomProjectionHasher(seed=int(model.split(":", 1)[1]), windows=windows)
    from encoders.codes.learned import LearnedHasher  # torch is imported only when needed

    if model in (None, "", "default", "learned"):
        return LearnedHasher(windows=windows)
    if model.endswith(".pt"):
        return LearnedHasher(model, windows=windows)
    raise ValueError(f"unknown model {model!r}; use 'learned', a .pt weights file, 'random-projection' or "
                     f"'random-projection:SEED'")
