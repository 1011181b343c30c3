"""Webhook subscriptions of a system client: ``/admin/v1/webhook-subscriptions``.

A subscription is *partner-wide*: it belongs to the system client that created it and receives
the notifications of every account that client owns (created or linked), now and later, as
Stripe Connect's platform endpoints and GitHub Apps' webhook do. An integration therefore
subscribes once, not per account, and an account it creates tomorrow is covered without a
second call racing the account's first change (docs/adr/0019).

Signing secret: the caller may send its own ``secret`` (GitHub's webhooks; the Sync App sends
the one it keeps in its settings) or let eManageCRM generate one; either way the secret is in
the creation answer only, never in a read. ``PATCH`` with a new ``secret`` rotates it: every
delivery from then on is signed with the new one.

A subscription hears events recorded from its creation on (``delivered_seq`` starts at the
outbox's last ``seq``); its delivery state lives in the same row (:mod:`.notification_tables`).
"""

from __future__ import annotations

import json
import re
import secrets
import sqlite3
import uuid
from typing import Any

from starlette.requests import Request
from starlette.responses import JSONResponse, Response
from starlette.routing import BaseRoute, Route

from syncapp.sandbox.emanage.common import (
    UUID_RE,
    Fields,
    Principal,
    api_error,
    authenticate,
    read_json_object,
    require_scope,
    validation_error,
)
from syncapp.sandbox.emanage.events import EVENT_TYPES
from syncapp.sandbox.emanage.idempotency import run_idempotent
from syncapp.sandbox.emanage.state import EmanageState, iso

# The contract's pattern of a subscription URL (an absolute http(s) URL without spaces).
URL_RE = re.compile(r"^https?://[^\s/?#]+[^\s]*$")
SECRET_RE = re.compile(r"^[\x21-\x7e]{32,128}$")
MAX_SUBSCRIPTIONS = 16
_FIELDS = {"url", "eventTypes", "secret"}


def subscription_json(row: sqlite3.Row) -> dict[str, Any]:
    return {
        "id": row["id"],
        "url": row["url"],
        "eventTypes": json.loads(row["event_types"]),
        "createdAt": iso(row["created_at"]),
        "updatedAt": iso(row["updated_at"]),
    }


def _event_types(fields: Fields, *, required: bool) -> list[str] | None:
    value = fields.body.get("eventTypes")
    if value is None:
        if required:
            fields.add("eventTypes", "'eventTypes' is required.")
        return None
    if (
        not isinstance(value, list)
        or not value
        or not all(isinstance(v, str) and v in EVENT_TYPES for v in value)
    ):
        fields.add(
            "eventTypes",
            f"'eventTypes' must be a non-empty list of {', '.join(sorted(EVENT_TYPES))}.",
        )
        return None
    if len(set(value)) != len(value):
        fields.add("eventTypes", "'eventTypes' must not repeat a type.")
        return None
    return sorted(value)


def _system_principal(state: EmanageState, request: Request, scope: str) -> Principal | Response:
    principal = authenticate(state, request)
    if isinstance(principal, Response):
        return principal
    if (refused := require_scope(principal, scope)) is not None:
        return refused
    if principal.account_id is not None:
        return api_error(
            403,
            "system_token_required",
            "Webhook subscriptions belong to the integration: use a system token.",
        )
    return principal


def _own(
    conn: sqlite3.Connection, principal: Principal, subscription_id: str
) -> sqlite3.Row | Response:
    row: sqlite3.Row | None = None
    if UUID_RE.match(subscription_id):
        row = conn.execute(
            "SELECT * FROM webhook_subscriptions WHERE id = ? AND client_id = ?",
            (subscription_id.lower(), principal.client_id),
        ).fetchone()
    if row is None:
        return api_error(
            404, "not_found", f"There is no webhook subscription {subscription_id} for this client."
        )
    return row


def routes(state: EmanageState) -> list[BaseRoute]:
    """Create, list, read, change and delete the client's webhook subscriptions."""

    async def collection(request: Request) -> Response:
        if request.method == "GET":
            principal = _system_principal(state, request, "webhooks:read")
            if isinstance(principal, Response):
                return principal
            with state.db.transaction() as conn:
                rows = conn.execute(
                    "SELECT * FROM webhook_subscriptions WHERE client_id = ?"
                    " ORDER BY created_at, rowid",
                    (principal.client_id,),
                ).fetchall()
            return JSONResponse({"items": [subscription_json(r) for r in rows]})
        principal = _system_principal(state, request, "webhooks:write")
        if isinstance(principal, Response):
            return principal
        body = await read_json_object(request)
        if isinstance(body, Response):
            return body
        fields = Fields(body, _FIELDS)
        url = fields.text("url", pattern=URL_RE, hint="an absolute http(s) URL", max_length=2000)
        types = _event_types(fields, required=True)
        secret = fields.text(
            "secret", pattern=SECRET_RE, hint="32 to 128 printable characters", required=False
        )

        def write(conn: sqlite3.Connection) -> Response:
            if fields.errors:
                return validation_error(fields.errors)
            existing = conn.execute(
                "SELECT id FROM webhook_subscriptions WHERE client_id = ? AND url = ?",
                (principal.client_id, url),
            ).fetchone()
            if existing is not None:
                return api_error(
                    409,
                    "subscription_exists",
                    "This client already has a subscription for the URL; change it instead.",
                    existingId=existing["id"],
                )
            (count,) = conn.execute(
                "SELECT count(*) FROM webhook_subscriptions WHERE client_id = ?",
                (principal.client_id,),
            ).fetchone()
            if count >= MAX_SUBSCRIPTIONS:
                return api_error(
                    409,
                    "subscription_limit",
                    f"A client may have at most {MAX_SUBSCRIPTIONS} webhook subscriptions.",
                )
            (last_seq,) = conn.execute(
                "SELECT coalesce(max(seq), 0) FROM notification_outbox"
            ).fetchone()
            subscription_id = str(uuid.uuid4())
            signing_secret = secret or "whsec_" + secrets.token_urlsafe(32)
            now = state.clock.now()
            conn.execute(
                "INSERT INTO webhook_subscriptions (id, client_id, url, event_types, secret,"
                " created_at, updated_at, delivered_seq) VALUES (?, ?, ?, ?, ?, ?, ?, ?)",
                (
                    subscription_id,
                    principal.client_id,
                    url,
                    json.dumps(types),
                    signing_secret,
                    now,
                    now,
                    last_seq,
                ),
            )
            row = conn.execute(
                "SELECT * FROM webhook_subscriptions WHERE id = ?", (subscription_id,)
            ).fetchone()
            return JSONResponse(
                {**subscription_json(row), "secret": signing_secret},
                status_code=201,
                headers={"Location": f"/admin/v1/webhook-subscriptions/{subscription_id}"},
            )

        return await run_idempotent(state, request, principal, write)

    async def item(request: Request) -> Response:
        subscription_id = str(request.path_params["subscription_id"])
        if request.method == "GET":
            principal = _system_principal(state, request, "webhooks:read")
            if isinstance(principal, Response):
                return principal
            with state.db.transaction() as conn:
                row = _own(conn, principal, subscription_id)
                if isinstance(row, Response):
                    return row
                return JSONResponse(subscription_json(row))
        principal = _system_principal(state, request, "webhooks:write")
        if isinstance(principal, Response):
            return principal
        if request.method == "DELETE":

            def delete(conn: sqlite3.Connection) -> Response:
                row = _own(conn, principal, subscription_id)
                if isinstance(row, Response):
                    return row
                for table in ("webhook_attempts", "webhook_failed_events"):
                    conn.execute(
                        f"DELETE FROM {table} WHERE subscription_id = ?",  # noqa: S608
                        (row["id"],),
                    )
                conn.execute("DELETE FROM webhook_subscriptions WHERE id = ?", (row["id"],))
                return Response(status_code=204)

            return await run_idempotent(state, request, principal, delete)
        body = await read_json_object(request)
        if isinstance(body, Response):
            return body
        fields = Fields(body, _FIELDS)
        url = fields.text(
            "url", pattern=URL_RE, hint="an absolute http(s) URL", max_length=2000, required=False
        )
        types = _event_types(fields, required=False)
        secret = fields.text(
            "secret", pattern=SECRET_RE, hint="32 to 128 printable characters", required=False
        )

        def change(conn: sqlite3.Connection) -> Response:
            if fields.errors:
                return validation_error(fields.errors)
            row = _own(conn, principal, subscription_id)
            if isinstance(row, Response):
                return row
            if url and url != row["url"]:
                taken = conn.execute(
                    "SELECT id FROM webhook_subscriptions WHERE client_id = ? AND url = ?",
                    (principal.client_id, url),
                ).fetchone()
                if taken is not None:
                    return api_error(
                        409,
                        "subscription_exists",
                        "Another subscription of this client has that URL.",
                        existingId=taken["id"],
                    )
            conn.execute(
                "UPDATE webhook_subscriptions SET url = ?, event_types = ?, secret = ?,"
                " updated_at = ? WHERE id = ?",
                (
                    url or row["url"],
                    json.dumps(types) if types is not None else row["event_types"],
                    secret or row["secret"],
                    state.clock.now(),
                    row["id"],
                ),
            )
            changed = conn.execute(
                "SELECT * FROM webhook_subscriptions WHERE id = ?", (row["id"],)
            ).fetchone()
            return JSONResponse(subscription_json(changed))

        return await run_idempotent(state, request, principal, change)

    return [
        Route("/admin/v1/webhook-subscriptions", collection, methods=["GET", "POST"]),
        Route(
            "/admin/v1/webhook-subscriptions/{subscription_id}",
            item,
            methods=["GET", "PATCH", "DELETE"],
        ),
    ]
