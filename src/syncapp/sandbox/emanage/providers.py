"""Payment providers and their MIDs: configured by the merchant in eManageCRM's web UI (or by
``/_sandbox/`` for tests), read by the app through
``GET /admin/v1/accounts/{id}/payment-providers``.

A provider is added inactive with one main MID, as eManageCRM's Providers page does it, and
is then activated; the app treats an active provider with an active MID as "can take payments".
"""

from __future__ import annotations

import re
import sqlite3
from typing import Any

from starlette.requests import Request
from starlette.responses import JSONResponse, Response
from starlette.routing import BaseRoute, Route

from syncapp.sandbox.emanage.common import account_access, authenticate, require_scope
from syncapp.sandbox.emanage.state import EmanageState, iso

# Gateway → eManageCRM's provider category ("Offline": the payment is made on the provider page).
PROVIDER_TYPES: dict[str, str] = {
    "Test Gateway": "Credit Card (Online)",
    "Stripe": "Credit Card (Online)",
    "NMI": "Credit Card (Online)",
    "Authorize.Net": "Credit Card (Online)",
    "PayPal": "Offline",
    "iDEAL": "Offline",
}
CURRENCIES = ("USD", "EUR", "GBP", "CAD", "AUD")
MID_RE = re.compile(r"^[A-Za-z0-9_.:-]{1,64}$")


def provider_json(conn: sqlite3.Connection, row: sqlite3.Row) -> dict[str, Any]:
    mids = conn.execute(
        "SELECT * FROM mids WHERE provider_id = ? ORDER BY id", (row["id"],)
    ).fetchall()
    return {
        "id": row["id"],
        "name": row["name"],
        "type": row["type"],
        "category": row["category"],
        "currency": row["currency"],
        "isActive": bool(row["is_active"]),
        "mids": [
            {
                "id": m["id"],
                "mid": m["mid"],
                "descriptor": m["descriptor"],
                "isActive": bool(m["is_active"]),
                "isMain": bool(m["is_main"]),
                "monthlyCapUsd": m["monthly_cap_usd"],
            }
            for m in mids
        ],
        "createdAt": iso(row["created_at"]),
        "updatedAt": iso(row["updated_at"]),
    }


def list_providers(conn: sqlite3.Connection, account_id: str) -> list[dict[str, Any]]:
    rows = conn.execute(
        "SELECT * FROM payment_providers WHERE account_id = ? ORDER BY id", (account_id,)
    ).fetchall()
    return [provider_json(conn, r) for r in rows]


def check_provider(values: dict[str, str]) -> dict[str, list[str]]:
    """Field errors of a new provider (name, type, mid, currency, descriptor); empty if valid."""
    errors: dict[str, list[str]] = {}
    name = values.get("name", "").strip()
    if not name or len(name) > 100:
        errors["name"] = ["Give the provider a name of 1 to 100 characters."]
    if values.get("type", "") not in PROVIDER_TYPES:
        errors["type"] = [f"Choose one of: {', '.join(PROVIDER_TYPES)}."]
    if not MID_RE.match(values.get("mid", "").strip()):
        errors["mid"] = ["The MID is 1 to 64 letters, digits or . _ : -"]
    if values.get("currency", "") not in CURRENCIES:
        errors["currency"] = [f"Choose one of: {', '.join(CURRENCIES)}."]
    if len(values.get("descriptor", "")) > 25:
        errors["descriptor"] = ["A statement descriptor has at most 25 characters."]
    return errors


def add_provider(
    conn: sqlite3.Connection,
    *,
    account_id: str,
    values: dict[str, str],
    now: float,
    active: bool = False,
) -> int:
    """Insert a provider with its main MID (values already checked) and return its id."""
    cursor = conn.execute(
        "INSERT INTO payment_providers (account_id, name, type, category, currency, is_active,"
        " created_at, updated_at) VALUES (?, ?, ?, ?, ?, ?, ?, ?)",
        (
            account_id,
            values["name"].strip(),
            values["type"],
            PROVIDER_TYPES[values["type"]],
            values["currency"],
            int(active),
            now,
            now,
        ),
    )
    provider_id = int(cursor.lastrowid or 0)
    conn.execute(
        "INSERT INTO mids (provider_id, mid, descriptor, is_active, is_main)"
        " VALUES (?, ?, ?, 1, 1)",
        (provider_id, values["mid"].strip(), values.get("descriptor", "").strip() or None),
    )
    return provider_id


def set_active(
    conn: sqlite3.Connection, *, account_id: str, provider_id: int, active: bool, now: float
) -> bool:
    """Activate or deactivate a provider of the account; False if it has no such provider."""
    cursor = conn.execute(
        "UPDATE payment_providers SET is_active = ?, updated_at = ?"
        " WHERE id = ? AND account_id = ?",
        (int(active), now, provider_id, account_id),
    )
    return cursor.rowcount == 1


def routes(state: EmanageState) -> list[BaseRoute]:
    """The read API."""

    async def list_route(request: Request) -> Response:
        principal = authenticate(state, request)
        if isinstance(principal, Response):
            return principal
        if (refused := require_scope(principal, "providers:read")) is not None:
            return refused
        with state.db.transaction() as conn:
            account = account_access(
                conn, principal, str(request.path_params["account_id"]), data=True
            )
            if isinstance(account, Response):
                return account
            items = list_providers(conn, account["id"])
        return JSONResponse({"items": items})

    return [Route("/admin/v1/accounts/{account_id}/payment-providers", list_route, methods=["GET"])]
