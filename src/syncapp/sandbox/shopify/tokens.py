"""Admin API access tokens the sandbox has issued, and the lookup every Admin request makes.

Two kinds, as on Shopify: ``offline`` tokens of the installed app (obtained by token exchange,
expiring after an hour, one live per app and shop, with a rotating refresh token) and
``custom`` tokens of a merchant-created custom app (``syncapp sandbox shopify token``), which
do not expire and do not displace the app's token.
"""

from __future__ import annotations

import sqlite3
import time

from syncapp.sandbox.shopify.db import register_schema

register_schema(
    """
    CREATE TABLE IF NOT EXISTS access_tokens (
        token TEXT PRIMARY KEY,
        shop_domain TEXT NOT NULL,
        kind TEXT NOT NULL,                  -- offline | custom
        scope TEXT NOT NULL,
        expires_at REAL,                     -- unix time; NULL = never
        revoked INTEGER NOT NULL DEFAULT 0,
        created_at REAL NOT NULL
    );
    CREATE INDEX IF NOT EXISTS access_tokens_shop ON access_tokens (shop_domain, kind);
    """
)


def shop_for_access_token(
    conn: sqlite3.Connection, token: str, *, now: float | None = None
) -> str | None:
    """The shop a live (issued, unrevoked, unexpired) access token is for, else None."""
    row = conn.execute(
        "SELECT shop_domain, expires_at, revoked FROM access_tokens WHERE token = ?", (token,)
    ).fetchone()
    if row is None or row["revoked"]:
        return None
    current = time.time() if now is None else now
    if row["expires_at"] is not None and row["expires_at"] <= current:
        return None
    return str(row["shop_domain"])
