"""A TCP load balancer standing in for a Service in front of several replicas: each new
connection goes to the next backend in turn (TLS passes through untouched)."""

from __future__ import annotations

import asyncio
import contextlib
import threading
from collections.abc import Callable

from .procs import free_port


class Balancer:
    def __init__(self, backends: Callable[[], list[int]]) -> None:
        self.backends = backends   # ports on 127.0.0.1, asked at each connection
        self.port = free_port()
        self.connections: dict[int, int] = {}
        self._loop = asyncio.new_event_loop()
        self._thread = threading.Thread(target=self._loop.run_forever, daemon=True)
        self._turn = 0
        self._server: asyncio.base_events.Server | None = None

    def start(self) -> Balancer:
        self._thread.start()
        asyncio.run_coroutine_threadsafe(self._listen(), self._loop).result(10)
        return self

    def stop(self) -> None:
        async def close() -> None:
            if self._server:
                self._server.close()
        asyncio.run_coroutine_threadsafe(close(), self._loop).result(10)
        self._loop.call_soon_threadsafe(self._loop.stop)
        self._thread.join(10)

    def __enter__(self) -> Balancer:
        return self.start()

    def __exit__(self, *_: object) -> None:
        self.stop()

    async def _listen(self) -> None:
        self._server = await asyncio.start_server(self._serve, "127.0.0.1", self.port)

    async def _serve(self, reader: asyncio.StreamReader, writer: asyncio.StreamWriter) -> None:
        ports = self.backends()
        # The next backend that accepts: a dead replica is skipped, as a Service's endpoints
        # drop a pod that is gone.
        for _ in range(len(ports)):
            port = ports[self._turn % len(ports)]
            self._turn += 1
            try:
                up_reader, up_writer = await asyncio.open_connection("127.0.0.1", port)
            except OSError:
                continue
            self.connections[port] = self.connections.get(port, 0) + 1
            await asyncio.gather(_pipe(reader, up_writer), _pipe(up_reader, writer))
            return
        writer.close()


async def _pipe(reader: asyncio.StreamReader, writer: asyncio.StreamWriter) -> None:
    try:
        while data := await reader.read(65536):
            writer.write(data)
            await writer.drain()
    except (ConnectionError, asyncio.IncompleteReadError):
        pass
    finally:
        with contextlib.suppress(Exception):
            writer.close()
