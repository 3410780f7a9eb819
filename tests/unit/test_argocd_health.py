"""The Argo CD health checks docs/gitops.md ships, run as Argo CD runs them: each script with
the object as the global `obj`, its returned table read back. Real Lua (Debian's lua5.4,
installed by hack/install-system-deps.sh), the scripts exactly as the page has them."""

from __future__ import annotations

import json
import re
import shutil
import subprocess
from pathlib import Path

import yaml

DOC = Path(__file__).resolve().parents[2] / "docs" / "gitops.md"
KEY = "resource.customizations.health.missioncontrol.dev_{}"


def scripts() -> dict[str, str]:
    block = re.search(r"```yaml\n(data:\n.*?)```", DOC.read_text(), re.S).group(1)
    return yaml.safe_load(block)["data"]


def lua_value(value: object) -> str:
    """A JSON-like value as a Lua literal (what Argo CD hands the script)."""
    if isinstance(value, dict):
        return "{" + ", ".join(f"[{json.dumps(k)}] = {lua_value(v)}"
                               for k, v in value.items()) + "}"
    if isinstance(value, list):
        return "{" + ", ".join(lua_value(v) for v in value) + "}"
    if isinstance(value, bool):
        return "true" if value else "false"
    if value is None:
        return "nil"
    return json.dumps(value)


def health(kind: str, obj: dict) -> tuple[str, str]:
    lua = shutil.which("lua5.4") or "lua5.4"
    program = (f"obj = {lua_value(obj)}\n"
               f"local hs = (function()\n{scripts()[KEY.format(kind)]}\nend)()\n"
               "io.write(hs.status, '\\n', hs.message or '')")
    out = subprocess.run([lua, "-"], input=program, capture_output=True, text=True, timeout=10)
    assert out.returncode == 0, out.stderr
    status, _, message = out.stdout.partition("\n")
    return status, message


def incident(phase: str | None, reason: str = "") -> dict:
    return {"metadata": {"name": "rb-001-checkout-r2"},
            "status": {"phase": phase, "reason": reason} if phase else {}}


def test_an_incident_is_progressing_while_open_healthy_once_over_and_degraded_when_failed():
    assert health("Incident", {"metadata": {}}) == ("Progressing", "waiting for the operator")
    assert health("Incident", incident("Mitigating", "readiness failed")) == (
        "Progressing", "Mitigating: readiness failed")
    assert health("Incident", incident("Mitigated"))[0] == "Progressing"
    assert health("Incident", incident("Resolved")) == ("Healthy", "Resolved: ")
    assert health("Incident", incident("Closed"))[0] == "Healthy"
    assert health("Incident", incident("Failed", "step rollback failed")) == (
        "Degraded", "Failed: step rollback failed")
    assert health("Incident", incident("Rejected"))[0] == "Degraded"


def policy(generation: int, observed: int | None, ready: str | None,
           message: str = "") -> dict:
    status: dict = {}
    if observed is not None:
        status["observedGeneration"] = observed
    if ready is not None:
        status["conditions"] = [{"type": "Ready", "status": ready, "reason": "X",
                                 "message": message}]
    return {"metadata": {"name": "guard", "generation": generation}, "status": status}


def test_a_policy_is_healthy_once_ready_for_its_generation_and_degraded_with_the_reason():
    assert health("IncidentPolicy", policy(1, None, None))[0] == "Progressing"
    assert health("IncidentPolicy", policy(2, 2, "True", "guarding 3 Deployments")) == (
        "Healthy", "guarding 3 Deployments")
    assert health("IncidentPolicy", policy(2, 2, "False", "Runbook rb-001 does not exist")) \
        == ("Degraded", "Runbook rb-001 does not exist")
    # An edit not yet looked at: not judged on the old generation's verdict.
    assert health("IncidentPolicy", policy(3, 2, "True"))[0] == "Progressing"
