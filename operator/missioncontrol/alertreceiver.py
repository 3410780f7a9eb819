"""The Alertmanager webhook receiver: POST /alertmanager, payload version 4, a bearer token.

Every replica serves it and keeps what it receives (alerts.AlertStore); only the leader's
guard acts on it. A standby stores the payload too, then answers 503 and closes the
connection: Alertmanager retries a 5xx, and the retry, on a new connection, is balanced by the
Service to a replica again until it reaches the leader. So the leader hears of every alert,
and a standby that takes over already holds what reached it.

The token is read from its file (a mounted Secret) at every request, so a rotated token is
used at once; a request without it, or with another, is refused with 401. A payload that is
not Alertmanager's is refused with 400 and says why; nothing in it can stop the operator."""

from __future__ import annotations

import hmac
import json
import logging
import ssl
from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path

from aiohttp import web

from . import metrics
from .alerts import AlertStore, PayloadError, parse_payload
from .timeutil import Clock

log = logging.getLogger("missioncontrol.alerts")
PATH = "/alertmanager"
MAX_BODY = 8 * 1024 * 1024     # Alertmanager sends every alert of a group in one payload


@dataclass(frozen=True)
class ReceiverOptions:
    port: int
    token_file: str
    listen: str = "0.0.0.0"
    tls_cert_file: str | None = None   # HTTPS when given (with the key), else HTTP
    tls_key_file: str | None = None


def _token(path: str) -> bytes | None:
    try:
        token = Path(path).read_text().strip()
    except OSError as exc:
        log.error("cannot read the Alertmanager receiver's token file %s: %s", path, exc)
        return None
    return token.encode() or None


def app(store: AlertStore, *, token_file: str, clock: Clock,
        leading: Callable[[], bool]) -> web.Application:
    async def receive(request: web.Request) -> web.Response:
        expected = _token(token_file)
        given = request.headers.get("Authorization", "")
        scheme, _, credentials = given.partition(" ")
        if expected is None or scheme.lower() != "bearer" \
                or not hmac.compare_digest(credentials.strip().encode(), expected):
            metrics.ALERT_PAYLOADS.labels(result="unauthorized").inc()
            return web.json_response({"error": "a valid bearer token is required"}, status=401,
                                     headers={"WWW-Authenticate": "Bearer"})
        try:
            data = json.loads(await request.read())
        except (ValueError, UnicodeDecodeError) as exc:
            metrics.ALERT_PAYLOADS.labels(result="invalid").inc()
            return web.json_response({"error": f"the body is not JSON: {exc}"}, status=400)
        try:
            reports = parse_payload(data, now=clock())
        except PayloadError as exc:
            metrics.ALERT_PAYLOADS.labels(result="invalid").inc()
            log.warning("refused an Alertmanager payload: %s", exc)
            return web.json_response({"error": str(exc)}, status=400)
        store.put(reports, now=clock())
        if not leading():
            metrics.ALERT_PAYLOADS.labels(result="standby").inc()
            response = web.json_response(
                {"error": "a standby replica: stored; the leader acts, retry reaches it"},
                status=503, headers={"Retry-After": "1"})
            response.force_close()   # the retry opens a new connection: another replica
            return response
        metrics.ALERT_PAYLOADS.labels(result="accepted").inc()
        log.info("Alertmanager: %d alert(s) (%s)", len(reports),
                 ", ".join(sorted({f"{r.alertname} {'firing' if r.firing else 'resolved'}"
                                   for r in reports})) or "none")
        return web.json_response({"received": len(reports)})

    application = web.Application(client_max_size=MAX_BODY)
    application.router.add_post(PATH, receive)
    return application


async def serve(options: ReceiverOptions, application: web.Application) -> web.AppRunner:
    """Start answering on options.listen:options.port; the caller cleans the runner up."""
    context = None
    if options.tls_cert_file:
        context = ssl.create_default_context(ssl.Purpose.CLIENT_AUTH)
        context.load_cert_chain(options.tls_cert_file, options.tls_key_file)
    runner = web.AppRunner(application, access_log=None, handle_signals=False)
    await runner.setup()
    await web.TCPSite(runner, options.listen, options.port, ssl_context=context).start()
    return runner
