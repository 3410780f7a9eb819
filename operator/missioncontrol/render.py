"""A Runbook as a Markdown page for the person on call.

Written for someone woken at 3 a.m.: every condition, step and rule in plain words, with the
numbers that matter (counts, intervals, deadlines) in the sentence rather than in YAML."""

from __future__ import annotations

from . import durations, model
from .actions import action
from .markdown import and_list, code, oneline

WHEN = {"Always": "", "NotMitigated": "if not mitigated", "NotRecovered": "if not recovered",
        "SLOBreached": "if the recovery SLO is breached"}
CHECKS = {"QueryPlanDiff": "query-plan diff", "IndexRecommendations": "index recommendations"}


def render_runbook(runbook: model.Runbook) -> str:
    sections = [
        [f"# {runbook.id}: {runbook.title} ({runbook.severity})"],
        [oneline(runbook.summary)] if runbook.summary else [],
        ["## Trigger", "", *_trigger(runbook.trigger)],
        [f"## {_first(runbook.first_response_within)}", "", *_steps(runbook.steps)],
        ["## Escalation", "", *_escalation(runbook.escalation)],
        ["## Recovery SLO", "", *_recovery(runbook.recovery)],
        ["## Automation", "", *_automation(runbook)],
    ]
    return "\n\n".join("\n".join(s) for s in sections if s) + "\n"


def _dur(seconds: float) -> str:
    return durations.format(seconds)


def _first(within: float) -> str:
    # The design speaks of "the first 5 minutes"; say it that way when it is whole minutes.
    minutes, seconds = divmod(int(within), 60)
    if seconds == 0 and 0 < minutes < 60:
        return f"First {minutes} minute{'s' if minutes > 1 else ''}"
    return f"First {_dur(within)}"


# -- trigger ----------------------------------------------------------------------------------
def _trigger(trigger: model.Trigger) -> list[str]:
    if trigger.after_release_window is not None:
        lines = [f"Armed for {_dur(trigger.after_release_window)} after each release. "
                 "Opens an incident when any of these holds:"]
    else:
        lines = ["Armed at all times. Opens an incident when any of these holds:"]
    lines.append("")
    for condition in trigger.conditions:
        head = f"- **{condition.name}**"
        lines.append(f"{head}: {oneline(condition.description)}" if condition.description
                     else head)
        lines.append(f"  - {_condition(condition.detector)}")
    return lines


def _condition(d: model.Detector) -> str:
    if isinstance(d, model.Readiness):
        return (f"readiness fails for {d.consecutive_failures} consecutive checks "
                f"(every {_dur(d.interval)}, after a {_dur(d.grace_period)} grace period)")
    if isinstance(d, model.Threshold):
        side = f"above {d.above:g}" if d.above is not None else f"below {d.below:g}"
        count = d.consecutive_failures or 1
        spans = []
        if count > 1:
            spans.append(f"for {count} consecutive checks")
        if d.sustain is not None:
            spans.append(f"for {_dur(d.sustain)}")
        held = " and ".join(spans) if spans else "on any check"
        return f"{code(d.query)} {side} {held} (checked every {_dur(d.interval)})"
    rise = f"x{d.factor:g}" + (f" and +{d.min_increase:g}" if d.min_increase else "")
    return (f"{code(d.query)} rises sharply: {rise} within {_dur(d.window)} "
            f"(checked every {_dur(d.interval)})")


# -- first response ---------------------------------------------------------------------------
def _steps(steps: tuple[model.Step, ...]) -> list[str]:
    lines = []
    for number, step in enumerate(steps, 1):
        head = f"{number}. **{step.id}**"
        lines.append(f"{head}: {oneline(step.description)}" if step.description else head)
        # Nested bullets (indented past "1. "), so Markdown keeps them inside the step.
        lines += [f"   - {line}" for line in action(step).describe(step.params)]
        if step.approval is not None:
            lines.append(f"   - {_gate(step.approval)}")
        if step.timeout is not None:
            lines.append(f"   - Times out after {_dur(step.timeout)}.")
        if step.continue_on_failure:
            lines.append("   - The steps after it run even if it fails.")
        phases = action(step).reverts_on(step)
        if phases:
            lines.append(f"   - Put back when the incident is {' or '.join(phases).lower()}, "
                         f"unless someone changed it since.")
    return lines


def _gate(gate: model.Approval) -> str:
    who = and_list(gate.approvers) if gate.approvers else "the roles paged when it opens"
    text = (f"Waits for approval first: {who} are paged, and it runs on `kubectl mc approve` "
            f"(`kubectl mc reject` skips it); the steps after it wait too.")
    if gate.timeout is None:
        return text
    then = {"proceed": "it runs anyway", "skip": "it is skipped",
            "escalate": "the next tier is paged and it goes on waiting"}[gate.on_timeout]
    return f"{text} Without a decision within {_dur(gate.timeout)}, {then}."


# -- escalation, recovery, automation ---------------------------------------------------------
def _escalation(e: model.Escalation) -> list[str]:
    if e.page:
        lines = [f"Paged at once: {and_list(e.page)}, within {_dur(e.page_within)} of detection."]
    else:
        lines = ["Nobody is paged at once."]
    lines.append("")
    if e.rules:
        for rule in e.rules:
            when = WHEN.get(rule.when, rule.when)
            lines.append(f"- after {_dur(rule.after)}{', ' + when if when else ''}: "
                         f"page {and_list(rule.page)}")
    else:
        lines.append("No further escalation rules.")
    return lines


def _recovery(r: model.Recovery) -> list[str]:
    lines = [f"Recovered within {_dur(r.slo)} of detection"
             + (f": {oneline(r.description)}." if r.description else ".")]
    lines.append(f"Counted as recovered once the service has been stable for "
                 f"{_dur(r.stable_for)} without a break.")
    return lines


def _automation(runbook: model.Runbook) -> list[str]:
    a = runbook.automation
    lines = []
    if a.automatic_rollback:
        kind = ("readiness checks" if any(isinstance(c.detector, model.Readiness)
                                          for c in runbook.trigger.conditions) else "checks")
        lines.append(f"- Automatic rollback after {a.rollback_after_failures} consecutive "
                     f"failed {kind}." if a.rollback_after_failures
                     else "- Automatic rollback when the trigger fires.")
    for check in a.scheduled_checks:
        lines.append(f"- Scheduled {CHECKS.get(check.check, check.check)} check "
                     f"`{check.name}`, every {_dur(check.every)}.")
    if a.adaptive_backoff:
        initial, ceiling = a.adaptive_backoff
        lines.append(f"- Adaptive backoff of retries, from {_dur(initial)} up to "
                     f"{_dur(ceiling)}.")
    if a.dead_letter_topic:
        lines.append(f"- Dead-letter routing of malformed events to `{a.dead_letter_topic}`.")
    return lines or ["None beyond the first-response steps."]
