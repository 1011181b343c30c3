"""eManageCRM's web UI, as much of it as the Sync App sends merchants to: a dashboard, the
Payment Providers page (add a provider with its MID, activate or deactivate it), Products
(edit a product's title, status and each variant's price, compare-at price and SKU by hand,
through the API's own write path: a new version and a notification, origin none) and Settings >
Integrations > Shopify Sync App, where the owner of a dedicated subscription sees its
subscription id and generates the single-use link code the app asks for.

Reached only through an SSO link (:mod:`sso`), which starts the session. Every form carries
the session's CSRF token (synchronizer token); a post without it, or from another origin, is
refused with 403. Pages are Jinja2 with autoescape.
"""

from __future__ import annotations

import hmac
from decimal import Decimal, InvalidOperation
from typing import Any
from urllib.parse import urlparse

from starlette.requests import Request
from starlette.responses import RedirectResponse, Response
from starlette.routing import BaseRoute, Route

from syncapp.sandbox.emanage import products, providers
from syncapp.sandbox.emanage.accounts import issue_link_code
from syncapp.sandbox.emanage.sso import (
    SESSION_COOKIE,
    WebSession,
    current_session,
    message_page,
    secure_headers,
    templates,
)
from syncapp.sandbox.emanage.state import EmanageState, digest

INTEGRATIONS_PATH = "/crm/settings/integrations"


def routes(state: EmanageState) -> list[BaseRoute]:
    """``/crm/`` pages."""

    def render(
        request: Request,
        session: WebSession,
        name: str,
        context: dict[str, Any],
        status_code: int = 200,
    ) -> Response:
        context = {
            **context,
            "account": session.account,
            "user": session.user,
            "csrf_token": session.csrf_token,
        }
        return secure_headers(
            templates.TemplateResponse(request, name, context, status_code=status_code)
        )

    async def guard(request: Request) -> WebSession | Response:
        """The signed-in session (with a checked CSRF token on posts), or the refusal page."""
        session = current_session(state, request)
        if session is None:
            return message_page(
                request,
                401,
                "Not signed in",
                "Your eManageCRM session has ended or never started. Open eManageCRM from the "
                "Sync App in your Shopify admin to sign in.",
            )
        if request.method == "POST":
            origin = request.headers.get("origin")
            if (
                origin
                and origin != "null"
                and urlparse(origin).netloc != request.headers.get("host")
            ):
                return message_page(request, 403, "Refused", "Cross-site form posts are refused.")
            form = await request.form()
            sent = str(form.get("csrf_token", ""))
            if not hmac.compare_digest(sent.encode(), session.csrf_token.encode()):
                return message_page(
                    request,
                    403,
                    "Form expired",
                    "The form's security token is missing or stale; reload the page and retry.",
                )
        return session

    async def dashboard(request: Request) -> Response:
        session = await guard(request)
        if isinstance(session, Response):
            return session
        with state.db.transaction() as conn:
            items = providers.list_providers(conn, session.account["id"])
            users = conn.execute(
                "SELECT COUNT(*) FROM users WHERE account_id = ?", (session.account["id"],)
            ).fetchone()[0]
            campaigns = conn.execute(
                "SELECT COUNT(*) FROM campaigns WHERE account_id = ?", (session.account["id"],)
            ).fetchone()[0]
        active = [p for p in items if p["isActive"]]
        return render(
            request,
            session,
            "crm/dashboard.html",
            {"providers": items, "active": active, "users": users, "campaigns": campaigns},
        )

    async def providers_page(
        request: Request,
        session: WebSession,
        *,
        errors: dict[str, list[str]] | None = None,
        submitted: dict[str, str] | None = None,
        saved: str | None = None,
        status_code: int = 200,
    ) -> Response:
        with state.db.transaction() as conn:
            items = providers.list_providers(conn, session.account["id"])
        return render(
            request,
            session,
            "crm/providers.html",
            {
                "providers": items,
                "types": list(providers.PROVIDER_TYPES),
                "currencies": providers.CURRENCIES,
                "errors": errors or {},
                "submitted": submitted or {"currency": session.account["currency"]},
                "saved": saved,
            },
            status_code=status_code,
        )

    async def list_or_add(request: Request) -> Response:
        session = await guard(request)
        if isinstance(session, Response):
            return session
        if request.method == "GET":
            saved = request.query_params.get("saved")
            return await providers_page(request, session, saved=saved)
        form = await request.form()
        values = {
            k: str(form.get(k, "")) for k in ("name", "type", "mid", "currency", "descriptor")
        }
        errors = providers.check_provider(values)
        if errors:
            return await providers_page(
                request, session, errors=errors, submitted=values, status_code=422
            )
        with state.db.transaction() as conn:
            providers.add_provider(
                conn, account_id=session.account["id"], values=values, now=state.clock.now()
            )
        return RedirectResponse("/crm/payment-providers?saved=added", status_code=303)

    async def toggle(request: Request) -> Response:
        session = await guard(request)
        if isinstance(session, Response):
            return session
        action = str(request.path_params["action"])
        if action not in ("activate", "deactivate"):
            return message_page(request, 404, "Not found", "There is no such page.")
        with state.db.transaction() as conn:
            found = providers.set_active(
                conn,
                account_id=session.account["id"],
                provider_id=int(request.path_params["provider_id"]),
                active=action == "activate",
                now=state.clock.now(),
            )
        if not found:
            return message_page(
                request, 404, "No such provider", "This account has no such payment provider."
            )
        return RedirectResponse(f"/crm/payment-providers?saved={action}d", status_code=303)

    async def products_page(request: Request) -> Response:
        session = await guard(request)
        if isinstance(session, Response):
            return session
        with state.db.transaction() as conn:
            rows = conn.execute(
                "SELECT * FROM products WHERE account_id = ? ORDER BY updated_at DESC, id DESC",
                (session.account["id"],),
            ).fetchall()
            items = [products.product_json(conn, r) for r in rows]
        return render(request, session, "crm/products.html", {"products": items})

    def _edited(
        current: dict[str, Any], form: dict[str, str]
    ) -> tuple[dict[str, Any], dict[str, list[str]]]:
        """The product body a hand edit asks for, and errors of fields that are not amounts."""
        errors: dict[str, list[str]] = {}
        body = {k: v for k, v in current.items() if k not in products.READ_ONLY}
        body["name"] = form.get("name", "")
        body["status"] = form.get("status", "")
        variants = []
        for v in current["variants"]:
            vid = v["variantId"]
            edited = dict(v)
            edited["sku"] = form.get(f"sku-{vid}", "").strip() or None
            prices: dict[str, Any] = {}
            for key, field in (("DiscountedPrice", "price"), ("FullRetailPrice", "compare")):
                text = form.get(f"{field}-{vid}", "").strip()
                if not text and key == "FullRetailPrice":
                    continue
                try:
                    prices[key] = {"Value": Decimal(text)}
                except InvalidOperation:
                    errors.setdefault(f"{field}-{vid}", []).append("Enter an amount like 19.90.")
            edited["productPrices"] = prices
            variants.append(edited)
        body["variants"] = variants
        return body, errors

    async def product_page(request: Request) -> Response:
        session = await guard(request)
        if isinstance(session, Response):
            return session
        product_id = str(request.path_params["product_id"])
        errors: dict[str, list[str]] = {}
        status_code = 200
        form: dict[str, str] = {}
        if request.method == "POST":
            # Read before the transaction: nothing is awaited while the database lock is held.
            form = {k: str(v) for k, v in (await request.form()).items()}
        with state.db.transaction() as conn:
            row = products.find_product(conn, session.account["id"], product_id)
            if row is None:
                return message_page(
                    request, 404, "No such product", "This account has no such product."
                )
            current = products.product_json(conn, row)
            if request.method == "POST":
                if form.get("version") != str(row["version"]):
                    return message_page(
                        request,
                        409,
                        "Changed meanwhile",
                        "The product was changed since you opened it (the Sync App may have "
                        "synced it). Reload the page and make your change again.",
                    )
                body, errors = _edited(current, form)
                checked = products.check_product(body)
                if isinstance(checked, dict):
                    errors.update(_form_errors(checked, current))
                if not errors and isinstance(checked, products.ProductData):
                    # The same write as PUT: a new version, updatedAt, the notification; no
                    # origin, so a subscriber sees a merchant's edit, not its own echo.
                    products.replace_product(
                        conn, row=row, data=checked, origin=None, now=state.clock.now()
                    )
                    return RedirectResponse(f"/crm/products/{product_id}?saved=1", status_code=303)
                status_code = 422
        return render(
            request,
            session,
            "crm/product.html",
            {
                "product": current,
                "errors": errors,
                "saved": request.query_params.get("saved") is not None,
            },
            status_code=status_code,
        )

    async def settings_root(request: Request) -> Response:
        return RedirectResponse(INTEGRATIONS_PATH, status_code=303)

    async def integrations(request: Request) -> Response:
        session = await guard(request)
        if isinstance(session, Response):
            return session
        account = session.account
        issued = None
        if request.method == "POST":
            if account["kind"] != "dedicated" or account["shop_domain"] is not None:
                return message_page(
                    request,
                    409,
                    "No link code needed",
                    "Link codes connect a dedicated subscription that no store uses yet.",
                )
            with state.db.transaction() as conn:
                issued = issue_link_code(state, conn, account["id"])
        return render(
            request,
            session,
            "crm/integrations.html",
            {"issued": issued, "ttl_minutes": state.config.link_code_ttl_seconds // 60},
        )

    async def sign_out(request: Request) -> Response:
        session = await guard(request)
        if isinstance(session, Response):
            return session
        cookie = request.cookies.get(SESSION_COOKIE, "")
        with state.db.transaction() as conn:
            conn.execute("DELETE FROM sessions WHERE id_hash = ?", (digest(cookie),))
        response = message_page(
            request, 200, "Signed out", "You are signed out. Open eManageCRM from the Sync App."
        )
        response.delete_cookie(SESSION_COOKIE, path="/")
        return response

    return [
        Route("/crm/", dashboard, methods=["GET"]),
        Route("/crm/payment-providers", list_or_add, methods=["GET", "POST"]),
        Route(
            "/crm/payment-providers/{provider_id:int}/{action:str}",
            toggle,
            methods=["POST"],
        ),
        Route("/crm/products", products_page, methods=["GET"]),
        Route("/crm/products/{product_id}", product_page, methods=["GET", "POST"]),
        Route(INTEGRATIONS_PATH, integrations, methods=["GET", "POST"]),
        Route("/crm/settings", settings_root, methods=["GET"]),
        Route("/crm/sign-out", sign_out, methods=["POST"]),
    ]


def _form_errors(
    model_state: dict[str, list[str]], current: dict[str, Any]
) -> dict[str, list[str]]:
    """The API's field paths as the edit form's field names (``variants[0].sku`` → ``sku-<id>``)."""
    names = {"name": "name", "status": "status"}
    for i, v in enumerate(current["variants"]):
        vid = v["variantId"]
        names[f"variants[{i}].sku"] = f"sku-{vid}"
        names[f"variants[{i}].productPrices.DiscountedPrice.Value"] = f"price-{vid}"
        names[f"variants[{i}].productPrices.DiscountedPrice"] = f"price-{vid}"
        names[f"variants[{i}].productPrices.FullRetailPrice.Value"] = f"compare-{vid}"
    out: dict[str, list[str]] = {}
    for path, messages in model_state.items():
        out.setdefault(names.get(path, "form"), []).extend(messages)
    return out
