"""Pieces every admin route shares: error answers, JSON bodies, field checks, and who is
calling (the bearer token's principal) and what it may touch.

Access rules (see the contract's description):

* a *system token* (no account) may create and link accounts and read accounts its client
  owns; on an account's data it gets 403 ``account_token_required``;
* an *account token* reaches only its own account: any other account is 403
  ``account_mismatch``, whether that account exists or not, so a token cannot probe for others;
* an account its client does not own is 404 to a system token, as if it did not exist.
"""

from __future__ import annotations

import json
import re
import sqlite3
from dataclasses import dataclass
from typing import Any

from starlette.requests import Request
from starlette.responses import JSONResponse, Response

from syncapp.sandbox.emanage.state import EmanageState, digest

EMAIL_RE = re.compile(r"^[^@\s]+@[^@\s]+\.[^@\s]+$")
SHOP_DOMAIN_RE = re.compile(r"^[a-z0-9][a-z0-9-]*\.myshopify\.com$")
CURRENCY_RE = re.compile(r"^[A-Z]{3}$")
UUID_RE = re.compile(r"^[0-9a-fA-F]{8}-([0-9a-fA-F]{4}-){3}[0-9a-fA-F]{12}$")


def api_error(status: int, code: str, message: str, **extra: Any) -> JSONResponse:
    """The admin API's error body: ``{code, message}`` plus ``modelState``/``existingId``."""
    body: dict[str, Any] = {"code": code, "message": message}
    body.update({k: v for k, v in extra.items() if v is not None})
    headers = {}
    if status == 401:
        headers["WWW-Authenticate"] = f'Bearer realm="eManageCRM", error="{code}"'
    return JSONResponse(body, status_code=status, headers=headers)


def validation_error(model_state: dict[str, list[str]]) -> JSONResponse:
    fields = ", ".join(sorted(model_state))
    return api_error(
        422,
        "validation_failed",
        f"The request is invalid: check {fields}.",
        modelState=model_state,
    )


async def read_json_object(
    request: Request, *, optional: bool = False
) -> dict[str, Any] | Response:
    """The body as a JSON object, or the 400 refusing it."""
    raw = await request.body()
    if not raw.strip():
        if optional:
            return {}
        return api_error(400, "invalid_request", "The request needs a JSON object body.")
    try:
        body = json.loads(raw)
    except ValueError:
        return api_error(400, "invalid_request", "The body is not valid JSON.")
    if not isinstance(body, dict):
        return api_error(400, "invalid_request", "The body must be a JSON object.")
    return body


class Fields:
    """Collects per-field messages while reading a body; empty ``errors`` means valid."""

    def __init__(self, body: dict[str, Any], allowed: set[str]) -> None:
        self.body = body
        self.errors: dict[str, list[str]] = {}
        for name in sorted(set(body) - allowed):
            self.add(name, f"Unknown field '{name}'.")

    def add(self, name: str, message: str) -> None:
        self.errors.setdefault(name, []).append(message)

    def text(
        self,
        name: str,
        *,
        pattern: re.Pattern[str] | None = None,
        hint: str = "",
        max_length: int = 200,
        required: bool = True,
        default: str | None = None,
    ) -> str:
        value = self.body.get(name, default)
        if value is None:
            if required:
                self.add(name, f"'{name}' is required.")
            return ""
        if not isinstance(value, str) or not value.strip():
            self.add(name, f"'{name}' must be a non-empty string.")
            return ""
        value = value.strip()
        if len(value) > max_length:
            self.add(name, f"'{name}' must be at most {max_length} characters.")
        elif pattern is not None and not pattern.match(value):
            self.add(name, f"'{name}' must be {hint}.")
        return value


@dataclass(frozen=True)
class Principal:
    """Who a bearer token speaks for."""

    client_id: str
    account_id: str | None
    scopes: frozenset[str]


def authenticate(state: EmanageState, request: Request) -> Principal | Response:
    """The bearer token's principal, or the 401 refusing the request."""
    header = request.headers.get("authorization", "")
    scheme, _, token = header.partition(" ")
    if scheme.lower() != "bearer" or not token.strip():
        return api_error(
            401, "invalid_token", "Send 'Authorization: Bearer <token>' from POST /iam/oauth/token."
        )
    with state.db.transaction() as conn:
        row = conn.execute(
            "SELECT * FROM tokens WHERE token_hash = ?", (digest(token.strip()),)
        ).fetchone()
    if row is None or row["expires_at"] <= state.clock.now():
        return api_error(
            401, "invalid_token", "The access token is unknown or expired; request a new one."
        )
    if state.config.client(row["client_id"]) is None:
        return api_error(401, "invalid_token", "The token's client is no longer registered.")
    return Principal(
        client_id=row["client_id"],
        account_id=row["account_id"],
        scopes=frozenset(row["scopes"].split()),
    )


def require_scope(principal: Principal, scope: str) -> Response | None:
    if scope not in principal.scopes:
        return api_error(
            403, "insufficient_scope", f"This call needs the '{scope}' scope; request it."
        )
    return None


def account_access(
    conn: sqlite3.Connection,
    principal: Principal,
    account_id: str,
    *,
    data: bool,
) -> sqlite3.Row | Response:
    """The account row if ``principal`` may reach it, else the 403/404 answer.

    ``data`` is True for an account's data (users, SSO, providers), which only that account's
    token may reach; False for the account itself, which its owning system token may read too.
    """
    if principal.account_id is not None and principal.account_id != account_id.lower():
        return api_error(
            403,
            "account_mismatch",
            "This token belongs to another account; use that account's token.",
        )
    row: sqlite3.Row | None = None
    if UUID_RE.match(account_id):
        row = conn.execute("SELECT * FROM accounts WHERE id = ?", (account_id.lower(),)).fetchone()
    if row is None or row["owner_client_id"] != principal.client_id:
        return api_error(404, "not_found", f"There is no account {account_id} for this client.")
    if principal.account_id is None and data:
        return api_error(
            403,
            "account_token_required",
            "Use a token for this account: POST /iam/oauth/token with account_id="
            + row["id"]
            + ".",
        )
    if data and row["status"] == "closed":
        return api_error(
            403,
            "account_closed",
            "The account is closed: its shop linked a dedicated subscription; use that account.",
        )
    if data and row["status"] != "active":
        return api_error(403, "account_suspended", "The account is suspended.")
    return row
