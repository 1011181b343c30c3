"""create_app(): the app's ASGI application, built from settings passed in explicitly."""

from __future__ import annotations

import gc
from collections.abc import AsyncIterator
from contextlib import asynccontextmanager
from functools import partial

import anyio
import structlog
from shopify_app import AppConfig
from starlette.applications import Starlette
from starlette.middleware import Middleware
from starlette.middleware.gzip import GZipMiddleware
from starlette.requests import Request
from starlette.responses import JSONResponse, Response
from starlette.routing import Mount, Route

from syncapp.bus.inbox import Inbox
from syncapp.bus.metrics import state_metrics
from syncapp.config import Settings, ensure_embedded_secrets, load_settings, subscribed_topics
from syncapp.favicon import favicon_routes
from syncapp.logging import configure_logging
from syncapp.shops.runtime import ShopsRuntime
from syncapp.store.db import make_engine, ping
from syncapp.web.app_home import ROUTE_PATHS as APP_HOME_PATHS
from syncapp.web.app_home import app_home
from syncapp.web.emanage_webhooks import AccountShops, EmanageWebhookEndpoint
from syncapp.web.observability import RequestContextMiddleware, metrics_endpoint
from syncapp.web.sync_api import sync_api
from syncapp.web.sync_api.iam import iam_verifier
from syncapp.web.webhooks import ShopifyWebhookEndpoint, WebhookRoute

log = structlog.get_logger("syncapp.web")


def create_app(settings: Settings) -> Starlette:
    """The web service for ``settings``; the database must already be migrated."""
    assert settings.shopify_client_secret is not None, "call ensure_embedded_secrets first"
    assert settings.emanage_webhook_secret is not None, "call ensure_embedded_secrets first"
    engine = make_engine(settings.database_url)
    inbox = Inbox(
        engine,
        max_batch=settings.ingest_batch_size,
        lock_wait_seconds=settings.ingest_lock_wait_seconds,
    )
    old_secret = settings.shopify_old_client_secret
    app_config: AppConfig = {
        "client_id": settings.shopify_client_id,
        "client_secret": settings.shopify_client_secret.get_secret_value(),
        "old_client_secret": old_secret.get_secret_value() if old_secret else None,
    }
    shops = ShopsRuntime.from_settings(settings, engine)
    home = app_home(shops, app_config, settings)
    webhooks = ShopifyWebhookEndpoint(
        app_config=app_config,
        inbox=inbox,
        max_bytes=settings.webhook_max_bytes,
        topics=subscribed_topics(settings.shopify_app_toml),
        vault=shops.vault,
    )

    emanage_old = settings.emanage_webhook_old_secret
    emanage_webhooks = EmanageWebhookEndpoint(
        inbox=inbox,
        secrets=[
            settings.emanage_webhook_secret.get_secret_value(),
            emanage_old.get_secret_value() if emanage_old else "",
        ],
        accounts=AccountShops(engine),
        max_bytes=settings.webhook_max_bytes,
    )

    async def healthz(request: Request) -> Response:
        try:
            with anyio.fail_after(2):
                await anyio.to_thread.run_sync(ping, engine)
        except Exception as exc:
            log.warning("health.database_down", error=str(exc))
            return JSONResponse({"status": "unavailable", "database": "down"}, status_code=503)
        return JSONResponse({"status": "ok", "database": "up"})

    @asynccontextmanager
    async def lifespan(app: Starlette) -> AsyncIterator[None]:
        await inbox.start()
        log.info("app.started", database=settings.masked_database_url)
        try:
            yield
        finally:
            await inbox.stop()
            await home.aclose()
            engine.dispose()

    # Plain Starlette, and the webhook (the hot path) answered by WebhookRoute before the router.
    # The Sync API (FastAPI) is mounted at /api beside these routes.
    app = Starlette(
        routes=[
            Route("/healthz", healthz, methods=["GET", "HEAD"]),
            Route(
                "/metrics",
                metrics_endpoint(
                    token=settings.metrics_token.get_secret_value()
                    if settings.metrics_token
                    else None,
                    required=settings.env == "production",
                    extra=partial(state_metrics, shops.sessions),
                ),
                methods=["GET"],
            ),
            *favicon_routes("S", "#008060"),
            *home.routes(),
            Mount("/api", app=sync_api(shops.sessions, iam_verifier(settings))),
        ],
        middleware=[
            Middleware(
                RequestContextMiddleware,
                known_routes=frozenset(
                    {
                        "/healthz",
                        "/metrics",
                        "/webhooks/shopify",
                        "/webhooks/emanage",
                        "/favicon.ico",
                        "/favicon.svg",
                    }
                )
                | APP_HOME_PATHS,
                self_logged=frozenset({"/webhooks/shopify", "/webhooks/emanage"}),
            ),
            Middleware(WebhookRoute, path="/webhooks/shopify", endpoint=webhooks),
            Middleware(WebhookRoute, path="/webhooks/emanage", endpoint=emanage_webhooks),
            # Inside WebhookRoute: the webhook ingest (answered before this) never pays for it.
            Middleware(GZipMiddleware, minimum_size=1024),
        ],
        lifespan=lifespan,
    )
    app.state.settings = settings
    app.state.engine = engine
    app.state.inbox = inbox
    app.state.shops = shops
    return app


def freeze_startup_heap() -> None:
    """Move everything alive after start-up out of the garbage collector's reach.

    The startup heap (about 100,000 containers: modules, SQLAlchemy metadata, templates, the
    app's routes) lives as long as the process, yet every full collection walked all of it:
    about 50 ms with the event loop stopped, often enough to set the webhook ingest p99
    (docs/adr/0006-freeze-startup-heap.md). Objects created later are collected as usual.
    Called once per served process (``app_from_env``), not by ``create_app``: tests build
    many apps in one process and must not pin each one.
    """
    gc.collect()
    gc.freeze()


def app_from_env() -> Starlette:
    """Factory for ``uvicorn --factory``: settings from the environment."""
    settings = ensure_embedded_secrets(load_settings())
    configure_logging(settings.log_level, settings.log_format)
    app = create_app(settings)
    freeze_startup_heap()
    return app
