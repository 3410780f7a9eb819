"""Tenancy: protected namespaces are never acted in, and a policy reaches only its own
namespace unless the operator's flags allow more."""

from __future__ import annotations

from collections.abc import Iterator
from pathlib import Path

import pytest
import yaml

from missioncontrol import cli, model, tenancy

CATALOGUE = Path(__file__).resolve().parents[2] / "runbooks"


@pytest.fixture(autouse=True)
def rules() -> Iterator[None]:
    before = tenancy.RULES
    tenancy.configure(protected=tenancy.default_protected("mission-control"))
    yield
    tenancy.RULES = before


def policy(namespace: str = "shop", *, namespace_selector: dict | None = None) -> model.Policy:
    targets: dict = {"selector": {"matchLabels": {"app": "checkout"}}}
    if namespace_selector is not None:
        targets["namespaceSelector"] = namespace_selector
    return model.Policy.parse({
        "metadata": {"name": "guard", "namespace": namespace},
        "spec": {"runbookRef": {"name": "rb-003"}, "targets": targets}})


def rb003(namespace: str = "shop") -> model.Runbook:
    (path,) = CATALOGUE.glob("rb-003*.yaml")
    body = next(d for d in yaml.safe_load_all(path.read_text()) if d and d["kind"] == "Runbook")
    body["metadata"]["namespace"] = namespace
    return model.Runbook.parse(body)


def rb001() -> model.Runbook:
    (path,) = CATALOGUE.glob("rb-001*.yaml")
    body = next(d for d in yaml.safe_load_all(path.read_text()) if d and d["kind"] == "Runbook")
    return model.Runbook.parse(body)


def test_the_system_namespaces_and_the_operators_own_are_protected() -> None:
    allowed, protected = tenancy.split(["a", "kube-system", "b", "kube-public",
                                        "kube-node-lease", "mission-control"])
    assert allowed == ["a", "b"]
    assert protected == ["kube-system", "kube-public", "kube-node-lease", "mission-control"]


def test_refusing_names_the_namespace_and_what_was_refused() -> None:
    with pytest.raises(tenancy.ProtectedNamespace, match="label Namespace/kube-system in "
                                                         "namespace kube-system"):
        tenancy.refuse_protected("kube-system", what="label Namespace/kube-system")
    tenancy.refuse_protected("shop", what="label Namespace/shop")   # no error


def test_the_protected_list_is_the_flag_when_given(monkeypatch) -> None:
    monkeypatch.setenv("POD_NAMESPACE", "ops")
    seen = {}

    def fake_run(options, *, verbose):
        seen["options"] = options
        return 0

    monkeypatch.setattr("missioncontrol.main.run", fake_run)
    args = cli.parser().parse_args(["run", "--webhook-port", "0"])
    args.func(args)
    assert seen["options"].protected_namespaces == (
        "kube-system", "kube-public", "kube-node-lease", "ops")
    args = cli.parser().parse_args(["run", "--webhook-port", "0", "--protected-namespaces",
                                    "kube-system,infra", "--cluster-policy-namespace",
                                    "platform", "--allow-reference-namespace", "staging"])
    args.func(args)
    assert seen["options"].protected_namespaces == ("kube-system", "infra")
    assert seen["options"].cluster_policy_namespaces == ("platform",)
    assert seen["options"].reference_namespaces == ("staging",)
    # Empty: protects none (not the namespace named "").
    args = cli.parser().parse_args(["run", "--webhook-port", "0", "--protected-namespaces=",
                                    "--cluster-policy-namespace", "platform"])
    args.func(args)
    assert seen["options"].protected_namespaces == ()
    args = cli.parser().parse_args(["run", "--webhook-port", "0", "--protected-namespaces",
                                    " infra, ,ops,"])
    args.func(args)
    assert seen["options"].protected_namespaces == ("infra", "ops")


def test_a_policy_in_its_own_namespace_reaches_nothing_else() -> None:
    assert tenancy.reference_violations(policy(), rb001()) == []


def test_a_namespace_selector_needs_a_cluster_policy_namespace() -> None:
    selecting = policy("team-a", namespace_selector={})
    (violation,) = tenancy.reference_violations(selecting, rb001())
    assert violation.startswith("spec.targets.namespaceSelector")
    assert "allowed: none" in violation and "not in team-a" in violation
    tenancy.configure(protected=(), cluster_policy_namespaces=("team-a",))
    assert tenancy.reference_violations(selecting, rb001()) == []


def test_a_replay_in_another_namespace_is_a_cross_namespace_reference() -> None:
    # RB-003 replays a sample in "staging".
    (violation,) = tenancy.reference_violations(policy("shop"), rb003("shop"))
    assert "replaySample.namespace staging is not the policy's namespace shop" in violation
    assert tenancy.reference_violations(policy("staging"), rb003("staging")) == []
    tenancy.configure(protected=(), reference_namespaces=("staging",))
    assert tenancy.reference_violations(policy("shop"), rb003("shop")) == []


def test_an_incident_names_a_policy_namespace_only_where_a_policy_could_live() -> None:
    assert tenancy.policy_namespace_allowed("shop", "shop")
    assert not tenancy.policy_namespace_allowed("shop", "platform")
    tenancy.configure(protected=(), cluster_policy_namespaces=("platform",))
    assert tenancy.policy_namespace_allowed("shop", "platform")


def test_outside_the_watched_namespaces_the_operator_never_acts() -> None:
    tenancy.configure(protected=("kube-system",), watched=("team-a", "team-b"))
    assert tenancy.split(["team-a", "team-c", "kube-system", "team-b"]) == (
        ["team-a", "team-b"], ["team-c", "kube-system"])
    with pytest.raises(tenancy.ProtectedNamespace, match="not watched"):
        tenancy.refuse_protected("team-c", what="read Secret route")


def test_the_policy_names_the_protected_namespaces_first_and_counts_the_rest() -> None:
    from missioncontrol.guard import _not_guarding

    teams = [f"t-{i:02d}" for i in range(12)]
    message = _not_guarding(["default", *teams, "kube-system"])
    assert message.startswith("not guarding the namespace(s) kube-system, default, t-00")
    assert "and 4 more" in message and "t-08" not in message
