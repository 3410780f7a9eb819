"""Reading Kubernetes objects into typed values, with errors that name the field.

Every parse goes through a `Reader`, which knows its path (`spec.trigger.anyOf[1].threshold`)
so that a bad object is reported as "spec.trigger.anyOf[1].threshold.query: required"."""

from __future__ import annotations

from collections.abc import Iterator, Mapping
from typing import Any

from . import durations

_MISSING = object()


class ModelError(ValueError):
    """A resource does not say what Mission Control needs; the message names the field."""

    def __init__(self, path: str, problem: str) -> None:
        super().__init__(f"{path}: {problem}" if path else problem)
        self.path = path
        self.problem = problem


class Reader:
    def __init__(self, data: Any, path: str = "") -> None:
        if data is None:
            data = {}
        if not isinstance(data, Mapping):
            raise ModelError(path, f"expected an object, got {type(data).__name__}")
        self.data = data
        self.path = path

    def _at(self, key: str) -> str:
        return f"{self.path}.{key}" if self.path else key

    def has(self, key: str) -> bool:
        return self.data.get(key) is not None

    def _get(self, key: str, default: Any) -> tuple[Any, bool]:
        value = self.data.get(key)
        if value is None:
            if default is _MISSING:
                raise ModelError(self._at(key), "required")
            return default, False
        return value, True

    def raw(self, key: str, default: Any = _MISSING) -> Any:
        return self._get(key, default)[0]

    def str(self, key: str, default: Any = _MISSING, *, choices: tuple[str, ...] = ()) -> Any:
        value, given = self._get(key, default)
        if not given:
            return value
        if not isinstance(value, str):
            raise ModelError(self._at(key), f"expected a string, got {value!r}")
        if value == "" and default is _MISSING:
            raise ModelError(self._at(key), "required (empty)")
        if choices and value not in choices:
            raise ModelError(self._at(key), f"{value!r} is not one of {', '.join(choices)}")
        return value

    def int(self, key: str, default: Any = _MISSING, *, minimum: int | None = None) -> Any:
        value, given = self._get(key, default)
        if not given:
            return value
        if isinstance(value, bool) or not isinstance(value, int):
            raise ModelError(self._at(key), f"expected an integer, got {value!r}")
        if minimum is not None and value < minimum:
            raise ModelError(self._at(key), f"must be at least {minimum}, got {value}")
        return value

    def float(self, key: str, default: Any = _MISSING) -> Any:
        value, given = self._get(key, default)
        if not given:
            return value
        if isinstance(value, bool):
            raise ModelError(self._at(key), f"expected a number, got {value!r}")
        try:
            return float(value)
        except (TypeError, ValueError):
            raise ModelError(self._at(key), f"expected a number, got {value!r}") from None

    def bool(self, key: str, default: bool = False) -> bool:
        value, _ = self._get(key, default)
        if not isinstance(value, bool):
            raise ModelError(self._at(key), f"expected true or false, got {value!r}")
        return value

    def duration(self, key: str, default: Any = _MISSING, *,
                 bounds: tuple[float, float] | None = None) -> Any:
        """Seconds, from a Go-style duration string (a string default is parsed too), within
        `bounds` (lowest, highest) when given: the same range the CRD's rule enforces, for
        objects stored before it did."""
        value, _ = self._get(key, default)
        if value is None or isinstance(value, int | float):
            return value
        try:
            seconds = durations.parse(value)
        except ValueError as exc:
            raise ModelError(self._at(key), str(exc)) from None
        if bounds is not None and not bounds[0] <= seconds <= bounds[1]:
            raise ModelError(self._at(key), f"{value!r} is out of range: use a duration from "
                                            f"{durations.exact(bounds[0])} to "
                                            f"{durations.exact(bounds[1])}")
        return seconds

    def obj(self, key: str, *, required: bool = True) -> Reader | None:
        value = self.data.get(key)
        if value is None and not required:
            return None
        if value is None:
            raise ModelError(self._at(key), "required")
        return Reader(value, self._at(key))

    def items(self, key: str, *, required: bool = False) -> Iterator[Reader]:
        value = self.data.get(key)
        if value is None:
            if required:
                raise ModelError(self._at(key), "required: a list with at least one entry")
            return
        if not isinstance(value, list):
            raise ModelError(self._at(key), f"expected a list, got {type(value).__name__}")
        if required and not value:
            raise ModelError(self._at(key), "must have at least one entry")
        for index, item in enumerate(value):
            yield Reader(item, f"{self._at(key)}[{index}]")

    def strings(self, key: str, *, required: bool = False,
                choices: tuple[str, ...] = ()) -> tuple[str, ...]:
        value = self.data.get(key)
        if value is None:
            if required:
                raise ModelError(self._at(key), "required: a list with at least one entry")
            return ()
        if not isinstance(value, list) or not all(isinstance(v, str) for v in value):
            raise ModelError(self._at(key), "expected a list of strings")
        if required and not value:
            raise ModelError(self._at(key), "must have at least one entry")
        for v in value:
            if choices and v not in choices:
                raise ModelError(self._at(key), f"{v!r} is not one of {', '.join(choices)}")
        return tuple(value)

    def mapping(self, key: str) -> dict[str, str]:
        value = self.data.get(key) or {}
        if not isinstance(value, Mapping):
            raise ModelError(self._at(key), "expected a map of strings")
        return {str(k): str(v) for k, v in value.items()}
