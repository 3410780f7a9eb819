"""The Incident: its status as typed records, and the state machine that moves it.

    Detected -> Mitigating -> Mitigated -> Resolved -> Closed
                     \\-> Failed (a step failed) -> Mitigated (recovered anyway) ...
    any open phase -> Failed with AutomationStopped (its policy or target is gone): people
                      close it; it never resolves by itself

`Escalated` is a flag and a condition, not a phase. Pure: every function takes `now`."""

from __future__ import annotations

from dataclasses import dataclass, field, replace

from . import conditions as conds
from . import durations
from .conditions import Condition
from .records import stamp

DETECTED, MITIGATING, MITIGATED, RESOLVED, FAILED, CLOSED = (
    "Detected", "Mitigating", "Mitigated", "Resolved", "Failed", "Closed")
REJECTED = "Rejected"     # a hand-made incident the operator cannot run: never acted on
OPEN_PHASES = (DETECTED, MITIGATING, MITIGATED, FAILED)
# The modes in which nothing is changed and nobody is paged: dryRun, and silenced (an
# Alertmanager silence covered the target when the incident opened: silences.py).
SILENCED = "silenced"
QUIET_MODES = ("dryRun", SILENCED)
# The incident's policy or target is gone: it can no longer act or resolve by itself.
AUTOMATION_STOPPED = "AutomationStopped"
TIMELINE_LIMIT = 50       # the newest entries stay in status; all of them go out as Events
LIST_LIMIT = 40

PENDING, RUNNING, SUCCEEDED, STEP_FAILED, SKIPPED, PLANNED = (
    "Pending", "Running", "Succeeded", "Failed", "Skipped", "Planned")
STEP_DONE = (SUCCEEDED, STEP_FAILED, SKIPPED, PLANNED)
AWAITING_APPROVAL = "AwaitingApproval"   # a step's state, and the condition (gates.py)


@dataclass(frozen=True)
class Change:
    """One thing a step changed, and what it was before (so recovery can revert it)."""
    kind: str
    name: str
    field: str
    from_: str | None = None
    to: str | None = None
    namespace: str | None = None


@dataclass(frozen=True)
class StepRecord:
    id: str
    action: str
    state: str = PENDING
    started_at: float | None = stamp()
    finished_at: float | None = stamp()
    message: str = ""
    changes: tuple[Change, ...] = ()
    attempts: int = 0
    revert_on: tuple[str, ...] = ()   # the phases that undo its changes (reverts.py)
    no_effect_at: float | None = stamp()   # judged without effect (verifyWithin passed)
    approval_asked_at: float | None = stamp()   # when its gate began to wait (gates.py)
    approval: str = ""   # how its gate was passed, in words: approved by, rejected by, ...


@dataclass(frozen=True)
class Evidence:
    condition: str
    outcome: str
    message: str
    at: float | None = stamp()
    value: float | None = None


@dataclass(frozen=True)
class TimelineEntry:
    at: float | None = stamp()
    type: str = ""
    message: str = ""


@dataclass(frozen=True)
class SyntheticResult:
    name: str
    url: str
    ok: bool = False
    status: int | None = None
    latency_seconds: float | None = None
    error: str | None = None


@dataclass(frozen=True)
class DashboardResult:
    name: str
    query: str
    state: str = "Unknown"     # Ok | NoData | Error
    value: str | None = None   # a short rendering of the result vector


@dataclass(frozen=True)
class BlastRadius:
    checked_at: float | None = stamp()
    synthetic_checks: tuple[SyntheticResult, ...] = ()
    dashboards: tuple[DashboardResult, ...] = ()
    summary: str = ""


@dataclass(frozen=True)
class SlowStatement:
    """One statement of pg_stat_statements, as it ran between the baseline and the reading."""
    queryid: str                 # pg_stat_statements' queryid (a 64-bit integer, as text)
    query: str                   # its normalized text ($1 for constants), cut to 1000
    calls: int = 0
    mean_ms: float = 0.0
    total_ms: float = 0.0
    rows: int = 0


@dataclass(frozen=True)
class SlowQueries:
    """What identifySlowQueries found: the top statements by time spent since its baseline."""
    database: str = ""           # the Secret that names the database
    baseline_at: float | None = stamp()
    checked_at: float | None = stamp()
    statements: tuple[SlowStatement, ...] = ()


@dataclass(frozen=True)
class PlanFinding:
    """What a scheduled database check (dbchecks) found about one watched statement: its plan
    changed in a way that matters (QueryPlanDiff), or an index HypoPG confirmed would cut its
    cost (IndexRecommendations). Recorded in the policy's status and on its open incidents."""
    check: str                   # QueryPlanDiff | IndexRecommendations
    queryid: str
    query: str                   # the normalized statement, cut to 500
    message: str                 # in words, as the Event and the timeline say it
    since: float | None = stamp()   # first found
    cost_before: float | None = None
    cost_after: float | None = None
    ddl: str | None = None       # the index proposed (never executed)


@dataclass(frozen=True)
class Page:
    role: str
    contact: str
    route: str
    kind: str = "page"          # page | acknowledge | resolve
    at: float | None = stamp()  # the message's time: part of its idempotency key
    outcome: str = ""           # delivered | failed | planned | sending | unconfirmed | expired
    attempts: int = 0
    error: str | None = None
    acknowledged_at: float | None = stamp()
    round: int = 1              # 2, 3, ...: paged again, unacknowledged
    about: str = ""             # what a page beyond the usual ones is for (AUTOMATION_STOPPED)
    summary: str = ""           # what it says: a retry sends the same words under the same key
    tried_at: float | None = stamp()   # the latest attempt (None: at)

    @property
    def key(self) -> tuple[str, str, str, int, str]:
        """One page per role, contact, kind, round and purpose."""
        return self.role, self.contact, self.kind, self.round, self.about

    @property
    def last_tried(self) -> float | None:
        return self.tried_at if self.tried_at is not None else self.at


@dataclass(frozen=True)
class Update:
    at: float | None = stamp()
    phase: str = ""
    message: str = ""
    outcome: str = ""
    final: bool = False
    next_at: float | None = stamp()   # when the next one is due, as announced
    error: str | None = None
    tried_at: float | None = stamp()  # the latest attempt (None: at)
    attempts: int = 0                 # deliveries tried, the first one included

    @property
    def last_tried(self) -> float | None:
        return self.tried_at if self.tried_at is not None else self.at


@dataclass(frozen=True)
class Freeze:
    active: bool = False
    scope: str = ""
    since: float | None = stamp()
    lifted_at: float | None = stamp()
    reason: str = ""
    objects: tuple[str, ...] = ()           # "Deployment/ns/name" or "Namespace/ns"
    allowed_template_hash: str | None = None


@dataclass(frozen=True)
class GitOpsHold:
    """The GitOps owner a step suspended (gitops.py): the freeze holds past resolution until
    its source revision moves on from `revision` or a person lifts it."""
    step: str                       # the suspendGitOps step, whose undo resumes it
    kind: str                       # Kustomization, HelmRelease, Application
    namespace: str
    name: str
    source: str = ""                # where the revision is read ("GitRepository ns/name")
    revision: str | None = None     # the broken one, as suspended
    suspended_at: float | None = stamp()
    released_at: float | None = stamp()
    released_because: str = ""


@dataclass(frozen=True)
class RollbackRecord:
    from_revision: int | None = None
    to_revision: int | None = None
    to_replica_set: str | None = None
    from_replica_set: str | None = None
    at: float | None = stamp()


@dataclass(frozen=True)
class Slo:
    deadline: float | None = stamp()
    breached: bool = False
    status: str = ""


@dataclass(frozen=True)
class Channel:
    name: str = ""
    announced_at: float | None = stamp()
    outcome: str = ""


@dataclass(frozen=True)
class EscalationRecord:
    after: str
    when: str
    roles: tuple[str, ...] = ()
    at: float | None = stamp()


@dataclass(frozen=True)
class OwnershipRef:
    """The ServiceOwnership the incident pages through, kept so that it can still reach
    people once the policy or the Deployment that led to it is gone."""
    namespace: str
    name: str


@dataclass(frozen=True)
class SilenceRecord:
    """The Alertmanager silence that opened this incident silenced (silences.py)."""
    id: str
    created_by: str = ""
    comment: str = ""
    ends_at: float | None = stamp()
    matchers: str = ""


@dataclass(frozen=True)
class IncidentStatus:
    phase: str = DETECTED
    reason: str = ""
    mode: str = "enforce"
    severity: str | None = None      # as last acted on; spec.severity is what people set
    detected_at: float | None = stamp()
    mitigating_at: float | None = stamp()
    mitigated_at: float | None = stamp()
    resolved_at: float | None = stamp()
    closed_at: float | None = stamp()
    healthy_since: float | None = stamp()
    escalated: bool = False
    slo: Slo = field(default_factory=Slo)
    conditions: tuple[Condition, ...] = ()
    evidence: tuple[Evidence, ...] = ()
    steps: tuple[StepRecord, ...] = ()
    blast_radius: BlastRadius | None = None
    pages: tuple[Page, ...] = ()
    updates: tuple[Update, ...] = ()
    channel: Channel | None = None
    escalations: tuple[EscalationRecord, ...] = ()
    freeze: Freeze | None = None
    gitops: GitOpsHold | None = None
    rollback: RollbackRecord | None = None
    timeline: tuple[TimelineEntry, ...] = ()
    observed_generation: int | None = None
    ownership: OwnershipRef | None = None
    slow_queries: SlowQueries | None = None
    plan_findings: tuple[PlanFinding, ...] = ()   # the scheduled checks' (dbchecks.schedule)
    awaiting_approval: str | None = None   # the id of the step waiting for approval
    cluster: str | None = None   # the --cluster-name of the operator that runs it
    silence: SilenceRecord | None = None

    # -- reading ----------------------------------------------------------------------------
    @property
    def open(self) -> bool:
        return self.phase in OPEN_PHASES

    def step(self, step_id: str) -> StepRecord | None:
        return next((s for s in self.steps if s.id == step_id), None)

    def condition(self, kind: str) -> Condition | None:
        return conds.get(self.conditions, kind)

    @property
    def automation_stopped(self) -> bool:
        stopped = self.condition(AUTOMATION_STOPPED)
        return stopped is not None and stopped.status == "True"


# -- writing: each returns a new status and adds to the timeline ------------------------------
def note(status: IncidentStatus, now: float, kind: str, message: str) -> IncidentStatus:
    entry = TimelineEntry(now, kind, message[:500])
    return replace(status, timeline=(*status.timeline, entry)[-TIMELINE_LIMIT:])


def set_condition(status: IncidentStatus, now: float, kind: str, value: bool, reason: str,
                  message: str = "") -> IncidentStatus:
    return replace(status, conditions=conds.put(
        status.conditions, conds.Condition.said(kind, value, reason, message), now=now))


def opened(*, now: float, mode: str, slo: float, evidence: tuple[Evidence, ...],
           steps: tuple[tuple[str, str], ...], reason: str) -> IncidentStatus:
    status = IncidentStatus(phase=DETECTED, reason=reason, mode=mode, detected_at=now,
                            slo=Slo(deadline=now + slo), evidence=evidence,
                            steps=tuple(StepRecord(i, a) for i, a in steps))
    status = set_condition(status, now, "Active", True, "Detected", reason)
    return note(status, now, "Detected", reason)


def move(status: IncidentStatus, now: float, phase: str, message: str) -> IncidentStatus:
    if status.phase == phase:
        return status
    stamps = {MITIGATING: "mitigating_at", MITIGATED: "mitigated_at", RESOLVED: "resolved_at",
              CLOSED: "closed_at"}
    changes = {"phase": phase}
    if phase in stamps and getattr(status, stamps[phase]) is None:
        changes[stamps[phase]] = now
    status = replace(status, **changes)
    if phase == MITIGATED:
        status = set_condition(status, now, "Mitigated", True, "Mitigated", message)
    if phase in (RESOLVED, CLOSED):
        status = set_condition(status, now, "Active", False, phase, message)
        status = set_condition(status, now, "Resolved", True, phase, message)
    return note(status, now, phase, message)


def closable(items: list[dict]) -> bool:
    """Closing needs action items, each with an assignee (the API refuses others too)."""
    return bool(items) and all(i.get("assignee") for i in items)


def close(status: IncidentStatus, now: float, items: list[dict]) -> IncidentStatus:
    return move(status, now, CLOSED, f"closed with {len(items)} action item(s): "
                + "; ".join(f"{i.get('title', '')} ({i['assignee']})" for i in items))


def update_step(status: IncidentStatus, step_id: str, **changes: object) -> IncidentStatus:
    steps = tuple(replace(s, **changes) if s.id == step_id else s for s in status.steps)
    return replace(status, steps=steps)


def escalate(status: IncidentStatus, now: float, reason: str, message: str) -> IncidentStatus:
    status = replace(status, escalated=True)
    status = set_condition(status, now, "Escalated", True, reason, message)
    return note(status, now, "Escalated", message)


def stop_automation(status: IncidentStatus, now: float, reason: str,
                    message: str) -> IncidentStatus:
    """Hand an open incident to people: it stays open (Failed: nothing automatic will move
    it on), says why, and never resolves by itself. Once only; the first reason stays."""
    if not status.open or status.automation_stopped:
        return status
    status = set_condition(status, now, AUTOMATION_STOPPED, True, reason, message)
    status = note(status, now, AUTOMATION_STOPPED, message)
    if status.phase != FAILED:
        status = move(status, now, FAILED, f"automation stopped: {message}")
    mitigated = status.condition("Mitigated")
    if mitigated is not None and mitigated.status == "True":
        status = set_condition(status, now, "Mitigated", False, reason, message)
    return status


def slo_status(status: IncidentStatus, now: float) -> tuple[Slo, bool]:
    """The SLO column and whether it has just been breached. Met when recovery came first."""
    slo = status.slo
    if slo.deadline is None:
        return slo, False
    recovered = status.resolved_at
    if recovered is not None:
        late = recovered > slo.deadline
        # A breach first noticed at a late resolution is still news.
        return replace(slo, status="breached" if late else "met", breached=late), \
            late and not slo.breached
    if now >= slo.deadline:
        newly = not slo.breached
        return replace(slo, breached=True, status="breached"), newly
    return replace(slo, status=f"{durations.format(slo.deadline - now)} left"), False
