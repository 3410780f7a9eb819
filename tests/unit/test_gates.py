"""Approval gates, pure: how a step's gate parses, what it says each round (approved,
rejected, waiting, timed out: proceed, skip or escalate; shown in dryRun), how the status
records it, and the patch `kubectl mc approve|reject` sends."""

from __future__ import annotations

import copy
from pathlib import Path

import pytest
import yaml

from missioncontrol import comms, gates, model
from missioncontrol import incident as inc
from missioncontrol.parse import ModelError
from missioncontrol.plugin import edits, view

T0 = 1_700_000_000.0
RB001 = Path(__file__).resolve().parents[2] / "runbooks" / \
    "rb-001-failed-production-deployment.yaml"


def runbook(**gate: object) -> model.Runbook:
    """RB-001 with its rollback step gated as `gate` says."""
    body = copy.deepcopy(yaml.safe_load(RB001.read_text()))
    rollback = next(s for s in body["spec"]["firstResponse"]["steps"] if s["id"] == "rollback")
    rollback.update(gate)
    return model.Runbook.parse(body)


def rollback_of(rb: model.Runbook) -> model.Step:
    return next(s for s in rb.steps if s.id == "rollback")


def waiting_since(at: float) -> inc.StepRecord:
    return inc.StepRecord("rollback", "rollback", inc.AWAITING_APPROVAL, approval_asked_at=at)


def decide(step: model.Step, record: inc.StepRecord, *, now: float,
           decision: gates.Decision | None = None, dry_run: bool = False) -> gates.Verdict:
    return gates.verdict(step=step, record=record, decision=decision, now=now, dry_run=dry_run,
                         roles=("release-owner",))


# -- the runbook -------------------------------------------------------------------------------
def test_a_gate_parses_with_its_defaults() -> None:
    assert rollback_of(runbook()).approval is None
    gate = rollback_of(runbook(approval="required")).approval
    assert gate == model.Approval(approvers=(), timeout=None, on_timeout="escalate")
    gate = rollback_of(runbook(approval="required", approvalTimeout="10m",
                               onApprovalTimeout="skip", approvers=["platform-lead"])).approval
    assert gate == model.Approval(("platform-lead",), 600.0, "skip")


@pytest.mark.parametrize("fields, path", [
    ({"approvalTimeout": "10m"}, "spec.firstResponse.steps[2]"),
    ({"approval": "required", "onApprovalTimeout": "retry"},
     "spec.firstResponse.steps[2].onApprovalTimeout"),
    ({"approval": "required", "approvalTimeout": "200h"},
     "spec.firstResponse.steps[2].approvalTimeout"),
    ({"approval": "maybe"}, "spec.firstResponse.steps[2].approval"),
])
def test_a_gate_that_cannot_work_names_its_field(fields: dict, path: str) -> None:
    with pytest.raises(ModelError) as err:
        runbook(**fields)
    assert err.value.path == path


def test_the_approvers_default_to_the_roles_paged_at_once() -> None:
    rb = runbook(approval="required")
    assert gates.approvers(rollback_of(rb), rb) == ("release-owner", "oncall-backend")
    rb = runbook(approval="required", approvers=["incident-commander"])
    assert gates.approvers(rollback_of(rb), rb) == ("incident-commander",)


# -- the verdict -------------------------------------------------------------------------------
def test_a_gate_asks_once_then_waits() -> None:
    step = rollback_of(runbook(approval="required", approvalTimeout="10m"))
    fresh = inc.StepRecord("rollback", "rollback")
    assert decide(step, fresh, now=T0) == gates.Verdict(gates.WAIT, ask=True)
    assert decide(step, waiting_since(T0), now=T0 + 599) == gates.Verdict(gates.WAIT)


def test_the_first_decision_of_a_person_passes_or_shuts_the_gate() -> None:
    step = rollback_of(runbook(approval="required", approvalTimeout="10m",
                               onApprovalTimeout="proceed"))
    spec = {"approvals": [
        {"step": "rollback", "decision": "Rejected", "by": "ada", "reason": "too risky"},
        {"step": "rollback", "decision": "Approved", "by": "grace"},   # too late: ignored
        {"step": "flags", "decision": "Maybe", "by": "bob"},          # not a decision
        {"step": "flags", "decision": "Approved", "by": "bob", "at": "2030-01-01T00:00:00Z"}]}
    found = gates.decisions(spec)
    assert found["rollback"] == gates.Decision("rollback", "Rejected", "ada", None, "too risky")
    assert found["flags"].by == "bob" and found["flags"].at == 1893456000.0
    # A decision beats the timeout, even one taken after it passed.
    late = T0 + 3600
    assert decide(step, waiting_since(T0), now=late, decision=found["rollback"]) == \
        gates.Verdict(gates.SKIP, "rejected by ada (too risky)", gates.REJECTED)
    assert decide(step, waiting_since(T0), now=late, decision=found["flags"]) == \
        gates.Verdict(gates.RUN, "approved by bob", gates.APPROVED)


@pytest.mark.parametrize("outcome, expected", [
    ("proceed", gates.Verdict(gates.RUN, "no approval within 10m: proceeding", "TimedOut")),
    ("skip", gates.Verdict(gates.SKIP, "no approval within 10m: skipped", "TimedOut")),
    ("escalate", gates.Verdict(gates.WAIT, "no approval within 10m: escalated, still waiting",
                               escalate=True)),
])
def test_a_timeout_does_what_the_step_says(outcome: str, expected: gates.Verdict) -> None:
    step = rollback_of(runbook(approval="required", approvalTimeout="10m",
                               onApprovalTimeout=outcome))
    assert decide(step, waiting_since(T0), now=T0 + 599).kind == gates.WAIT
    assert decide(step, waiting_since(T0), now=T0 + 600) == expected


def test_without_a_timeout_it_waits_as_long_as_it_takes() -> None:
    step = rollback_of(runbook(approval="required"))
    assert decide(step, waiting_since(T0), now=T0 + 30 * 86400) == gates.Verdict(gates.WAIT)


def test_a_dry_run_shows_the_gate_and_does_not_wait() -> None:
    step = rollback_of(runbook(approval="required", approvalTimeout="15m",
                               onApprovalTimeout="skip"))
    found = decide(step, inc.StepRecord("rollback", "rollback"), now=T0, dry_run=True)
    assert found == gates.Verdict(gates.RUN, "dry run: would wait for approval by "
                                  "release-owner, within 15m (then it is skipped)")


# -- the status --------------------------------------------------------------------------------
def opened() -> inc.IncidentStatus:
    return inc.opened(now=T0, mode="enforce", slo=1200.0, evidence=(),
                      steps=(("freeze", "freezeDeployments"), ("rollback", "rollback")),
                      reason="readiness failed")


def test_waiting_then_approved_is_recorded_on_the_step_the_condition_and_the_timeline() -> None:
    step = rollback_of(runbook(approval="required"))
    s = gates.asking(opened(), T0 + 1, step=step, roles=("release-owner",),
                     answer=gates.how_to_answer("inc", "shop", "rollback"))
    record = s.step("rollback")
    assert (record.state, record.approval_asked_at, s.awaiting_approval) == (
        inc.AWAITING_APPROVAL, T0 + 1, "rollback")
    waiting = s.condition(gates.CONDITION)
    assert (waiting.status, waiting.reason) == ("True", "Waiting")
    assert "kubectl mc approve inc rollback -n shop" in waiting.message
    assert s.timeline[-1].type == gates.CONDITION
    # Stakeholders are told which step waits.
    update = comms.compose(s, None, 1800.0, T0 + 2, final=False)
    assert "Step rollback awaits a person's approval." in update.message

    s = gates.passed(s, T0 + 5, step=step,
                     verdict=gates.Verdict(gates.RUN, "approved by ada", gates.APPROVED))
    assert s.awaiting_approval is None
    assert s.step("rollback").approval == "approved by ada"
    assert s.step("rollback").state == inc.AWAITING_APPROVAL   # the engine runs it next
    done = s.condition(gates.CONDITION)
    assert (done.status, done.reason) == ("False", gates.APPROVED)
    assert (s.timeline[-1].type, s.timeline[-1].message) == (
        "Approved", "rollback (rollback): approved by ada")


def test_a_rejected_step_is_skipped_and_recorded() -> None:
    step = rollback_of(runbook(approval="required"))
    s = gates.asking(opened(), T0 + 1, step=step, roles=(), answer="")
    s = gates.passed(s, T0 + 5, step=step,
                     verdict=gates.Verdict(gates.SKIP, "rejected by ada", gates.REJECTED))
    record = s.step("rollback")
    assert (record.state, record.finished_at, record.message, record.approval) == (
        inc.SKIPPED, T0 + 5, "rejected by ada", "rejected by ada")
    assert s.condition(gates.CONDITION).reason == gates.REJECTED
    assert s.timeline[-1].type == "StepSkipped"


def test_a_step_still_waiting_when_the_incident_resolves_will_not_run() -> None:
    step = rollback_of(runbook(approval="required"))
    s = gates.asking(opened(), T0 + 1, step=step, roles=(), answer="")
    s = gates.abandon(s, T0 + 60, "the incident resolved")
    assert s.awaiting_approval is None
    assert s.step("rollback").state == inc.SKIPPED
    assert s.condition(gates.CONDITION).reason == "NoLongerNeeded"
    assert gates.abandon(s, T0 + 70, "again") == s


# -- kubectl mc approve | reject ----------------------------------------------------------------
def body(state: str = inc.AWAITING_APPROVAL, approvals: list | None = None) -> dict:
    spec: dict = {"target": {"namespace": "shop", "name": "checkout"}}
    if approvals is not None:
        spec["approvals"] = approvals
    return {"metadata": {"name": "inc", "namespace": "shop"}, "spec": spec,
            "status": {"steps": [{"id": "freeze", "action": "freezeDeployments",
                                  "state": "Succeeded"},
                                 {"id": "rollback", "action": "rollback", "state": state}],
                       "awaitingApproval": "rollback" if state == inc.AWAITING_APPROVAL
                       else None}}


def test_approve_appends_a_decision_without_replacing_others() -> None:
    ops = edits.approval(body(), step="rollback", decision="Approved", by="ada", now=T0)
    assert ops == [{"op": "test", "path": "/spec/approvals", "value": None},
                   {"op": "add", "path": "/spec/approvals", "value": [
                       {"step": "rollback", "decision": "Approved", "by": "ada",
                        "at": "2023-11-14T22:13:20Z"}]}]
    other = [{"step": "flags", "decision": "Rejected", "by": "bob"}]
    ops = edits.approval(body(approvals=other), step="rollback", decision="Rejected", by="ada",
                         now=T0, reason="too risky")
    assert ops == [{"op": "add", "path": "/spec/approvals/-", "value": {
        "step": "rollback", "decision": "Rejected", "by": "ada", "at": "2023-11-14T22:13:20Z",
        "reason": "too risky"}}]


def test_approve_refuses_what_the_operator_would_not_act_on() -> None:
    decided = [{"step": "rollback", "decision": "Rejected", "by": "bob"}]
    assert edits.approval(body(approvals=decided), step="rollback", decision="Rejected",
                          by="ada", now=T0) is None   # already so: nothing to send
    with pytest.raises(edits.EditError, match="already rejected by bob: the first decision"):
        edits.approval(body(approvals=decided), step="rollback", decision="Approved",
                       by="ada", now=T0)
    with pytest.raises(edits.EditError, match=r"no step 'rollbak' \(its steps: freeze, "):
        edits.approval(body(), step="rollbak", decision="Approved", by="ada", now=T0)
    with pytest.raises(edits.EditError, match="step freeze is Succeeded already"):
        edits.approval(body(), step="freeze", decision="Approved", by="ada", now=T0)


def test_the_board_and_describe_show_the_step_waiting() -> None:
    waiting = body()
    waiting["status"]["phase"] = "Mitigating"
    incident = view.Incident.of(waiting)
    assert view.approval(incident) == "rollback waiting"
    assert view.approval(view.Incident.of(body(state="Succeeded"))) == "-"
    text = view.describe(waiting, T0)
    assert "Approve: kubectl mc approve inc rollback -n shop" in text


def test_the_runbook_page_says_who_approves_and_what_a_timeout_does() -> None:
    from missioncontrol.render import render_runbook
    page = render_runbook(runbook(approval="required", approvalTimeout="10m",
                                  onApprovalTimeout="skip", approvers=["platform-lead"]))
    assert ("Waits for approval first: platform-lead are paged, and it runs on `kubectl mc "
            "approve` (`kubectl mc reject` skips it); the steps after it wait too. Without a "
            "decision within 10m, it is skipped.") in page
