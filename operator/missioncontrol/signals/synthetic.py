"""Synthetic HTTP checks: one request each, with a timeout, recorded whatever happens."""

from __future__ import annotations

import time

import aiohttp

from ..incident import SyntheticResult
from ..model import SyntheticCheck


async def run(check: SyntheticCheck, url: str) -> SyntheticResult:
    started = time.monotonic()
    try:
        timeout = aiohttp.ClientTimeout(total=check.timeout)
        async with aiohttp.ClientSession(timeout=timeout) as session, \
                session.request(check.method, url, allow_redirects=False) as response:
            ok = response.status == check.expect_status
            return SyntheticResult(check.name, url, ok, response.status,
                                   round(time.monotonic() - started, 3),
                                   None if ok else f"expected {check.expect_status}")
    except Exception as exc:  # noqa: BLE001 - an unreachable endpoint is a result too
        return SyntheticResult(check.name, url, False, None, round(time.monotonic() - started, 3),
                               f"{type(exc).__name__}: {exc}"[:200])
