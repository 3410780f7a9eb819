"""Small Markdown pieces shared by the runbook page and the postmortem."""

from __future__ import annotations

import re


def oneline(text: str | None) -> str:
    return re.sub(r"\s+", " ", text or "").strip()


def code(text: str) -> str:
    """Inline code that survives backticks in the text (a fence longer than any run in it)."""
    text = oneline(text)
    longest = max((len(run) for run in re.findall(r"`+", text)), default=0)
    fence = "`" * (longest + 1)
    pad = " " if text.startswith("`") or text.endswith("`") else ""
    return f"{fence}{pad}{text}{pad}{fence}"


def and_list(items: tuple[str, ...] | list[str]) -> str:
    """a, b and c"""
    items = list(items)
    return ", ".join(items[:-1]) + f" and {items[-1]}" if len(items) > 1 else "".join(items)
