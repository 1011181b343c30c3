"""eManageCRM's web UI, as much of it as the Sync App sends merchants to: a dashboard, the
Payment Providers page (add a provider with its MID, activate or deactivate it) and Settings >
Integrations > Shopify Sync App, where the owner of a dedicated subscription sees its
subscription id and generates the single-use link code the app asks for.

Reached only through an SSO link (:mod:`sso`), which starts the session. Every form carries
the session's CSRF token (synchronizer token); a post without it, or from another origin, is
refused with 403. Pages are Jinja2 with autoescape.
"""

from __future__ import annotations

import hmac
from typing import Any
from urllib.parse import urlparse

from starlette.requests import Request
from starlette.responses import RedirectResponse, Response
from starlette.routing import BaseRoute, Route

from syncapp.sandbox.emanage import providers
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
        Route(INTEGRATIONS_PATH, integrations, methods=["GET", "POST"]),
        Route("/crm/settings", settings_root, methods=["GET"]),
        Route("/crm/sign-out", sign_out, methods=["POST"]),
    ]
