"""Dataclasses to and from the camelCase dicts of an object's status.

A field marked with `stamp()` is a time: seconds since the epoch in Python, RFC 3339 in the
cluster. Nested dataclasses, lists of them and dicts of them round-trip; None is left out."""

from __future__ import annotations

import dataclasses
import functools
import types
import typing
from typing import Any

from . import timeutil


def stamp(default: Any = None) -> Any:
    return dataclasses.field(default=default, metadata={"time": True})


@functools.cache
def _camel(name: str) -> str:
    head, *rest = name.rstrip("_").split("_")
    return head + "".join(part.title() for part in rest)


@functools.cache
def _fields(cls: type) -> tuple[tuple[str, str, bool], ...]:
    """(name, camelCase key, is a time) of each field: worked out once per class (a guard pass
    converts every target's state, so this is the hot path of an idle fleet)."""
    return tuple((f.name, _camel(f.name), bool(f.metadata.get("time")))
                 for f in dataclasses.fields(cls))


def to_dict(obj: Any, *, nulls: bool = False) -> Any:
    """`nulls=True` writes None as null in objects (not in lists): a JSON merge patch then
    removes the field, where leaving it out would keep the old value."""
    if hasattr(type(obj), "__dataclass_fields__"):
        out = {}
        for name, key, is_time in _fields(type(obj)):
            value = getattr(obj, name)
            if value is None:
                if nulls:
                    out[key] = None
                continue
            out[key] = timeutil.iso_precise(value) if is_time else to_dict(value, nulls=nulls)
        return out
    if isinstance(obj, list | tuple):
        return [to_dict(v) for v in obj]
    if isinstance(obj, dict):
        return {k: to_dict(v, nulls=nulls) for k, v in obj.items()}
    return obj


@functools.cache
def _hints(cls: type) -> dict[str, Any]:
    return typing.get_type_hints(cls)


def _strip_optional(tp: Any) -> Any:
    if typing.get_origin(tp) in (typing.Union, types.UnionType):
        args = [a for a in typing.get_args(tp) if a is not type(None)]
        if len(args) == 1:
            return args[0]
    return tp


@functools.cache
def _shape(tp: Any) -> tuple[Any, Any, tuple, bool]:
    """A field's type as _convert reads it, once per type: (the type without Optional, its
    origin, its arguments, whether it is a dataclass)."""
    tp = _strip_optional(tp)
    return tp, typing.get_origin(tp), typing.get_args(tp), dataclasses.is_dataclass(tp)


def _convert(tp: Any, value: Any) -> Any:
    tp, origin, args, is_dataclass = _shape(tp)
    if is_dataclass and isinstance(value, dict):
        return from_dict(tp, value)
    if origin in (list, tuple) and isinstance(value, list):
        (item,) = args[:1] or (Any,)
        converted = [_convert(item, v) for v in value]
        return converted if origin is list else tuple(converted)
    if origin is dict and isinstance(value, dict):
        _, item = args
        return {k: _convert(item, v) for k, v in value.items()}
    if tp is float and isinstance(value, int | float | str):
        return float(value)
    if tp is int and isinstance(value, int | float | str):
        return int(value)
    return value


def from_dict(cls: type, data: dict | None) -> Any:
    data = data or {}
    hints = _hints(cls)
    kwargs = {}
    for name, key, is_time in _fields(cls):
        value = data.get(key)
        if value is None:
            continue
        kwargs[name] = timeutil.parse(value) if is_time else _convert(hints[name], value)
    return cls(**kwargs)
