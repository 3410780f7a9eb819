"""Query and URL templates: `{{ .namespace }}` and `{{ .name }}` of the target Deployment.

For one query over many targets (one PromQL query per policy), each variable becomes a
regular expression matching every target's value; runbooks therefore match with `=~`."""

from __future__ import annotations

import re
from collections.abc import Iterable

VARIABLE = re.compile(r"\{\{\s*\.(\w+)\s*\}\}")
KNOWN = ("namespace", "name")


def unknown_variables(text: str) -> list[str]:
    return [v for v in VARIABLE.findall(text) if v not in KNOWN]


def problem(text: str) -> str | None:
    """What makes a template unusable, in words, or None: a variable we do not know, or
    braces that are not a whole `{{ .variable }}` (an unterminated `{{ .name `)."""
    bad = unknown_variables(text)
    if bad:
        return (f"unknown template variables {', '.join(bad)}: use {{{{ .namespace }}}} and "
                f"{{{{ .name }}}}")
    rest = VARIABLE.sub("", text)
    if "{{" in rest or "}}" in rest:
        at = min(i for i in (rest.find("{{"), rest.find("}}")) if i >= 0)
        return (f"unterminated or malformed template near {rest[at:at + 20]!r}: write "
                f"{{{{ .namespace }}}} or {{{{ .name }}}}")
    return None


def render(text: str, values: dict[str, str]) -> str:
    return VARIABLE.sub(lambda m: values.get(m.group(1), m.group(0)), text)


def render_many(text: str, targets: Iterable[tuple[str, str]]) -> str:
    """One query for many (namespace, name) targets."""
    targets = list(targets)
    namespaces = sorted({ns for ns, _ in targets})
    names = sorted({name for _, name in targets})
    return render(text, {"namespace": _alternation(namespaces), "name": _alternation(names)})


def _alternation(values: list[str]) -> str:
    # Kubernetes names hold only [a-z0-9.-]; escape the dot for the regular expression
    # (a backslash inside a PromQL string needs doubling).
    return "|".join(v.replace(".", "\\\\.") for v in values)


def first_problem(texts: Iterable[tuple[str, str]]) -> str | None:
    """The first unusable template among (where, text) pairs, named by where it is."""
    for where, text in texts:
        found = problem(text)
        if found:
            return f"{where}: {found}"
    return None
