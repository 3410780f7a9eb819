"""The deploy freeze at admission: the decision (handlers.freeze.decide, called with plain
AdmissionReview objects and a dict of active freezes by object), the
ValidatingWebhookConfiguration we install (webhook.configuration), and the pod-template
fingerprint both rest on (podtemplate)."""

from __future__ import annotations

import base64
import copy

from missioncontrol import podtemplate
from missioncontrol.actions.freeze import FROZEN
from missioncontrol.handlers.freeze import decide
from missioncontrol.webhook import HANDLER_PATH, WebhookOptions, configuration

HEALTHY = {"metadata": {"labels": {"app": "web"}},
           "spec": {"containers": [{"name": "web", "image": "shop/web:1.4.0"}]}}
BROKEN = {"metadata": {"labels": {"app": "web"}},
          "spec": {"containers": [{"name": "web", "image": "shop/web:1.5.0"}]}}
NEXT = {"metadata": {"labels": {"app": "web"}},
        "spec": {"containers": [{"name": "web", "image": "shop/web:1.5.1"}]}}
ENTRY = {"incident": "inc-web-7f3k", "namespace": "ops",
         "allowed": podtemplate.fingerprint(HEALTHY), "toRevision": 2}


def body(template: dict, *, replicas: int = 3, frozen: bool = True) -> dict:
    labels = {"app": "web", **({FROZEN: "true"} if frozen else {})}
    return {"apiVersion": "apps/v1", "kind": "Deployment",
            "metadata": {"name": "web", "namespace": "shop", "labels": labels},
            "spec": {"replicas": replicas, "template": copy.deepcopy(template)}}


def check(new: dict, old: dict | None, freezes: dict, operation: str = "UPDATE") -> None:
    denial = decide(obj=new, old=old, freezes=freezes, operation=operation)
    assert denial is None, denial


def rejected(new: dict, old: dict | None, freezes: dict, operation: str = "UPDATE") -> str:
    denial = decide(obj=new, old=old, freezes=freezes, operation=operation)
    assert denial is not None, "passed"
    return denial.message


FROZEN_WEB = {"Deployment/shop/web": [ENTRY]}


# -- decide ---------------------------------------------------------------------------------
def test_scaling_passes() -> None:
    check(body(BROKEN, replicas=5), body(BROKEN), FROZEN_WEB)
    check(body(BROKEN, replicas=5), body(BROKEN), {})   # even with a stale label


def test_label_and_annotation_changes_pass() -> None:
    new = body(BROKEN, frozen=False)
    new["metadata"]["annotations"] = {"note": "x"}
    check(new, body(BROKEN), FROZEN_WEB)   # removing the frozen label is not a release


def test_a_template_change_is_rejected_naming_the_incident_and_lift_freeze() -> None:
    message = rejected(body(NEXT), body(BROKEN), FROZEN_WEB)
    assert message.startswith("deployments of shop/web are frozen by incident inc-web-7f3k")
    assert "only a rollback to the last healthy release (revision 2) is allowed" in message
    assert "kubectl patch incident inc-web-7f3k -n ops --type=merge " \
           "-p '{\"spec\":{\"liftFreeze\":true}}'" in message


def test_the_healthy_template_passes() -> None:
    check(body(HEALTHY), body(BROKEN), FROZEN_WEB)


def test_the_healthy_template_passes_as_a_replica_set_carries_it() -> None:
    # The allowed fingerprint comes from the ReplicaSet: hash label and all.
    rs_template = copy.deepcopy(HEALTHY)
    rs_template["metadata"]["labels"][podtemplate.HASH_LABEL] = "5d8f7c9b6"
    freezes = {"Deployment/shop/web": [{**ENTRY,
                                        "allowed": podtemplate.fingerprint(rs_template)}]}
    check(body(HEALTHY), body(BROKEN), freezes)


def test_a_namespace_freeze_covers_its_deployments() -> None:
    freezes = {"Namespace/shop": [ENTRY]}
    assert "inc-web-7f3k" in rejected(body(NEXT, frozen=False), body(BROKEN, frozen=False),
                                      freezes)
    check(body(HEALTHY, frozen=False), body(BROKEN, frozen=False), freezes)


def test_a_freeze_of_another_deployment_does_not_count() -> None:
    freezes = {"Deployment/shop/api": [ENTRY], "Namespace/other": [ENTRY]}
    assert "no open incident holds the freeze" in rejected(body(NEXT), body(BROKEN), freezes)


def test_any_freeze_allowing_the_template_lets_it_through() -> None:
    other = {**ENTRY, "incident": "inc-2", "allowed": podtemplate.fingerprint(NEXT)}
    check(body(NEXT), body(BROKEN), {"Deployment/shop/web": [ENTRY], "Namespace/shop": [other]})


def test_no_known_healthy_release() -> None:
    freezes = {"Deployment/shop/web": [{**ENTRY, "allowed": None, "toRevision": None}]}
    message = rejected(body(HEALTHY), body(BROKEN), freezes)
    assert "(no healthy release is known)" in message


def test_create_in_a_frozen_namespace() -> None:
    freezes = {"Namespace/shop": [ENTRY]}
    assert "inc-web-7f3k" in rejected(body(NEXT, frozen=False), None, freezes, "CREATE")
    check(body(HEALTHY, frozen=False), None, freezes, "CREATE")


def test_a_stale_frozen_label_is_rejected_with_the_removal_hint() -> None:
    message = rejected(body(NEXT), body(BROKEN), {})
    assert message == (
        f"shop/web is marked frozen (label {FROZEN} on it or its namespace) but no open "
        f"incident holds the freeze: remove the label to deploy "
        f"(`kubectl label deployment/web -n shop {FROZEN}-`)")


def test_a_stale_namespace_label_hints_at_the_namespace_too() -> None:
    message = rejected(body(NEXT, frozen=False), body(BROKEN, frozen=False), {})
    assert message.endswith(f"(`kubectl label deployment/web -n shop {FROZEN}-` or "
                            f"`kubectl label namespace shop {FROZEN}-`)")


# -- podtemplate ------------------------------------------------------------------------------
def test_strip_drops_the_hash_label_and_creation_time_without_touching_the_input() -> None:
    template = {"metadata": {"labels": {"app": "web", podtemplate.HASH_LABEL: "abc"},
                             "creationTimestamp": None},
                "spec": {"containers": []}}
    original = copy.deepcopy(template)
    assert podtemplate.strip(template) == {"metadata": {"labels": {"app": "web"}},
                                           "spec": {"containers": []}}
    assert template == original


def test_strip_empty() -> None:
    assert podtemplate.strip(None) == {"metadata": {}}
    assert podtemplate.strip({"metadata": {"labels": None}}) == {"metadata": {"labels": None}}


def test_fingerprint_is_by_content() -> None:
    reordered = {"spec": HEALTHY["spec"], "metadata": HEALTHY["metadata"]}
    assert podtemplate.fingerprint(reordered) == podtemplate.fingerprint(HEALTHY)
    assert podtemplate.fingerprint(BROKEN) != podtemplate.fingerprint(HEALTHY)
    assert len(podtemplate.fingerprint(HEALTHY)) == 20
    assert podtemplate.fingerprint({}) == podtemplate.fingerprint(None)


# -- webhook.configuration --------------------------------------------------------------------
CA = b"-----BEGIN CERTIFICATE-----\nMIIB\n-----END CERTIFICATE-----\n"


def webhooks(options: WebhookOptions) -> dict[str, dict]:
    config = configuration(options, CA)
    assert config["kind"] == "ValidatingWebhookConfiguration"
    assert config["apiVersion"] == "admissionregistration.k8s.io/v1"
    assert config["metadata"]["name"] == options.config_name
    return {w["name"]: w for w in config["webhooks"]}


def test_both_webhooks_fail_closed_and_select_on_the_frozen_label() -> None:
    hooks = webhooks(WebhookOptions())
    deployments = hooks["deployments.freeze.missioncontrol.dev"]
    namespaces = hooks["namespaces.freeze.missioncontrol.dev"]
    for hook in (deployments, namespaces):
        assert hook["failurePolicy"] == "Fail"
        assert hook["sideEffects"] == "None"
        assert hook["admissionReviewVersions"] == ["v1"]
        assert hook["rules"][0]["resources"] == ["deployments"]
        assert hook["rules"][0]["apiGroups"] == ["apps"]
    assert deployments["objectSelector"] == {"matchLabels": {FROZEN: "true"}}
    assert deployments["namespaceSelector"] == {"matchExpressions": []}
    assert deployments["rules"][0]["operations"] == ["UPDATE"]
    assert "objectSelector" not in namespaces
    assert namespaces["namespaceSelector"] == {"matchLabels": {FROZEN: "true"},
                                               "matchExpressions": []}
    assert namespaces["rules"][0]["operations"] == ["CREATE", "UPDATE"]


def test_limited_to_the_given_namespaces() -> None:
    hooks = webhooks(WebhookOptions(namespaces=("shop", "pay")))
    only = [{"key": "kubernetes.io/metadata.name", "operator": "In",
             "values": ["shop", "pay"]}]
    assert hooks["deployments.freeze.missioncontrol.dev"]["namespaceSelector"] == {
        "matchExpressions": only}
    assert hooks["namespaces.freeze.missioncontrol.dev"]["namespaceSelector"] == {
        "matchLabels": {FROZEN: "true"}, "matchExpressions": only}


def test_url_client_config() -> None:
    hooks = webhooks(WebhookOptions(host="10.0.0.5", port=9443))
    for hook in hooks.values():
        assert hook["clientConfig"] == {"url": f"https://10.0.0.5:9443/{HANDLER_PATH}",
                                        "caBundle": base64.b64encode(CA).decode()}


def test_service_client_config() -> None:
    hooks = webhooks(WebhookOptions(service="mission-control/mc-webhook", service_port=8443))
    for hook in hooks.values():
        assert hook["clientConfig"] == {
            "service": {"namespace": "mission-control", "name": "mc-webhook",
                        "path": f"/{HANDLER_PATH}", "port": 8443},
            "caBundle": base64.b64encode(CA).decode()}
