"""``Idempotency-Key`` on every admin write, as Stripe does it.

The first request with a key runs; its answer (status, body, ``Location``) is stored with a
fingerprint of the request (method, path, body as canonical JSON) in the same transaction as
the write itself, so a crash cannot leave a write without its stored answer. A later request
with the same key and fingerprint gets the stored answer and ``Idempotent-Replayed: true``; with
another fingerprint it gets 422 ``idempotency_key_reused``. Keys are per client and kept for
``config.idempotency_ttl_seconds``. As at Stripe, only answers of writes that ran are stored
(2xx, and 409 for a conflict found while running): a refused body (422) or a server failure
(5xx) is not, so the same key can be sent again, corrected or later.
"""

from __future__ import annotations

import hashlib
import json
import sqlite3
from collections.abc import Callable

from starlette.requests import Request
from starlette.responses import Response

from syncapp.sandbox.emanage.common import Principal, api_error
from syncapp.sandbox.emanage.state import EmanageState

MAX_KEY_LENGTH = 255
_KEPT_HEADERS = ("location", "etag")


def fingerprint(method: str, path: str, raw_body: bytes) -> str:
    """Equal for requests that mean the same: JSON key order and whitespace do not count."""
    try:
        return value_fingerprint(method, path, json.loads(raw_body))
    except ValueError:
        canonical = raw_body.decode("utf-8", "replace").strip()
    return hashlib.sha256(f"{method.upper()} {path}\n{canonical}".encode()).hexdigest()


def value_fingerprint(method: str, path: str, body: object) -> str:
    """:func:`fingerprint` of a request whose body is the JSON value ``body`` (parsed as
    ``json.loads`` parses, floats as floats): an item of a batch is fingerprinted as the single
    request it stands for, so the two share one key space without ambiguity."""
    canonical = json.dumps(body, sort_keys=True, separators=(",", ":"))
    return hashlib.sha256(f"{method.upper()} {path}\n{canonical}".encode()).hexdigest()


def stored_answer(conn: sqlite3.Connection, client_id: str, key: str) -> sqlite3.Row | None:
    """The stored answer of ``key`` (fingerprint, status, body, headers), or None."""
    row: sqlite3.Row | None = conn.execute(
        "SELECT * FROM idempotency_keys WHERE client_id = ? AND key = ?", (client_id, key)
    ).fetchone()
    return row


def store_answer(
    conn: sqlite3.Connection,
    *,
    client_id: str,
    key: str,
    fingerprint: str,
    status: int,
    body: str,
    headers: dict[str, str],
    now: float,
) -> None:
    """Keep the answer of a write that ran under ``key``, in the write's own transaction."""
    conn.execute(
        "INSERT INTO idempotency_keys VALUES (?, ?, ?, ?, ?, ?, ?)",
        (client_id, key, fingerprint, status, body, json.dumps(headers), now),
    )


async def run_idempotent(
    state: EmanageState,
    request: Request,
    principal: Principal,
    write: Callable[[sqlite3.Connection], Response],
) -> Response:
    """Answer a write under its ``Idempotency-Key``: replay, refuse a reuse, or run ``write``."""
    key = request.headers.get("idempotency-key")
    if key is None or not key.strip():
        return api_error(
            400,
            "idempotency_key_required",
            "Every write needs an 'Idempotency-Key' header (e.g. a UUID per logical operation).",
        )
    if len(key) > MAX_KEY_LENGTH:
        return api_error(
            400,
            "invalid_request",
            f"'Idempotency-Key' must be at most {MAX_KEY_LENGTH} characters.",
        )
    raw = await request.body()
    print_ = fingerprint(request.method, request.url.path, raw)
    now = state.clock.now()
    with state.db.transaction() as conn:
        conn.execute(
            "DELETE FROM idempotency_keys WHERE created_at < ?",
            (now - state.config.idempotency_ttl_seconds,),
        )
        row = stored_answer(conn, principal.client_id, key)
        if row is not None:
            if row["fingerprint"] != print_:
                return api_error(
                    422,
                    "idempotency_key_reused",
                    "This Idempotency-Key was used for a different request; use a new key.",
                )
            headers = json.loads(row["headers"])
            headers["Idempotent-Replayed"] = "true"
            return Response(
                content=row["body"],
                status_code=row["status"],
                headers=headers,
                media_type="application/json",
            )
        response = write(conn)
        if response.status_code < 300 or response.status_code == 409:
            kept = {h: response.headers[h] for h in _KEPT_HEADERS if h in response.headers}
            store_answer(
                conn,
                client_id=principal.client_id,
                key=key,
                fingerprint=print_,
                status=response.status_code,
                body=bytes(response.body).decode(),
                headers=kept,
                now=now,
            )
    return response
