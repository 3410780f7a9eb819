"""Label matchers as Alertmanager defines them (pure): `=`, `!=`, `=~`, `!~`.

The same rules for the `alert` condition's label matchers and for Alertmanager silences, so a
silence the operator respects is exactly the one Alertmanager applies:
- a label the set lacks has the value "" (`team=""` matches a set without `team`, and
  `team!~".+"` does too);
- a regular expression is anchored at both ends (`=~"api|web"` does not match `api-2`);
- a silence (or a condition) matches a label set when every one of its matchers does."""

from __future__ import annotations

import re
from collections.abc import Iterable, Mapping
from dataclasses import dataclass, field

OPERATORS = ("=", "!=", "=~", "!~")


class MatcherError(ValueError):
    pass


@dataclass(frozen=True)
class Matcher:
    name: str
    value: str
    is_regex: bool = False
    is_equal: bool = True
    _pattern: re.Pattern | None = field(default=None, compare=False, repr=False)

    @classmethod
    def make(cls, name: str, value: str, *, is_regex: bool = False,
             is_equal: bool = True) -> Matcher:
        pattern = None
        if is_regex:
            try:
                # Alertmanager anchors the expression: ^(?:value)$
                pattern = re.compile(f"^(?:{value})$")
            except re.error as exc:
                raise MatcherError(f"{name}: {value!r} is not a regular expression: {exc}") \
                    from None
        return cls(name, value, is_regex, is_equal, pattern)

    @classmethod
    def from_api(cls, data: Mapping) -> Matcher:
        """A matcher as Alertmanager's API v2 writes it: name, value, isRegex, isEqual
        (isEqual absent means true: Alertmanager before 0.22 had no negative matchers)."""
        name, value = data.get("name"), data.get("value")
        if not isinstance(name, str) or not isinstance(value, str):
            raise MatcherError(f"a matcher needs a string name and value, got {dict(data)!r}")
        return cls.make(name, value, is_regex=bool(data.get("isRegex", False)),
                        is_equal=data.get("isEqual", True) is not False)

    @property
    def operator(self) -> str:
        return {(False, True): "=", (False, False): "!=", (True, True): "=~",
                (True, False): "!~"}[(self.is_regex, self.is_equal)]

    def matches(self, labels: Mapping[str, str]) -> bool:
        value = labels.get(self.name, "")
        if self.is_regex:
            pattern = self._pattern or re.compile(f"^(?:{self.value})$")
            hit = pattern.match(value) is not None
        else:
            hit = value == self.value
        return hit if self.is_equal else not hit

    def __str__(self) -> str:
        return f'{self.name}{self.operator}"{self.value}"'


def all_match(matchers: Iterable[Matcher], labels: Mapping[str, str]) -> bool:
    return all(m.matches(labels) for m in matchers)
