"""The freeze webhook's HTTP adapter (handlers.freeze.review) and its judgement from the
replica's cache with a live read behind every refusal (handlers.freeze.judge): an AdmissionReview
in, the answer out, and a refusal logged at INFO naming its incident."""

from __future__ import annotations

import asyncio
import copy
import logging
import socket

import aiohttp
from aiohttp import web

from missioncontrol import podtemplate
from missioncontrol.actions.freeze import FROZEN
from missioncontrol.handlers.freeze import INDEX, judge, review

HEALTHY = {"metadata": {"labels": {"app": "web"}},
           "spec": {"containers": [{"name": "web", "image": "shop/web:1.4.0"}]}}
BROKEN = {"metadata": {"labels": {"app": "web"}},
          "spec": {"containers": [{"name": "web", "image": "shop/web:1.5.0"}]}}
ENTRY = {"incident": "inc-web-7f3k", "namespace": "shop",
         "allowed": podtemplate.fingerprint(HEALTHY), "toRevision": 2}
FROZEN_WEB = {"Deployment/shop/web": [ENTRY]}


def deployment(template: dict) -> dict:
    return {"apiVersion": "apps/v1", "kind": "Deployment",
            "metadata": {"name": "web", "namespace": "shop",
                         "labels": {"app": "web", FROZEN: "true"}},
            "spec": {"replicas": 2, "template": copy.deepcopy(template)}}


class Index:
    """A replica's cache as the handler sees it, with the cluster's answer behind it."""

    def __init__(self, cached: dict, live: dict | None, *, synced: bool = True) -> None:
        self.cached, self.cluster, self.synced = cached, live, synced
        self.live_reads = 0

    def snapshot(self) -> dict:
        return self.cached

    async def live(self, namespace: str) -> dict | None:
        self.live_reads += 1
        return self.cluster


def run_judge(index: Index, template: dict) -> object:
    return asyncio.run(judge(index, obj=deployment(template), old=deployment(BROKEN),
                             operation="UPDATE"))


def test_an_allowed_change_is_judged_from_the_cache_alone() -> None:
    index = Index(FROZEN_WEB, FROZEN_WEB)
    assert run_judge(index, HEALTHY) is None
    assert index.live_reads == 0


def test_a_freeze_the_watch_has_not_brought_yet_is_found_by_the_live_read() -> None:
    # The cache of a replica that never heard of the incident (a standby behind on its watch):
    # the refusal still names the incident, exactly as the leader's would.
    index = Index({}, FROZEN_WEB)
    denial = run_judge(index, BROKEN | {"spec": {"containers": [{"image": "x"}]}})
    assert denial is not None and denial.incident == "shop/inc-web-7f3k"
    assert index.live_reads == 1


def test_a_lifted_freeze_the_cache_still_holds_does_not_refuse() -> None:
    index = Index(FROZEN_WEB, {})
    denial = run_judge(index, {"spec": {"containers": [{"image": "shop/web:2.0"}]}})
    assert denial is not None and denial.incident is None   # the label without an incident
    index = Index({"Deployment/shop/web": [{**ENTRY, "allowed": "old"}]}, FROZEN_WEB)
    assert run_judge(index, HEALTHY) is None   # the live freeze allows the healthy release


def test_an_unsynced_cache_asks_the_cluster_even_to_allow() -> None:
    index = Index({}, FROZEN_WEB, synced=False)
    assert run_judge(index, HEALTHY) is None
    assert index.live_reads == 1


def test_a_failed_live_read_leaves_the_cache_to_judge() -> None:
    index = Index(FROZEN_WEB, None)
    denial = run_judge(index, {"spec": {"containers": [{"image": "shop/web:2.0"}]}})
    assert denial is not None and denial.incident == "shop/inc-web-7f3k"


def review_over_http(index: Index, review_body: dict) -> tuple[dict, str]:
    async def scenario() -> tuple[dict, str]:
        app = web.Application()
        app[INDEX] = index
        app.router.add_post("/freeze", review)
        runner = web.AppRunner(app)
        await runner.setup()
        with socket.socket() as probe:
            probe.bind(("127.0.0.1", 0))
            port = probe.getsockname()[1]
        await web.TCPSite(runner, "127.0.0.1", port).start()
        try:
            async with aiohttp.ClientSession() as session, session.post(
                    f"http://127.0.0.1:{port}/freeze", json=review_body) as response:
                return await response.json(), response.headers.get("Connection", "")
        finally:
            await runner.cleanup()
    return asyncio.run(scenario())


def admission(template: dict) -> dict:
    return {"apiVersion": "admission.k8s.io/v1", "kind": "AdmissionReview",
            "request": {"uid": "u-1", "operation": "UPDATE", "object": deployment(template),
                        "oldObject": deployment(BROKEN)}}


def test_a_refusal_answers_403_and_is_logged_at_info_with_its_incident(caplog) -> None:
    caplog.set_level(logging.DEBUG)
    answer, connection = review_over_http(
        Index(FROZEN_WEB, FROZEN_WEB),
        admission({"spec": {"containers": [{"image": "shop/web:2.0"}]}}))
    response = answer["response"]
    assert answer["kind"] == "AdmissionReview" and response["uid"] == "u-1"
    assert response["allowed"] is False and response["status"]["code"] == 403
    assert "frozen by incident inc-web-7f3k" in response["status"]["message"]
    refusals = [r for r in caplog.records if "refused" in r.getMessage()]
    assert [r.levelname for r in refusals] == ["INFO"]
    assert "frozen by incident shop/inc-web-7f3k" in refusals[0].getMessage()
    assert not [r for r in caplog.records if r.levelno >= logging.WARNING]
    assert connection.lower() == "close"   # each call picks a replica afresh


def test_an_allowed_change_answers_allowed() -> None:
    answer, _ = review_over_http(Index(FROZEN_WEB, FROZEN_WEB), admission(HEALTHY))
    assert answer["response"] == {"uid": "u-1", "allowed": True}


def test_a_request_it_cannot_judge_is_refused_and_logged_as_an_error(caplog) -> None:
    answer, _ = review_over_http(Index(FROZEN_WEB, FROZEN_WEB), {"request": {"uid": "u-2"}})
    assert answer["response"]["allowed"] is False
    assert answer["response"]["status"]["code"] == 500
    assert [r.levelname for r in caplog.records if "cannot judge" in r.getMessage()] == ["ERROR"]


def test_the_configuration_points_where_the_server_answers() -> None:
    from missioncontrol.handlers.freeze import app
    from missioncontrol.webhook import HANDLER_PATH, WebhookOptions, configuration

    routes = {(r.method, r.resource.canonical) for r in app(Index({}, {})).router.routes()}
    assert ("POST", f"/{HANDLER_PATH}") in routes
    config = configuration(WebhookOptions(port=9443), b"CA")
    assert config["webhooks"][0]["clientConfig"]["url"].endswith(f":9443/{HANDLER_PATH}")
    behind = configuration(WebhookOptions(url="https://lb.example:8443/freeze"), b"CA")
    assert behind["webhooks"][0]["clientConfig"]["url"] == "https://lb.example:8443/freeze"
