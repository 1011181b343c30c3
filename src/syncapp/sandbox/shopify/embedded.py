"""The admin around an embedded app, as ``admin.shopify.com/store/<shop>/apps/<handle>`` is,
on the sandbox's own address; the App Bridge and Polaris stand-ins the app's pages load; and
the merchant's page that approves or declines a Billing API charge.

Pages (``<shop>`` is the shop's handle or domain, ``<app>`` the app's handle or client id):

* ``GET /store/<shop>/apps/<app>[/<path>]`` — Shopify-like chrome with the app in an iframe at
  ``config.app_url + "/" + path``, with the query Shopify adds to an App Home document load
  (:func:`launch_params`). Other query parameters are passed through, as Shopify does. A shop
  without the app (or one the sandbox has never seen, which is then created without it) gets
  the managed-installation screen instead: the app's scopes and an Install button.
* ``POST /store/<shop>/apps/<app>/install`` and ``.../uninstall`` — mark the app installed
  (Shopify managed installation hands out no token: the app exchanges the ID token itself) or
  uninstall it (:func:`oauth.uninstall_app`: subscriptions cancelled, tokens revoked,
  ``app/uninstalled``).
* ``POST /store/<shop>/apps/<app>/id_token`` — a fresh ID token for the frame page to hand to
  the app's App Bridge (see ``static/admin-frame.js`` for the postMessage protocol).
* ``GET /store/<shop>/charges/<id>/confirm`` with ``POST .../approve`` and ``.../decline`` —
  the ``confirmationUrl`` of ``appSubscriptionCreate``. Approving redirects to the
  subscription's ``returnUrl`` with ``charge_id``; declining goes back to the app in the admin.
* ``GET /shopifycloud/app-bridge.js`` and ``/shopifycloud/polaris.js`` — the stand-ins for
  ``https://cdn.shopify.com/shopifycloud/...``; ``/shopifycloud/sandbox-admin.js`` is the frame
  page's own script.

Forms and the token endpoint carry a CSRF token (an HMAC of the shop with a secret made when
the routes are built), and a cross-site ``Origin`` is refused, as on the product admin.
"""

from __future__ import annotations

import base64
import hashlib
import hmac
import html
import secrets
import time
from pathlib import Path
from typing import Any
from urllib.parse import parse_qsl, urlencode, urlparse, urlunparse

from jinja2 import Environment, FileSystemLoader, select_autoescape
from starlette.concurrency import run_in_threadpool
from starlette.requests import Request
from starlette.responses import HTMLResponse, JSONResponse, RedirectResponse, Response
from starlette.routing import BaseRoute, Route
from starlette.templating import Jinja2Templates

from syncapp.sandbox.shopify import oauth
from syncapp.sandbox.shopify.app_identity import app_identity
from syncapp.sandbox.shopify.config import SandboxConfig
from syncapp.sandbox.shopify.graphql_api import billing_store
from syncapp.sandbox.shopify.shops import ensure_shop, get_shop, normalize_domain
from syncapp.sandbox.shopify.state import SandboxState

STATIC_DIR = Path(__file__).parent / "static"
SCRIPTS = {
    "app-bridge.js": "app-bridge.js",
    "polaris.js": "polaris.js",
    "sandbox-admin.js": "admin-frame.js",
}
# Parameters Shopify sets on an App Home document load; a request's own values never win.
LAUNCH_PARAMS = frozenset(
    {"embedded", "hmac", "host", "id_token", "locale", "session", "shop", "timestamp"}
)

_templates = Jinja2Templates(
    env=Environment(
        loader=FileSystemLoader(Path(__file__).parent / "templates"),
        autoescape=select_autoescape(default=True, default_for_string=True),
    )
)


# ---- the launch query (pure) -----------------------------------------------------------------


def sign_query(params: dict[str, str], secret: str) -> str:
    """Shopify's ``hmac`` of a query: hex HMAC-SHA256 of the other params, sorted, ``k=v&…``."""
    message = "&".join(f"{k}={v}" for k, v in sorted(params.items()) if k != "hmac")
    return hmac.new(secret.encode(), message.encode(), hashlib.sha256).hexdigest()


def admin_host(shop_domain: str) -> str:
    """The ``host`` parameter: base64url (unpadded) of ``admin.shopify.com/store/<handle>``."""
    raw = f"admin.shopify.com/store/{shop_domain.removesuffix('.myshopify.com')}"
    return base64.urlsafe_b64encode(raw.encode()).decode().rstrip("=")


def launch_params(
    config: SandboxConfig,
    shop_domain: str,
    *,
    passthrough: dict[str, str] | None = None,
    now: float | None = None,
    session: str | None = None,
) -> dict[str, str]:
    """The query of an App Home document load for ``shop_domain``, signed, sorted by name."""
    issued = time.time() if now is None else now
    params = {k: v for k, v in (passthrough or {}).items() if k not in LAUNCH_PARAMS}
    params.update(
        {
            "embedded": "1",
            "host": admin_host(shop_domain),
            "id_token": oauth.mint_id_token(config, shop_domain, now=issued),
            "locale": "en",
            "session": session or secrets.token_hex(32),
            "shop": shop_domain,
            "timestamp": str(int(issued)),
        }
    )
    params["hmac"] = sign_query(params, config.client_secret)
    return dict(sorted(params.items()))


# How the install screen words access scopes: what the app may do, with which data.
_SCOPE_SUBJECTS = {
    "assigned_fulfillment_orders": "fulfillment orders assigned to the app's locations",
    "content": "blog posts, pages and comments",
    "fulfillments": "fulfillment services",
    "merchant_managed_fulfillment_orders": "fulfillment orders at the store's own locations",
    "shipping": "shipping rates and countries",
    "third_party_fulfillment_orders": "fulfillment orders of other fulfillment services",
}


def describe_scopes(scopes: list[str]) -> list[str]:
    """Scopes in words, one line per kind of data ("View and edit products"): a ``write_``
    scope includes reading, so a read and a write of the same data make one line."""
    access: dict[str, bool] = {}  # subject -> may edit
    for scope in scopes:
        verb, _, subject = scope.partition("_")
        if verb in ("read", "write") and subject:
            access[subject] = access.get(subject, False) or verb == "write"
        else:
            access[scope] = access.get(scope, False)
    return [
        ("View and edit " if edit else "View ")
        + _SCOPE_SUBJECTS.get(subject, subject.replace("_", " "))
        for subject, edit in access.items()
    ]


def app_frame_url(app_url: str, path: str, params: dict[str, str]) -> str:
    """Where the iframe points: the app's URL, the admin path below the app, the query."""
    return f"{app_url.rstrip('/')}/{path.lstrip('/')}?{urlencode(params)}"


def with_query(url: str, **extra: str) -> str:
    """``url`` with ``extra`` query parameters added (replacing any of the same name)."""
    parts = urlparse(url)
    query = [(k, v) for k, v in parse_qsl(parts.query, keep_blank_values=True) if k not in extra]
    query += list(extra.items())
    return urlunparse(parts._replace(query=urlencode(query)))


def _origin(url: str) -> str:
    parts = urlparse(url)
    return f"{parts.scheme}://{parts.netloc}"


def _price_lines(
    items: list[dict[str, Any]], currency: str
) -> tuple[dict[str, Any] | None, dict[str, Any] | None]:
    recurring = next((i for i in items if i["kind"] == "RECURRING"), None)
    usage = next((i for i in items if i["kind"] == "USAGE"), None)
    every = {"EVERY_30_DAYS": "every 30 days", "ANNUAL": "every year"}
    shown_recurring = (
        {"price": f"{recurring['price']} {currency}", "interval": every[recurring["interval"]]}
        if recurring
        else None
    )
    shown_usage = (
        {
            "cap": f"{usage['capped_amount']} {currency}",
            "interval": every[usage["interval"]],
            "terms": usage["terms"],
        }
        if usage
        else None
    )
    return shown_recurring, shown_usage


# ---- routes ----------------------------------------------------------------------------------


def routes(state: SandboxState) -> list[BaseRoute]:
    """The admin frame, installation, the charge confirmation page and the stand-in scripts."""
    config = state.config
    csrf_secret = secrets.token_bytes(32)
    app_origin = _origin(config.app_url)

    def csrf_token(shop: str) -> str:
        return hmac.new(csrf_secret, shop.encode(), hashlib.sha256).hexdigest()

    def render(
        request: Request, name: str, context: dict[str, Any], status_code: int = 200
    ) -> HTMLResponse:
        shop = context["shop_domain"]
        identity = app_identity(config)
        full = {
            **context,
            "shop_handle": shop.removesuffix(".myshopify.com"),
            "app_name": identity.name,
            "app_handle": identity.handle,
            "csrf_token": csrf_token(shop),
        }
        response = _templates.TemplateResponse(request, name, full, status_code=status_code)
        response.headers["X-Frame-Options"] = "DENY"
        response.headers["Cache-Control"] = "no-store"
        response.headers["Content-Security-Policy"] = (
            "default-src 'self'; style-src 'self' 'unsafe-inline'; img-src 'self' data:;"
            f" frame-src {app_origin}; frame-ancestors 'none'"
        )
        return response

    def error_page(request: Request, shop: str, status_code: int, message: str) -> HTMLResponse:
        return render(
            request, "embedded/error.html", {"shop_domain": shop, "message": message}, status_code
        )

    async def guard(request: Request, *, csrf_from_header: bool = False) -> str | Response:
        """The shop this request is for, or the response refusing it."""
        if (refused := oauth.not_on_shop_host(request)) is not None:
            return refused
        try:
            shop = normalize_domain(str(request.path_params["shop"]))
        except ValueError as exc:
            return HTMLResponse(f"Not a shop: {html.escape(str(exc))}", status_code=404)
        if request.method == "POST":
            origin = request.headers.get("origin")
            if origin and urlparse(origin).netloc != request.headers.get("host"):
                return HTMLResponse("Cross-site requests are refused.", status_code=403)
            if csrf_from_header:
                sent = request.headers.get("x-csrf-token", "")
            else:
                sent = str((await request.form()).get("csrf_token", ""))
            if not hmac.compare_digest(sent, csrf_token(shop)):
                return HTMLResponse(
                    "The security token is missing or stale; reload the page and retry.",
                    status_code=403,
                )
        return shop

    def is_our_app(request: Request) -> bool:
        wanted = str(request.path_params["app"])
        return wanted in (app_identity(config).handle, config.client_id)

    def app_page_path(shop: str, path: str = "") -> str:
        handle = app_identity(config).handle
        base = f"/store/{shop.removesuffix('.myshopify.com')}/apps/{handle}"
        return f"{base}/{path}" if path else base

    def installed(shop: str) -> bool | None:
        """Whether the app is installed on ``shop``; None when the shop does not exist."""
        with state.db.transaction() as conn:
            row = conn.execute(
                "SELECT app_installed FROM shops WHERE domain = ?", (shop,)
            ).fetchone()
        return None if row is None else bool(row["app_installed"])

    def create_without_app(shop: str) -> None:
        with state.db.transaction() as conn:
            if get_shop(conn, shop) is None:
                ensure_shop(conn, shop)
                conn.execute("UPDATE shops SET app_installed = 0 WHERE domain = ?", (shop,))

    async def app_page(request: Request) -> Response:
        shop = await guard(request)
        if isinstance(shop, Response):
            return shop
        if not is_our_app(request):
            return error_page(
                request, shop, 404, f"There is no app {request.path_params['app']!r} in {shop}."
            )
        path = str(request.path_params.get("path", ""))
        if installed(shop) is None:
            await run_in_threadpool(create_without_app, shop)
        if not installed(shop):
            scopes = [s for s in oauth.granted_scopes(config).split(",") if s]
            return render(
                request,
                "embedded/install.html",
                {
                    "shop_domain": shop,
                    "shop_name": _shop_name(state, shop),
                    "scopes": describe_scopes(scopes),
                    "return_path": path,
                },
            )
        params = launch_params(config, shop, passthrough=dict(request.query_params))
        return render(
            request,
            "embedded/frame.html",
            {
                "shop_domain": shop,
                "shop_name": _shop_name(state, shop),
                "frame_url": app_frame_url(config.app_url, path, params),
                "app_origin": app_origin,
                "token_url": f"{app_page_path(shop)}/id_token",
                "uninstall_url": f"{app_page_path(shop)}/uninstall",
            },
        )

    async def install(request: Request) -> Response:
        shop = await guard(request)
        if isinstance(shop, Response):
            return shop
        if not is_our_app(request):
            return error_page(request, shop, 404, "There is no such app to install.")
        with state.db.transaction() as conn:
            ensure_shop(conn, shop)
            conn.execute("UPDATE shops SET app_installed = 1 WHERE domain = ?", (shop,))
        form = await request.form()
        back = str(form.get("return_path", "")).strip("/")
        # Only a path below the app: the form must not be a way to redirect anywhere else.
        safe = back if back and "//" not in back and "\\" not in back else ""
        return RedirectResponse(app_page_path(shop, safe), status_code=303)

    async def uninstall(request: Request) -> Response:
        shop = await guard(request)
        if isinstance(shop, Response):
            return shop
        if not is_our_app(request):
            return error_page(request, shop, 404, "There is no such app to uninstall.")
        with state.db.transaction() as conn:
            if get_shop(conn, shop) is not None:
                oauth.uninstall_app(conn, shop)
        return RedirectResponse(app_page_path(shop), status_code=303)

    async def id_token(request: Request) -> Response:
        shop = await guard(request, csrf_from_header=True)
        if isinstance(shop, Response):
            return shop
        if not is_our_app(request):
            return JSONResponse({"error": "no such app"}, status_code=404)
        if not installed(shop):
            return JSONResponse(
                {"error": f"the app is not installed on {shop}; install it first"},
                status_code=409,
            )
        token = oauth.mint_id_token(config, shop)
        return JSONResponse({"id_token": token}, headers={"Cache-Control": "no-store"})

    def load_charge(shop: str, number: int) -> dict[str, Any] | None:
        with state.db.transaction() as conn:
            row = billing_store.get_subscription(conn, shop, number)
            if row is None:
                return None
            items = billing_store.line_items_of(conn, number)
        recurring, usage = _price_lines(items, row["currency"])
        return {**row, "recurring": recurring, "usage": usage}

    async def confirm(request: Request) -> Response:
        shop = await guard(request)
        if isinstance(shop, Response):
            return shop
        number = int(request.path_params["charge_id"])
        charge = load_charge(shop, number)
        if charge is None:
            return error_page(request, shop, 404, f"There is no charge {number} in {shop}.")
        return render(
            request,
            "embedded/confirm.html",
            {
                "shop_domain": shop,
                "shop_name": _shop_name(state, shop),
                "charge": charge,
                "app_path": app_page_path(shop),
            },
        )

    async def decide(request: Request, decision: str) -> Response:
        shop = await guard(request)
        if isinstance(shop, Response):
            return shop
        number = int(request.path_params["charge_id"])
        try:
            with state.db.transaction() as conn:
                if decision == "approve":
                    charge = billing_store.approve(conn, shop, number)
                else:
                    charge = billing_store.decline(conn, shop, number)
        except LookupError:
            return error_page(request, shop, 404, f"There is no charge {number} in {shop}.")
        except billing_store.BillingStateError as exc:
            return error_page(request, shop, 409, f"Nothing changed: {exc}.")
        if decision == "approve":
            return RedirectResponse(
                with_query(charge["return_url"], charge_id=str(number)), status_code=303
            )
        return RedirectResponse(app_page_path(shop), status_code=303)

    async def approve(request: Request) -> Response:
        return await decide(request, "approve")

    async def decline(request: Request) -> Response:
        return await decide(request, "decline")

    def script_route(public_name: str, file_name: str) -> Route:
        async def serve_script(request: Request) -> Response:
            return Response(
                (STATIC_DIR / file_name).read_bytes(),
                media_type="text/javascript; charset=utf-8",
                headers={"Cache-Control": "no-cache", "Access-Control-Allow-Origin": "*"},
            )

        return Route(f"/shopifycloud/{public_name}", serve_script, methods=["GET"])

    charge = "/store/{shop}/charges/{charge_id:int}"
    return [
        Route("/store/{shop}/apps/{app}/install", install, methods=["POST"]),
        Route("/store/{shop}/apps/{app}/uninstall", uninstall, methods=["POST"]),
        Route("/store/{shop}/apps/{app}/id_token", id_token, methods=["POST"]),
        Route("/store/{shop}/apps/{app}", app_page, methods=["GET"]),
        Route("/store/{shop}/apps/{app}/{path:path}", app_page, methods=["GET"]),
        Route(f"{charge}/confirm", confirm, methods=["GET"]),
        Route(f"{charge}/approve", approve, methods=["POST"]),
        Route(f"{charge}/decline", decline, methods=["POST"]),
        *[script_route(public, file) for public, file in SCRIPTS.items()],
    ]


def _shop_name(state: SandboxState, shop: str) -> str:
    with state.db.transaction() as conn:
        found = get_shop(conn, shop)
    return found.name if found else shop
