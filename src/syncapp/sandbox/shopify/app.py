"""create_app(): the Shopify sandbox as one ASGI app.

Shopify routes by host (``https://<shop>.myshopify.com/admin/...``); so does the sandbox,
reading the ``Host`` header. Pages a person opens in a browser (the admin) live under
``/store/<shop>/...`` on the sandbox's own address, like ``admin.shopify.com/store/<shop>``.
Routes under ``/_sandbox/`` do not exist on Shopify: tests and ``make run`` use them to set the
sandbox up (create shops, mint ID tokens, inject webhook faults).
"""

from __future__ import annotations

from collections.abc import AsyncIterator
from contextlib import asynccontextmanager

from starlette.applications import Starlette
from starlette.requests import Request
from starlette.responses import JSONResponse
from starlette.routing import BaseRoute, Route

from syncapp.favicon import favicon_routes
from syncapp.sandbox.guard import SandboxGuard
from syncapp.sandbox.shopify import admin, embedded, graphql_api, oauth, webhooks
from syncapp.sandbox.shopify.config import SandboxConfig
from syncapp.sandbox.shopify.db import SandboxDB
from syncapp.sandbox.shopify.state import SandboxState


async def _healthz(request: Request) -> JSONResponse:
    return JSONResponse({"status": "ok"})


def create_app(config: SandboxConfig) -> Starlette:
    """Build the sandbox on the state in ``config.database_path``."""
    state = SandboxState(config=config, db=SandboxDB(config.database_path))
    deliverer = webhooks.WebhookDeliverer(state)

    @asynccontextmanager
    async def lifespan(app: Starlette) -> AsyncIterator[None]:
        if config.deliver_webhooks:
            await deliverer.start()
        try:
            yield
        finally:
            await deliverer.stop()
            state.db.close()

    routes: list[BaseRoute] = [
        Route("/healthz", _healthz, methods=["GET"]),
        *favicon_routes("S", "#95bf47"),
        *oauth.routes(state),
        *graphql_api.routes(state),
        *webhooks.routes(state, deliverer),
        *admin.routes(state),
        *embedded.routes(state),
    ]
    app = Starlette(routes=routes, lifespan=lifespan)
    app.add_middleware(SandboxGuard, public_url=config.public_url, page_prefixes=("/store/",))
    app.state.sandbox = state
    app.state.deliverer = deliverer
    return app
