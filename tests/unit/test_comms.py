"""The escalation protocol's clockwork (comms.py) on a fake clock: when stakeholder updates
are due and what they say, when an update is overdue, which roles to page again, and the
5-minute SpecialistsPaged promise. `now` is a plain float throughout."""

from __future__ import annotations

from dataclasses import replace

from missioncontrol import comms
from missioncontrol import incident as inc
from missioncontrol.incident import Page, TimelineEntry, Update
from missioncontrol.timeutil import iso

T0 = 1_700_000_000.0
CADENCE = 900.0           # SEV2-ish: every 15 minutes
ROLES = ("release-owner", "oncall-backend")


def opened() -> inc.IncidentStatus:
    return inc.opened(now=T0, mode="enforce", slo=1200.0, evidence=(), steps=(),
                      reason="readiness failed 3 consecutive checks")


def sent(at: float, outcome: str = "delivered", *, final: bool = False,
         next_at: float | None = None) -> Update:
    return Update(at=at, phase=inc.MITIGATING, message="...", outcome=outcome, final=final,
                  next_at=next_at if next_at is not None or final else at + CADENCE)


def with_updates(*updates: Update, status: inc.IncidentStatus | None = None
                 ) -> inc.IncidentStatus:
    return replace(status or opened(), updates=updates)


def page(role: str, at: float | None, outcome: str = "delivered", *, round: int = 1,
         kind: str = "page", contact: str = "someone") -> Page:
    return Page(role=role, contact=contact, route="PagerDuty", kind=kind, at=at,
                outcome=outcome, round=round)


def with_pages(*pages: Page, phase: str = inc.MITIGATING) -> inc.IncidentStatus:
    return replace(opened(), phase=phase, pages=pages)


def resolved(at: float) -> inc.IncidentStatus:
    status = inc.move(opened(), T0 + 5, inc.MITIGATING, "running first response")
    status = inc.move(status, T0 + 60, inc.MITIGATED, "rolled back")
    return inc.move(status, at, inc.RESOLVED, "stable for 2m")


# -- update_due: cadence ------------------------------------------------------------------------
def test_first_update_goes_out_at_detection() -> None:
    plan = comms.update_due(opened(), CADENCE, T0)
    assert plan is not None and not plan.final
    assert plan.next_at == T0 + CADENCE


def test_nothing_before_detection_or_once_closed() -> None:
    assert comms.update_due(inc.IncidentStatus(), CADENCE, T0) is None
    closed = inc.move(resolved(T0 + 300), T0 + 900, inc.CLOSED, "action items assigned")
    assert comms.update_due(closed, CADENCE, T0 + 900) is None


def test_next_update_after_one_cadence_not_before() -> None:
    status = with_updates(sent(T0))
    assert comms.update_due(status, CADENCE, T0 + CADENCE - 1) is None
    plan = comms.update_due(status, CADENCE, T0 + CADENCE)
    assert plan is not None and plan.next_at == T0 + 2 * CADENCE
    status = with_updates(sent(T0), sent(T0 + CADENCE))
    assert comms.update_due(status, CADENCE, T0 + 2 * CADENCE - 1) is None
    assert comms.update_due(status, CADENCE, T0 + 2 * CADENCE) is not None


def test_sending_unconfirmed_and_planned_count_as_sent() -> None:
    for outcome in ("sending", "unconfirmed", "planned", "delivered"):
        status = with_updates(sent(T0, outcome))
        assert comms.update_due(status, CADENCE, T0 + 10) is None, outcome
        assert comms.last_update(status).outcome == outcome


def test_a_failed_first_update_is_retried_after_retry_after_not_before() -> None:
    status = with_updates(sent(T0, "failed"))
    assert comms.last_update(status) is None
    assert comms.update_due(status, CADENCE, T0 + 29, retry_after=30) is None
    assert comms.update_due(status, CADENCE, T0 + 30, retry_after=30) is not None


def test_a_failed_update_on_cadence_is_retried_after_retry_after() -> None:
    status = with_updates(sent(T0), sent(T0 + CADENCE, "failed"))
    assert comms.update_due(status, CADENCE, T0 + CADENCE + 29, retry_after=30) is None
    plan = comms.update_due(status, CADENCE, T0 + CADENCE + 30, retry_after=30)
    assert plan is not None and not plan.final


def test_retry_waits_no_longer_than_the_cadence() -> None:
    # A cadence shorter than retry_after: the retry comes with the next cadence.
    status = with_updates(sent(T0, "failed"))
    assert comms.update_due(status, 20.0, T0 + 19, retry_after=30) is None
    assert comms.update_due(status, 20.0, T0 + 20, retry_after=30) is not None


def test_final_all_clear_once_resolved_whatever_the_cadence() -> None:
    status = with_updates(sent(T0 + 200), status=resolved(T0 + 300))
    plan = comms.update_due(status, CADENCE, T0 + 301)
    assert plan is not None and plan.final and plan.next_at is None
    assert plan.message.startswith("All clear: resolved after 5m")
    assert "No further updates." in plan.message


def test_nothing_after_the_final_update() -> None:
    for outcome in ("delivered", "sending", "unconfirmed", "planned"):
        status = with_updates(sent(T0), sent(T0 + 301, outcome, final=True),
                              status=resolved(T0 + 300))
        assert comms.update_due(status, CADENCE, T0 + 10 * CADENCE) is None, outcome


def test_a_failed_final_update_is_retried() -> None:
    status = with_updates(sent(T0), sent(T0 + 301, "failed", final=True),
                          status=resolved(T0 + 300))
    assert comms.update_due(status, CADENCE, T0 + 320, retry_after=30) is None
    plan = comms.update_due(status, CADENCE, T0 + 331, retry_after=30)
    assert plan is not None and plan.final


# -- compose --------------------------------------------------------------------------------
def test_compose_says_phase_news_slo_and_next_time() -> None:
    status = inc.move(opened(), T0 + 5, inc.MITIGATING, "running first response")
    status = replace(status, slo=inc.Slo(deadline=T0 + 1200, status="15m left"))
    plan = comms.compose(status, None, CADENCE, T0 + 10, final=False)
    assert plan.message == (
        "Status: Mitigating. Since the last update: Mitigating: running first response. "
        f"Recovery SLO: 15m left. Next update by {iso(T0 + 10 + CADENCE)}.")
    assert plan.next_at == T0 + 10 + CADENCE and not plan.final


def test_compose_reports_only_what_happened_since_the_last_update() -> None:
    status = inc.move(opened(), T0 + 5, inc.MITIGATING, "running first response")
    status = inc.note(status, T0 + 10, "StakeholderUpdate", "stakeholder update delivered")
    last = sent(T0 + 10)
    status = inc.note(status, T0 + 40, "StepSucceeded", "rollback (rollback): web-a")
    plan = comms.compose(status, last, CADENCE, T0 + CADENCE, final=False)
    assert "Since the last update: StepSucceeded: rollback (rollback): web-a." in plan.message
    assert "running first response" not in plan.message
    assert "stakeholder update delivered" not in plan.message   # at the last update itself


def test_compose_says_no_change_and_unknown_slo() -> None:
    plan = comms.compose(opened(), None, CADENCE, T0, final=False)
    assert "Since the last update: no change." in plan.message   # Detected is not news
    assert "Recovery SLO: unknown." in plan.message


def test_compose_keeps_the_last_five_entries() -> None:
    status = opened()
    for i in range(8):
        status = inc.note(status, T0 + 1 + i, "Note", f"n{i}")
    plan = comms.compose(status, None, CADENCE, T0 + 20, final=False)
    assert "Since the last update: 3 earlier entries, then: Note: n3; Note: n4; Note: n5; " \
           "Note: n6; Note: n7." in plan.message


def test_compose_final() -> None:
    status = replace(resolved(T0 + 300), slo=inc.Slo(deadline=T0 + 1200, status="met"))
    plan = comms.compose(status, sent(T0 + 100), CADENCE, T0 + 301, final=True)
    assert plan == comms.UpdatePlan(
        "All clear: resolved after 5m; recovery SLO met. Since the last update: "
        "Resolved: stable for 2m. No further updates.", True, None)


def test_update_due_composes_from_the_last_sent_update() -> None:
    status = inc.move(opened(), T0 + 5, inc.MITIGATING, "running first response")
    status = inc.note(status, T0 + 100, "StepSucceeded", "rolled back")
    status = with_updates(sent(T0 + 50), sent(T0 + 200, "failed"), status=status)
    plan = comms.update_due(status, CADENCE, T0 + 50 + CADENCE)
    assert "Since the last update: StepSucceeded: rolled back." in plan.message


# -- overdue --------------------------------------------------------------------------------
def test_first_update_overdue_a_grace_after_detection() -> None:
    status = opened()
    assert not comms.overdue(status, CADENCE, T0 + 60)
    assert comms.overdue(status, CADENCE, T0 + 61)


def test_overdue_against_the_announced_next_time() -> None:
    status = with_updates(sent(T0, next_at=T0 + CADENCE))
    assert not comms.overdue(status, CADENCE, T0 + CADENCE + 60)
    assert comms.overdue(status, CADENCE, T0 + CADENCE + 61)


def test_a_failed_update_keeps_it_overdue() -> None:
    status = with_updates(sent(T0, next_at=T0 + CADENCE), sent(T0 + CADENCE, "failed"))
    assert comms.overdue(status, CADENCE, T0 + CADENCE + 61)


def test_grace_never_longer_than_the_cadence() -> None:
    assert comms.overdue(opened(), 30.0, T0 + 31)


def test_never_overdue_once_resolved() -> None:
    status = with_updates(sent(T0, next_at=T0 + CADENCE), status=resolved(T0 + 300))
    assert not comms.overdue(status, CADENCE, T0 + 10 * CADENCE)


# -- acknowledgements and re-paging -------------------------------------------------------------
def test_acknowledged_roles() -> None:
    acks = [{"role": "oncall-backend", "by": "ana"}, {"role": "release-owner"}, {"by": "x"}]
    assert comms.acknowledged_roles(acks) == {"oncall-backend": "ana", "release-owner": ""}
    assert comms.acknowledged_roles(None) == {}


def test_repage_an_unacknowledged_role_after_repage_after() -> None:
    status = with_pages(page("release-owner", T0 + 10), page("oncall-backend", T0 + 10))
    assert comms.repage_due(status, ROLES, {}, 600, T0 + 609) == {}
    assert comms.repage_due(status, ROLES, {}, 600, T0 + 610) == {"release-owner": 2,
                                                                   "oncall-backend": 2}


def test_acknowledged_roles_are_not_paged_again() -> None:
    status = with_pages(page("release-owner", T0 + 10), page("oncall-backend", T0 + 10))
    assert comms.repage_due(status, ROLES, {"oncall-backend": "ana"}, 600, T0 + 700) == {
        "release-owner": 2}


def test_rounds_increase_from_the_latest_round() -> None:
    status = with_pages(page("release-owner", T0 + 10),
                        page("release-owner", T0 + 610, round=2))
    assert comms.repage_due(status, ROLES, {}, 600, T0 + 1209) == {}
    assert comms.repage_due(status, ROLES, {}, 600, T0 + 1210) == {"release-owner": 3}


def test_unconfirmed_pages_count_failed_and_planned_do_not() -> None:
    status = with_pages(page("release-owner", T0 + 10, "unconfirmed"),
                        page("oncall-backend", T0 + 10, "failed"))
    assert comms.repage_due(status, ROLES, {}, 600, T0 + 700) == {"release-owner": 2}
    status = with_pages(page("release-owner", T0 + 10, "planned"),
                        page("oncall-backend", T0 + 10, "sending"))
    assert comms.repage_due(status, ROLES, {}, 600, T0 + 700) == {}


def test_a_failed_repage_is_due_again_for_the_same_round() -> None:
    status = with_pages(page("release-owner", T0 + 10),
                        page("release-owner", T0 + 610, "failed", round=2))
    assert comms.repage_due(status, ROLES, {}, 600, T0 + 620) == {"release-owner": 2}


def test_only_pages_count_and_only_roles_asked_for() -> None:
    status = with_pages(page("release-owner", T0 + 10, kind="acknowledge"),
                        page("platform-lead", T0 + 10))
    assert comms.repage_due(status, ROLES, {}, 600, T0 + 700) == {}


def test_no_repaging_once_mitigated() -> None:
    pages = (page("release-owner", T0 + 10),)
    for phase in (inc.MITIGATED, inc.RESOLVED, inc.CLOSED):
        assert comms.repage_due(with_pages(*pages, phase=phase), ROLES, {}, 600,
                                T0 + 700) == {}, phase
    for phase in (inc.DETECTED, inc.MITIGATING, inc.FAILED):
        assert comms.repage_due(with_pages(*pages, phase=phase), ROLES, {}, 600,
                                T0 + 700) == {"release-owner": 2}, phase


# -- specialists_paged: the 5-minute promise -------------------------------------------------
def test_paged_in_time() -> None:
    status = with_pages(page("release-owner", T0 + 20), page("oncall-backend", T0 + 95))
    assert comms.specialists_paged(status, ROLES, 300, T0 + 100) == (
        True, "PagedInTime", "release-owner, oncall-backend paged within 1m35s (promise: 5m)")


def test_paged_exactly_at_the_deadline_is_in_time() -> None:
    status = with_pages(page("release-owner", T0 + 300), page("oncall-backend", T0 + 1))
    assert comms.specialists_paged(status, ROLES, 300, T0 + 400)[:2] == (True, "PagedInTime")


def test_the_earliest_delivery_of_a_role_counts() -> None:
    status = with_pages(page("release-owner", T0 + 10), page("oncall-backend", T0 + 10),
                        page("release-owner", T0 + 700, round=2))
    assert comms.specialists_paged(status, ROLES, 300, T0 + 800)[:2] == (True, "PagedInTime")


def test_too_early_to_say() -> None:
    status = with_pages(page("release-owner", T0 + 20))
    assert comms.specialists_paged(status, ROLES, 300, T0 + 300) is None
    assert comms.specialists_paged(with_pages(), ROLES, 300, T0 + 100) is None


def test_not_paged_after_the_deadline() -> None:
    status = with_pages(page("release-owner", T0 + 20), page("oncall-backend", T0 + 20,
                                                             "failed"))
    assert comms.specialists_paged(status, ROLES, 300, T0 + 301) == (
        False, "NotPaged", "oncall-backend not reached within 5m")


def test_paged_late() -> None:
    status = with_pages(page("release-owner", T0 + 20), page("oncall-backend", T0 + 400))
    assert comms.specialists_paged(status, ROLES, 300, T0 + 401) == (
        False, "PagedLate", "oncall-backend paged after the 5m promise")


def test_only_delivered_pages_reach_people() -> None:
    status = with_pages(page("release-owner", T0 + 20, kind="acknowledge"),
                        page("oncall-backend", T0 + 20, "sending"))
    assert comms.specialists_paged(status, ROLES, 300, T0 + 400)[:2] == (False, "NotPaged")


def test_no_promise_without_roles_or_detection() -> None:
    assert comms.specialists_paged(with_pages(), (), 300, T0 + 400) is None
    assert comms.specialists_paged(inc.IncidentStatus(), ROLES, 300, T0 + 400) is None


def test_timeline_entries_without_time_are_not_news() -> None:
    status = replace(opened(), timeline=(TimelineEntry(None, "Note", "undated"),))
    plan = comms.compose(status, None, CADENCE, T0, final=False)
    assert "undated" not in plan.message
