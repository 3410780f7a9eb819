"""Small pure pieces: query templates, service ownership, Kubernetes-style conditions, and
the engine's helpers for a restart (`unconfirmed`) and for failed steps (`_blocks`)."""

from __future__ import annotations

from dataclasses import replace

import pytest

from missioncontrol import conditions, owners, templates
from missioncontrol import incident as inc
from missioncontrol.conditions import Condition
from missioncontrol.engine import _blocks, unconfirmed
from missioncontrol.model import (
    Contact,
    Escalation,
    EscalationRule,
    FreezeDeployments,
    Notify,
    Ownership,
    Recovery,
    Route,
    Runbook,
    SecretRef,
    Step,
    Trigger,
)

T0 = 1_700_000_000.0


# -- templates --------------------------------------------------------------------------------
def test_render() -> None:
    text = 'up{namespace="{{ .namespace }}", deployment="{{.name}}"}'
    assert templates.render(text, {"namespace": "shop", "name": "web"}) == \
        'up{namespace="shop", deployment="web"}'


def test_render_leaves_unknown_variables() -> None:
    assert templates.render("{{ .pod }} {{ .name }}", {"name": "web"}) == "{{ .pod }} web"
    assert templates.unknown_variables("{{ .pod }} {{ .name }} {{.namespace}} {{ .x }}") == [
        "pod", "x"]
    assert templates.unknown_variables("no variables") == []


def test_render_many_makes_alternations() -> None:
    text = 'x{namespace=~"{{ .namespace }}", deployment=~"{{ .name }}"}'
    rendered = templates.render_many(text, [("shop", "web"), ("pay", "api"), ("shop", "api")])
    assert rendered == 'x{namespace=~"pay|shop", deployment=~"api|web"}'


def test_render_many_escapes_dots_for_promql_strings() -> None:
    rendered = templates.render_many('{deployment=~"{{ .name }}"}', [("shop", "web.v2")])
    assert rendered == '{deployment=~"web\\\\.v2"}'      # web\\.v2 in the PromQL text


# -- owners -----------------------------------------------------------------------------------
SERVICE = "missioncontrol.dev/service"


def test_service_from_the_deployments_label_then_its_namespaces() -> None:
    assert owners.service_of({SERVICE: "checkout", "app": "web"}, {SERVICE: "shop"},
                             "web") == "checkout"
    assert owners.service_of({"app": "web"}, {SERVICE: "shop"}, "web") == "shop"


def test_service_from_common_labels_then_the_name() -> None:
    labels = {"app.kubernetes.io/part-of": "shop", "app.kubernetes.io/name": "web-ui",
              "app": "web"}
    assert owners.service_of(labels, None, "web") == "shop"
    del labels["app.kubernetes.io/part-of"]
    assert owners.service_of(labels, None, "web") == "web-ui"
    del labels["app.kubernetes.io/name"]
    assert owners.service_of(labels, {}, "web-7") == "web"
    assert owners.service_of(None, None, "web-7") == "web-7"


def test_namespace_common_labels_do_not_name_the_service() -> None:
    assert owners.service_of({}, {"app.kubernetes.io/part-of": "platform"}, "web") == "web"


def route(kind: str = "PagerDuty") -> Route:
    return Route(kind, SecretRef("pd", "key"))


OWNERSHIP = Ownership("ops", "shop-owners", "shop", (
    ("release-owner", (Contact("ana", route()),)),
    ("oncall-backend", (Contact("bo", route()), Contact("cy", route("Slack")))),
    ("platform-lead", ())))
OTHER = Ownership("ops", "pay-owners", "pay", ())


def test_find_by_service_or_by_name() -> None:
    assert owners.find([OTHER, OWNERSHIP], "shop") is OWNERSHIP
    assert owners.find([OTHER, OWNERSHIP], "nobody") is None
    assert owners.find([OTHER, OWNERSHIP], "shop", name="pay-owners") is OTHER
    assert owners.find([OTHER, OWNERSHIP], "shop", name="missing") is None


def test_recipients_and_the_roles_nobody_holds() -> None:
    found, missing = owners.recipients(OWNERSHIP, ("oncall-backend", "platform-lead",
                                                   "incident-commander", "release-owner"))
    assert [(r.role, r.contact, r.route.type) for r in found] == [
        ("oncall-backend", "bo", "PagerDuty"), ("oncall-backend", "cy", "Slack"),
        ("release-owner", "ana", "PagerDuty")]
    assert missing == ["platform-lead", "incident-commander"]


def test_recipients_without_an_ownership_map() -> None:
    assert owners.recipients(None, ("release-owner",)) == ([], ["release-owner"])


def test_roles_named_in_paging_order_once_each() -> None:
    runbook = Runbook(
        namespace="ops", name="rb", id="RB-001", title="t", severity="SEV2",
        trigger=Trigger(()), recovery=Recovery(slo=1200.0),
        steps=(Step("freeze", "freezeDeployments", FreezeDeployments()),
               Step("tell", "notify", Notify(("stakeholders", "release-owner")))),
        escalation=Escalation(page=("release-owner", "oncall-backend"), rules=(
            EscalationRule(300.0, ("platform-lead", "oncall-backend")),
            EscalationRule(900.0, ("incident-commander",)))))
    assert owners.roles_named(runbook) == ("release-owner", "oncall-backend", "stakeholders",
                                           "platform-lead", "incident-commander")


# -- conditions -------------------------------------------------------------------------------
def test_put_adds_a_condition() -> None:
    out = conditions.put((), Condition.said("Ready", True, "Valid", "all good", generation=2),
                         now=T0)
    assert out == (Condition("Ready", "True", "Valid", "all good", T0, 2),)


def test_put_the_same_is_no_change() -> None:
    current = conditions.put((), Condition.said("Ready", True, "Valid", "all good"), now=T0)
    assert conditions.put(current, Condition.said("Ready", True, "Valid", "all good"),
                          now=T0 + 60) is current


def test_transition_time_moves_only_with_the_status() -> None:
    current = conditions.put((), Condition.said("Ready", True, "Valid", "all good"), now=T0)
    reworded = conditions.put(current, Condition.said("Ready", True, "StillValid", "fine"),
                              now=T0 + 60)
    assert reworded == (Condition("Ready", "True", "StillValid", "fine", T0),)
    flipped = conditions.put(reworded, Condition.said("Ready", False, "Invalid", "broken"),
                             now=T0 + 120)
    assert flipped == (Condition("Ready", "False", "Invalid", "broken", T0 + 120),)


def test_put_keeps_the_order_of_the_others() -> None:
    current = conditions.put((), Condition.said("A", True, "r"), now=T0)
    current = conditions.put(current, Condition.said("B", True, "r"), now=T0)
    current = conditions.put(current, Condition.said("A", False, "r"), now=T0 + 1)
    assert [(c.type, c.status) for c in current] == [("A", "False"), ("B", "True")]
    assert conditions.get(current, "B").status == "True"
    assert conditions.get(current, "C") is None


def test_put_caps_the_message() -> None:
    (condition,) = conditions.put((), Condition.said("Ready", False, "Invalid", "x" * 5000),
                                  now=T0)
    assert len(condition.message) == 1000


def test_a_new_generation_is_a_change() -> None:
    current = conditions.put((), Condition.said("Ready", True, "Valid", "", generation=1),
                             now=T0)
    (updated,) = conditions.put(current, Condition.said("Ready", True, "Valid", "", generation=2),
                                now=T0 + 5)
    assert (updated.observed_generation, updated.last_transition_time) == (2, T0)


# -- engine helpers ---------------------------------------------------------------------------
def test_unconfirmed_marks_what_was_sending() -> None:
    page = inc.Page("release-owner", "ana", "PagerDuty", at=T0, outcome="sending")
    update = inc.Update(at=T0, phase=inc.MITIGATING, outcome="sending")
    status = replace(inc.IncidentStatus(detected_at=T0),
                     pages=(page, replace(page, contact="bo", outcome="delivered"),
                            replace(page, contact="cy", outcome="failed")),
                     updates=(update, replace(update, at=T0 + 900, outcome="planned")))
    fixed = unconfirmed(status)
    assert [p.outcome for p in fixed.pages] == ["unconfirmed", "delivered", "failed"]
    assert [u.outcome for u in fixed.updates] == ["unconfirmed", "planned"]
    assert replace(fixed, pages=status.pages, updates=status.updates) == status


def test_unconfirmed_changes_nothing_else() -> None:
    status = inc.IncidentStatus(detected_at=T0)
    assert unconfirmed(status) == status


ROLLBACK = Step("rollback", "rollback", None)
NOTIFY = Step("tell", "notify", Notify(("stakeholders",)))


@pytest.mark.parametrize(("step", "state", "blocks"), [
    (ROLLBACK, inc.STEP_FAILED, True),
    (replace(ROLLBACK, continue_on_failure=True), inc.STEP_FAILED, False),
    (NOTIFY, inc.STEP_FAILED, False),          # a failed read or page stops nothing
    (ROLLBACK, inc.SUCCEEDED, False),
    (ROLLBACK, inc.SKIPPED, False),
    (ROLLBACK, inc.PLANNED, False),
    (ROLLBACK, inc.RUNNING, False),
])
def test_blocks(step: Step, state: str, blocks: bool) -> None:
    assert _blocks(step, state) is blocks


@pytest.mark.parametrize(("seconds", "text"), [
    (0, "0s"), (2, "2s"), (600, "10m"), (630, "10m30s"), (3600, "1h"), (3630, "1h30s"),
    (5400, "1h30m"), (0.25, "0.25s"), (90.5, "1m30.5s")])
def test_exact_durations_keep_every_second(seconds, text):
    from missioncontrol import durations

    assert durations.exact(seconds) == text
    assert durations.parse(text) == seconds
