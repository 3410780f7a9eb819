"""A local HTTP receiver standing in for PagerDuty, Slack and webhook endpoints: it records
every request and answers as the test scripts it, per path.

    with Receiver() as receiver:
        receiver.script("/pd", Reply(status=500), Reply(status=500))  # then the default 200
        ... the operator posts to receiver.url("/pd") ...
        [first, second, third] = receiver.wait_for_requests("/pd", 3, timeout=10)

Scripted replies are used once each, in order; after them, the path gets `default`.
A reply with `delay` holds the request that long before answering (to make clients time
out); `stop()` releases held requests at once, so a test never waits for them.
"""

from __future__ import annotations

import json
import threading
import time
from collections import defaultdict, deque
from dataclasses import dataclass, field
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer


@dataclass(frozen=True, kw_only=True)
class Reply:
    status: int = 200
    body: object = field(default_factory=lambda: {"status": "ok"})  # JSON, or str as is
    headers: dict[str, str] = field(default_factory=dict)
    delay: float = 0.0


@dataclass(frozen=True, kw_only=True)
class Recorded:
    method: str
    path: str
    query: str
    headers: dict[str, str]
    raw: bytes
    json: object | None  # None when the body is not JSON
    at: float  # time.monotonic() on arrival
    reply: Reply

    def header(self, name: str) -> str | None:
        """HTTP header names are case-insensitive; dict keys are not."""
        return next((v for k, v in self.headers.items() if k.lower() == name.lower()), None)


class Receiver:
    def __init__(self, *, default: Reply | None = None) -> None:
        self.default = default or Reply()
        self._scripts: dict[str, deque[Reply]] = defaultdict(deque)
        self._records: list[Recorded] = []
        self._changed = threading.Condition()
        self._closing = threading.Event()
        self.server = ThreadingHTTPServer(("127.0.0.1", 0), self._handler())
        self.server.daemon_threads = True
        self.port = self.server.server_address[1]
        # A short poll interval: shutdown() waits up to one interval, at every test teardown.
        self._thread = threading.Thread(target=self.server.serve_forever, args=(0.05,),
                                        daemon=True,
                                        name=f"receiver-{self.port}")

    def start(self) -> Receiver:
        self._thread.start()
        return self

    def stop(self) -> None:
        self._closing.set()  # wake handlers holding a delayed reply
        self.server.shutdown()
        self.server.server_close()

    def __enter__(self) -> Receiver:
        return self.start()

    def __exit__(self, *exc: object) -> None:
        self.stop()

    def url(self, path: str = "/") -> str:
        return f"http://127.0.0.1:{self.port}{path}"

    def script(self, path: str, *replies: Reply) -> None:
        with self._changed:
            self._scripts[path].extend(replies)

    def requests(self, path: str | None = None) -> list[Recorded]:
        with self._changed:
            return [r for r in self._records if path is None or r.path == path]

    def wait_for_requests(self, path: str, count: int, *, timeout: float) -> list[Recorded]:
        """Block until `path` has received at least `count` requests; return them all."""
        with self._changed:
            done = self._changed.wait_for(
                lambda: sum(r.path == path for r in self._records) >= count, timeout=timeout)
            seen = [r for r in self._records if r.path == path]
            if not done:
                paths = sorted({r.path for r in self._records})
                raise AssertionError(f"{len(seen)} of {count} requests to {path} within "
                                     f"{timeout:g}s (paths seen: {paths})")
            return seen

    def _next_reply(self, path: str) -> Reply:
        with self._changed:
            queue = self._scripts.get(path)
            return queue.popleft() if queue else self.default

    def _record(self, record: Recorded) -> None:
        with self._changed:
            self._records.append(record)
            self._changed.notify_all()

    def _handler(self) -> type[BaseHTTPRequestHandler]:
        receiver = self

        class Handler(BaseHTTPRequestHandler):
            def do_POST(self) -> None:  # noqa: N802 - http.server's name
                self._handle()

            def do_PUT(self) -> None:  # noqa: N802
                self._handle()

            def do_GET(self) -> None:  # noqa: N802
                self._handle()

            def _handle(self) -> None:
                path, _, query = self.path.partition("?")
                raw = self.rfile.read(int(self.headers.get("Content-Length") or 0))
                try:
                    parsed = json.loads(raw) if raw else None
                except ValueError:
                    parsed = None
                reply = receiver._next_reply(path)
                # Recorded on arrival, before any delay: a test sees a request its client
                # has already given up on.
                receiver._record(Recorded(
                    method=self.command, path=path, query=query, headers=dict(self.headers),
                    raw=raw, json=parsed, at=time.monotonic(), reply=reply))
                if reply.delay and receiver._closing.wait(reply.delay):
                    return  # stopping: drop the held request without answering
                body = reply.body if isinstance(reply.body, str) else json.dumps(reply.body)
                data = body.encode()
                try:
                    self.send_response(reply.status)
                    self.send_header("Content-Type", "application/json" if not isinstance(
                        reply.body, str) else "text/plain; charset=utf-8")
                    self.send_header("Content-Length", str(len(data)))
                    for name, value in reply.headers.items():
                        self.send_header(name, value)
                    self.end_headers()
                    self.wfile.write(data)
                except (BrokenPipeError, ConnectionResetError):
                    pass  # the client timed out and left; that is what the test wanted

            def log_message(self, *args: object) -> None:
                pass

        return Handler
