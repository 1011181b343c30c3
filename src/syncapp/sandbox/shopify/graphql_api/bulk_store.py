"""Bulk operations as rows: what ran, for whom, how far it got and where its file is."""

from __future__ import annotations

import sqlite3
from typing import Any

from syncapp.sandbox.shopify.db import register_column, register_schema, utcnow_iso

register_schema(
    """
    CREATE TABLE IF NOT EXISTS sb_bulk_operations (
        id INTEGER PRIMARY KEY AUTOINCREMENT,
        shop_domain TEXT NOT NULL,
        type TEXT NOT NULL,                   -- QUERY | MUTATION
        query TEXT NOT NULL,
        status TEXT NOT NULL,                 -- CREATED RUNNING COMPLETED CANCELING CANCELED FAILED
        error_code TEXT,
        object_count INTEGER NOT NULL DEFAULT 0,
        root_object_count INTEGER NOT NULL DEFAULT 0,
        file_size INTEGER,
        file_name TEXT,
        url TEXT,
        created_at TEXT NOT NULL,
        completed_at TEXT
    );
    CREATE INDEX IF NOT EXISTS sb_bulk_by_shop ON sb_bulk_operations (shop_domain, type, id);
    INSERT INTO sqlite_sequence (name, seq) SELECT 'sb_bulk_operations', 5100000000000
        WHERE NOT EXISTS (SELECT 1 FROM sqlite_sequence WHERE name = 'sb_bulk_operations');
    """
)

# groupObjects as asked (2026-01+ default false); a FAILED operation's partial result; when
# the result URLs stop working (unix time).
register_column("sb_bulk_operations", "group_objects", "INTEGER NOT NULL DEFAULT 0")
register_column("sb_bulk_operations", "partial_file_name", "TEXT")
register_column("sb_bulk_operations", "partial_data_url", "TEXT")
register_column("sb_bulk_operations", "url_expires_at", "REAL")

ACTIVE = ("CREATED", "RUNNING", "CANCELING")


def get(conn: sqlite3.Connection, shop_domain: str, op_id: int) -> dict[str, Any] | None:
    row = conn.execute(
        "SELECT * FROM sb_bulk_operations WHERE id = ? AND shop_domain = ?", (op_id, shop_domain)
    ).fetchone()
    return dict(row) if row else None


def current(conn: sqlite3.Connection, shop_domain: str, op_type: str) -> dict[str, Any] | None:
    row = conn.execute(
        "SELECT * FROM sb_bulk_operations WHERE shop_domain = ? AND type = ?"
        " ORDER BY id DESC LIMIT 1",
        (shop_domain, op_type),
    ).fetchone()
    return dict(row) if row else None


def count_active(conn: sqlite3.Connection, shop_domain: str, op_type: str) -> int:
    row = conn.execute(
        "SELECT COUNT(*) AS n FROM sb_bulk_operations WHERE shop_domain = ? AND type = ?"
        " AND status IN ('CREATED', 'RUNNING', 'CANCELING')",
        (shop_domain, op_type),
    ).fetchone()
    return int(row["n"])


def create(
    conn: sqlite3.Connection,
    shop_domain: str,
    op_type: str,
    query: str,
    *,
    group_objects: bool = False,
) -> int:
    cursor = conn.execute(
        "INSERT INTO sb_bulk_operations (shop_domain, type, query, status, created_at,"
        " group_objects) VALUES (?, ?, ?, 'CREATED', ?, ?)",
        (shop_domain, op_type, query, utcnow_iso(), 1 if group_objects else 0),
    )
    assert cursor.lastrowid is not None
    return cursor.lastrowid


def update(conn: sqlite3.Connection, op_id: int, **fields: Any) -> None:
    allowed = {
        "status",
        "error_code",
        "object_count",
        "root_object_count",
        "file_size",
        "file_name",
        "url",
        "completed_at",
        "partial_file_name",
        "partial_data_url",
        "url_expires_at",
    }
    unknown = set(fields) - allowed
    if unknown:
        raise ValueError(f"not bulk operation columns: {sorted(unknown)}")
    assignments = ", ".join(f"{key} = ?" for key in fields)
    conn.execute(
        f"UPDATE sb_bulk_operations SET {assignments} WHERE id = ?",  # noqa: S608
        (*fields.values(), op_id),
    )


def by_file_name(conn: sqlite3.Connection, name: str) -> dict[str, Any] | None:
    """The operation whose result or partial result is the file ``name``."""
    row = conn.execute(
        "SELECT * FROM sb_bulk_operations WHERE file_name = ? OR partial_file_name = ?",
        (name, name),
    ).fetchone()
    return dict(row) if row else None


def interrupted(conn: sqlite3.Connection) -> list[dict[str, Any]]:
    """Operations a previous process left unfinished (it stopped while they ran)."""
    rows = conn.execute(
        "SELECT * FROM sb_bulk_operations WHERE status IN ('CREATED', 'RUNNING', 'CANCELING')"
    ).fetchall()
    return [dict(row) for row in rows]
