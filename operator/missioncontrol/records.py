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


def _camel(name: str) -> str:
    head, *rest = name.rstrip("_").split("_")
    return head + "".join(part.title() for part in rest)


def to_dict(obj: Any, *, nulls: bool = False) -> Any:
    """`nulls=True` writes None as null in objects (not in lists): a JSON merge patch then
    removes the field, where leaving it out would keep the old value."""
    if dataclasses.is_dataclass(obj):
        out = {}
        for f in dataclasses.fields(obj):
            value = getattr(obj, f.name)
            if value is None:
                if nulls:
                    out[_camel(f.name)] = None
                continue
            if f.metadata.get("time"):
                out[_camel(f.name)] = timeutil.iso_precise(value)
            else:
                out[_camel(f.name)] = to_dict(value, nulls=nulls)
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


def _convert(tp: Any, value: Any) -> Any:
    tp = _strip_optional(tp)
    origin = typing.get_origin(tp)
    if dataclasses.is_dataclass(tp) and isinstance(value, dict):
        return from_dict(tp, value)
    if origin in (list, tuple) and isinstance(value, list):
        (item,) = typing.get_args(tp)[:1] or (Any,)
        converted = [_convert(item, v) for v in value]
        return converted if origin is list else tuple(converted)
    if origin is dict and isinstance(value, dict):
        _, item = typing.get_args(tp)
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
    for f in dataclasses.fields(cls):
        key = _camel(f.name)
        if key not in data or data[key] is None:
            continue
        value = data[key]
        if f.metadata.get("time"):
            kwargs[f.name] = timeutil.parse(value)
        else:
            kwargs[f.name] = _convert(hints[f.name], value)
    return cls(**kwargs)
