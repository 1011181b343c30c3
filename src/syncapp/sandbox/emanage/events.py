"""The eManageCRM sandbox's notification outbox: what happened, recorded with the change.

A handler that changes a resource subscribers hear about (a product created, updated or
archived) calls :func:`record_event` inside the same :meth:`EmanageDB.transaction` as the
change, so an event exists exactly when its change committed. Delivering the outbox to the
subscribed URLs (signing, retries) reads these rows in order of ``seq``.
"""

from __future__ import annotations

import json
import sqlite3
import uuid
from collections.abc import Mapping
from typing import Any

SCHEMA = """
CREATE TABLE IF NOT EXISTS notification_outbox (
    seq INTEGER PRIMARY KEY AUTOINCREMENT,
    event_id TEXT NOT NULL UNIQUE,        -- GUID, the notification's id (receivers dedupe on it)
    account_id TEXT NOT NULL REFERENCES accounts(id),
    type TEXT NOT NULL,                   -- product.created | product.updated | product.archived
    occurred_at TEXT NOT NULL,            -- ISO 8601 UTC
    data TEXT NOT NULL                    -- JSON object
);
"""

EVENT_TYPES = frozenset({"product.created", "product.updated", "product.archived"})


def record_event(
    conn: sqlite3.Connection,
    *,
    account_id: str,
    event_type: str,
    data: Mapping[str, Any],
    occurred_at: str,
) -> str:
    """Record one notification in the caller's transaction; returns its event id.
    ``occurred_at`` is the change's time as the API shows it (``state.iso`` of the clock)."""
    if event_type not in EVENT_TYPES:
        raise ValueError(f"unknown notification type {event_type!r}")
    if not conn.in_transaction:
        raise RuntimeError("record_event must run inside the change's transaction")
    event_id = str(uuid.uuid4())
    conn.execute(
        "INSERT INTO notification_outbox (event_id, account_id, type, occurred_at, data)"
        " VALUES (?, ?, ?, ?, ?)",
        (
            event_id,
            account_id,
            event_type,
            occurred_at,
            json.dumps(dict(data), separators=(",", ":")),
        ),
    )
    return event_id
