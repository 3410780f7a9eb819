"""A server that accepts TCP connections and never answers: a hung Prometheus (or any hung
HTTP peer). Connections are held open until it stops, so the client sees no error, only
silence, and must rely on its own deadline."""

from __future__ import annotations

import socket
import threading


class SilentServer:
    def __init__(self) -> None:
        self.sock = socket.create_server(("127.0.0.1", 0))
        self.port = self.sock.getsockname()[1]
        self.connections: list[socket.socket] = []
        self.lock = threading.Lock()
        self.thread = threading.Thread(target=self._accept, daemon=True)

    @property
    def url(self) -> str:
        return f"http://127.0.0.1:{self.port}"

    @property
    def accepted(self) -> int:
        with self.lock:
            return len(self.connections)

    def __enter__(self) -> SilentServer:
        self.thread.start()
        return self

    def __exit__(self, *_: object) -> None:
        self.stop()

    def _accept(self) -> None:
        while True:
            try:
                conn, _ = self.sock.accept()
            except OSError:
                return   # closed: stopping
            with self.lock:
                self.connections.append(conn)   # read nothing, answer nothing

    def stop(self) -> None:
        try:
            self.sock.shutdown(socket.SHUT_RDWR)
        except OSError:
            pass
        self.sock.close()
        with self.lock:
            for conn in self.connections:
                conn.close()
        self.thread.join(5)
