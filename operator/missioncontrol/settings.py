"""Process-wide options of the operator, set once at start-up from the command line."""

from __future__ import annotations

from dataclasses import dataclass


@dataclass
class Options:
    dry_run: bool = False


OPTIONS = Options()


def configure(*, dry_run: bool) -> None:
    OPTIONS.dry_run = dry_run
