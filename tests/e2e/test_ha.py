"""High availability on the real control plane: two operator processes, started the same way
and with no coordination flags, behind one webhook endpoint (a balancer standing in for the
Service: each connection goes to the next replica). Exactly one acts (the leader Lease), both
answer the freeze webhook from the same truth, a refusal is logged at INFO with its incident,
and a kill of the leader mid-incident is completed by the other without repeating a step."""

from __future__ import annotations

import base64
import json
import re
import threading
import time
import urllib.request
from collections.abc import Callable, Iterator

import pytest
from kubernetes import client

from e2e.conftest import REPO, rb001_policy
from harness import objects
from harness.balancer import Balancer
from harness.operator import OperatorProcess
from harness.procs import wait_for
from missioncontrol.actions.freeze import FROZEN
from missioncontrol.webhookcerts import expires

pytestmark = pytest.mark.cluster

LEADER = re.compile(r'^missioncontrol_leader\{identity="([^"]+)"\} ([0-9.]+)$', re.MULTILINE)


def leading(op: OperatorProcess) -> bool:
    try:
        with urllib.request.urlopen(op.metrics_url, timeout=2) as response:
            text = response.read().decode()
    except OSError:
        return False
    return any(float(value) == 1 for _, value in LEADER.findall(text))


@pytest.fixture
def pair(rb001, cluster) -> Iterator[Callable[[], list[OperatorProcess]]]:
    """Start two replicas behind one balancer, sharing the webhook certificate's Secret."""
    started: list[OperatorProcess] = []
    with Balancer(lambda: [op.webhook_port for op in started]) as balancer:
        def start(*more: str) -> list[OperatorProcess]:
            extra = ("--webhook-url", f"https://127.0.0.1:{balancer.port}/freeze",
                     "--webhook-secret", f"{cluster.namespace}/webhook-tls", *more)
            for _ in range(2):
                started.append(rb001.start_operator(*extra))
            return started

        start.balancer = balancer  # type: ignore[attr-defined]
        yield start


def the_leader(ops: list[OperatorProcess], timeout: float = 30) -> OperatorProcess:
    def one() -> OperatorProcess | None:
        leaders = [op for op in ops if leading(op)]
        assert len(leaders) <= 1, "two replicas lead at once"
        return leaders[0] if leaders else None
    return wait_for(one, timeout=timeout, what="one replica to lead")


def try_release(cluster, name: str, image: str) -> str:
    """A server-side dry run of a new release: the API server asks the webhook and changes
    nothing. The webhook's answer, or the API error."""
    template = objects.deployment(name, image=image)["spec"]["template"]
    try:
        cluster.apps.patch_namespaced_deployment(name, cluster.namespace,
                                                 {"spec": {"template": template}}, dry_run="All")
    except client.ApiException as exc:
        return exc.body or str(exc)
    return "allowed"


def pages(receiver, role: str) -> list:
    return [r for r in receiver.requests(f"/{role}") if r.json["kind"] == "page"]


def test_two_replicas_roll_back_once_and_page_each_person_once(rb001, cluster, receiver, pair):
    cluster.create(rb001_policy(stable_for="20s"))
    ops = pair()
    leader = the_leader(ops)
    standby = next(op for op in ops if op is not leader)
    wait_for(lambda: "standby: lease" in standby.logs(), timeout=30,
             what="the standby to say it stands by")
    assert not leading(standby)

    rb001.healthy_checkout()
    cluster.release("checkout", image="shop/checkout:2.0", ready=False)
    incident = cluster.one_incident()
    name = incident["metadata"]["name"]
    mitigated = cluster.wait_phase(name, "Mitigated", timeout=90)
    assert mitigated["status"]["freeze"]["active"] is True

    # While frozen, every answer names the incident, whichever replica gives it.
    answers = [try_release(cluster, "checkout", f"shop/checkout:3.{i}") for i in range(6)]
    for answer in answers:
        assert f"frozen by incident {name}" in answer, answer
    connections = pair.balancer.connections
    assert all(connections.get(op.webhook_port, 0) >= 2 for op in ops), connections
    for op in ops:
        wait_for(lambda op=op: f"frozen by incident {cluster.namespace}/{name}" in op.logs(),
                 timeout=10, what="a refusal logged with its incident by each replica")

    resolved = cluster.wait_phase(name, "Resolved", timeout=90)
    assert resolved["status"]["freeze"]["active"] is False
    by_id = {s["id"]: s for s in resolved["status"]["steps"]}
    assert by_id["rollback"]["state"] == "Succeeded", by_id["rollback"]
    assert len(cluster.incidents()) == 1
    # One rollback: revisions 1 (healthy), 2 (broken), 3 (the rollback) and no more.
    dep = cluster.deployment("checkout")
    assert dep.metadata.annotations["deployment.kubernetes.io/revision"] == "3"
    for role in ("release-owner", "oncall-backend"):
        assert len(pages(receiver, role)) == 1, (role, len(pages(receiver, role)))
    # Intended refusals are INFO, never kopf's ERROR "failed permanently".
    for op in ops:
        log = op.logs()
        assert "failed permanently" not in log
        refusals = [line for line in log.splitlines() if "freeze: refused" in line]
        assert refusals and all(" INFO " in line for line in refusals), refusals[:3]
        op.check_alive()


def test_a_refusal_is_logged_at_info_naming_its_incident_not_as_an_error(rb001, cluster):
    """One operator as it always ran (no HA flags): the webhook's intended refusal is INFO."""
    cluster.create(rb001_policy(stable_for="30s"))
    op = rb001.start_operator()
    rb001.healthy_checkout()
    cluster.release("checkout", image="shop/checkout:2.0", ready=False)
    name = cluster.one_incident()["metadata"]["name"]
    cluster.wait_phase(name, "Mitigated", timeout=90)
    answer = try_release(cluster, "checkout", "shop/checkout:3.0")
    assert f"frozen by incident {name}" in answer, answer
    wait_for(lambda: f"frozen by incident {cluster.namespace}/{name}" in op.logs()
             or "failed permanently" in op.logs(), timeout=10,
             what="the refusal in the operator's log")
    lines = op.logs().splitlines()
    errors = [line for line in lines if " ERROR " in line]
    assert not errors, errors[:5]
    refusals = [line for line in lines if f"{cluster.namespace}/{name}" in line
                and "refused" in line]
    assert refusals and all(" INFO " in line for line in refusals), refusals
    op.check_alive()


def test_a_kill_of_the_leader_mid_incident_is_completed_by_the_other(rb001, cluster, receiver,
                                                                     pair):
    cluster.create(rb001_policy())
    ops = pair()
    leader = the_leader(ops)
    other = next(op for op in ops if op is not leader)
    rb001.healthy_checkout()
    cluster.release("checkout", image="shop/checkout:2.0", ready=False)
    name = wait_for(lambda: cluster.incidents(), timeout=60, what="an incident")[0][
        "metadata"]["name"]
    leader.kill()   # mid-incident, wherever it was
    killed = time.monotonic()
    at_kill = {s["id"]: s for s in (cluster.get("Incident", name).get("status") or {}).get(
        "steps") or []}
    wait_for(lambda: leading(other), timeout=30, what="the other replica to take over")
    failover = time.monotonic() - killed
    print(f"\nfailover: the other replica led {failover:.1f} s after the kill "
          f"(lease duration {leader.lease_duration})")
    assert failover < 15, failover

    resolved = cluster.wait_phase(name, "Resolved", timeout=90)
    after = {s["id"]: s for s in resolved["status"]["steps"]}
    for step_id, before in at_kill.items():
        if before["state"] in ("Succeeded", "Skipped", "Failed"):
            assert after[step_id] == before, f"{step_id} ran again after the failover"
    assert after["rollback"]["state"] == "Succeeded", after["rollback"]
    assert len(cluster.incidents()) == 1
    dep = cluster.deployment("checkout")
    assert dep.metadata.annotations["deployment.kubernetes.io/revision"] == "3"
    # Each person paged once: a page the kill cut short is sent again under its key.
    for role in ("release-owner", "oncall-backend"):
        keys = {r.header("Idempotency-Key") for r in pages(receiver, role)}
        assert len(keys) == 1, (role, keys)
    other.check_alive()


EXPIRY = re.compile(r"^missioncontrol_webhook_certificate_expiry_timestamp_seconds ([0-9.e+]+)$",
                    re.MULTILINE)


def served_expiry(op: OperatorProcess) -> float | None:
    try:
        with urllib.request.urlopen(op.metrics_url, timeout=2) as response:
            found = EXPIRY.search(response.read().decode())
    except OSError:
        return None
    return float(found.group(1)) if found else None


class Renewals:
    """Watches the shared Secret from the side, and keeps asking the webhook about a Deployment
    labelled frozen that no incident holds: every answer must be the webhook's own refusal,
    never a call the API server could not make (an untrusted or expired certificate)."""

    def __init__(self, cluster, secret: str) -> None:
        self.cluster, self.secret = cluster, secret
        self.promotions: list[dict] = []   # when tls.crt changed, and the old one's remaining life
        self.stages: list[float] = []
        self.answers: list[tuple[float, str]] = []
        self.stopping = threading.Event()
        self.thread = threading.Thread(target=self._run, daemon=True)

    def start(self) -> Renewals:
        self.thread.start()
        return self

    def stop(self) -> None:
        self.stopping.set()
        self.thread.join(20)

    def current(self) -> tuple[bytes, bytes | None]:
        data = self.cluster.core.read_namespaced_secret(self.secret, self.cluster.namespace).data
        return (base64.b64decode(data["tls.crt"]),
                base64.b64decode(data["next.crt"]) if data.get("next.crt") else None)

    def _run(self) -> None:
        cert, staged = self.current()
        i = 0
        while not self.stopping.wait(0.25):
            i += 1
            self.answers.append((time.time(), try_release(self.cluster, "probe", f"p:{i}")))
            now_cert, now_staged = self.current()
            now = time.time()
            if now_staged is not None and now_staged != staged:
                self.stages.append(now)
            if now_cert != cert:
                self.promotions.append({"at": now, "old_left": expires(cert) - now,
                                        "staged_for": now - (self.stages or [now])[-1]})
            cert, staged = now_cert, now_staged

    def wait_promotions(self, count: int, timeout: float) -> None:
        wait_for(lambda: len(self.promotions) >= count, timeout=timeout,
                 what=f"{count} renewals of the webhook certificate")


def test_rollbacks_during_and_after_renewals_pass_the_freeze(rb001, cluster, pair):
    """A validity of 20 s: a renewal every ~13 s, through two replicas that share the Secret (a
    shorter one leaves the promotion under 2 s of margin, too little on a loaded machine)."""
    cluster.create(rb001_policy())
    cluster.create(objects.deployment("probe", labels={FROZEN: "true"}))
    ops = pair("--webhook-cert-validity", "20s")
    the_leader(ops)
    rb001.healthy_checkout()
    renewals = Renewals(cluster, "webhook-tls").start()
    try:
        renewals.wait_promotions(1, timeout=60)
        rolled_back = []
        for image in ("shop/checkout:2.0", "shop/checkout:3.0"):
            cluster.release("checkout", image=image, ready=False)
            name = wait_for(lambda: [i for i in cluster.incidents()
                                     if i["metadata"]["name"] not in rolled_back],
                            timeout=60, what="an incident")[0]["metadata"]["name"]
            resolved = cluster.wait_phase(name, "Resolved", "Failed", timeout=90)
            by_id = {s["id"]: s for s in resolved["status"]["steps"]}
            assert by_id["rollback"]["state"] == "Succeeded", cluster.describe(name)
            rolled_back.append(name)
            renewals.wait_promotions(len(renewals.promotions) + 1, timeout=60)
        # Each replica serves the renewed certificate (it re-reads the Secret).
        wait_for(lambda: all(served_expiry(op) == expires(renewals.current()[0]) for op in ops),
                 timeout=20, what="both replicas to serve the Secret's certificate")
    finally:
        renewals.stop()
    # The webhook's own refusals: no incident holds the label, or (RB-001 freezes the whole
    # namespace) an incident does.
    bad = [(at, answer) for at, answer in renewals.answers
           if "no open incident holds the freeze" not in answer
           and "are frozen by incident" not in answer]
    assert not bad, bad[:3]
    assert len(renewals.promotions) >= 3 and len(renewals.answers) > 40
    for promotion in renewals.promotions:
        assert promotion["old_left"] > 0, promotion   # promoted before the old one expired
    print(f"\nrenewals: {len(renewals.promotions)} promotions, {len(renewals.answers)} webhook "
          f"calls, none refused for TLS; old certificate's remaining life at promotion "
          f"{min(p['old_left'] for p in renewals.promotions):.1f}-"
          f"{max(p['old_left'] for p in renewals.promotions):.1f} s; new CA trusted "
          f"{min(p['staged_for'] for p in renewals.promotions):.1f}-"
          f"{max(p['staged_for'] for p in renewals.promotions):.1f} s before it was served")


def test_the_shipped_install_runs_two_replicas_under_one_lease(env):
    """deploy/ as shipped: the API server accepts it (server-side dry run), with two replicas
    that need no flag to tell them apart, the Lease they share, and the shared certificate."""
    deploy = REPO / "deploy"
    env.kubectl("apply", "-f", str(deploy / "base" / "namespace.yaml"))
    out = env.kubectl("apply", "--dry-run=server", "-o", "json", "-f",
                      str(deploy / "base" / "operator.yaml"))
    docs = json.loads(out.stdout)
    items = docs.get("items") or [docs]
    (dep,) = [d for d in items if d["kind"] == "Deployment"]
    assert dep["spec"]["replicas"] == 2
    args = dep["spec"]["template"]["spec"]["containers"][0]["args"]
    assert "--lease=mission-control/mission-control" in args
    assert "--webhook-secret=mission-control/mission-control-webhook-tls" in args
    assert not [a for a in args if a.startswith(("--priority", "--peering"))]
    assert any(d["kind"] == "PodDisruptionBudget" for d in items)


def test_an_incident_its_opener_left_without_status_is_opened_by_the_next_leader(rb001, cluster):
    """The window a kill of the leader can hit: the Incident created, its status not written
    yet. The next leader's guard finishes opening it (the same name: derived from the
    release) and the incident runs; it is not left statusless, with no daemon to drive it."""
    from missioncontrol.guard import LABEL_POLICY, LABEL_RUNBOOK, LABEL_TARGET, POLICY_NAMESPACE

    cluster.create(rb001_policy())
    first = rb001.start_operator()
    rb001.healthy_checkout()
    first.stop()
    ns = cluster.namespace
    cluster.create({
        "apiVersion": "missioncontrol.dev/v1alpha1", "kind": "Incident",
        "metadata": {"name": "rb-001-checkout-r2", "labels": {
            LABEL_POLICY: "checkout-guard", LABEL_TARGET: "checkout", LABEL_RUNBOOK: "rb-001"},
            "annotations": {POLICY_NAMESPACE: ns}},
        "spec": {"runbook": {"name": "rb-001", "id": "RB-001"}, "policy": "checkout-guard",
                 "target": {"kind": "Deployment", "namespace": ns, "name": "checkout"},
                 "severity": "SEV2", "owner": "unassigned", "summary": "RB-001",
                 "mode": "enforce"}})
    cluster.release("checkout", image="shop/checkout:2.0", ready=False)
    rb001.start_operator()
    resolved = cluster.wait_phase("rb-001-checkout-r2", "Resolved", timeout=90)
    assert {s["id"]: s for s in resolved["status"]["steps"]}["rollback"]["state"] == "Succeeded"
    assert len(cluster.incidents()) == 1
