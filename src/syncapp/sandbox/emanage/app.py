"""create_app(): the eManageCRM sandbox as one ASGI app on one address (default
http://127.0.0.1:8200). The real system splits these over hosts (IAM and admin, Web Sales per
region or subscription); the app finds them through the account's ``websalesApiUrl`` and its
configured base URL, so one address serves all of them here.
"""

from __future__ import annotations

from collections.abc import AsyncIterator
from contextlib import asynccontextmanager

from starlette.applications import Starlette
from starlette.middleware import Middleware
from starlette.requests import Request
from starlette.responses import JSONResponse, RedirectResponse, Response
from starlette.routing import BaseRoute, Route

from syncapp.favicon import favicon_routes
from syncapp.sandbox.emanage import (
    accounts,
    control,
    delivery,
    iam,
    products,
    providers,
    sso,
    subscriptions,
    ui,
    websales,
)
from syncapp.sandbox.emanage.config import EmanageSandboxConfig
from syncapp.sandbox.emanage.contract import load_contract
from syncapp.sandbox.emanage.db import EmanageDB
from syncapp.sandbox.emanage.faults import FaultsMiddleware
from syncapp.sandbox.emanage.state import EmanageState
from syncapp.sandbox.guard import SandboxGuard


def create_app(config: EmanageSandboxConfig) -> Starlette:
    """Build the sandbox on the state in ``config.database_path`` (created if missing)."""
    contract = load_contract(config.contract_path)
    state = EmanageState(config=config, db=EmanageDB(config.database_path))
    deliverer = delivery.NotificationDeliverer(state)

    async def healthz(request: Request) -> Response:
        return JSONResponse({"status": "ok"})

    async def openapi(request: Request) -> Response:
        return JSONResponse(contract)

    async def no_route(request: Request, exc: Exception) -> Response:
        # As ASP.NET Web API answers a URI no route matches: JSON, never Starlette's text.
        message = "No HTTP resource was found that matches the request URI."
        return JSONResponse({"code": "not_found", "message": message}, status_code=404)

    async def crm_root(request: Request) -> Response:
        return RedirectResponse("/crm/", status_code=307)

    @asynccontextmanager
    async def lifespan(app: Starlette) -> AsyncIterator[None]:
        await deliverer.start()
        try:
            yield
        finally:
            await deliverer.stop()
            state.db.close()

    routes: list[BaseRoute] = [
        Route("/healthz", healthz, methods=["GET"]),
        *favicon_routes("e", "#0b3b60"),
        Route("/openapi.json", openapi, methods=["GET"]),
        Route("/crm", crm_root, methods=["GET"]),
        *iam.routes(state),
        *accounts.routes(state),
        *sso.routes(state),
        *providers.routes(state),
        *products.routes(state),
        *ui.routes(state),
        *websales.routes(state),
        *subscriptions.routes(state),
        *control.routes(state),
        *delivery.routes(state, deliverer),
    ]
    app = Starlette(
        routes=routes,
        lifespan=lifespan,
        exception_handlers={404: no_route},
        middleware=[
            Middleware(SandboxGuard, public_url=config.public_url, page_prefixes=("/crm/",)),
            Middleware(FaultsMiddleware, state=state),
        ],
    )
    app.state.sandbox = state
    app.state.deliverer = deliverer
    return app
