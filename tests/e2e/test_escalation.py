"""The escalation protocol end to end: real pages in each wire format to a local receiver,
the 5-minute promise, timed escalation, acknowledgements, stakeholder cadence, closing."""

from __future__ import annotations

import subprocess
import sys

import pytest

from e2e.conftest import ROLES, Cluster, Rb001, catalogue, rb001_policy, secret
from harness import objects
from harness.procs import wait_for
from harness.receiver import Receiver, Reply
from missioncontrol import timeutil

pytestmark = pytest.mark.cluster
GROUP = "missioncontrol.dev/v1alpha1"


@pytest.fixture
def rb001(crds, cluster, receiver, operator_factory) -> Rb001:
    """Here each test applies RB-001 itself (`setup`), with routes of every type."""
    return Rb001(cluster, receiver, operator_factory)


def contact(role: str, route_type: str, key: str, url: str | None = None) -> dict:
    route = {"type": route_type, "secretRef": {"name": "routes", "key": key}}
    if url:
        route["url"] = url
    return {"role": role, "contacts": [{"name": f"{role}-person", "route": route}]}


def setup(cluster: Cluster, receiver: Receiver, *, rules: list[dict], cadence: str = "1h",
          repage_after: str = "10m", stable_for: str = "3s") -> None:
    """RB-001 with the release owner on PagerDuty, the on-call engineer on Slack, everyone
    else on a webhook; updates and the channel announcement through the policy's routes."""
    cluster.create(catalogue("rb-001"))
    keys = {role: receiver.url(f"/{role}") for role in ROLES}
    cluster.create(secret("routes", **keys, pd="R0UT1NGKEY0000000000000000000001",
                          slack=receiver.url("/slack"), updates=receiver.url("/updates"),
                          channel=receiver.url("/channel")))
    roles = [contact("release-owner", "PagerDuty", "pd", receiver.url("/pd")),
             contact("oncall-backend", "Slack", "slack")]
    roles += [contact(role, "Webhook", role) for role in ROLES[2:]]
    cluster.create({"apiVersion": GROUP, "kind": "ServiceOwnership",
                    "metadata": {"name": "checkout"},
                    "spec": {"service": "checkout", "roles": roles}})
    policy = rb001_policy(stable_for=stable_for, slo="30m")
    policy["spec"]["overrides"].update({"pageWithin": "5s", "repageAfter": repage_after,
                                        "escalationRules": rules})
    policy["spec"]["stakeholderUpdates"] = {
        "cadence": {"SEV1": "1s", "SEV2": cadence, "SEV3": "1h", "SEV4": "4h"},
        "route": {"type": "Webhook", "secretRef": {"name": "routes", "key": "updates"}}}
    policy["spec"]["channel"] = {"route": {"type": "Slack",
                                           "secretRef": {"name": "routes", "key": "channel"}}}
    cluster.create(policy)


def never_healthy(cluster: Cluster) -> str:
    """A Deployment broken from its first release: no rollback target, so the incident
    stays unmitigated until people act."""
    cluster.create(objects.deployment("checkout", image="shop/checkout:1.0", ready=False))
    return cluster.one_incident()["metadata"]["name"]


def test_each_format_carries_its_documented_fields_and_specialists_are_paged_in_time(
        rb001, cluster, receiver):
    setup(cluster, receiver, rules=[{"after": "20m", "page": ["incident-commander"]}])
    rb001.start_operator()
    name = never_healthy(cluster)
    ns = cluster.namespace

    (pd,) = receiver.wait_for_requests("/pd", 1, timeout=30)
    body = pd.json
    assert body["routing_key"] == "R0UT1NGKEY0000000000000000000001"
    assert body["event_action"] == "trigger" and body["dedup_key"] == f"{ns}/{name}"
    assert body["payload"]["severity"] == "error"          # SEV2
    assert body["payload"]["source"] == f"{ns}/checkout"
    assert body["payload"]["summary"].startswith("[SEV2] RB-001")
    assert body["payload"]["custom_details"]["role"] == "release-owner"

    (slack,) = receiver.wait_for_requests("/slack", 1, timeout=30)
    assert "RB-001" in slack.json["text"]
    assert slack.json["blocks"][0]["type"] == "header"

    (channel,) = receiver.wait_for_requests("/channel", 1, timeout=30)
    assert f"#inc-{name}" in channel.json["text"]

    update = receiver.wait_for_requests("/updates", 1, timeout=30)[0].json
    assert update["schema"] == "missioncontrol.dev/notification/v1"
    assert update["kind"] == "update" and update["incident"] == {"namespace": ns, "name": name}
    assert update["target"] == {"kind": "Deployment", "namespace": ns, "name": "checkout"}
    assert "Next update by" in update["summary"]

    def paged_in_time() -> dict | None:
        status = cluster.get("Incident", name)["status"]
        conditions = {c["type"]: c for c in status.get("conditions") or []}
        return conditions.get("SpecialistsPaged")

    condition = wait_for(paged_in_time, timeout=30, what="the SpecialistsPaged condition")
    assert condition["status"] == "True" and condition["reason"] == "PagedInTime"
    status = cluster.get("Incident", name)["status"]
    assert status["channel"]["name"] == f"inc-{name}"
    by_role = {p["role"]: p for p in status["pages"] if p["kind"] == "page"}
    assert by_role["release-owner"]["route"] == "PagerDuty"
    assert by_role["oncall-backend"]["outcome"] == "delivered"


def test_escalation_fires_on_time_and_never_after_mitigation(rb001, cluster, receiver, env):
    setup(cluster, receiver, stable_for="20s", rules=[
        {"after": "2s", "when": "NotMitigated", "page": ["platform-lead"]},
        {"after": "15s", "when": "NotMitigated", "page": ["incident-commander"]}])
    rb001.start_operator()
    name = never_healthy(cluster)

    def rule_fired() -> list:
        return [e for e in cluster.get("Incident", name)["status"].get("escalations") or []
                if e["after"] == "2s"]

    wait_for(rule_fired, timeout=30, what="the 2s escalation rule")
    receiver.wait_for_requests("/platform-lead", 1, timeout=30)
    # People fix it: lift the freeze, ship a release that works.
    ns = cluster.namespace
    env.kubectl("patch", "incident", name, "--type=merge", "-p",
                '{"spec":{"liftFreeze":true}}', namespace=ns)
    wait_for(lambda: not cluster.get("Incident", name)["status"]["freeze"]["active"],
             timeout=30, what="the freeze to lift")
    cluster.release("checkout", image="shop/checkout:1.1", ready=True)
    resolved = cluster.wait_phase(name, "Resolved", timeout=90)
    status = resolved["status"]
    assert status["mitigatedAt"] < status["resolvedAt"]
    # The 15s rule came due after mitigation (resolution took 20s more): it never fired.
    assert [e["after"] for e in status["escalations"] if not e["after"].startswith("step")] \
        == ["2s"]
    assert receiver.requests("/incident-commander") == []


def test_acknowledgement_stops_re_paging(rb001, cluster, receiver, env):
    # repageAfter leaves the test the time to acknowledge after the first page arrives (a
    # kubectl run, the operator's next round): at 2 s, a loaded machine re-paged first.
    setup(cluster, receiver, repage_after="5s",
          rules=[{"after": "20m", "page": ["incident-commander"]}])
    rb001.start_operator()
    name = never_healthy(cluster)
    receiver.wait_for_requests("/pd", 1, timeout=30)
    env.kubectl("patch", "incident", name, "--type=merge", "-p",
                '{"spec":{"acknowledgements":[{"role":"release-owner","by":"ada"}]}}',
                namespace=cluster.namespace)
    # The on-call engineer does not acknowledge: paged again, twice.
    receiver.wait_for_requests("/slack", 3, timeout=30)
    pd = [r.json["event_action"] for r in receiver.requests("/pd")]
    assert pd == ["trigger", "acknowledge"]

    def three_rounds() -> dict | None:
        status = cluster.get("Incident", name)["status"]
        rounds = sorted(p["round"] for p in status["pages"]
                        if p["role"] == "oncall-backend" and p["kind"] == "page")
        return status if rounds[:3] == [1, 2, 3] else None

    status = wait_for(three_rounds, timeout=30, what="three rounds recorded for oncall-backend")
    owner = [p for p in status["pages"] if p["role"] == "release-owner" and p["kind"] == "page"]
    assert len(owner) == 1 and owner[0]["acknowledgedAt"]
    assert any(e["type"] == "Acknowledged" and "ada" in e["message"]
               for e in status["timeline"])


def test_updates_follow_the_cadence_and_stop_after_the_all_clear(rb001, cluster, receiver):
    setup(cluster, receiver, cadence="2s", stable_for="8s",
          rules=[{"after": "20m", "page": ["incident-commander"]}])
    rb001.start_operator()
    rb001.healthy_checkout()
    cluster.release("checkout", image="shop/checkout:2.0", ready=False)
    name = cluster.one_incident()["metadata"]["name"]
    cluster.wait_phase(name, "Resolved", timeout=90)

    def final() -> list:
        got = receiver.requests("/updates")
        return got if got and "All clear" in got[-1].json["summary"] else []

    updates = wait_for(final, timeout=30, what="the final all-clear")
    assert len(updates) >= 3      # at detection, then every 2s until resolved
    records = wait_for(lambda: (lambda u: u if u[-1].get("final") else None)(
        cluster.get("Incident", name)["status"]["updates"]),
        timeout=30, what="the all-clear recorded")
    # The cadence is kept by when each update was composed (its time in status, also its
    # idempotency key); arrival times at the receiver also carry each delivery's own delay.
    times = [timeutil.parse(u["at"]) for u in records if not u.get("final")]
    gaps = [b - a for a, b in zip(times, times[1:], strict=False)]
    assert len(times) >= 2 and all(gap >= 2.0 for gap in gaps), gaps
    # Each one reached the receiver once (a delayed one may arrive after the next).
    assert sorted(u.json["summary"] for u in updates) == sorted(u["message"] for u in records)
    # Long enough for two more cadences to have come due: nothing more is sent.
    tick = cluster.get("IncidentPolicy", "checkout-guard")["status"]["lastTick"]
    wait_for(lambda: cluster.get("IncidentPolicy", "checkout-guard")["status"]["lastTick"]
             > tick and receiver.requests("/pd") and _age(receiver, updates[-1]) > 4.5,
             timeout=30, what="two more cadence periods")
    assert len(receiver.requests("/updates")) == len(updates)
    (pd_resolve,) = [r for r in receiver.requests("/pd") if r.json["event_action"] == "resolve"]
    assert pd_resolve.json["dedup_key"].endswith(f"/{name}")


def _age(receiver: Receiver, request) -> float:
    import time
    return time.monotonic() - request.at


def test_a_failing_receiver_is_retried_and_reported(rb001, cluster, receiver):
    setup(cluster, receiver, rules=[{"after": "20m", "page": ["incident-commander"]}])
    receiver.script("/slack", Reply(status=500))             # then the default 200
    receiver.script("/pd", *[Reply(status=400)] * 3)          # rejected: not retried
    rb001.start_operator()
    name = never_healthy(cluster)
    receiver.wait_for_requests("/slack", 2, timeout=30)

    def recorded() -> dict | None:
        pages = {p["role"]: p for p in cluster.get("Incident", name)["status"].get("pages")
                 or [] if p["kind"] == "page" and p["outcome"] != "sending"}
        return pages if {"release-owner", "oncall-backend"} <= set(pages) else None

    pages = wait_for(recorded, timeout=30, what="both pages recorded")
    assert pages["oncall-backend"]["outcome"] == "delivered"
    assert pages["oncall-backend"]["attempts"] == 2
    assert pages["release-owner"]["outcome"] == "failed"
    assert pages["release-owner"]["attempts"] == 1 and "400" in pages["release-owner"]["error"]
    # The failed page blocked nothing: the runbook went on.
    steps = {s["id"]: s for s in cluster.get("Incident", name)["status"]["steps"]}
    assert steps["freeze"]["state"] == "Succeeded"


def test_closing_needs_action_items_with_assignees(rb001, cluster, receiver, env):
    setup(cluster, receiver, rules=[{"after": "20m", "page": ["incident-commander"]}])
    rb001.start_operator()
    rb001.healthy_checkout()
    cluster.release("checkout", image="shop/checkout:2.0", ready=False)
    name = cluster.one_incident()["metadata"]["name"]
    cluster.wait_phase(name, "Resolved", timeout=90)
    ns = cluster.namespace
    refused = env.kubectl("patch", "incident", name, "--type=merge", "-p",
                          '{"spec":{"close":true,"actionItems":[{"title":"add a canary"}]}}',
                          namespace=ns, check=False)
    assert refused.returncode != 0 and "assignee" in refused.stderr
    env.kubectl("patch", "incident", name, "--type=merge", "-p",
                '{"spec":{"close":true,"actionItems":[{"title":"add a canary",'
                '"assignee":"ada"}]}}', namespace=ns)
    closed = cluster.wait_phase(name, "Closed", timeout=30)
    assert closed["status"]["closedAt"]
    board = env.kubectl("get", "incidents", namespace=ns).stdout
    assert "Closed" in board and "RB-001" in board

    postmortem = subprocess.run(
        [sys.executable, "-m", "missioncontrol", "postmortem", name, "-n", ns,
         "--kubeconfig", str(env.kubeconfig)], capture_output=True, text=True, timeout=60)
    assert postmortem.returncode == 0, postmortem.stderr
    text = postmortem.stdout
    for heading in ("## Summary", "## Timeline", "## What the runbook did", "## Rollback",
                    "## People", "## Recovery SLO", "## Action items"):
        assert heading in text, heading
    assert "add a canary — ada" in text and "**Met**" in text
    rendered = subprocess.run(
        [sys.executable, "-m", "missioncontrol", "runbook", "render", "rb-001", "-n", ns,
         "--kubeconfig", str(env.kubeconfig)], capture_output=True, text=True, timeout=60)
    assert rendered.returncode == 0 and rendered.stdout.startswith("# RB-001")


def test_a_restart_mid_incident_sends_nothing_twice(rb001, cluster, receiver):
    setup(cluster, receiver, cadence="3s", rules=[
        {"after": "4s", "when": "NotMitigated", "page": ["platform-lead"]}])
    first = rb001.start_operator()
    name = never_healthy(cluster)
    receiver.wait_for_requests("/updates", 2, timeout=30)
    first.kill()
    before = {path: len(receiver.requests(path)) for path in ("/pd", "/slack", "/channel")}
    rb001.start_operator()
    wait_for(lambda: any(e["after"] == "4s" for e in cluster.get("Incident", name)[
        "status"].get("escalations") or []), timeout=30, what="the 4s rule after the restart")
    receiver.wait_for_requests("/updates", len(receiver.requests("/updates")) + 1, timeout=30)
    after = {path: len(receiver.requests(path)) for path in ("/pd", "/slack", "/channel")}
    assert after == before == {"/pd": 1, "/slack": 1, "/channel": 1}
    # Every update that reached the receiver is in the status exactly once (it is recorded
    # as "sending" before it goes out: one cut short by the kill shows as "unconfirmed").
    status = cluster.get("Incident", name)["status"]
    sent = [u for u in status["updates"]
            if u["outcome"] in ("delivered", "unconfirmed", "sending")]
    assert len(receiver.requests("/updates")) == len(sent)
    times = [u["at"] for u in sent]
    assert len(times) == len(set(times))


def test_a_severity_change_is_recorded_and_the_cadence_follows(rb001, cluster, receiver, env):
    setup(cluster, receiver, cadence="1h", rules=[{"after": "20m", "page": ["platform-lead"]}])
    rb001.start_operator()
    name = never_healthy(cluster)
    receiver.wait_for_requests("/updates", 1, timeout=30)   # at detection; next one in 1h
    env.kubectl("patch", "incident", name, "--type=merge", "-p", '{"spec":{"severity":"SEV1"}}',
                namespace=cluster.namespace)
    # SEV1's cadence is 1s here: an update at once, then one a second.
    updates = receiver.wait_for_requests("/updates", 4, timeout=30)
    assert all(u.json["severity"] == "SEV1" for u in updates[1:])
    status = cluster.get("Incident", name)["status"]
    assert status["severity"] == "SEV1"
    assert any(e["type"] == "SeverityChanged" and e["message"] == "severity SEV2 -> SEV1"
               for e in status["timeline"])
    board = env.kubectl("get", "incident", name, namespace=cluster.namespace).stdout
    assert "SEV1" in board
