"""One-time sign-in links into eManageCRM's web UI, and the web sessions they start.

``POST /admin/v1/accounts/{id}/users/{userId}/sso-links`` (account token, ``sso:write``)
returns ``{url, expiresAt}``; ``GET /sso/{token}`` (the user's browser) consumes the link once,
before it expires, starting a session: an HttpOnly, SameSite=Lax cookie naming a session row
that also holds the session's CSRF token. A used or expired link gets 410 and a page that says
what to do; an unknown one 404.
"""

from __future__ import annotations

import secrets
import sqlite3
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from jinja2 import Environment, FileSystemLoader, select_autoescape
from starlette.requests import Request
from starlette.responses import JSONResponse, RedirectResponse, Response
from starlette.routing import BaseRoute, Route
from starlette.templating import Jinja2Templates

from syncapp.sandbox.emanage.common import (
    UUID_RE,
    Fields,
    account_access,
    api_error,
    authenticate,
    read_json_object,
    require_scope,
    validation_error,
)
from syncapp.sandbox.emanage.idempotency import run_idempotent
from syncapp.sandbox.emanage.state import EmanageState, digest, iso

SESSION_COOKIE = "emanage_session"
DEFAULT_REDIRECT = "/crm/"

templates = Jinja2Templates(
    env=Environment(
        loader=FileSystemLoader(Path(__file__).parent / "templates"),
        autoescape=select_autoescape(default=True, default_for_string=True),
    )
)


def secure_headers(response: Response) -> Response:
    response.headers["X-Frame-Options"] = "DENY"
    response.headers["Content-Security-Policy"] = "default-src 'self'; style-src 'unsafe-inline'"
    response.headers["Cache-Control"] = "no-store"
    response.headers["Referrer-Policy"] = "no-referrer"
    return response


def message_page(request: Request, status_code: int, title: str, message: str) -> Response:
    """A small page telling the person what happened and what to do."""
    return secure_headers(
        templates.TemplateResponse(
            request,
            "crm/message.html",
            {"title": title, "message": message, "account": None, "user": None},
            status_code=status_code,
        )
    )


@dataclass(frozen=True)
class WebSession:
    """A signed-in browser: whose account, which user, and the token its forms must carry."""

    account: sqlite3.Row
    user: sqlite3.Row
    csrf_token: str


def current_session(state: EmanageState, request: Request) -> WebSession | None:
    """The request's live session, if its cookie names one."""
    session_id = request.cookies.get(SESSION_COOKIE)
    if not session_id:
        return None
    with state.db.transaction() as conn:
        row = conn.execute(
            "SELECT * FROM sessions WHERE id_hash = ?", (digest(session_id),)
        ).fetchone()
        if row is None or row["expires_at"] <= state.clock.now():
            return None
        account = conn.execute(
            "SELECT * FROM accounts WHERE id = ?", (row["account_id"],)
        ).fetchone()
        user = conn.execute("SELECT * FROM users WHERE id = ?", (row["user_id"],)).fetchone()
    if account is None or user is None or account["status"] != "active":
        return None
    return WebSession(account=account, user=user, csrf_token=row["csrf_token"])


def new_sso_link(
    state: EmanageState,
    conn: sqlite3.Connection,
    account_id: str,
    user_id: str,
    redirect_path: str = DEFAULT_REDIRECT,
) -> dict[str, Any]:
    """A one-time sign-in link for the user: ``{url, expiresAt}`` (the token stored hashed)."""
    token = secrets.token_urlsafe(32)
    expires_at = state.clock.now() + state.config.sso_link_ttl_seconds
    conn.execute(
        "INSERT INTO sso_links VALUES (?, ?, ?, ?, ?, NULL)",
        (digest(token), account_id, user_id, redirect_path, expires_at),
    )
    return {"url": f"{state.public_url}/sso/{token}", "expiresAt": iso(expires_at)}


def routes(state: EmanageState) -> list[BaseRoute]:
    """Link creation (API) and link use (browser)."""

    async def create_link(request: Request) -> Response:
        principal = authenticate(state, request)
        if isinstance(principal, Response):
            return principal
        if (refused := require_scope(principal, "sso:write")) is not None:
            return refused
        account_id = str(request.path_params["account_id"])
        user_id = str(request.path_params["user_id"]).lower()
        with state.db.transaction() as conn:
            account = account_access(conn, principal, account_id, data=True)
            if isinstance(account, Response):
                return account
            user = None
            if UUID_RE.match(user_id):
                user = conn.execute(
                    "SELECT id FROM users WHERE id = ? AND account_id = ?",
                    (user_id, account["id"]),
                ).fetchone()
            if user is None:
                return api_error(404, "not_found", f"The account has no user {user_id}.")
        body = await read_json_object(request, optional=True)
        if isinstance(body, Response):
            return body
        fields = Fields(body, {"redirectPath"})
        redirect_path = fields.text("redirectPath", required=False, default=DEFAULT_REDIRECT)
        if redirect_path and (not redirect_path.startswith("/crm/") or "//" in redirect_path):
            fields.add("redirectPath", "'redirectPath' must be a path of the web UI under /crm/.")

        def write(conn: sqlite3.Connection) -> Response:
            if fields.errors:
                return validation_error(fields.errors)
            body = new_sso_link(state, conn, account["id"], user_id, redirect_path)
            return JSONResponse(body, status_code=201)

        return await run_idempotent(state, request, principal, write)

    async def follow_link(request: Request) -> Response:
        token = str(request.path_params["token"])
        now = state.clock.now()
        with state.db.transaction() as conn:
            link = conn.execute(
                "SELECT * FROM sso_links WHERE token_hash = ?", (digest(token),)
            ).fetchone()
            if link is None:
                return message_page(
                    request,
                    404,
                    "Sign-in link not found",
                    "This sign-in link is not valid. Open eManageCRM again from the Sync App.",
                )
            if link["used_at"] is not None:
                return message_page(
                    request,
                    410,
                    "Sign-in link already used",
                    "Each sign-in link works once. Open eManageCRM again from the Sync App to "
                    "get a new one.",
                )
            if link["expires_at"] <= now:
                return message_page(
                    request,
                    410,
                    "Sign-in link expired",
                    "Sign-in links work for a few minutes only. Open eManageCRM again from the "
                    "Sync App to get a new one.",
                )
            session_id = secrets.token_urlsafe(32)
            conn.execute(
                "UPDATE sso_links SET used_at = ? WHERE token_hash = ?", (now, link["token_hash"])
            )
            conn.execute("DELETE FROM sessions WHERE expires_at < ?", (now,))
            conn.execute(
                "INSERT INTO sessions VALUES (?, ?, ?, ?, ?)",
                (
                    digest(session_id),
                    link["account_id"],
                    link["user_id"],
                    secrets.token_urlsafe(32),
                    now + state.config.session_ttl_seconds,
                ),
            )
        response = RedirectResponse(link["redirect_path"], status_code=303)
        response.set_cookie(
            SESSION_COOKIE,
            session_id,
            max_age=state.config.session_ttl_seconds,
            path="/",
            httponly=True,
            samesite="lax",
            secure=state.public_url.startswith("https://"),
        )
        response.headers["Cache-Control"] = "no-store"
        response.headers["Referrer-Policy"] = "no-referrer"
        return response

    return [
        Route(
            "/admin/v1/accounts/{account_id}/users/{user_id}/sso-links",
            create_link,
            methods=["POST"],
        ),
        Route("/sso/{token}", follow_link, methods=["GET"]),
    ]
