"""The harness's Redis: a real server, not run as root, gone without a trace when stopped."""

from __future__ import annotations

import os
from pathlib import Path

import redis

from harness.redis import RedisServer


def test_redis_runs_unprivileged_and_leaves_nothing() -> None:
    server = RedisServer().start()
    pid = server.proc.popen.pid
    workdir = server.workdir
    try:
        r = redis.Redis.from_url(server.url, socket_timeout=5)
        assert r.ping()
        r.xadd("s", {"k": "v"})
        assert r.xlen("s") == 1
        uid = int(Path(f"/proc/{pid}/status").read_text().split("Uid:")[1].split()[0])
        if os.geteuid() == 0:
            assert uid != 0, "redis-server runs as root"
        r.close()
    finally:
        server.stop()
    assert not Path(f"/proc/{pid}").exists()
    assert not workdir.exists()
    assert not server.proc.log.exists()
