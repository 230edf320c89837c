"""Typed data for the state folder: a dataclass written as one ``.npz`` file, read back without running code.

A value (a dataclass of numpy arrays, numbers, strings, None, lists/tuples/str-keyed dicts of those, and
nested dataclasses of those) is split into its arrays and a small JSON header that describes the rest:

    header   uint8 array: UTF-8 JSON {"format": FORMAT, "value": tree}
    a0 .. aN the numpy arrays (and numpy scalars, as 0-d arrays), each with its own dtype and shape

In the tree a dataclass is ``{"@type": "module.Class", "fields": {...}}``, an array ``{"@array": "a3"}``, a
tuple ``{"@tuple": [...]}`` and a dict ``{"@dict": {...}}``; JSON numbers, strings, null and lists stand for
themselves. Fields are read generically from ``dataclasses.fields``, so a field added to a class needs no
change here; an entry whose fields differ from the class's (written by another version) is rejected.

Reading uses ``numpy.load(allow_pickle=False)`` and ``json``: no pickle, no import by name. A dataclass
named in the header is built only if it is one of the ``allowed`` classes the reader passes; anything else
(an unknown class, another format number, object arrays, garbage bytes) raises ``StateFormatError``.
"""

from __future__ import annotations

import dataclasses
import io
import json
import zipfile
from collections.abc import Iterable

import numpy as np

#: Bumped when the layout of an entry changes; entries of another format are recomputed.
FORMAT = 1


class StateFormatError(ValueError):
    """A state entry that is not a valid typed entry of this format (damaged, tampered or from another version)."""


def type_name(cls: type) -> str:
    return f"{cls.__module__}.{cls.__qualname__}"


def dumps(value: object) -> bytes:
    """``value`` as the bytes of one ``.npz`` file (see the module docstring)."""
    arrays: dict[str, np.ndarray] = {}
    tree = {"format": FORMAT, "value": _encode(value, arrays)}
    buf = io.BytesIO()
    header = np.frombuffer(json.dumps(tree, allow_nan=True).encode(), dtype=np.uint8)
    np.savez(buf, header=header, **arrays)
    return buf.getvalue()


def loads(data: bytes, allowed: Iterable[type]) -> object:
    """The value written by ``dumps``; dataclasses only of the ``allowed`` classes. Raises StateFormatError."""
    types = {type_name(cls): cls for cls in allowed}
    try:
        with np.load(io.BytesIO(data), allow_pickle=False) as npz:
            arrays = {name: npz[name] for name in npz.files}
    except (OSError, ValueError, EOFError, zipfile.BadZipFile, KeyError) as exc:  # not an npz, or object arrays
        raise StateFormatError(f"not a typed state entry ({type(exc).__name__}: {exc})") from exc
    header = arrays.pop("header", None)
    if header is None or header.dtype != np.uint8 or header.ndim != 1:
        raise StateFormatError("no header")
    try:
        tree = json.loads(header.tobytes().decode())
    except (UnicodeDecodeError, json.JSONDecodeError) as exc:
        raise StateFormatError(f"unreadable header: {exc}") from exc
    if not isinstance(tree, dict) or tree.get("format") != FORMAT:
        raise StateFormatError(f"entry format {tree.get('format') if isinstance(tree, dict) else '?'}, "
                               f"expected {FORMAT}")
    return _decode(tree.get("value"), arrays, types)


def _encode(value: object, arrays: dict[str, np.ndarray]) -> object:
    if value is None or isinstance(value, bool | int | float | str) and not isinstance(value, np.generic):
        return value
    if isinstance(value, np.ndarray | np.generic):
        array = np.asarray(value)
        if array.dtype.hasobject:
            raise TypeError("object arrays cannot be kept as typed state")
        name = f"a{len(arrays)}"
        arrays[name] = array
        return {"@array": name, "scalar": True} if isinstance(value, np.generic) else {"@array": name}
    if dataclasses.is_dataclass(value) and not isinstance(value, type):
        return {"@type": type_name(type(value)),
                "fields": {f.name: _encode(getattr(value, f.name), arrays) for f in dataclasses.fields(value)}}
    if isinstance(value, tuple):
        return {"@tuple": [_encode(v, arrays) for v in value]}
    if isinstance(value, list):
        return [_encode(v, arrays) for v in value]
    if isinstance(value, dict) and all(isinstance(k, str) for k in value):
        return {"@dict": {k: _encode(v, arrays) for k, v in value.items()}}
    raise TypeError(f"{type(value).__name__} cannot be kept as typed state")


def _decode(tree: object, arrays: dict[str, np.ndarray], types: dict[str, type]) -> object:
    if tree is None or isinstance(tree, bool | int | float | str):
        return tree
    if isinstance(tree, list):
        return [_decode(v, arrays, types) for v in tree]
    if not isinstance(tree, dict) or len(tree) == 0:
        raise StateFormatError("malformed entry")
    if "@array" in tree:
        array = arrays.get(tree["@array"]) if isinstance(tree["@array"], str) else None
        if array is None:
            raise StateFormatError(f"missing array {tree['@array']!r}")
        return array[()] if tree.get("scalar") else array
    if "@tuple" in tree and isinstance(tree["@tuple"], list):
        return tuple(_decode(v, arrays, types) for v in tree["@tuple"])
    if "@dict" in tree and isinstance(tree["@dict"], dict):
        return {k: _decode(v, arrays, types) for k, v in tree["@dict"].items()}
    if "@type" in tree and isinstance(tree.get("fields"), dict):
        cls = types.get(tree["@type"])
        if cls is None:
            raise StateFormatError(f"class {tree['@type']!r} is not allowed here")
        names = {f.name for f in dataclasses.fields(cls)}
        if set(tree["fields"]) != names:
            raise StateFormatError(f"{tree['@type']} entry has fields {sorted(tree['fields'])}, "
                                   f"this version has {sorted(names)}")
        values = {k: _decode(v, arrays, types) for k, v in tree["fields"].items()}
        init = {f.name for f in dataclasses.fields(cls) if f.init}
        obj = cls(**{k: v for k, v in values.items() if k in init})
        for k in names - init:
            object.__setattr__(obj, k, values[k])
        return obj
    raise StateFormatError("malformed entry")
