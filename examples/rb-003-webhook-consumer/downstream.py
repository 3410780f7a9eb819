"""The downstream the reference consumer delivers to, for tests and the demo: it accepts,
fails (503) or answers slowly as it is told, and records every event it accepted.

    POST /deliver        an event (JSON); 200 accepted, 503 while failing
    POST /control        {"mode": "ok" | "fail" | "slow", "delay": seconds}
    GET  /accepted       [[event id, X-Idempotency-Checks header, unix time], ...]
"""

from __future__ import annotations

import argparse
import json
import threading
import time
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer


class Downstream:
    def __init__(self, port: int = 0) -> None:
        self.mode, self.delay = "ok", 0.0
        self.accepted: list[tuple[str, str, float]] = []
        self.refused = 0
        self.lock = threading.Lock()
        downstream = self

        class Handler(BaseHTTPRequestHandler):
            def _json(self) -> dict:
                return json.loads(self.rfile.read(int(self.headers.get("Content-Length", 0))))

            def _answer(self, code: int, body: object = None) -> None:
                data = json.dumps(body).encode() if body is not None else b""
                self.send_response(code)
                self.send_header("Content-Length", str(len(data)))
                self.end_headers()
                self.wfile.write(data)

            def do_POST(self) -> None:  # noqa: N802 - http.server's name
                if self.path == "/control":
                    downstream.control(**self._json())
                    self._answer(204)
                elif self.path == "/deliver":
                    event = self._json()
                    self._answer(200 if downstream.deliver(
                        event, self.headers.get("X-Idempotency-Checks", "")) else 503)
                else:
                    self.send_error(404)

            def do_GET(self) -> None:  # noqa: N802
                if self.path != "/accepted":
                    self.send_error(404)
                    return
                with downstream.lock:
                    self._answer(200, list(downstream.accepted))

            def log_message(self, *args: object) -> None:
                pass

        self.server = ThreadingHTTPServer(("127.0.0.1", port), Handler)
        self.server.daemon_threads = True
        self.port = self.server.server_address[1]
        self.url = f"http://127.0.0.1:{self.port}"

    def control(self, mode: str = "ok", delay: float = 0.0) -> None:
        with self.lock:
            self.mode, self.delay = mode, float(delay)

    def deliver(self, event: dict, idempotency: str) -> bool:
        with self.lock:
            mode, delay = self.mode, self.delay
        if mode == "fail":
            with self.lock:
                self.refused += 1
            return False
        if mode == "slow":
            time.sleep(delay)
        with self.lock:
            self.accepted.append((event["id"], idempotency, time.time()))
        return True

    def start(self) -> Downstream:
        threading.Thread(target=self.server.serve_forever, daemon=True).start()
        return self

    def stop(self) -> None:
        self.server.shutdown()
        self.server.server_close()


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--port", type=int, required=True)
    args = parser.parse_args()
    downstream = Downstream(args.port)
    downstream.server.serve_forever()


if __name__ == "__main__":
    main()
