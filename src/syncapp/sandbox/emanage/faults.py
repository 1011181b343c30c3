"""Injected failures, so the app's retries and backoff can be tested against a failing
eManageCRM: ``POST /_sandbox/faults`` with ``{"failNext": N, "status": 503, "retryAfter": 2}``
fails the next N requests, ``{"downForSeconds": T}`` answers 503 to everything for T seconds,
``{"latencySeconds": S}`` makes every answer (failures too) wait S seconds, as a slow or far
eManageCRM does. Control routes under ``/_sandbox/`` never fail or wait.
"""

from __future__ import annotations

import json
import math

import anyio
from starlette.types import ASGIApp, Receive, Scope, Send

from syncapp.sandbox.emanage.state import EmanageState

FAULT_STATUSES = frozenset({429, 500, 502, 503, 504})


class FaultsMiddleware:
    """Answers with the injected failure instead of calling the app, while one is set."""

    def __init__(self, app: ASGIApp, state: EmanageState) -> None:
        self.app = app
        self.state = state

    def _take(self) -> tuple[int, float | None] | None:
        faults = self.state.faults
        now = self.state.clock.now()
        with faults.lock:
            if faults.down_until > now:
                return 503, max(1.0, round(faults.down_until - now))
            if faults.fail_next > 0:
                faults.fail_next -= 1
                return faults.status, faults.retry_after
        return None

    async def __call__(self, scope: Scope, receive: Receive, send: Send) -> None:
        if scope["type"] != "http" or str(scope["path"]).startswith("/_sandbox/"):
            await self.app(scope, receive, send)
            return
        with self.state.faults.lock:
            latency = self.state.faults.latency
        if latency > 0:
            await anyio.sleep(latency)
        fault = self._take()
        if fault is None:
            await self.app(scope, receive, send)
            return
        status, retry_after = fault
        message = (
            "Too many requests; slow down."
            if status == 429
            else "The service is temporarily unavailable; retry later."
        )
        body = json.dumps({"code": "unavailable", "message": message}).encode()
        headers = [
            (b"content-type", b"application/json"),
            (b"content-length", str(len(body)).encode()),
        ]
        if retry_after is not None:
            # RFC 9110 delay-seconds is a whole number.
            headers.append((b"retry-after", str(math.ceil(retry_after)).encode()))
        await send({"type": "http.response.start", "status": status, "headers": headers})
        await send({"type": "http.response.body", "body": body})
