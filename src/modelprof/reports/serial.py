"""The JSON form of every report, derived from the dataclasses' own fields. No torch here.

One generic pair, :func:`to_json` and :func:`from_json`, reads a dataclass's fields and their type hints; what a
field's JSON looks like beyond its name and type is said in the field's metadata, once:

- ``field(metadata=key("bytes"))``: the JSON key differs from the field's name;
- ``field(metadata=flat(...))``: the value's keys sit in the owner's object (a latency's statistics in a batch
  result; a row's metric values in the row), with an optional encoder and decoder of that flattened part;
- ``field(metadata=codec(encode, decode))``: a value stored by another name (a limit by its key);
- ``field(metadata=omit_none())``: left out of the JSON when None.

What follows from the fields (a median in ms, a growth exponent, whether a check passed) is written by the class's
``json_derived(parent)``, after the fields, and never read back: reading a report rebuilds it from its fields alone,
so ``from_json(to_json(r)) == r`` holds for every kind, and the derived keys of an old file are recomputed.

Why not cattrs or pydantic: the core depends on torch, click and rich only, and both would still need a hook for
each of the cases above. The generic functions are 90 lines.
"""

from __future__ import annotations

import dataclasses
import functools
import types
import typing
from collections.abc import Callable, Mapping
from enum import Enum
from typing import Any, ClassVar

#: Version of the JSON form of every report kind; bumped when a key changes meaning or goes away (the upgrades of
#: older versions are in :mod:`modelprof.reports.catalog`).
#: 2: the peaks' MAdd/s are ``madd_per_s`` (1: ``flops``), and a fit report lists its fits under ``fits`` only.
#: 3: times are kept in seconds as measured (``samples_s``, ``forward_median_s``; the ``*_ms`` keys stay, derived),
#: and a stats report's cross-check is under ``crosscheck`` (``tool``, ``tool_flops``, ``tool_madd``; 2: ``backend``,
#: ``backend_flops``, ``backend_madd``).
SCHEMA_VERSION = 3

_META = "modelprof.json"


def key(name: str) -> dict[str, Any]:
    """Field metadata: the JSON key is ``name``."""
    return {_META: {"key": name}}


def flat(encode: Callable[[Any], dict[str, Any]] | None = None,
         decode: Callable[[dict[str, Any]], Any] | None = None) -> dict[str, Any]:
    """Field metadata: the value's keys are merged into the owner's object; ``decode`` gets the owner's whole
    object back."""
    return {_META: {"flat": True, "encode": encode, "decode": decode}}


def codec(encode: Callable[[Any], Any], decode: Callable[[Any], Any], name: str | None = None) -> dict[str, Any]:
    """Field metadata: the value is written as ``encode(value)`` and read as ``decode(json)``."""
    return {_META: {"encode": encode, "decode": decode, **({"key": name} if name else {})}}


def omit_none(name: str | None = None) -> dict[str, Any]:
    """Field metadata: no key at all when the value is None."""
    return {_META: {"omit_none": True, **({"key": name} if name else {})}}


class Saved:
    """A dataclass with a JSON form: ``to_dict()`` and ``from_dict()`` are :func:`to_json` and :func:`from_json`.

    A class with a ``KIND`` is a report kind: its JSON starts with ``kind`` and ``schema_version``.
    """

    KIND: ClassVar[str] = ""

    def json_derived(self, parent: Any = None) -> dict[str, Any]:
        """Keys computed from the fields (and from the object holding this one, ``parent``); written, never read."""
        return {}

    def to_dict(self) -> dict[str, Any]:
        """The JSON form (a dict of JSON values)."""
        return to_json(self)

    @classmethod
    def from_dict(cls, data: dict[str, Any]) -> Any:
        """The object back from its JSON form."""
        return from_json(cls, data)


def _meta(f: dataclasses.Field) -> dict[str, Any]:
    return f.metadata.get(_META, {})


def _key(f: dataclasses.Field) -> str:
    return _meta(f).get("key") or f.name


def to_json(value: Any, parent: Any = None) -> Any:
    """``value`` as JSON values: dataclasses become objects (fields, then derived keys), tuples lists."""
    if dataclasses.is_dataclass(value) and not isinstance(value, type):
        return _object_to_json(value, parent)
    if isinstance(value, Enum):
        return value.value
    if isinstance(value, tuple) and hasattr(value, "_fields"):  # a NamedTuple: an object
        return {name: to_json(v, parent) for name, v in zip(value._fields, value, strict=True)}
    if isinstance(value, tuple | list):
        return [to_json(v, parent) for v in value]
    if isinstance(value, Mapping):
        return {k: to_json(v, parent) for k, v in value.items()}
    return value


def _object_to_json(value: Any, parent: Any) -> dict[str, Any]:
    out: dict[str, Any] = {}
    if getattr(value, "KIND", ""):
        out.update(kind=value.KIND, schema_version=SCHEMA_VERSION)
    for f in dataclasses.fields(value):
        meta, item = _meta(f), getattr(value, f.name)
        if meta.get("omit_none") and item is None:
            continue
        encoded = meta["encode"](item) if meta.get("encode") else to_json(item, value)
        if meta.get("flat"):
            out.update(encoded)
        else:
            out[_key(f)] = encoded
    if isinstance(value, Saved):
        out.update(to_json(value.json_derived(parent)))
    return out


def from_json(cls: Any, data: Any) -> Any:
    """A value of type ``cls`` back from its JSON form (dataclasses by their fields' type hints)."""
    if data is None:
        return None
    origin, args = typing.get_origin(cls), typing.get_args(cls)
    if origin in (typing.Union, types.UnionType):
        return from_json(next(a for a in args if a is not type(None)), data)
    if dataclasses.is_dataclass(cls):
        return cls(**_fields_from_json(cls, data))
    if isinstance(cls, type) and issubclass(cls, tuple) and hasattr(cls, "_fields"):  # a NamedTuple
        hints = _hints(cls)
        return cls(**{name: from_json(hints[name], data[name]) for name in cls._fields})
    if origin is tuple:
        if len(args) == 2 and args[1] is Ellipsis:
            return tuple(from_json(args[0], v) for v in data)
        return tuple(from_json(a, v) for a, v in zip(args, data, strict=True))
    if origin in (dict, Mapping):
        return {k: from_json(args[1], v) for k, v in data.items()}
    if isinstance(cls, type) and issubclass(cls, Enum):
        return cls(data)
    return data


def _fields_from_json(cls: type, data: dict[str, Any]) -> dict[str, Any]:
    """The init arguments of dataclass ``cls`` from its JSON object (fields with no key keep their defaults)."""
    hints, values = _hints(cls), {}
    for f in dataclasses.fields(cls):
        meta = _meta(f)
        if meta.get("flat"):
            values[f.name] = meta["decode"](data) if meta.get("decode") else from_json(hints[f.name], data)
        elif f.init and _key(f) in data:
            raw = data[_key(f)]
            values[f.name] = meta["decode"](raw) if meta.get("decode") else from_json(hints[f.name], raw)
        elif f.default is dataclasses.MISSING and f.default_factory is dataclasses.MISSING:
            raise KeyError(_key(f))
    return values


@functools.cache
def _hints(cls: type) -> dict[str, Any]:
    return typing.get_type_hints(cls)
