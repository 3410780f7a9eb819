"""kubectl mc: see, acknowledge and steer Mission Control incidents from kubectl.

Installed as the executable `kubectl-mc`, so with it on PATH `kubectl mc ...` runs it."""

from __future__ import annotations

import argparse
import json
import os
import sys
import time
from collections.abc import Callable

import yaml
from kubernetes.client import ApiException

from .. import __version__
from ..kube import unreachable
from ..postmortem import render_postmortem
from . import edits, view
from .api import Cluster, refusal

INCIDENT, POLICY = "Incident", "IncidentPolicy"
RESOURCE = {INCIDENT: "incident.missioncontrol.dev", POLICY: "incidentpolicy.missioncontrol.dev"}
RETRIES = 3   # writes of an append, when colleagues keep creating its list first


class Session:
    """The parsed flags, the cluster they point at, and where output goes."""

    def __init__(self, args: argparse.Namespace, *, out: Callable[[str], None]) -> None:
        self.args, self.out = args, out
        kubeconfig = args.kubeconfig or os.environ.get("KUBECONFIG") or _home_kubeconfig()
        self.cluster = Cluster(kubeconfig=kubeconfig, context=args.context,
                               impersonate=args.as_user)
        self.namespace = args.namespace or self.cluster.default_namespace()

    def emit(self, obj: dict) -> None:
        if self.args.output == "json":
            self.out(json.dumps(obj, indent=2))
        else:
            self.out(yaml.safe_dump(obj, sort_keys=False).rstrip("\n"))

    def done(self, kind: str, obj: dict, what: str) -> int:
        if self.args.output:
            self.emit(obj)
        else:
            self.out(f"{RESOURCE[kind]}/{obj['metadata']['name']} {what}")
        return 0


def _home_kubeconfig() -> str | None:
    path = os.path.expanduser("~/.kube/config")
    return path if os.path.exists(path) else None


# -- reading ----------------------------------------------------------------------------------
def cmd_get(s: Session) -> int:
    every = s.args.all_namespaces
    namespace = None if every else s.namespace
    if s.args.names:
        items = [s.cluster.get(INCIDENT, s.namespace, n) for n in s.args.names]
        listing = {"apiVersion": "v1", "kind": "List", "items": items,
                   "metadata": {"resourceVersion": ""}}
    else:
        listing = s.cluster.list(INCIDENT, namespace)
        items = sorted(listing.get("items") or [], key=lambda b: (
            b["metadata"].get("namespace", ""), b["metadata"].get("creationTimestamp", "")))
    if s.args.output:
        s.emit({"apiVersion": "v1", "kind": "List", "items": items})
    elif items:
        for line in view.board(items, time.time(), all_namespaces=every):
            s.out(line)
    elif not s.args.watch:
        s.out("No incidents found" + ("." if every else f" in {s.namespace} namespace."))
    if not s.args.watch:
        return 0
    names = set(s.args.names)
    header = not items and not s.args.output
    version = listing.get("metadata", {}).get("resourceVersion") or \
        s.cluster.list(INCIDENT, namespace)["metadata"]["resourceVersion"]
    for kind, body in s.cluster.watch(INCIDENT, namespace, version):
        if names and body["metadata"]["name"] not in names:
            continue
        if s.args.output == "json":
            s.out(json.dumps({"type": kind, "object": body}))
            continue
        if s.args.output == "yaml":
            s.out("---\n" + yaml.safe_dump({"type": kind, "object": body}, sort_keys=False))
            continue
        rows = view.board([body], time.time(), all_namespaces=every, header=header)
        header = False
        for line in rows[:-1]:
            s.out(line)
        s.out(rows[-1] + ("   (deleted)" if kind == "DELETED" else ""))
    return 0


def cmd_describe(s: Session) -> int:
    s.out(view.describe(s.cluster.get(INCIDENT, s.namespace, s.args.incident),
                        time.time()).rstrip("\n"))
    return 0


def cmd_postmortem(s: Session) -> int:
    s.out(render_postmortem(s.cluster.get(INCIDENT, s.namespace, s.args.incident))
          .rstrip("\n"))
    return 0


# -- writing ----------------------------------------------------------------------------------
def cmd_ack(s: Session) -> int:
    by, acked = s.cluster.whoami(), []

    def build(body: dict) -> list[dict] | None:
        ack, ops = edits.acknowledgement(body, role=s.args.role, by=by, now=time.time())
        acked[:] = [ack]
        return ops

    body, wrote = _append(s, s.args.incident, build)
    (ack,) = acked
    return s.done(INCIDENT, body, f"acknowledged ({ack.role} by {ack.by})" if wrote
                  else f"already acknowledged ({ack.role} by {ack.by})")


def _append(s: Session, name: str, build: Callable[[dict], list[dict] | None]) -> tuple[
        dict, bool]:
    """Write the JSON patch `build` makes from the incident as read (edits.append): (the
    incident as written, True), or (as read, False) when `build` finds it already there. When
    a colleague created the list meanwhile the patch's `test` fails: it is built again from
    the incident as it is then, RETRIES times at most."""
    body = s.cluster.get(INCIDENT, s.namespace, name)
    for attempt in range(RETRIES):
        ops = build(body)
        if ops is None:
            return body, False
        try:
            return s.cluster.json_patch(INCIDENT, s.namespace, name, ops), True
        except ApiException as exc:
            if exc.status != 422 or attempt + 1 == RETRIES:
                raise
            body = s.cluster.get(INCIDENT, s.namespace, name)
            if not edits.overtaken(ops, body):
                raise   # a refusal of the change itself (a rule of the CRD): its words
    raise AssertionError("unreachable")  # pragma: no cover


def cmd_approve(s: Session) -> int:
    return _decide(s, "Approved")


def cmd_reject(s: Session) -> int:
    return _decide(s, "Rejected")


def _decide(s: Session, decision: str) -> int:
    """Append a go or no for a gated step (see edits.approval), as who the API server says."""
    by, step = s.cluster.whoami(), s.args.step
    verb = decision.lower()
    body, wrote = _append(s, s.args.incident, lambda body: edits.approval(
        body, step=step, decision=decision, by=by, now=time.time(), reason=s.args.reason or ""))
    if not wrote:
        return s.done(INCIDENT, body, f"step {step} already {verb}")
    return s.done(INCIDENT, body, f"step {step} {verb} by {by} (the operator acts on it at its "
                                  f"next round)")


def cmd_severity(s: Session) -> int:
    written = s.cluster.merge_patch(INCIDENT, s.namespace, s.args.incident,
                                    edits.severity(s.args.severity))
    return s.done(INCIDENT, written, f"severity {s.args.severity}")


def cmd_lift_freeze(s: Session) -> int:
    written = s.cluster.merge_patch(INCIDENT, s.namespace, s.args.incident, edits.lift_freeze())
    return s.done(INCIDENT, written, "freeze lift requested (the operator lifts it at its "
                                     "next round)")


def cmd_close(s: Session) -> int:
    items = [edits.action_item(text) for text in s.args.action_item]
    written, _ = _append(s, s.args.incident, lambda body: edits.close(body, items))
    count = len(written["spec"].get("actionItems") or [])
    return s.done(INCIDENT, written, f"closed ({count} action item(s))")


def cmd_pause(s: Session) -> int:
    until, patch = edits.pause(for_=s.args.for_, reason=s.args.reason,
                               by=s.cluster.whoami(), now=time.time())
    written = s.cluster.merge_patch(POLICY, s.namespace, s.args.policy, patch)
    return s.done(POLICY, written, f"paused until {written['spec']['pausedUntil']} "
                                   f"(it resumes by itself)")


def cmd_resume(s: Session) -> int:
    written = s.cluster.merge_patch(POLICY, s.namespace, s.args.policy, edits.resume())
    return s.done(POLICY, written, "resumed")


# -- the command line -------------------------------------------------------------------------
def _common() -> argparse.ArgumentParser:
    p = argparse.ArgumentParser(add_help=False)
    p.add_argument("-n", "--namespace", default=None,
                   help="the namespace (default: the kubeconfig context's)")
    p.add_argument("--context", default=None, help="the kubeconfig context to use")
    p.add_argument("--kubeconfig", default=None,
                   help="the kubeconfig file (default: $KUBECONFIG, ~/.kube/config, else "
                        "in-cluster credentials)")
    p.add_argument("--as", dest="as_user", default=None, metavar="USER",
                   help="act as this user (impersonation, as kubectl --as)")
    p.add_argument("-o", "--output", choices=("json", "yaml"), default=None,
                   help="print the object(s) instead of a summary")
    return p


def parser() -> argparse.ArgumentParser:
    common = _common()
    top = argparse.ArgumentParser(prog="kubectl mc", description=__doc__,
                                  formatter_class=argparse.RawDescriptionHelpFormatter)
    top.add_argument("--version", action="version", version=f"kubectl-mc {__version__}")
    sub = top.add_subparsers(dest="command", required=True, metavar="COMMAND")

    def command(name: str, fn: Callable[[Session], int], text: str) -> argparse.ArgumentParser:
        p = sub.add_parser(name, parents=[common], help=text, description=text)
        p.set_defaults(func=fn)
        return p

    get = command("get", cmd_get, "list incidents: phase, SLO left, freeze, acknowledgements")
    get.add_argument("names", nargs="*", metavar="INCIDENT")
    get.add_argument("-A", "--all-namespaces", action="store_true",
                     help="incidents of every namespace")
    get.add_argument("-w", "--watch", action="store_true", help="then print every change")
    describe = command("describe", cmd_describe,
                       "one incident: timeline, steps and their changes, pages, conditions")
    describe.add_argument("incident")
    ack = command("ack", cmd_ack, "acknowledge your page, as the identity of your kubeconfig "
                                  "(appended: earlier acknowledgements are kept)")
    ack.add_argument("incident")
    ack.add_argument("--role", default=None,
                     help="the role you acknowledge for (default: the only one waiting)")
    for verb, fn, text in (("approve", cmd_approve, "let a step that waits for approval run"),
                           ("reject", cmd_reject, "skip a step that waits for approval")):
        decide = command(verb, fn, text + " (the first decision per step stands)")
        decide.add_argument("incident")
        decide.add_argument("step", help="the step's id, as kubectl mc describe shows it")
        decide.add_argument("--reason", default=None, help="why, kept with the decision")
    sev = command("severity", cmd_severity, "declare the incident's severity")
    sev.add_argument("incident")
    sev.add_argument("severity", metavar="SEV1|SEV2|SEV3|SEV4")
    lift = command("lift-freeze", cmd_lift_freeze, "lift the deploy freeze now")
    lift.add_argument("incident")
    close = command("close", cmd_close, "close the incident with its action items (the API "
                                        "refuses it without items that each have an assignee)")
    close.add_argument("incident")
    close.add_argument("--action-item", action="append", default=[],
                       metavar="title=...,assignee=...[,due=YYYY-MM-DD]",
                       help="an action item to add (repeat)")
    pause = command("pause", cmd_pause, "pause an IncidentPolicy: no new incidents or actions "
                                        "for its targets until the time is up")
    pause.add_argument("policy")
    pause.add_argument("--for", dest="for_", required=True, metavar="DURATION",
                       help="how long, like 30m or 2h (at most 168h)")
    pause.add_argument("--reason", required=True, help="why, shown on the policy")
    resume = command("resume", cmd_resume, "end an IncidentPolicy's pause now")
    resume.add_argument("policy")
    pm = command("postmortem", cmd_postmortem, "the incident's postmortem as Markdown")
    pm.add_argument("incident")
    return top


def run(argv: list[str] | None = None, *, out: Callable[[str], None] = print,
        err: Callable[[str], None] | None = None) -> int:
    err = err or (lambda text: print(text, file=sys.stderr))
    args = parser().parse_args(argv)
    try:
        return args.func(Session(args, out=out))
    except edits.EditError as exc:
        err(f"error: {exc}")
        return 2
    except ApiException as exc:
        reason = unreachable(exc)
        err(f"error: cannot reach the API server: {reason}" if reason else refusal(exc))
        return 1
    except KeyboardInterrupt:
        return 0
    except Exception as exc:  # noqa: BLE001 - a CLI says what went wrong, without a trace
        reason = unreachable(exc)
        if reason is None:
            raise
        err(f"error: cannot reach the API server: {reason}")
        return 1


def main() -> None:
    sys.exit(run())
