"""Closing an open incident while its daemon is mid-round: the close is never lost.

The daemon is the only writer of an Incident's status: spec.close is a request it performs
in its next round. Before that, a kopf handler wrote the close beside the daemon, whose next
write of its own (older) copy could put the incident back to an open phase."""

from __future__ import annotations

import time

import pytest

from e2e.conftest import rb001_policy
from e2e.test_bad_input import declared
from harness import objects
from harness.procs import wait_for

pytestmark = pytest.mark.cluster
INCIDENTS = 6   # each close is one try at the race; together they hit it reliably
WATCH = 8.0     # seconds each closed incident is watched for a write that reopens it


def test_closing_while_rounds_are_in_flight_always_ends_closed(rb001, cluster, env):
    policy = rb001_policy()
    # SEV1 updates every second, each written twice (sending, then its outcome): the
    # daemons write their status all the time, so a close lands in the middle of a round.
    policy["spec"]["stakeholderUpdates"] = {
        "cadence": {"SEV1": "1s", "SEV2": "1h", "SEV3": "1h", "SEV4": "4h"},
        "route": {"type": "Webhook", "secretRef": {"name": "pager-routes",
                                                   "key": "stakeholders"}}}
    cluster.create(policy)
    rb001.start_operator()
    names = [f"busy-{i}" for i in range(INCIDENTS)]
    for name in names:
        cluster.create(objects.deployment(name, image="shop/busy:1.0", ready=False))
        cluster.create(declared(name, cluster, target=name))

    def busy(name: str) -> bool:
        status = cluster.get("Incident", name).get("status") or {}
        return status.get("phase") in ("Mitigating", "Failed") and bool(status.get("updates"))
    # Six incidents' first rounds take long on a loaded machine: the deadline is generous.
    wait_for(lambda: all(busy(n) for n in names), timeout=240,
             what="every incident open and sending updates")

    items = [{"title": "add a readiness gate", "assignee": "ada"}]
    for name in names:
        cluster.patch("Incident", name, {"spec": {"close": True, "actionItems": items}})
    for name in names:
        cluster.wait_phase(name, "Closed", timeout=30)
    # Never reopened: an older copy written over the close would show within a round or two.
    deadline = time.monotonic() + WATCH
    while time.monotonic() < deadline:
        phases = {n: (cluster.get("Incident", n).get("status") or {}).get("phase")
                  for n in names}
        assert set(phases.values()) == {"Closed"}, phases
        time.sleep(0.2)
    for name in names:
        status = cluster.get("Incident", name)["status"]
        assert status["closedAt"]
        assert not status["freeze"]["active"]
        closing = [e for e in status["timeline"] if e["type"] == "Closed"]
        assert len(closing) == 1, closing
        assert "add a readiness gate (ada)" in closing[0]["message"]
