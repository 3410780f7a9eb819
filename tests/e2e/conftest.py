"""End-to-end fixtures: the CRDs installed, the operator running as a real process against
the test cluster, a receiver standing in for pagers, and RB-001 set up for one service."""

from __future__ import annotations

import copy
import threading
from collections.abc import Callable, Iterator
from dataclasses import dataclass
from pathlib import Path

import pytest
import yaml
from kubernetes import client

from harness import objects
from harness.crds import install as install_crds
from harness.operator import OperatorProcess
from harness.procs import HarnessError, wait_for
from harness.receiver import Receiver

REPO = Path(__file__).resolve().parents[2]
GROUP, VERSION = "missioncontrol.dev", "v1alpha1"
PLURALS = {"Runbook": "runbooks", "IncidentPolicy": "incidentpolicies",
           "Incident": "incidents", "ServiceOwnership": "serviceownerships"}


@pytest.fixture(scope="session")
def crds(env) -> None:
    install_crds(env.kubectl, env.api)


@pytest.fixture
def receiver() -> Iterator[Receiver]:
    with Receiver() as r:
        yield r


@dataclass
class Cluster:
    """Small verbs over the test cluster, for readable tests."""
    env: object
    namespace: str

    @property
    def custom(self) -> client.CustomObjectsApi:
        return client.CustomObjectsApi(self.env.api)

    @property
    def apps(self) -> client.AppsV1Api:
        return client.AppsV1Api(self.env.api)

    @property
    def core(self) -> client.CoreV1Api:
        return client.CoreV1Api(self.env.api)

    def create(self, body: dict) -> dict:
        kind = body["kind"]
        if kind in PLURALS:
            return self.custom.create_namespaced_custom_object(
                GROUP, VERSION, self.namespace, PLURALS[kind], body)
        if kind == "Secret":
            return self.core.create_namespaced_secret(self.namespace, body)
        if kind == "Deployment":
            return self.apps.create_namespaced_deployment(self.namespace, body)
        raise ValueError(kind)

    def get(self, kind: str, name: str) -> dict:
        return self.custom.get_namespaced_custom_object(GROUP, VERSION, self.namespace,
                                                        PLURALS[kind], name)

    def list(self, kind: str) -> list[dict]:
        return self.custom.list_namespaced_custom_object(GROUP, VERSION, self.namespace,
                                                         PLURALS[kind])["items"]

    def patch(self, kind: str, name: str, body: dict) -> dict:
        return self.custom.patch_namespaced_custom_object(GROUP, VERSION, self.namespace,
                                                          PLURALS[kind], name, body)

    def deployment(self, name: str) -> client.V1Deployment:
        return self.apps.read_namespaced_deployment(name, self.namespace)

    def release(self, name: str, *, image: str, ready: bool) -> None:
        """Roll out a new pod template (a release)."""
        template = objects.deployment(name, image=image, ready=ready)["spec"]["template"]
        self.apps.patch_namespaced_deployment(name, self.namespace,
                                              {"spec": {"template": template}})

    def target_state(self, policy: str, name: str) -> dict:
        status = self.get("IncidentPolicy", policy).get("status") or {}
        return next((t for t in status.get("targets") or [] if t["name"] == name), {})

    def incidents(self) -> list[dict]:
        return self.list("Incident")

    def one_incident(self, timeout: float = 60) -> dict:
        found = wait_for(lambda: self.incidents(), timeout=timeout, what="an incident")
        assert len(found) == 1, [i["metadata"]["name"] for i in found]
        return found[0]

    def wait_phase(self, name: str, *phases: str, timeout: float = 60) -> dict:
        def reached() -> dict | None:
            body = self.get("Incident", name)
            return body if (body.get("status") or {}).get("phase") in phases else None
        try:
            return wait_for(reached, timeout=timeout, what=f"incident {name} to reach {phases}")
        except HarnessError as exc:
            raise HarnessError(f"{exc}\n{self.describe(name)}") from None

    def describe(self, name: str) -> str:
        """What a failing test needs to see of an incident."""
        status = self.get("Incident", name).get("status") or {}
        conditions = ", ".join(f"{c['type']}={c['status']}({c.get('reason')})"
                               for c in status.get("conditions") or [])
        lines = [f"phase {status.get('phase')}; conditions {conditions}"]
        lines += [f"step {s['id']}: {s['state']} {s.get('message', '')}"
                  for s in status.get("steps") or []]
        lines += [f"{e['at']} {e['type']}: {e['message']}" for e in status.get("timeline") or []]
        target = self.get("Incident", name)["spec"]["target"]["name"]
        for policy in self.list("IncidentPolicy"):
            for state in (policy.get("status") or {}).get("targets") or []:
                if state["name"] == target:
                    lines.append(f"policy {policy['metadata']['name']} target: {state}")
        try:
            dep = self.deployment(target)
            lines.append(f"deployment generation {dep.metadata.generation} status "
                         f"{dep.status.to_dict()}")
        except client.ApiException as exc:
            lines.append(f"deployment: {exc.reason}")
        return "\n".join(lines)


def ready(cluster: Cluster, kind: str, name: str) -> dict | None:
    conditions = (cluster.get(kind, name).get("status") or {}).get("conditions") or []
    return next((c for c in conditions if c["type"] == "Ready"), None)


def wait_ready(cluster: Cluster, kind: str, name: str, status: str, reason: str,
               timeout: float = 30) -> dict:
    """The object's Ready condition, once it has this status and reason."""
    def matches() -> dict | None:
        condition = ready(cluster, kind, name)
        return condition if condition and (condition["status"], condition["reason"]) == (
            status, reason) else None
    try:
        return wait_for(matches, timeout=timeout, what=f"{kind} {name} Ready={status} ({reason})")
    except HarnessError as exc:
        raise HarnessError(f"{exc}; Ready is {ready(cluster, kind, name)}") from None


def events_for(cluster: Cluster, name: str) -> list[str]:
    """"Reason: message" of every event about the object named `name`."""
    events = client.CoreV1Api(cluster.env.api).list_namespaced_event(
        cluster.namespace, field_selector=f"involvedObject.name={name}").items
    return [f"{e.reason}: {e.message}" for e in events]


@pytest.fixture
def cluster(env, namespace) -> Cluster:
    return Cluster(env, namespace)


def catalogue(name: str) -> dict:
    for path in (REPO / "runbooks").glob("rb-*.yaml"):
        doc = yaml.safe_load(path.read_text())
        if doc["metadata"]["name"] == name:
            return copy.deepcopy(doc)
    raise KeyError(name)


def secret(name: str, **data: str) -> dict:
    return {"apiVersion": "v1", "kind": "Secret", "metadata": {"name": name},
            "stringData": data}


def ownership(service: str, routes: dict[str, str]) -> dict:
    """Every role held by one contact whose webhook route is `routes[role]` (Secret key)."""
    roles = [{"role": role, "contacts": [{"name": f"{role}-person", "route": {
        "type": "Webhook", "secretRef": {"name": "pager-routes", "key": role}}}]}
        for role in routes]
    return {"apiVersion": f"{GROUP}/{VERSION}", "kind": "ServiceOwnership",
            "metadata": {"name": service}, "spec": {"service": service, "roles": roles}}


def rb001_policy(*, mode: str = "enforce", stable_for: str = "3s", slo: str = "5m",
                 limits: dict | None = None, ownership_name: str = "checkout") -> dict:
    """RB-001 for app=checkout, with the checks sped up for tests."""
    return {
        "apiVersion": f"{GROUP}/{VERSION}", "kind": "IncidentPolicy",
        "metadata": {"name": "checkout-guard"},
        "spec": {
            "runbookRef": {"name": "rb-001"},
            "targets": {"selector": {"matchLabels": {"app": "checkout"}}},
            "severity": "SEV2", "mode": mode,
            "ownershipRef": {"name": ownership_name},
            "overrides": {
                "conditions": [
                    {"name": "readiness", "consecutiveFailures": 3, "interval": "1s",
                     "gracePeriod": "2s"},
                    {"name": "error-rate", "interval": "1s"},
                ],
                "recovery": {"slo": slo, "stableFor": stable_for},
                "afterReleaseWindow": "10m",
            },
            "limits": limits or {"cooldown": "1s", "maxRemediations": 3, "window": "1h"},
        },
    }


ROLES = ("release-owner", "oncall-backend", "platform-lead", "integration-owner",
         "incident-commander", "stakeholders")


@dataclass
class Rb001:
    cluster: Cluster
    receiver: Receiver
    start_operator: Callable[..., OperatorProcess]

    def healthy_checkout(self) -> None:
        self.cluster.create(objects.deployment("checkout", image="shop/checkout:1.0"))
        wait_for(lambda: self.cluster.target_state("checkout-guard", "checkout").get(
            "lastHealthyRevision") == 1, timeout=60,
            what="revision 1 of checkout recorded as healthy")


@pytest.fixture
def operator_factory(env, namespace, tmp_path) -> Iterator[Callable[..., OperatorProcess]]:
    started: list[OperatorProcess] = []

    def start(*extra: str, prometheus_url: str | None = env.prometheus_url) -> OperatorProcess:
        op = OperatorProcess(env.kubeconfig, namespace, tmp_path / f"operator-{len(started)}.log",
                             prometheus_url=prometheus_url, extra=extra).start()
        started.append(op)
        return op

    yield start
    for op in started:
        op.stop()
    admission = client.AdmissionregistrationV1Api(env.api)
    try:
        admission.delete_validating_webhook_configuration(f"mission-control-freeze-{namespace}")
    except client.ApiException:
        pass
    if any(op.proc and op.proc.popen and op.proc.popen.returncode not in (0, -15, None)
           for op in started):
        print("\n".join(op.logs()[-5000:] for op in started))


@pytest.fixture
def rb001(crds, cluster, receiver, operator_factory) -> Rb001:
    """RB-001 applied in the test namespace: runbook, ownership with webhook routes to the
    receiver, the policy (enforce), and the operator running."""
    cluster.create(catalogue("rb-001"))
    cluster.create(secret("pager-routes", **{role: receiver.url(f"/{role}") for role in ROLES}))
    cluster.create(ownership("checkout", {role: role for role in ROLES}))
    return Rb001(cluster, receiver, operator_factory)


class Traffic:
    """Requests to a Deployment, counted the way an HTTP server exports them: while the
    Deployment runs `bad_image`, half of them fail with 503."""

    def __init__(self, env, cluster: Cluster, name: str, *, bad_image: str) -> None:
        self.env, self.cluster, self.name, self.bad_image = env, cluster, name, bad_image
        self.stopping = threading.Event()
        self.thread = threading.Thread(target=self._run, daemon=True)

    def start(self) -> Traffic:
        self.thread.start()
        return self

    def stop(self) -> None:
        self.stopping.set()
        self.thread.join(10)

    def _run(self) -> None:
        labels = {"namespace": self.cluster.namespace, "deployment": self.name}
        ok = self.env.exporter.counter("http_requests", {**labels, "code": "200"})
        bad = self.env.exporter.counter("http_requests", {**labels, "code": "503"})
        while not self.stopping.wait(0.2):
            image = self.cluster.deployment(self.name).spec.template.spec.containers[0].image
            ok.inc(10)
            if image == self.bad_image:
                bad.inc(10)
