"""Stored responses of writes, keyed by client and ``Idempotency-Key`` (as Stripe does).

The first request with a key runs and its response is stored with a fingerprint of the
request (method, path, body). A later request with the same key and fingerprint gets the
stored response; with another fingerprint it is refused (422 ``idempotency_key_reused``).
Keys are remembered ``idempotency_ttl`` seconds. Everything happens in the caller's
transaction, so a write and its stored response commit together.
"""

from __future__ import annotations

import hashlib
import json
import sqlite3
from dataclasses import dataclass
from typing import Any

from syncapp.sandbox.ctrwow.db import register_schema

register_schema(
    """
    CREATE TABLE IF NOT EXISTS idempotency_keys (
        client_id TEXT NOT NULL,
        key TEXT NOT NULL,
        fingerprint TEXT NOT NULL,
        status INTEGER NOT NULL,
        body TEXT NOT NULL,
        created_at REAL NOT NULL,
        PRIMARY KEY (client_id, key)
    );
    """
)


@dataclass(frozen=True)
class Stored:
    status: int
    body: dict[str, Any]


class KeyReused(Exception):
    """The key was used before with a different request."""


def fingerprint(method: str, path: str, body: Any) -> str:
    canonical = json.dumps([method.upper(), path, body], sort_keys=True, separators=(",", ":"))
    return hashlib.sha256(canonical.encode()).hexdigest()


def lookup(
    conn: sqlite3.Connection, *, client_id: str, key: str, fp: str, now: float, ttl: int
) -> Stored | None:
    """The stored response for this key, None if it is new; raises :class:`KeyReused`."""
    conn.execute(
        "DELETE FROM idempotency_keys WHERE client_id = ? AND key = ? AND created_at < ?",
        (client_id, key, now - ttl),
    )
    row = conn.execute(
        "SELECT * FROM idempotency_keys WHERE client_id = ? AND key = ?", (client_id, key)
    ).fetchone()
    if row is None:
        return None
    if row["fingerprint"] != fp:
        raise KeyReused(key)
    return Stored(status=row["status"], body=json.loads(row["body"]))


def store(
    conn: sqlite3.Connection,
    *,
    client_id: str,
    key: str,
    fp: str,
    status: int,
    body: dict[str, Any],
    now: float,
) -> None:
    conn.execute(
        "INSERT INTO idempotency_keys (client_id, key, fingerprint, status, body, created_at)"
        " VALUES (?, ?, ?, ?, ?, ?)",
        (client_id, key, fp, status, json.dumps(body), now),
    )
