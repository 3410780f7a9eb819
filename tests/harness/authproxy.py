"""A small real HTTP proxy in front of the test Prometheus, the way hosted and multi-tenant
Prometheus setups stand in front of theirs: it forwards a request (GET or POST, its query
string and form body as they are) only when the request carries the header it requires (a
bearer token, or a tenant header like Mimir's X-Scope-OrgID), and answers 401 otherwise, as
those proxies do. Optionally it serves HTTPS with a certificate of a CA of its own. It runs
on aiohttp in a thread of its own, on a free loopback port; `seen` records what reached it."""

from __future__ import annotations

import asyncio
import ssl
import threading
from dataclasses import dataclass, field

import aiohttp
from aiohttp import web

from .procs import free_port

HOP_HEADERS = {"host", "content-length", "transfer-encoding", "connection"}


@dataclass
class Seen:
    method: str
    path: str
    headers: dict[str, str]
    query_length: int


@dataclass
class AuthProxy:
    upstream: str                  # the Prometheus it forwards to
    header: str                    # the header it requires ...
    value: str                     # ... with this value
    tls: ssl.SSLContext | None = None
    seen: list[Seen] = field(default_factory=list)
    url: str = ""

    def start(self) -> AuthProxy:
        port = free_port()
        self.url = f"{'https' if self.tls else 'http'}://127.0.0.1:{port}"
        self._loop = asyncio.new_event_loop()
        started = threading.Event()

        def serve() -> None:
            asyncio.set_event_loop(self._loop)
            app = web.Application()
            app.router.add_route("*", "/{path:.*}", self._forward)
            self._runner = web.AppRunner(app, access_log=None)
            self._loop.run_until_complete(self._runner.setup())
            site = web.TCPSite(self._runner, "127.0.0.1", port, ssl_context=self.tls)
            self._loop.run_until_complete(site.start())
            started.set()
            self._loop.run_forever()

        self._thread = threading.Thread(target=serve, name="authproxy", daemon=True)
        self._thread.start()
        if not started.wait(30):
            raise RuntimeError("the auth proxy did not start")
        return self

    def stop(self) -> None:
        async def down() -> None:
            await self._runner.cleanup()

        asyncio.run_coroutine_threadsafe(down(), self._loop).result(30)
        self._loop.call_soon_threadsafe(self._loop.stop)
        self._thread.join(30)
        self._loop.close()

    async def _forward(self, request: web.Request) -> web.StreamResponse:
        body = await request.read()
        query = request.query_string or (body.decode(errors="replace")
                                         if request.method == "POST" else "")
        self.seen.append(Seen(request.method, request.path, dict(request.headers),
                              len(query)))
        if request.headers.get(self.header) != self.value:
            return web.json_response({"status": "error", "errorType": "unauthorized",
                                      "error": f"missing or wrong {self.header}"},
                                     status=401)
        headers = {k: v for k, v in request.headers.items()
                   if k.lower() not in HOP_HEADERS and k.lower() != self.header.lower()}
        timeout = aiohttp.ClientTimeout(total=10)
        async with aiohttp.ClientSession(timeout=timeout) as session, session.request(
                request.method, f"{self.upstream}{request.path_qs}", data=body or None,
                headers=headers) as upstream:
            payload = await upstream.read()
            return web.Response(body=payload, status=upstream.status,
                                content_type=upstream.content_type)
