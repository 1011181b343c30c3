"""Accounts (tenants) and their users: ``/admin/v1/accounts``, ``/admin/v1/account-links``,
``/admin/v1/accounts/{id}`` and ``/admin/v1/accounts/{id}/users``.

A shared account is created by the system client for a shop. A dedicated account is a
subscription that exists already (``/_sandbox/subscriptions`` makes one, with a link code as
its own eManageCRM UI would show); linking it needs that one-time code. Either way one shop
has at most one account, and the client that created or linked it owns it.
"""

from __future__ import annotations

import secrets
import sqlite3
import uuid
from typing import Any

from starlette.requests import Request
from starlette.responses import JSONResponse, Response
from starlette.routing import BaseRoute, Route

from syncapp.sandbox.emanage.common import (
    CURRENCY_RE,
    EMAIL_RE,
    SHOP_DOMAIN_RE,
    UUID_RE,
    Fields,
    Principal,
    account_access,
    api_error,
    authenticate,
    read_json_object,
    require_scope,
    validation_error,
)
from syncapp.sandbox.emanage.idempotency import run_idempotent
from syncapp.sandbox.emanage.state import EmanageState, digest, iso

ROLES = ("owner", "admin", "member")


def account_json(
    state: EmanageState, row: sqlite3.Row, conn: sqlite3.Connection | None = None
) -> dict[str, Any]:
    shop_domain = row["shop_domain"]
    if shop_domain is None and conn is not None:
        # A closed tenant gave its shop_domain (unique) to the dedicated account; it still
        # reports the shop it served.
        closed = conn.execute(
            "SELECT shop_domain FROM closed_accounts WHERE account_id = ?", (row["id"],)
        ).fetchone()
        shop_domain = closed["shop_domain"] if closed is not None else None
    return {
        "id": row["id"],
        "kind": row["kind"],
        "status": row["status"],
        "name": row["name"],
        "email": row["email"],
        "currency": row["currency"],
        "shopDomain": shop_domain,
        "cid": row["cid"],
        "websalesApiUrl": f"{state.public_url}/api",
        "subscriptionId": row["subscription_id"],
        "createdAt": iso(row["created_at"]),
    }


def user_json(row: sqlite3.Row) -> dict[str, Any]:
    return {
        "id": row["id"],
        "accountId": row["account_id"],
        "email": row["email"],
        "name": row["name"],
        "role": row["role"],
        "createdAt": iso(row["created_at"]),
    }


def insert_account(
    conn: sqlite3.Connection,
    *,
    kind: str,
    name: str,
    email: str,
    currency: str,
    now: float,
    shop_domain: str | None = None,
    owner_client_id: str | None = None,
    subscription_id: str | None = None,
) -> str:
    """Create an account row and return its id (a fresh GUID, with a fresh CID)."""
    account_id = str(uuid.uuid4())
    conn.execute(
        "INSERT INTO accounts (id, kind, name, email, currency, shop_domain, cid,"
        " owner_client_id, subscription_id, created_at) VALUES (?,?,?,?,?,?,?,?,?,?)",
        (
            account_id,
            kind,
            name,
            email,
            currency,
            shop_domain,
            str(uuid.uuid4()),
            owner_client_id,
            subscription_id,
            now,
        ),
    )
    return account_id


_CODE_ALPHABET = "ABCDEFGHJKLMNPQRSTUVWXYZ23456789"  # no 0/O, 1/I: people type these codes


def new_link_code() -> str:
    """A code as the merchant's eManageCRM shows it: ``LNK-XXXX-XXXX``."""
    chars = [secrets.choice(_CODE_ALPHABET) for _ in range(8)]
    return f"LNK-{''.join(chars[:4])}-{''.join(chars[4:])}"


def issue_link_code(
    state: EmanageState, conn: sqlite3.Connection, account_id: str
) -> dict[str, Any]:
    """A new single-use link code for the dedicated ``account_id`` (stored hashed)."""
    code = new_link_code()
    expires_at = state.clock.now() + state.config.link_code_ttl_seconds
    conn.execute(
        "INSERT INTO link_codes VALUES (?, ?, ?, NULL)", (digest(code), account_id, expires_at)
    )
    return {"linkCode": code, "linkCodeExpiresAt": iso(expires_at)}


def _shop_conflict(
    conn: sqlite3.Connection, principal: Principal, shop_domain: str
) -> Response | None:
    row = conn.execute(
        "SELECT id, owner_client_id FROM accounts WHERE shop_domain = ?", (shop_domain,)
    ).fetchone()
    if row is None:
        return None
    mine = row["owner_client_id"] == principal.client_id
    return api_error(
        409,
        "account_exists",
        f"The shop {shop_domain} already has an eManageCRM account"
        + ("; use it." if mine else " owned by another integration."),
        existingId=row["id"] if mine else None,
    )


def _system_writer(state: EmanageState, request: Request) -> Principal | Response:
    principal = authenticate(state, request)
    if isinstance(principal, Response):
        return principal
    if (refused := require_scope(principal, "accounts:write")) is not None:
        return refused
    if principal.account_id is not None:
        return api_error(
            403, "system_token_required", "Accounts are created and linked with a system token."
        )
    return principal


def routes(state: EmanageState) -> list[BaseRoute]:
    """Accounts, account links and users."""

    def created(body: dict[str, Any], location: str) -> JSONResponse:
        return JSONResponse(body, status_code=201, headers={"Location": location})

    async def create_account(request: Request) -> Response:
        principal = _system_writer(state, request)
        if isinstance(principal, Response):
            return principal
        body = await read_json_object(request)
        if isinstance(body, Response):
            return body
        fields = Fields(body, {"shopDomain", "name", "email", "currency"})
        shop = fields.text("shopDomain", pattern=SHOP_DOMAIN_RE, hint="<name>.myshopify.com")
        name = fields.text("name")
        email = fields.text("email", pattern=EMAIL_RE, hint="an email address", max_length=254)
        currency = fields.text("currency", pattern=CURRENCY_RE, hint="an ISO 4217 code like USD")

        def write(conn: sqlite3.Connection) -> Response:
            if fields.errors:
                return validation_error(fields.errors)
            if (conflict := _shop_conflict(conn, principal, shop)) is not None:
                return conflict
            account_id = insert_account(
                conn,
                kind="shared",
                name=name,
                email=email,
                currency=currency,
                now=state.clock.now(),
                shop_domain=shop,
                owner_client_id=principal.client_id,
            )
            row = conn.execute("SELECT * FROM accounts WHERE id = ?", (account_id,)).fetchone()
            return created(account_json(state, row), f"/admin/v1/accounts/{account_id}")

        return await run_idempotent(state, request, principal, write)

    async def link_account(request: Request) -> Response:
        principal = _system_writer(state, request)
        if isinstance(principal, Response):
            return principal
        body = await read_json_object(request)
        if isinstance(body, Response):
            return body
        fields = Fields(body, {"shopDomain", "subscriptionId", "linkCode", "replacesAccountId"})
        shop = fields.text("shopDomain", pattern=SHOP_DOMAIN_RE, hint="<name>.myshopify.com")
        subscription_id = fields.text("subscriptionId", pattern=UUID_RE, hint="a GUID").lower()
        code = fields.text("linkCode", max_length=64).upper()
        replaces = fields.text("replacesAccountId", pattern=UUID_RE, hint="a GUID", required=False)
        replaces = replaces.lower()

        def write(conn: sqlite3.Connection) -> Response:
            if fields.errors:
                return validation_error(fields.errors)
            if replaces:
                current = conn.execute(
                    "SELECT * FROM accounts WHERE shop_domain = ?", (shop,)
                ).fetchone()
                # Only the caller's own active shared tenant of this very shop may be replaced:
                # another shop's account id, or an account of another client, changes nothing.
                if (
                    current is None
                    or current["id"] != replaces
                    or current["owner_client_id"] != principal.client_id
                    or current["kind"] != "shared"
                    or current["status"] != "active"
                ):
                    return api_error(
                        409,
                        "replaced_account_mismatch",
                        f"The account {replaces} is not this client's active shared account for "
                        f"{shop}; read the shop's account and send its id.",
                    )
            elif (conflict := _shop_conflict(conn, principal, shop)) is not None:
                return conflict
            sub = conn.execute(
                "SELECT * FROM accounts WHERE subscription_id = ?", (subscription_id,)
            ).fetchone()
            link = None
            if sub is not None:
                link = conn.execute(
                    "SELECT * FROM link_codes WHERE code_hash = ? AND account_id = ?",
                    (digest(code), sub["id"]),
                ).fetchone()
            now = state.clock.now()
            if link is None or link["used_at"] is not None or link["expires_at"] <= now:
                return api_error(
                    422,
                    "link_code_invalid",
                    "The link code is wrong, used or expired for this subscription; generate a "
                    "new one in eManageCRM (Settings > Integrations > Shopify Sync App).",
                    modelState={"linkCode": ["The link code is not valid."]},
                )
            if sub is not None and sub["shop_domain"] is not None:
                mine = sub["owner_client_id"] == principal.client_id
                return api_error(
                    409,
                    "subscription_already_linked",
                    f"The subscription is already linked to {sub['shop_domain']}.",
                    existingId=sub["id"] if mine else None,
                )
            assert sub is not None
            conn.execute(
                "UPDATE link_codes SET used_at = ? WHERE code_hash = ?", (now, digest(code))
            )
            if replaces:
                conn.execute(
                    "INSERT INTO closed_accounts VALUES (?, ?, ?, ?)",
                    (replaces, shop, sub["id"], now),
                )
                conn.execute(
                    "UPDATE accounts SET status = 'closed', shop_domain = NULL WHERE id = ?",
                    (replaces,),
                )
            conn.execute(
                "UPDATE accounts SET shop_domain = ?, owner_client_id = ? WHERE id = ?",
                (shop, principal.client_id, sub["id"]),
            )
            row = conn.execute("SELECT * FROM accounts WHERE id = ?", (sub["id"],)).fetchone()
            return created(account_json(state, row), f"/admin/v1/accounts/{sub['id']}")

        return await run_idempotent(state, request, principal, write)

    async def get_account(request: Request) -> Response:
        principal = authenticate(state, request)
        if isinstance(principal, Response):
            return principal
        if (refused := require_scope(principal, "accounts:read")) is not None:
            return refused
        with state.db.transaction() as conn:
            row = account_access(conn, principal, request.path_params["account_id"], data=False)
            if isinstance(row, Response):
                return row
            return JSONResponse(account_json(state, row, conn))

    async def users(request: Request) -> Response:
        principal = authenticate(state, request)
        if isinstance(principal, Response):
            return principal
        scope = "users:read" if request.method == "GET" else "users:write"
        if (refused := require_scope(principal, scope)) is not None:
            return refused
        account_id = str(request.path_params["account_id"])
        with state.db.transaction() as conn:
            account = account_access(conn, principal, account_id, data=True)
            if isinstance(account, Response):
                return account
            if request.method == "GET":
                rows = conn.execute(
                    "SELECT * FROM users WHERE account_id = ? ORDER BY created_at, rowid",
                    (account["id"],),
                ).fetchall()
                return JSONResponse({"items": [user_json(r) for r in rows]})
        body = await read_json_object(request)
        if isinstance(body, Response):
            return body
        fields = Fields(body, {"email", "name", "role"})
        email = fields.text("email", pattern=EMAIL_RE, hint="an email address", max_length=254)
        name = fields.text("name")
        role = fields.text("role", default="owner")
        if role and role not in ROLES:
            fields.add("role", f"'role' must be one of {', '.join(ROLES)}.")

        def write(conn: sqlite3.Connection) -> Response:
            if fields.errors:
                return validation_error(fields.errors)
            existing = conn.execute(
                "SELECT id FROM users WHERE account_id = ? AND email = ?",
                (account["id"], email.lower()),
            ).fetchone()
            if existing is not None:
                return api_error(
                    409,
                    "user_exists",
                    f"The account already has a user with the email {email}.",
                    existingId=existing["id"],
                )
            user_id = str(uuid.uuid4())
            conn.execute(
                "INSERT INTO users VALUES (?, ?, ?, ?, ?, ?)",
                (user_id, account["id"], email.lower(), name, role, state.clock.now()),
            )
            row = conn.execute("SELECT * FROM users WHERE id = ?", (user_id,)).fetchone()
            return JSONResponse(user_json(row), status_code=201)

        return await run_idempotent(state, request, principal, write)

    return [
        Route("/admin/v1/accounts", create_account, methods=["POST"]),
        Route("/admin/v1/account-links", link_account, methods=["POST"]),
        Route("/admin/v1/accounts/{account_id}", get_account, methods=["GET"]),
        Route("/admin/v1/accounts/{account_id}/users", users, methods=["GET", "POST"]),
    ]
