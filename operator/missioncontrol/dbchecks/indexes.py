"""Index recommendations (Dexter's idea, run continuously): for each sequential scan of a
large relation that filters on columns no index leads with, propose
`CREATE INDEX CONCURRENTLY ON table (columns)`; a proposal stands only when a hypothetical
index (HypoPG) is used by the planner and cuts the statement's estimated cost at least by
half. Pure: explain.py asks the planner. Never executes DDL."""

from __future__ import annotations

from dataclasses import dataclass

from .plans import LARGE, Plan, filtered_columns, kind

MIN_GAIN = 2.0   # the hypothetical index must cut the estimated cost by this factor


@dataclass(frozen=True)
class Proposal:
    table: str
    columns: tuple[str, ...]

    @property
    def ddl(self) -> str:
        return f"CREATE INDEX CONCURRENTLY ON {self.table} ({', '.join(self.columns)})"


@dataclass(frozen=True)
class Recommendation:
    proposal: Proposal
    query: str
    cost_before: float
    cost_after: float
    used: bool           # the planner chose the hypothetical index

    @property
    def confirmed(self) -> bool:
        return self.used and self.cost_after * MIN_GAIN <= self.cost_before

    def describe(self) -> str:
        verdict = "confirmed by HypoPG" if self.confirmed else "not confirmed by HypoPG"
        return (f"{self.proposal.ddl}: {verdict}, estimated cost {self.cost_before:.2f} -> "
                f"{self.cost_after:.2f}" + ("" if self.used else " (index not used)"))


def proposals(plan: Plan, *, sizes: dict[str, float], leading: dict[str, set[str]],
              large: float = LARGE) -> list[Proposal]:
    """Sequential scans of large relations filtering on columns that no index leads with
    (`leading`: relation -> first columns of its indexes)."""
    out = []
    for scan in plan.scans:
        if kind(scan.node) != "seq" or sizes.get(scan.relation, 0) < large:
            continue
        columns = tuple(c for c in filtered_columns(scan.filter)
                        if c not in leading.get(scan.relation, set()))
        if columns:
            proposal = Proposal(scan.relation, columns[:2])
            if proposal not in out:
                out.append(proposal)
    return out


def judged(proposal: Proposal, *, query: str, before: Plan, after: Plan,
           hypothetical: str) -> Recommendation:
    """The planner's answer with the hypothetical index named `hypothetical` in place."""
    used = any(s.index and hypothetical in s.index for s in after.scans)
    return Recommendation(proposal, query, before.total_cost, after.total_cost, used)
