"""Asynchronous ``productSet`` (``synchronous: false``) and ``productOperation``.

Shopify answers an asynchronous productSet at once with a ``ProductSetOperation`` in status
CREATED and no product; the work runs in the background (ACTIVE, then COMPLETE) and its
``userErrors`` appear only on the operation, read with ``productOperation(id:)``
(changelog product-set-mutation-synchronous-input-improvements; admin-graphql 2025-07
objects/ProductSetOperation; pitfalls §12).

The sandbox does the same with a daemon thread started after the request commits. Before it
answers, it runs the productSet once inside a savepoint it always rolls back: input the sandbox
does not implement is then refused loudly in the request itself, instead of surfacing later as
a silently failed operation.
"""

from __future__ import annotations

import json
import logging
import threading
from typing import Any

from syncapp.sandbox.shopify.db import register_schema, utcnow_iso
from syncapp.sandbox.shopify.graphql_api.context import Context
from syncapp.sandbox.shopify.graphql_api.ids import gid, legacy_id
from syncapp.sandbox.shopify.shops import get_shop
from syncapp.sandbox.shopify.state import SandboxState

log = logging.getLogger(__name__)

register_schema(
    """
    CREATE TABLE IF NOT EXISTS sb_product_operations (
        id INTEGER PRIMARY KEY AUTOINCREMENT,
        shop_domain TEXT NOT NULL,
        status TEXT NOT NULL,                 -- CREATED | ACTIVE | COMPLETE
        arguments TEXT NOT NULL,              -- the productSet arguments, JSON
        product_id INTEGER,
        user_errors TEXT NOT NULL DEFAULT '[]',
        created_at TEXT NOT NULL
    );
    INSERT INTO sqlite_sequence (name, seq) SELECT 'sb_product_operations', 1900000000
        WHERE NOT EXISTS (SELECT 1 FROM sqlite_sequence WHERE name = 'sb_product_operations');
    """
)


def _get(ctx_conn: Any, shop_domain: str, op_id: int) -> dict[str, Any] | None:
    row = ctx_conn.execute(
        "SELECT * FROM sb_product_operations WHERE id = ? AND shop_domain = ?",
        (op_id, shop_domain),
    ).fetchone()
    return dict(row) if row else None


def operation_node(ctx: Context, row: dict[str, Any]) -> dict[str, Any]:
    from syncapp.sandbox.shopify.graphql_api.resolvers import load_product

    product = load_product(ctx, row["product_id"]) if row["product_id"] else None
    return {
        "__typename": "ProductSetOperation",
        "id": gid("ProductSetOperation", row["id"]),
        "status": row["status"],
        "product": product,
        "userErrors": json.loads(row["user_errors"]),
    }


def operation_by_id(ctx: Context, number: int) -> dict[str, Any] | None:
    row = _get(ctx.conn, ctx.shop.domain, number)
    return operation_node(ctx, row) if row else None


def product_operation(_: Any, ctx: Context, args: dict[str, Any]) -> Any:
    number = legacy_id(args["id"], "ProductSetOperation")
    return operation_by_id(ctx, number) if number is not None else None


def start_product_set(ctx: Context, args: dict[str, Any]) -> dict[str, Any]:
    """The ``ProductSetPayload`` of an asynchronous productSet: the operation, CREATED."""
    from syncapp.sandbox.shopify.graphql_api.mutations import product_set

    sync_args = {**args, "synchronous": True}
    ctx.conn.execute("SAVEPOINT async_dry_run")
    try:
        product_set(None, ctx, sync_args)
    finally:
        ctx.conn.execute("ROLLBACK TO async_dry_run")
        ctx.conn.execute("RELEASE async_dry_run")
        ctx.forget("product", "variants", "options", "item")
    cursor = ctx.conn.execute(
        "INSERT INTO sb_product_operations (shop_domain, status, arguments, created_at)"
        " VALUES (?, 'CREATED', ?, ?)",
        (ctx.shop.domain, json.dumps(sync_args), utcnow_iso()),
    )
    assert cursor.lastrowid is not None
    op_id = cursor.lastrowid
    state, shop_domain = ctx.state, ctx.shop.domain
    ctx.after_commit.append(
        lambda: threading.Thread(
            target=_run, args=(state, shop_domain, op_id), name=f"product-set-{op_id}", daemon=True
        ).start()
    )
    row = _get(ctx.conn, shop_domain, op_id)
    assert row is not None
    return {
        "__typename": "ProductSetPayload",
        "product": None,
        "productSetOperation": operation_node(ctx, row),
        "userErrors": [],
    }


def _run(state: SandboxState, shop_domain: str, op_id: int) -> None:
    from syncapp.sandbox.shopify.graphql_api.mutations import product_set

    try:
        with state.db.transaction() as conn:
            conn.execute(
                "UPDATE sb_product_operations SET status = 'ACTIVE' WHERE id = ?", (op_id,)
            )
        with state.db.transaction() as conn:
            shop = get_shop(conn, shop_domain)
            row = _get(conn, shop_domain, op_id)
            assert shop is not None
            assert row is not None
            ctx = Context(state=state, conn=conn, shop=shop)
            result = product_set(None, ctx, json.loads(row["arguments"]))
            product = result.get("product")
            errors = [
                {k: v for k, v in e.items() if k != "__typename"} for e in result["userErrors"]
            ]
            conn.execute(
                "UPDATE sb_product_operations SET status = 'COMPLETE', product_id = ?,"
                " user_errors = ? WHERE id = ?",
                (product["_pk"] if product else None, json.dumps(errors), op_id),
            )
    except Exception:
        log.exception("asynchronous productSet %s failed", op_id)
        with state.db.transaction() as conn:
            conn.execute(
                "UPDATE sb_product_operations SET status = 'COMPLETE', user_errors = ?"
                " WHERE id = ?",
                (
                    json.dumps(
                        [{"field": None, "message": "Internal error in the sandbox", "code": None}]
                    ),
                    op_id,
                ),
            )


QUERIES = {"productOperation": product_operation}
MUTATIONS: dict[str, Any] = {}
FIELDS: dict[str, dict[str, Any]] = {}
