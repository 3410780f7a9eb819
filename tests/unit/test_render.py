"""The on-call page of a runbook: the seed table of DESIGN.md, line by line, is there in
words for RB-001..RB-003; and the phrasing of the other shapes a runbook can take."""

from __future__ import annotations

import copy
import re
from pathlib import Path

import pytest
import yaml

from missioncontrol import model
from missioncontrol.render import render_runbook

CATALOGUE = Path(__file__).resolve().parents[2] / "runbooks"


def body(prefix: str) -> dict:
    (path,) = CATALOGUE.glob(f"{prefix}-*.yaml")
    return yaml.safe_load(path.read_text())


def page(prefix: str) -> str:
    return render_runbook(model.Runbook.parse(body(prefix)))


def section(markdown: str, heading: str) -> str:
    """The text under one `## heading`, up to the next one."""
    match = re.search(rf"^## {re.escape(heading)}\n(.*?)(?=^## |\Z)", markdown, re.M | re.S)
    assert match, f"no section {heading!r} in:\n{markdown}"
    return match.group(1)


def assert_says(text: str, *phrases: str) -> None:
    missing = [p for p in phrases if p.lower() not in text.lower()]
    assert not missing, f"missing {missing} in:\n{text}"


# The seed table, row by row: (runbook, section, what the page must say in substance).
SEED = {
    "rb-001": {
        "title": ["# RB-001", "Failed Production Deployment", "SEV2"],
        "Trigger": ["armed for 30m after each release",
                    "readiness fails for 3 consecutive checks (every 10s, after a 30s grace "
                    "period)",
                    "error rate spikes", "above 0.05 for 3 consecutive checks"],
        "First 5 minutes": ["freeze further deployments and mark the incident active",
                            "every Deployment in the namespace",
                            "confirm blast radius", "dashboards", "synthetic check",
                            "roll back to the last known healthy release"],
        "Escalation": ["release-owner", "oncall-backend", "within 5m",
                       "after 20m, if not recovered: page incident-commander"],
        "Recovery SLO": ["20m", "stable service"],
        "Automation": ["automatic rollback after 3 consecutive failed readiness checks"],
    },
    "rb-002": {
        "title": ["# RB-002", "Database Latency Regression"],
        "Trigger": ["armed at all times", "p95", "above 0.25 for 10m"],
        "First 5 minutes": ["identify top slow queries", "top 10 slow queries",
                            "read replicas", "`non-critical-reads` to `replica`",
                            "safe-mode cache", "`safe-mode-cache` to `on`"],
        "Escalation": ["oncall-backend", "after 30m, if not mitigated: page platform-lead"],
        "Recovery SLO": ["45m", "latency below target"],
        "Automation": ["query-plan diff", "index recommendations", "every 1h00m"],
    },
    "rb-003": {
        "title": ["# RB-003", "Webhook Retry Storm"],
        "Trigger": ["retry queue depth rises sharply", "duplicate delivery count",
                    "rises sharply: x3 and +500 within 5m", "x3 and +100 within 5m"],
        "First 5 minutes": ["rate-limit inbound retries", "50 requests/s",
                            "`idempotency-checks` to `on`",
                            "pause non-critical downstream consumers",
                            "missioncontrol.dev/consumer-tier=non-critical",
                            "replay a sampled batch in staging", "sample of 100 events",
                            "`staging`"],
        "Escalation": ["integration-owner", "incident-commander"],
        "Recovery SLO": ["30m", "queue depth stable"],
        "Automation": ["adaptive backoff", "from 1s up to 5m", "dead-letter",
                       "webhooks-dead-letter"],
    },
}
ROWS = [(rb, part, phrases) for rb, parts in SEED.items() for part, phrases in parts.items()]


@pytest.mark.parametrize(("prefix", "part", "phrases"), ROWS,
                         ids=[f"{rb}:{part}" for rb, part, _ in ROWS])
def test_seed_table_is_on_the_page(prefix: str, part: str, phrases: list[str]) -> None:
    markdown = page(prefix)
    text = markdown.splitlines()[0] if part == "title" else section(markdown, part)
    assert_says(text, *phrases)


@pytest.mark.parametrize("prefix", ["rb-001", "rb-002", "rb-003"])
def test_page_layout(prefix: str) -> None:
    markdown = page(prefix)
    headings = re.findall(r"^## (.*)$", markdown, re.M)
    assert headings == ["Trigger", "First 5 minutes", "Escalation", "Recovery SLO", "Automation"]
    assert markdown.splitlines()[2] == " ".join(body(prefix)["spec"]["summary"].split())
    assert markdown.endswith("\n") and "\n\n\n" not in markdown
    # Steps are numbered in runbook order, each with its parameters nested under it.
    steps = re.findall(r"^(\d+)\. \*\*([a-z0-9-]+)\*\*", markdown, re.M)
    spec_steps = body(prefix)["spec"]["firstResponse"]["steps"]
    assert steps == [(str(i), s["id"]) for i, s in enumerate(spec_steps, 1)]
    assert len(re.findall(r"^   - ", markdown, re.M)) >= len(spec_steps)


def test_queries_are_code_on_one_line() -> None:
    trigger = section(page("rb-001"), "Trigger")
    line = next(x for x in trigger.splitlines() if "above 0.05" in x)
    assert line.startswith("  - `sum by (namespace, deployment)") and "` above 0.05" in line


# -- other shapes -----------------------------------------------------------------------------
def variant(**spec: object) -> str:
    """RB-002 with parts of its spec replaced, rendered."""
    data = copy.deepcopy(body("rb-002"))
    data["spec"].update(spec)
    return render_runbook(model.Runbook.parse(data))


def threshold(**fields: object) -> dict:
    return {"anyOf": [{"name": "c", "threshold": {"query": "q", **fields}}]}


@pytest.mark.parametrize(("fields", "words"), [
    ({"below": 0.9}, "`q` below 0.9 on any check (checked every 30s)"),
    ({"above": 1, "consecutiveFailures": 2, "for": "1m", "interval": "10s"},
     "`q` above 1 for 2 consecutive checks and for 1m (checked every 10s)"),
    ({"above": 5, "for": "90s"}, "`q` above 5 for 1m30s (checked every 30s)"),
])
def test_threshold_in_words(fields: dict, words: str) -> None:
    assert_says(section(variant(trigger=threshold(**fields)), "Trigger"), words)


def test_rise_without_minimum_increase() -> None:
    trigger = {"anyOf": [{"name": "q", "risesSharply": {"query": "depth", "window": "10m",
                                                          "factor": 2.5}}]}
    assert_says(section(variant(trigger=trigger), "Trigger"),
                "`depth` rises sharply: x2.5 within 10m")


def test_query_with_backticks_stays_code() -> None:
    trigger = section(variant(trigger=threshold(query="a`b", above=1)), "Trigger")
    assert "``a`b``" in trigger


def test_escalation_rules_in_words() -> None:
    escalation = {"page": ["oncall-backend"], "pageWithin": "2m", "rules": [
        {"after": "10m", "when": "Always", "page": ["stakeholders"]},
        {"after": "1h", "when": "SLOBreached", "page": ["platform-lead", "incident-commander"]}]}
    text = section(variant(escalation=escalation), "Escalation")
    assert_says(text, "paged at once: oncall-backend, within 2m",
                "- after 10m: page stakeholders",
                "- after 1h00m, if the recovery SLO is breached: page platform-lead and "
                "incident-commander")


def test_no_escalation_and_no_automation() -> None:
    data = copy.deepcopy(body("rb-002"))
    del data["spec"]["escalation"], data["spec"]["automation"]
    markdown = render_runbook(model.Runbook.parse(data))
    assert_says(section(markdown, "Escalation"), "nobody is paged at once",
                "no further escalation rules")
    assert_says(section(markdown, "Automation"), "none beyond the first-response steps")


def test_step_options_and_other_actions() -> None:
    steps = [
        {"id": "freeze", "action": "freezeDeployments", "timeout": "30s",
         "freezeDeployments": {"maxDuration": "45m"}},
        {"id": "back", "action": "rollback", "continueOnFailure": True,
         "rollback": {"to": "PreviousRevision"}},
        {"id": "tell", "action": "notify", "notify": {"roles": ["stakeholders"],
                                                      "message": "checkout degraded"}},
        {"id": "replay", "action": "replaySample",
         "replaySample": {"namespace": "qa", "image": "r:1", "command": ["replay", "--dry"]}},
    ]
    text = section(variant(firstResponse={"within": "10m", "steps": steps}), "First 10 minutes")
    assert_says(text, "1. **freeze**", "rollouts of the affected Deployment",
                "(at most 45m)", "times out after 30s",
                "2. **back**", "roll back to the previous revision",
                "run even if it fails", 'page stakeholders: "checkout degraded"',
                "running `replay --dry`")


def test_first_response_not_in_whole_minutes() -> None:
    markdown = variant(firstResponse={"within": "90s", "steps": [
        {"id": "p", "action": "notify", "notify": {"roles": ["oncall-backend"]}}]})
    assert "## First 1m30s\n" in markdown


def test_every_action_is_registered_once_and_describes_itself() -> None:
    from missioncontrol.actions import ACTIONS, Action
    from missioncontrol.model import ACTIONS as NAMES

    # One registration per action the schema allows, each behind the one interface.
    assert sorted(ACTIONS) == sorted(NAMES)
    for name, act in ACTIONS.items():
        assert isinstance(act, Action) and act.name == name
        assert type(act).describe is not Action.describe, name
        assert type(act).run is not Action.run, name


def test_the_engine_and_the_runbook_page_name_no_action() -> None:
    from pathlib import Path

    from missioncontrol.model import ACTIONS as NAMES
    root = Path(__file__).resolve().parents[2] / "operator" / "missioncontrol"
    for module in ("engine.py", "render.py", "people.py", "rounds.py",
                   *(f"handlers/{p.name}" for p in (root / "handlers").glob("*.py"))):
        text = (root / module).read_text()
        named = [n for n in NAMES if f'"{n}"' in text]
        assert named == [], (module, named)
