"""Pure pieces of the sandbox fidelity work, tested on their own: the ungrouped bulk layout and
the in-place upgrade of a sandbox database made before a column existed."""

from __future__ import annotations

import json
import sqlite3
from pathlib import Path
from typing import Any

from hypothesis import given
from hypothesis import strategies as st

from syncapp.sandbox.shopify.db import SandboxDB
from syncapp.sandbox.shopify.graphql_api.bulk import ungrouped


def _page(shape: list[int]) -> list[dict[str, Any]]:
    """Grouped lines of a page: product ``i`` then its ``shape[i]`` variants."""
    lines: list[dict[str, Any]] = []
    for index, children in enumerate(shape):
        parent = f"gid://shopify/Product/{index}"
        lines.append({"id": parent})
        lines += [
            {"id": f"gid://shopify/ProductVariant/{index}-{c}", "__parentId": parent}
            for c in range(children)
        ]
    return lines


@given(st.lists(st.integers(min_value=0, max_value=6), max_size=12))
def test_ungrouped_is_a_permutation_with_every_child_before_the_parents(shape: list[int]) -> None:
    """Same lines; children first, each parent's children in their order; roots in order."""
    grouped = _page(shape)
    result = ungrouped(grouped)
    assert sorted(map(json.dumps, result)) == sorted(map(json.dumps, grouped))
    children = [line for line in result if "__parentId" in line]
    assert result[: len(children)] == children
    for parent in {c["__parentId"] for c in children}:
        mine = [c["id"] for c in children if c["__parentId"] == parent]
        assert mine == [c["id"] for c in grouped if c.get("__parentId") == parent]
    assert [r for r in result if "__parentId" not in r] == [
        g for g in grouped if "__parentId" not in g
    ]


def test_an_older_sandbox_database_gains_the_new_columns(tmp_path: Path) -> None:
    """A file from before ``recorded_at`` / ``group_objects`` / ``name`` opens and upgrades."""
    path = tmp_path / "old.db"
    with sqlite3.connect(path) as conn:
        conn.executescript(
            """
            CREATE TABLE webhook_outbox (id INTEGER PRIMARY KEY AUTOINCREMENT,
                shop_domain TEXT NOT NULL, topic TEXT NOT NULL, event_id TEXT NOT NULL,
                payload TEXT NOT NULL, triggered_at TEXT NOT NULL, created_at TEXT NOT NULL);
            INSERT INTO webhook_outbox (shop_domain, topic, event_id, payload, triggered_at,
                created_at) VALUES ('a.myshopify.com', 'products/update', 'e', '{}', 't', 't');
            """
        )
    db = SandboxDB(path)
    try:
        with db.transaction() as conn:
            columns = {row["name"] for row in conn.execute("PRAGMA table_info(webhook_outbox)")}
            assert "recorded_at" in columns
            assert conn.execute("SELECT COUNT(*) FROM webhook_outbox").fetchone()[0] == 1
            bulk = {row["name"] for row in conn.execute("PRAGMA table_info(sb_bulk_operations)")}
            assert {"group_objects", "partial_data_url", "url_expires_at"} <= bulk
    finally:
        db.close()
    SandboxDB(path).close()  # a second open finds the columns and adds nothing
