"""The webhook outbox: every change the sandbox makes records the webhooks it fires here.

Writers call :func:`record_webhook` inside the same :meth:`SandboxDB.transaction` as the
change, so a change is never visible without its webhook or the other way round. The delivery
side (``webhooks``) reads the outbox and fans each row out to the app's subscriptions.
"""

from __future__ import annotations

import json
import sqlite3
import time
import uuid
from typing import Any

from syncapp.sandbox.shopify.db import register_column, utcnow_iso

# Unix time to the microsecond: the deliverer coalesces bursts closer than a second.
register_column("webhook_outbox", "recorded_at", "REAL")


def record_webhook(
    conn: sqlite3.Connection, *, shop_domain: str, topic: str, payload: dict[str, Any]
) -> str:
    """Queue one event of ``topic`` for ``shop_domain``; returns its ``X-Shopify-Event-Id``."""
    event_id = str(uuid.uuid4())
    now = utcnow_iso()
    conn.execute(
        "INSERT INTO webhook_outbox (shop_domain, topic, event_id, payload, triggered_at,"
        " created_at, recorded_at) VALUES (?, ?, ?, ?, ?, ?, ?)",
        (
            shop_domain,
            topic,
            event_id,
            json.dumps(payload, separators=(",", ":")),
            now,
            now,
            time.time(),
        ),
    )
    return event_id
