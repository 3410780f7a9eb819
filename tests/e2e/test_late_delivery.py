"""Deliveries outlive the incident's daemon: with every receiver down while an incident
opens and resolves, the pages and the all-clear still arrive once the receivers come back,
after the resolution, and the Incident's status records them delivered."""

from __future__ import annotations

import time

import pytest

from e2e.conftest import rb001_policy
from harness.procs import wait_for
from harness.receiver import Reply

pytestmark = pytest.mark.cluster
ROLES = ("release-owner", "oncall-backend")
EVERY = 2.0   # --redeliver-every: short, for the test


def _ok(receiver, path: str) -> list:
    return [r for r in receiver.requests(path) if r.reply.status == 200]


def test_pages_and_the_all_clear_that_failed_while_open_arrive_after_it_resolved(
        rb001, cluster, receiver):
    cluster.create(rb001_policy())
    rb001.start_operator("--redeliver-every", str(EVERY))
    rb001.healthy_checkout()
    receiver.default = Reply(status=500, body={"error": "down for maintenance"})

    cluster.release("checkout", image="shop/checkout:2.0", ready=False)
    name = cluster.one_incident()["metadata"]["name"]
    cluster.wait_phase(name, "Resolved", timeout=120)

    def all_failed() -> dict | None:
        status = cluster.get("Incident", name)["status"]
        pages = {p["role"]: p for p in status.get("pages") or []
                 if p["kind"] == "page" and not p.get("about")}
        finals = [u for u in status.get("updates") or [] if u.get("final")]
        done = all(pages.get(r, {}).get("outcome") == "failed" for r in ROLES) and \
            finals and finals[-1]["outcome"] == "failed"
        return status if done else None

    # Resolved with nothing delivered: the pages and the all-clear failed.
    status = wait_for(all_failed, timeout=60, what="the pages and the all-clear to fail")
    assert status["phase"] == "Resolved"
    assert all(r.reply.status == 500 for r in receiver.requests())
    first_try = {role: receiver.requests(f"/{role}")[0] for role in ROLES}

    back = time.monotonic()
    receiver.default = Reply()
    for role in ROLES:
        (late,) = wait_for(lambda r=role: _ok(receiver, f"/{r}"), timeout=60,
                           what=f"the page to {role} after the resolution")
        assert late.at > back and late.json["kind"] == "page"
        assert late.json["phase"] == "Resolved"
        # The same page as the one that failed: same words, same idempotency key.
        assert late.json["summary"] == first_try[role].json["summary"]
        assert late.header("Idempotency-Key") == first_try[role].header("Idempotency-Key")
    (clear,) = wait_for(lambda: [r for r in _ok(receiver, "/stakeholders")
                                 if r.json["summary"].startswith("All clear")],
                        timeout=60, what="the all-clear after the resolution")
    assert clear.at > back and clear.json["kind"] == "update"

    def recorded() -> dict | None:
        status = cluster.get("Incident", name)["status"]
        conditions = {c["type"]: c for c in status.get("conditions") or []}
        pending = conditions.get("NotificationsPending")
        return status if pending and pending["status"] == "False" else None

    status = wait_for(recorded, timeout=30, what="NotificationsPending=False")
    conditions = {c["type"]: c for c in status["conditions"]}
    assert conditions["NotificationsPending"]["reason"] == "Delivered"
    pages = {p["role"]: p for p in status["pages"] if p["kind"] == "page"}
    for role in ROLES:
        assert pages[role]["outcome"] == "delivered", pages[role]
        assert pages[role]["triedAt"] > status["resolvedAt"]
        assert pages[role]["attempts"] > 1
    final = [u for u in status["updates"] if u.get("final")]
    assert [u["outcome"] for u in final] == ["delivered"]   # one record, retried in place
    assert final[0]["triedAt"] > status["resolvedAt"]
    assert any(e["type"] == "NotificationsDelivered" for e in status["timeline"])
    assert status["phase"] == "Resolved"

    # Nothing is owed any more: nothing more is sent (the daemon is done).
    count = len(receiver.requests())
    settled = time.monotonic()
    wait_for(lambda: time.monotonic() - settled > 3 * EVERY, timeout=3 * EVERY + 5,
             what="three more retry intervals")
    assert len(receiver.requests()) == count
    for role in ROLES:
        assert len(_ok(receiver, f"/{role}")) == 1
