"""What an incident still owes people, on a fake clock (comms.py's outbox): failed pages and
the all-clear are retried at their pace, also after the incident resolved, until delivered
or expired; the daemon runs on exactly while something is owed. And the state change of an
incident whose automation stops (incident.stop_automation)."""

from __future__ import annotations

from dataclasses import replace

from missioncontrol import comms
from missioncontrol import incident as inc
from missioncontrol.handlers.incidents import _needs_daemon
from missioncontrol.incident import Page, Update
from missioncontrol.records import to_dict

T0 = 1_700_000_000.0
EVERY = 60.0
DAY = 86400.0


def opened() -> inc.IncidentStatus:
    return inc.opened(now=T0, mode="enforce", slo=1200.0, evidence=(), steps=(),
                      reason="readiness failed 3 consecutive checks")


def resolved(at: float = T0 + 300, *pages: Page, updates: tuple[Update, ...] = ()
             ) -> inc.IncidentStatus:
    status = inc.move(opened(), T0 + 60, inc.MITIGATED, "rolled back")
    status = inc.move(status, at, inc.RESOLVED, "stable for 2m")
    return replace(status, pages=pages, updates=updates)


def page(role: str = "release-owner", outcome: str = "failed", *, at: float = T0 + 1,
         tried_at: float | None = None, kind: str = "page", route: str = "Webhook",
         contact: str = "ada") -> Page:
    return Page(role, contact, route, kind, at, outcome, 4, "HTTP 500", tried_at=tried_at,
                summary="readiness failed")


def final(outcome: str, *, at: float = T0 + 300, tried_at: float | None = None) -> Update:
    return Update(at=at, phase=inc.RESOLVED, message="All clear", outcome=outcome, final=True,
                  tried_at=tried_at)


# -- what is owed ---------------------------------------------------------------------------
def test_a_resolved_incident_with_a_failed_page_owes_it() -> None:
    status = resolved(T0 + 300, page(), updates=(final("delivered"),))
    assert comms.owed_pages(status) == (page(),)
    assert comms.owed(status)


def test_nothing_owed_once_everything_is_delivered() -> None:
    status = resolved(T0 + 300, page(outcome="delivered"), updates=(final("delivered"),))
    assert not comms.owed(status)


def test_the_all_clear_is_owed_until_it_went_out_or_was_given_up() -> None:
    assert comms.owed(resolved())                                   # not tried yet
    assert comms.owed(resolved(updates=(final("failed"),)))
    for outcome in ("delivered", "planned", "unconfirmed", "no route", "expired"):
        assert not comms.owed(resolved(updates=(final(outcome),))), outcome


def test_unconfirmed_and_sending_pages_are_owed_nobody_and_expired_are_not() -> None:
    done = (final("delivered"),)
    assert comms.owed(resolved(T0 + 300, page(outcome="unconfirmed"), updates=done))
    assert comms.owed(resolved(T0 + 300, page(outcome="sending"), updates=done))
    assert not comms.owed(resolved(T0 + 300, page(outcome="expired"), updates=done))
    assert not comms.owed(resolved(T0 + 300, page(contact=""), updates=done))


def test_an_acknowledgement_is_no_longer_news_once_resolved() -> None:
    ack = page(kind="acknowledge", route="PagerDuty")
    assert comms.owed_pages(replace(opened(), pages=(ack,))) == (ack,)
    assert not comms.owed(resolved(T0 + 300, ack, updates=(final("delivered"),)))


def test_a_page_that_reached_pagerduty_late_owes_its_resolve() -> None:
    late = page(outcome="delivered", route="PagerDuty")
    status = resolved(T0 + 300, late, updates=(final("delivered"),))
    assert comms.resolves_owed(status) == ("release-owner",)
    assert comms.owed(status)
    closed = replace(status, pages=(late, replace(late, kind="resolve")))
    assert comms.resolves_owed(closed) == () and not comms.owed(closed)


def test_open_or_closed_incidents_owe_nothing_here() -> None:
    """Open: the daemon runs anyway. Closed: people ended it."""
    assert not comms.owed(replace(opened(), pages=(page(),)))
    closed = inc.move(resolved(T0 + 300, page()), T0 + 900, inc.CLOSED, "closed")
    assert not comms.owed(closed)


# -- the pace ---------------------------------------------------------------------------------
def test_a_failed_page_is_due_again_every_interval_after_its_latest_attempt() -> None:
    failed = page(tried_at=T0 + 100)
    status = resolved(T0 + 300, failed, updates=(final("delivered"),))
    assert comms.redelivery_due(status, T0 + 159, EVERY) == ()
    assert comms.redelivery_due(status, T0 + 160, EVERY) == (failed,)
    assert comms.next_retry_in(status, T0 + 130, EVERY) == 30.0


def test_an_unconfirmed_page_is_due_at_once_and_one_under_way_is_not() -> None:
    status = resolved(T0 + 300, page(outcome="unconfirmed", tried_at=T0 + 299),
                      page("oncall-backend", outcome="sending", tried_at=T0 + 299))
    assert [p.role for p in comms.redelivery_due(status, T0 + 300, EVERY)] == ["release-owner"]
    assert comms.next_retry_in(status, T0 + 300, EVERY) == 0.0


def test_the_failed_all_clear_goes_again_as_it_was_under_the_same_key() -> None:
    status = resolved(updates=(final("failed", at=T0 + 300, tried_at=T0 + 310),))
    assert comms.update_due(status, 900.0, T0 + 369, retry_after=EVERY) is None
    plan = comms.update_due(status, 900.0, T0 + 370, retry_after=EVERY)
    assert plan == comms.UpdatePlan("All clear", True, None, at=T0 + 300)
    assert comms.next_retry_in(status, T0 + 340, EVERY) == 30.0


def test_an_all_clear_without_a_route_or_given_up_is_not_tried_again() -> None:
    for outcome in ("no route", "expired"):
        status = resolved(updates=(final(outcome),))
        assert comms.update_due(status, 900.0, T0 + 10_000, retry_after=EVERY) is None


def test_a_stakeholder_update_without_a_route_waits_like_a_failed_one() -> None:
    status = replace(opened(), updates=(Update(at=T0, phase=inc.DETECTED, message="...",
                                               outcome="no route", next_at=T0 + 900),))
    assert comms.update_due(status, 900.0, T0 + 59, retry_after=EVERY) is None
    assert comms.update_due(status, 900.0, T0 + 60, retry_after=EVERY) is not None


# -- expiry -------------------------------------------------------------------------------------
def test_pages_expire_a_day_after_their_first_attempt_with_one_timeline_entry() -> None:
    young, old = page("oncall-backend", at=T0 + 100), page(at=T0 + 1)
    status = resolved(T0 + 300, old, young, updates=(final("delivered"),))
    assert comms.expire(status, T0 + DAY, DAY) == status
    later = comms.expire(status, T0 + 1 + DAY, DAY)
    assert [p.outcome for p in later.pages] == ["expired", "failed"]
    assert later.pages[0].error.startswith("not delivered within 24h00m: given up")
    assert "HTTP 500" in later.pages[0].error
    assert later.timeline[-1].type == "DeliveryExpired"
    assert "page to release-owner (ada)" in later.timeline[-1].message
    assert comms.owed(later)   # the younger one is still owed
    assert not comms.owed(comms.expire(later, T0 + 100 + DAY, DAY))


def test_the_all_clear_expires_a_day_after_the_resolution() -> None:
    status = resolved(T0 + 300, updates=(final("failed", at=T0 + 300),))
    assert comms.expire(status, T0 + 299 + DAY, DAY) == status
    later = comms.expire(status, T0 + 300 + DAY, DAY)
    assert [u.outcome for u in later.updates] == ["expired"]
    assert not comms.owed(later)
    never_tried = comms.expire(resolved(T0 + 300), T0 + 300 + DAY, DAY)
    assert [(u.final, u.outcome) for u in never_tried.updates] == [(True, "expired")]
    assert not comms.owed(never_tried)


def test_pending_condition_says_what_is_retried_then_how_it_ended() -> None:
    status = resolved(T0 + 300, page())
    pending = comms.pending_condition(status, EVERY)
    assert pending == (True, "Retrying", "1 page(s) and the all-clear not delivered yet: "
                                         "retried every 1m")
    done = resolved(T0 + 300, page(outcome="delivered"), updates=(final("delivered"),))
    assert comms.pending_condition(done, EVERY)[:2] == (False, "Delivered")
    gone = resolved(T0 + 300, page(outcome="expired"), updates=(final("delivered"),))
    assert comms.pending_condition(gone, EVERY)[:2] == (False, "Expired")
    assert comms.pending_condition(opened(), EVERY) is None


def test_a_page_reaches_people_when_it_is_delivered_not_when_first_tried() -> None:
    late = replace(page(outcome="delivered", at=T0 + 1, tried_at=T0 + 400), about="")
    status = replace(opened(), pages=(late,))
    assert comms.specialists_paged(status, ("release-owner",), 300.0, T0 + 500)[1] == \
        "PagedLate"


# -- the daemon's filter ----------------------------------------------------------------------
def test_the_daemon_runs_for_open_incidents_and_resolved_ones_that_owe() -> None:
    def needs(status: inc.IncidentStatus) -> bool:
        return _needs_daemon(status=to_dict(status))

    assert needs(opened())
    assert needs(resolved(T0 + 300, page(), updates=(final("delivered"),)))
    assert needs(resolved())
    assert not needs(resolved(T0 + 300, page(outcome="delivered"),
                              updates=(final("delivered"),)))
    assert not _needs_daemon(status={})
    assert not _needs_daemon(status={"phase": "Resolved", "pages": "not a list"})
    # Resolved and owing nothing, but holding its freeze for a suspended GitOps owner: its
    # daemon watches the source revision.
    done = resolved(T0 + 300, page(outcome="delivered"), updates=(final("delivered"),))
    hold = inc.GitOpsHold("suspend-gitops", "Kustomization", "flux-system", "apps")
    assert needs(replace(done, gitops=hold))
    assert not needs(replace(done, gitops=replace(hold, released_at=T0 + 900)))


def test_the_daemon_runs_to_close_an_incident_asked_to_close() -> None:
    # The daemon is the one writer of the status: it performs the close, even of a resolved
    # incident that owes nothing (and so had no daemon), but never closes one twice.
    done = to_dict(resolved(T0 + 300, page(outcome="delivered"), updates=(final("delivered"),)))
    assert _needs_daemon(status=done, spec={"close": True})
    assert not _needs_daemon(status=done, spec={"close": False})
    assert not _needs_daemon(status={**done, "phase": "Closed"}, spec={"close": True})
    assert not _needs_daemon(status={}, spec={"close": True})


# -- automation stopped -----------------------------------------------------------------------
def test_stopping_automation_hands_a_mitigated_incident_to_people() -> None:
    mitigated = inc.move(opened(), T0 + 60, inc.MITIGATED, "rolled back")
    status = inc.stop_automation(mitigated, T0 + 90, "PolicyDeleted",
                                 "IncidentPolicy shop/guard was deleted")
    assert status.phase == inc.FAILED and status.open and status.automation_stopped
    stopped = status.condition(inc.AUTOMATION_STOPPED)
    assert (stopped.status, stopped.reason, stopped.message) == (
        "True", "PolicyDeleted", "IncidentPolicy shop/guard was deleted")
    assert status.condition("Mitigated").status == "False"
    assert status.condition("Resolved") is None
    assert [(e.type, e.message) for e in status.timeline[-2:]] == [
        (inc.AUTOMATION_STOPPED, "IncidentPolicy shop/guard was deleted"),
        (inc.FAILED, "automation stopped: IncidentPolicy shop/guard was deleted")]


def test_automation_stops_once_and_never_for_a_closed_incident() -> None:
    once = inc.stop_automation(opened(), T0 + 10, "TargetDeleted", "Deployment gone")
    assert inc.stop_automation(once, T0 + 20, "PolicyDeleted", "policy gone") == once
    done = resolved()
    assert inc.stop_automation(done, T0 + 400, "TargetDeleted", "gone") == done


def test_what_an_open_incident_misses_names_the_object() -> None:
    from missioncontrol.engine import missing

    spec = {"runbook": {"name": "rb-001", "id": "RB-001"}, "policy": "guard",
            "target": {"namespace": "shop", "name": "checkout"}}
    assert missing(spec, "ops", runbook=True, policy=True, deployment=True) is None
    assert missing(spec, "ops", runbook=False, policy=False, deployment=False)[0] == \
        "RunbookDeleted"
    reason, message = missing(spec, "ops", runbook=True, policy=False, deployment=True)
    assert reason == "PolicyDeleted" and message.startswith("IncidentPolicy ops/guard was")
    reason, message = missing(spec, "ops", runbook=True, policy=True, deployment=False)
    assert reason == "TargetDeleted" and message.startswith("Deployment shop/checkout was")
    # An incident made by hand, without a policy, misses none.
    assert missing({**spec, "policy": ""}, "ops", runbook=True, policy=False,
                   deployment=True) is None
