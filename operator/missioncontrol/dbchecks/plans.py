"""Plans as EXPLAIN (FORMAT JSON) gives them, and the differences between two plans of one
statement that matter to an SRE: a scan of a large relation that became a sequential scan
(Index Scan -> Seq Scan), and an estimated cost that jumped by more than a factor. Pure."""

from __future__ import annotations

import re
from dataclasses import dataclass

INDEXED_SCANS = ("Index Scan", "Index Only Scan", "Bitmap Heap Scan", "Bitmap Index Scan")
LARGE = 10_000        # rows (pg_class.reltuples): below that a sequential scan is fine
COST_FACTOR = 2.0     # an estimated total cost this many times the baseline's


@dataclass(frozen=True)
class Scan:
    node: str                      # Seq Scan, Index Scan, ...
    relation: str
    index: str | None = None
    filter: str | None = None      # the node's Filter (or Index Cond / Recheck Cond)


@dataclass(frozen=True)
class Plan:
    total_cost: float
    scans: tuple[Scan, ...]


def parse(explained: list | dict) -> Plan:
    """The plan of EXPLAIN (FORMAT JSON): a list of one {"Plan": {...}}."""
    root = (explained[0] if isinstance(explained, list) else explained)["Plan"]
    scans: list[Scan] = []

    def walk(node: dict) -> None:
        relation = node.get("Relation Name")
        if relation:
            # A Bitmap Heap Scan names its index on its Bitmap Index Scan child.
            index = node.get("Index Name") or next(
                (c["Index Name"] for c in node.get("Plans") or [] if c.get("Index Name")), None)
            scans.append(Scan(node["Node Type"], relation, index,
                              node.get("Filter") or node.get("Index Cond")
                              or node.get("Recheck Cond")))
        for child in node.get("Plans") or []:
            walk(child)

    walk(root)
    return Plan(float(root.get("Total Cost", 0.0)), tuple(scans))


def kind(node: str) -> str:
    return "index" if node in INDEXED_SCANS else "seq" if node == "Seq Scan" else "other"


def differences(baseline: Plan, current: Plan, *, sizes: dict[str, float],
                large: float = LARGE, cost_factor: float = COST_FACTOR) -> list[str]:
    """What changed that matters, in words; empty if nothing does. `sizes`: rows per relation."""
    out = []
    before = {s.relation: s for s in baseline.scans if kind(s.node) == "index"}
    for scan in current.scans:
        old = before.get(scan.relation)
        if old is not None and kind(scan.node) == "seq" and sizes.get(scan.relation, 0) >= large:
            out.append(f"{old.node} -> Seq Scan on {scan.relation} "
                       f"({sizes[scan.relation]:.0f} rows; was using index {old.index})")
    if baseline.total_cost > 0 and current.total_cost > baseline.total_cost * cost_factor:
        out.append(f"estimated cost {baseline.total_cost:.2f} -> {current.total_cost:.2f} "
                   f"(x{current.total_cost / baseline.total_cost:.1f})")
    return out


_COLUMN = re.compile(r"\(*([a-z_][a-z0-9_]*)\)?(?:::[a-z ]+)?\s*(?:=|<|>|<=|>=|~~)\s")


def filtered_columns(condition: str | None) -> tuple[str, ...]:
    """The columns a Filter compares, in order: "(customer_id = 42)" -> ("customer_id",)."""
    if not condition:
        return ()
    return tuple(dict.fromkeys(_COLUMN.findall(condition)))


def parameters(query: str) -> int:
    """How many parameters ($1, $2 ...) a normalized statement has."""
    return max((int(n) for n in re.findall(r"\$(\d+)", query)), default=0)
