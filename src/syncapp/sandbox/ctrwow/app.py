"""create_app(): the CTRwow sandbox as one ASGI app, on ``config.public_url``.

It serves the contract it implements at ``/openapi.json`` (``docs/contracts/
ctrwow.openapi.yaml`` converted) and ``/healthz``. Injected faults (``/_sandbox/faults``) apply
to every route except the control routes, answered as CTRwow would when unavailable: 503
(or the configured status) with ``Retry-After`` and a problem document.
"""

from __future__ import annotations

import asyncio
import json
from collections.abc import AsyncIterator
from contextlib import asynccontextmanager
from typing import Any

import yaml
from starlette.applications import Starlette
from starlette.requests import Request
from starlette.responses import JSONResponse, Response
from starlette.routing import BaseRoute, Route
from starlette.types import ASGIApp, Receive, Scope, Send

from syncapp.favicon import favicon_routes
from syncapp.sandbox.ctrwow import api, control, oauth
from syncapp.sandbox.ctrwow.config import CtrwowSandboxConfig
from syncapp.sandbox.ctrwow.db import SandboxDB
from syncapp.sandbox.ctrwow.state import SandboxState
from syncapp.sandbox.guard import SandboxGuard


def load_contract(config: CtrwowSandboxConfig) -> dict[str, Any]:
    """The OpenAPI document, with the sandbox's own URL as first server."""
    path = config.contract_path
    if not path.is_file():
        raise RuntimeError(
            f"the CTRwow contract is missing at {path}; set CtrwowSandboxConfig.contract_path"
            " to docs/contracts/ctrwow.openapi.yaml"
        )
    # The C loader when built: ten times faster, and the sandbox starts in every test.
    loader = getattr(yaml, "CSafeLoader", yaml.SafeLoader)
    document: dict[str, Any] = yaml.load(path.read_text(encoding="utf-8"), Loader=loader)  # noqa: S506 (a safe loader)
    servers = [s for s in document.get("servers", []) if s.get("url") != config.issuer]
    document["servers"] = [{"url": config.issuer, "description": "this sandbox"}, *servers]
    return document


class FaultInjection:
    """Fails requests as ``state.faults`` says, leaving ``/_sandbox/`` reachable."""

    def __init__(self, app: ASGIApp, state: SandboxState) -> None:
        self.app = app
        self.state = state

    async def __call__(self, scope: Scope, receive: Receive, send: Send) -> None:
        if scope["type"] == "http" and not scope["path"].startswith("/_sandbox/"):
            if self.state.faults.latency > 0:
                await asyncio.sleep(self.state.faults.latency)
            status = self.state.faults.take()
            if status is not None:
                retry_after = str(self.state.faults.retry_after)
                response = api.problem(
                    status,
                    "unavailable" if status != 429 else "rate_limited",
                    "CTRwow is temporarily unavailable" if status != 429 else "Too many requests",
                    f"Retry after {retry_after} seconds.",
                    headers={"Retry-After": retry_after},
                )
                await response(scope, receive, send)
                return
        await self.app(scope, receive, send)


def create_app(config: CtrwowSandboxConfig) -> Starlette:
    """Build the sandbox on the state in ``config.database_path``."""
    state = SandboxState(config=config, db=SandboxDB(config.database_path))
    contract = json.dumps(load_contract(config)).encode()

    async def healthz(request: Request) -> Response:
        return JSONResponse({"status": "ok"})

    async def openapi(request: Request) -> Response:
        return Response(contract, media_type="application/json")

    @asynccontextmanager
    async def lifespan(app: Starlette) -> AsyncIterator[None]:
        try:
            yield
        finally:
            state.db.close()

    routes: list[BaseRoute] = [
        Route("/healthz", healthz, methods=["GET"]),
        *favicon_routes("C", "#6d28d9"),
        Route("/openapi.json", openapi, methods=["GET"]),
        *oauth.routes(state),
        *api.routes(state),
        *control.routes(state),
    ]
    app = Starlette(routes=routes, lifespan=lifespan)
    app.add_middleware(FaultInjection, state=state)
    app.add_middleware(
        SandboxGuard, public_url=config.public_url, page_prefixes=("/oauth/authorize",)
    )
    app.state.sandbox = state
    return app
