"""Request ids, request metrics, the access log and ``/metrics``, as one pure ASGI middleware.

Pure ASGI (not Starlette's BaseHTTPMiddleware) because it sits on the webhook hot path: it
adds a few microseconds, not a task per request. Each request gets an ``X-Request-Id`` (the
caller's, when it sends a sane one) bound into the structlog context of everything it logs.

The access log is this middleware's ``http.request`` line (method, target, status, duration,
request id), not uvicorn's: uvicorn's line goes through the standard library's
logging and carries no request id, and on the webhook path it was a second line per delivery
that cost about a fifth of a request's CPU. Routes whose endpoint logs every outcome itself
(``self_logged``: the webhook ingest's ``webhook.stored``/``webhook.refused``) get no second
line. The query passes :func:`syncapp.redact.redact_event` like every other field.
"""

from __future__ import annotations

import asyncio
import hmac
import os
import re
import time
from collections.abc import Awaitable, Callable

import structlog
from prometheus_client import CONTENT_TYPE_LATEST, CollectorRegistry, Histogram, generate_latest
from prometheus_client.multiprocess import MultiProcessCollector
from starlette.requests import Request
from starlette.responses import Response
from starlette.types import ASGIApp, Message, Receive, Scope, Send

REQUEST_SECONDS = Histogram(
    "syncapp_http_request_seconds",
    "HTTP request latency by route and status.",
    ["route", "method", "status"],
    buckets=(0.001, 0.0025, 0.005, 0.01, 0.025, 0.05, 0.1, 0.25, 0.5, 1, 2.5, 5),
)
_SANE_ID = re.compile(r"^[A-Za-z0-9._\-]{1,64}$")
log = structlog.get_logger("syncapp.http")


class RequestContextMiddleware:
    """Bind a request id, time the request, label it by a bounded set of routes."""

    def __init__(
        self,
        app: ASGIApp,
        *,
        known_routes: frozenset[str],
        self_logged: frozenset[str] = frozenset(),
    ) -> None:
        self.app = app
        self.known_routes = known_routes
        self.self_logged = self_logged

    async def __call__(self, scope: Scope, receive: Receive, send: Send) -> None:
        if scope["type"] != "http":
            await self.app(scope, receive, send)
            return
        request_id = ""
        for name, value in scope["headers"]:
            if name == b"x-request-id":
                candidate = value.decode("latin-1")
                if _SANE_ID.match(candidate):
                    request_id = candidate
                break
        request_id = request_id or os.urandom(16).hex()
        path = scope["path"]
        route = path if path in self.known_routes else "other"
        status = 500
        start = time.perf_counter()

        async def send_with_id(message: Message) -> None:
            nonlocal status
            if message["type"] == "http.response.start":
                status = message["status"]
                message.setdefault("headers", [])
                message["headers"] = [*message["headers"], (b"x-request-id", request_id.encode())]
            await send(message)

        with structlog.contextvars.bound_contextvars(request_id=request_id):
            try:
                await self.app(scope, receive, send_with_id)
            finally:
                elapsed = time.perf_counter() - start
                REQUEST_SECONDS.labels(route, scope["method"], str(status)).observe(elapsed)
                if path not in self.self_logged:
                    query = scope.get("query_string", b"")
                    log.info(
                        "http.request",
                        method=scope["method"],
                        # With its "?": the redaction recognises a query parameter by its lead.
                        target=f"{path}?{query.decode('latin-1')}" if query else path,
                        status=status,
                        duration_ms=round(elapsed * 1000, 2),
                    )


def _metrics_text() -> bytes:
    """Prometheus text format; with several web workers, the sum over all of them."""
    if os.environ.get("PROMETHEUS_MULTIPROC_DIR"):
        registry = CollectorRegistry()
        MultiProcessCollector(registry)  # type: ignore[no-untyped-call]
        return generate_latest(registry)
    return generate_latest()


def metrics_endpoint(
    *, token: str | None, required: bool, extra: Callable[[], bytes] | None = None
) -> Callable[[Request], Awaitable[Response]]:
    """``/metrics`` behind ``Authorization: Bearer <token>`` when a token is configured.

    The metrics name routes, outcomes and volumes, which is nobody's business on the public
    port: with ``required`` (production) and no token configured they are refused outright.
    """
    expected = f"Bearer {token}".encode() if token else None

    async def metrics(request: Request) -> Response:
        if expected is None and required:
            return Response("metrics are disabled: set SYNCAPP_METRICS_TOKEN", status_code=403)
        if expected is not None:
            given = request.headers.get("authorization", "").encode("latin-1")
            if not hmac.compare_digest(given, expected):
                return Response(
                    "Unauthorized",
                    status_code=401,
                    headers={"WWW-Authenticate": 'Bearer realm="metrics"'},
                )
        text = _metrics_text()
        if extra is not None:  # read from the database: off the event loop
            text += await asyncio.to_thread(extra)
        return Response(text, media_type=CONTENT_TYPE_LATEST)

    return metrics
