"""App Home routes.

==============================  ==========================================================
``GET /``                        the App Home page (document load with ``id_token``)
``GET /auth/patch-id-token``     shopifyapp's page that lets App Bridge fetch a fresh ID
                                 token and reload (``app_home_patch_id_token``)
``GET /app/api/shop``            the shop's status as JSON (App Bridge fetch, Bearer token)
``POST /app/api/shop/refresh``   read the shop from Shopify again and store it
==============================  ==========================================================

A request that fails verification gets exactly shopifyapp's response: a document load
without a (valid) ``id_token`` is redirected (302) to the patch page, a fetch with a bad
token gets 401 with ``X-Shopify-Retry-Invalid-Session-Request: 1`` so App Bridge retries.
Verified document responses carry the library's headers (``Content-Security-Policy:
frame-ancestors https://<shop> https://admin.shopify.com;`` and the preload ``Link``).
The first verified request of a shop without a valid token installs it
(:func:`syncapp.shops.install.ensure_installed`).
"""

from __future__ import annotations

import re
from dataclasses import dataclass

import anyio
import jinja2
import structlog
from shopify_app import AppConfig, IdTokenDetails, Res
from shopify_app.helpers.app_home_patch_id_token import app_home_patch_id_token
from shopify_app.verify.app_home_req import verify_app_home_req
from starlette.requests import Request
from starlette.responses import HTMLResponse, JSONResponse, Response
from starlette.routing import BaseRoute, Route

from syncapp.connectors.shopify.admin import ShopifyAdminError, ShopifyTransientError
from syncapp.shops.errors import ShopError, ShopifyTokenUnavailable
from syncapp.shops.install import ensure_installed, refresh_shop_info
from syncapp.shops.runtime import ShopsRuntime
from syncapp.shops.status import shop_status

log = structlog.get_logger("syncapp.web.app_home")

PATCH_ID_TOKEN_PATH = "/auth/patch-id-token"  # noqa: S105 (a path, not a secret)
ROUTE_PATHS = frozenset({"/", PATCH_ID_TOKEN_PATH, "/app/api/shop", "/app/api/shop/refresh"})
_SHOP = re.compile(r"^[a-z0-9][a-z0-9-]{0,99}$")
_MAX_BODY = 64 * 1024

_templates = jinja2.Environment(
    loader=jinja2.PackageLoader("syncapp.web", "templates"),
    autoescape=jinja2.select_autoescape(default=True),
    undefined=jinja2.StrictUndefined,
)


def library_response(res: Res) -> Response:
    """shopifyapp's suggested response, unchanged: status, body and headers."""
    return Response(content=res.body, status_code=res.status, headers=dict(res.headers))


@dataclass(frozen=True, slots=True)
class Verified:
    """A verified App Home request: the shop (domain) and the headers its response needs."""

    shop: str
    headers: dict[str, str]
    id_token: IdTokenDetails
    invalid_token_response: Res | None


class AppHome:
    """The App Home handlers of one app (its Shopify config and shop services)."""

    def __init__(self, runtime: ShopsRuntime, config: AppConfig) -> None:
        self._runtime = runtime
        self._config = config

    async def _verify(self, request: Request) -> Verified | Response:
        body = await request.body()
        if len(body) > _MAX_BODY:
            return Response("request body too large", status_code=413)
        result = verify_app_home_req(
            {
                "method": request.method,
                "headers": dict(request.headers),
                "url": str(request.url),
                "body": body.decode("utf-8", errors="replace"),
            },
            self._config,
            app_home_patch_id_token_path=PATCH_ID_TOKEN_PATH,
        )
        if not result.ok or result.shop is None or result.id_token is None:
            log.info("app_home.refused", code=result.log.code, status=result.response.status)
            return library_response(result.response)
        if not _SHOP.match(result.shop):
            # Signed with our secret, so not forged; but not a shop domain we can serve.
            log.warning("app_home.bad_dest", code="invalid_dest")
            return Response("Unauthorized", status_code=401)
        shop = f"{result.shop}.myshopify.com"
        outcome = await anyio.to_thread.run_sync(
            lambda: ensure_installed(
                self._runtime,
                shop=shop,
                id_token=result.id_token,  # type: ignore[arg-type]
                invalid_token_response=result.invalid_token_response,
            )
        )
        if outcome.response is not None:
            return library_response(outcome.response)
        return Verified(
            shop=shop,
            headers=dict(result.response.headers),
            id_token=result.id_token,
            invalid_token_response=result.invalid_token_response,
        )

    async def home(self, request: Request) -> Response:
        verified = await self._verify(request)
        if isinstance(verified, Response):
            return verified
        status = await anyio.to_thread.run_sync(
            lambda: shop_status(self._runtime, shop=verified.shop)
        )
        html = _templates.get_template("app_home.html").render(
            status=status, client_id=self._config["client_id"]
        )
        return HTMLResponse(html, headers=verified.headers)

    async def patch_id_token(self, request: Request) -> Response:
        result = app_home_patch_id_token(
            {
                "method": request.method,
                "headers": dict(request.headers),
                "url": str(request.url),
                "body": "",
            },
            self._config,
        )
        return library_response(result.response)

    async def shop_json(self, request: Request) -> Response:
        verified = await self._verify(request)
        if isinstance(verified, Response):
            return verified
        status = await anyio.to_thread.run_sync(
            lambda: shop_status(self._runtime, shop=verified.shop)
        )
        return JSONResponse(status.as_json(), headers=verified.headers)

    async def refresh_shop(self, request: Request) -> Response:
        verified = await self._verify(request)
        if isinstance(verified, Response):
            return verified
        try:
            await anyio.to_thread.run_sync(
                lambda: refresh_shop_info(self._runtime, shop=verified.shop)
            )
        except (ShopifyTransientError, ShopifyTokenUnavailable) as exc:
            log.warning("app_home.shop_refresh_unavailable", error=str(exc))
            return JSONResponse(
                {"error": "Shopify is not answering right now; try again in a minute"},
                status_code=503,
                headers={"Retry-After": "30"},
            )
        except (ShopifyAdminError, ShopError) as exc:
            log.warning("app_home.shop_refresh_failed", error=str(exc))
            return JSONResponse({"error": str(exc)}, status_code=502)
        status = await anyio.to_thread.run_sync(
            lambda: shop_status(self._runtime, shop=verified.shop)
        )
        return JSONResponse(status.as_json(), headers=verified.headers)


def app_home_routes(runtime: ShopsRuntime, config: AppConfig) -> list[BaseRoute]:
    """The App Home routes for an app with shopifyapp ``config`` (client id and secrets)."""
    handlers = AppHome(runtime, config)
    return [
        Route("/", handlers.home, methods=["GET"]),
        Route(PATCH_ID_TOKEN_PATH, handlers.patch_id_token, methods=["GET"]),
        Route("/app/api/shop", handlers.shop_json, methods=["GET"]),
        Route("/app/api/shop/refresh", handlers.refresh_shop, methods=["POST"]),
    ]
