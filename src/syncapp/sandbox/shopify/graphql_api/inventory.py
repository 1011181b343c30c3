"""Locations and inventory: where a shop stocks its variants, and the two inventory mutations
a sync engine uses, ``inventorySetQuantities`` and ``inventoryAdjustQuantities``.

The model is Shopify's reduced to what the sandbox can truthfully answer. A shop has one
primary location ("Shop location", made on first use) and may have more. A variant's
inventory item is stocked at locations with one number each: ``available``; the sandbox has no
orders, so nothing is committed or reserved and ``on_hand`` equals ``available`` (the other
quantity names read 0). A variant with no level rows is stocked at the primary location with
its ``inventory_quantity``; the first write to its levels makes that row explicit.
``sb_variants.inventory_quantity`` stays the total, which ``inventoryQuantity`` reads.

Both mutations follow 2026-04+ rules (changelog making-changefromquantity-field-required,
making-idempotency-mandatory-for-inventory-adjustments-and-refund-mutations):

- every quantity/change must carry ``changeFromQuantity``: a value is compared with the stored
  quantity (``CHANGE_FROM_QUANTITY_STALE`` when it differs, nothing written), an explicit
  ``null`` opts out, and leaving the field out is an error;
- ``@idempotent(key:)`` is mandatory: a replay with the same key and input answers the first
  result and changes nothing; the same key with other input is ``IDEMPOTENCY_KEY_PARAMETER_
  MISMATCH``.

Every change records ``inventory_levels/update`` per level and ``products/update`` per product
(pitfalls §5: Shopify staff confirmed products/update fires on inventory changes).
"""

from __future__ import annotations

import hashlib
import json
import sqlite3
from typing import Any

from syncapp.sandbox.shopify.db import register_schema, utcnow_iso
from syncapp.sandbox.shopify.events import record_webhook
from syncapp.sandbox.shopify.graphql_api import payloads, store
from syncapp.sandbox.shopify.graphql_api.context import Context
from syncapp.sandbox.shopify.graphql_api.errors import NotImplementedInSandbox, argument_error
from syncapp.sandbox.shopify.graphql_api.ids import gid, legacy_id
from syncapp.sandbox.shopify.graphql_api.pagination import PageArgs, connection, fetch_page

register_schema(
    """
    CREATE TABLE IF NOT EXISTS sb_locations (
        id INTEGER PRIMARY KEY AUTOINCREMENT,
        shop_domain TEXT NOT NULL,
        name TEXT NOT NULL,
        is_primary INTEGER NOT NULL DEFAULT 0,
        created_at TEXT NOT NULL,
        updated_at TEXT NOT NULL
    );
    CREATE INDEX IF NOT EXISTS sb_locations_by_shop ON sb_locations (shop_domain, id);
    CREATE TABLE IF NOT EXISTS sb_inventory_levels (
        variant_id INTEGER NOT NULL REFERENCES sb_variants (id) ON DELETE CASCADE,
        location_id INTEGER NOT NULL REFERENCES sb_locations (id) ON DELETE CASCADE,
        available INTEGER NOT NULL,
        created_at TEXT NOT NULL,
        updated_at TEXT NOT NULL,
        PRIMARY KEY (variant_id, location_id)
    );
    CREATE TABLE IF NOT EXISTS sb_inventory_groups (
        id INTEGER PRIMARY KEY AUTOINCREMENT,
        shop_domain TEXT NOT NULL,
        mutation TEXT NOT NULL,
        idempotency_key TEXT NOT NULL,
        input_digest TEXT NOT NULL,
        reason TEXT NOT NULL,
        reference_document_uri TEXT,
        changes TEXT NOT NULL,         -- JSON list of {name, delta, after, variant, location}
        created_at TEXT NOT NULL,
        UNIQUE (shop_domain, mutation, idempotency_key)
    );
    INSERT INTO sqlite_sequence (name, seq) SELECT 'sb_locations', 76000000000
        WHERE NOT EXISTS (SELECT 1 FROM sqlite_sequence WHERE name = 'sb_locations');
    INSERT INTO sqlite_sequence (name, seq) SELECT 'sb_inventory_groups', 22000000000000
        WHERE NOT EXISTS (SELECT 1 FROM sqlite_sequence WHERE name = 'sb_inventory_groups');
    """
)

PRIMARY_LOCATION_NAME = "Shop location"
QUANTITY_NAMES = (
    "available",
    "on_hand",
    "committed",
    "incoming",
    "reserved",
    "damaged",
    "safety_stock",
    "quality_control",
)
# shopify.dev/docs/apps/build/orders-fulfillment/inventory-management-apps (reasons list).
REASONS = frozenset(
    {
        "correction",
        "cycle_count_available",
        "damaged",
        "movement_canceled",
        "movement_created",
        "movement_received",
        "movement_updated",
        "other",
        "promotion",
        "quality_control",
        "received",
        "reservation_created",
        "reservation_deleted",
        "reservation_updated",
        "restock",
        "safety_stock",
        "shrinkage",
    }
)
MAX_SET_QUANTITY = 1_000_000_000
MAX_ADJUST_QUANTITY = 2_000_000_000

# ---- rows ----------------------------------------------------------------------------------


def locations_of(conn: sqlite3.Connection, shop_domain: str) -> list[dict[str, Any]]:
    """The shop's locations, primary first; the primary one is made on first use."""
    rows = conn.execute(
        "SELECT * FROM sb_locations WHERE shop_domain = ? ORDER BY is_primary DESC, id",
        (shop_domain,),
    ).fetchall()
    if rows:
        return [dict(r) for r in rows]
    now = utcnow_iso()
    conn.execute(
        "INSERT INTO sb_locations (shop_domain, name, is_primary, created_at, updated_at)"
        " VALUES (?, ?, 1, ?, ?)",
        (shop_domain, PRIMARY_LOCATION_NAME, now, now),
    )
    return locations_of(conn, shop_domain)


def add_location(conn: sqlite3.Connection, shop_domain: str, name: str) -> int:
    """A further location (tests and seeding; Shopify's locationAdd is not modelled)."""
    locations_of(conn, shop_domain)
    now = utcnow_iso()
    cursor = conn.execute(
        "INSERT INTO sb_locations (shop_domain, name, is_primary, created_at, updated_at)"
        " VALUES (?, ?, 0, ?, ?)",
        (shop_domain, name, now, now),
    )
    assert cursor.lastrowid is not None
    return cursor.lastrowid


def location_by_id(
    conn: sqlite3.Connection, shop_domain: str, location_id: int
) -> dict[str, Any] | None:
    return next((loc for loc in locations_of(conn, shop_domain) if loc["id"] == location_id), None)


def levels_of(
    conn: sqlite3.Connection, shop_domain: str, variant: dict[str, Any]
) -> dict[int, tuple[int, str]]:
    """location id → (available, updated_at) of a variant."""
    rows = conn.execute(
        "SELECT location_id, available, updated_at FROM sb_inventory_levels"
        " WHERE variant_id = ? ORDER BY location_id",
        (variant["id"],),
    ).fetchall()
    if rows:
        return {r["location_id"]: (r["available"], r["updated_at"]) for r in rows}
    primary = locations_of(conn, shop_domain)[0]
    return {primary["id"]: (variant["inventory_quantity"], variant["updated_at"])}


def set_available(
    conn: sqlite3.Connection,
    shop_domain: str,
    variant: dict[str, Any],
    location_id: int,
    available: int,
) -> str:
    """Store one level and the variant's new total; returns the level's ``updated_at``."""
    now = utcnow_iso()
    current = levels_of(conn, shop_domain, variant)
    for loc_id, (quantity, _) in current.items():  # make the implicit primary row explicit
        conn.execute(
            "INSERT OR IGNORE INTO sb_inventory_levels (variant_id, location_id, available,"
            " created_at, updated_at) VALUES (?, ?, ?, ?, ?)",
            (variant["id"], loc_id, quantity, variant["created_at"], variant["updated_at"]),
        )
    conn.execute(
        "INSERT INTO sb_inventory_levels (variant_id, location_id, available, created_at,"
        " updated_at) VALUES (?, ?, ?, ?, ?) ON CONFLICT (variant_id, location_id)"
        " DO UPDATE SET available = excluded.available, updated_at = excluded.updated_at",
        (variant["id"], location_id, available, now, now),
    )
    total = conn.execute(
        "SELECT SUM(available) AS total FROM sb_inventory_levels WHERE variant_id = ?",
        (variant["id"],),
    ).fetchone()["total"]
    store.update_variant(conn, variant["id"], {"inventory_quantity": int(total)})
    return now


def write_initial_levels(
    ctx: Context, variant_id: int, levels: list[tuple[str, int]], path: str
) -> None:
    """A new variant's ``inventoryQuantities`` as levels at the named locations."""
    variant = store.get_variant(ctx.conn, ctx.shop.domain, variant_id)
    assert variant is not None
    for location_gid, quantity in levels:
        number = legacy_id(location_gid, "Location")
        if number is None or location_by_id(ctx.conn, ctx.shop.domain, number) is None:
            raise NotImplementedInSandbox(
                f"{path}.inventoryQuantities at location {location_gid!r}, which the shop does"
                " not have (query locations for the shop's ids)"
            )
        set_available(ctx.conn, ctx.shop.domain, variant, number, quantity)
        variant = store.get_variant(ctx.conn, ctx.shop.domain, variant_id) or variant


# ---- GraphQL values ------------------------------------------------------------------------


def location_node(row: dict[str, Any]) -> dict[str, Any]:
    return {
        "__typename": "Location",
        "_pk": row["id"],
        "id": gid("Location", row["id"]),
        "legacyResourceId": str(row["id"]),
        "name": row["name"],
        "isActive": True,
        "isPrimary": bool(row["is_primary"]),
        "isFulfillmentService": False,
        "fulfillsOnlineOrders": True,
        "shipsInventory": True,
        "hasActiveInventory": True,
        "hasUnfulfilledOrders": False,
        "activatable": True,
        "deactivatable": not row["is_primary"],
        "deletable": False,
        "deactivatedAt": None,
        "createdAt": row["created_at"],
        "updatedAt": row["updated_at"],
    }


def item_gid(variant_id: int) -> str:
    return gid("InventoryItem", variant_id + store.INVENTORY_ITEM_OFFSET)


def level_gid(variant_id: int, location_id: int) -> str:
    item = variant_id + store.INVENTORY_ITEM_OFFSET
    return f"gid://shopify/InventoryLevel/{location_id}?inventory_item_id={item}"


def level_node(
    variant_id: int, location: dict[str, Any], available: int, updated_at: str
) -> dict[str, Any]:
    return {
        "__typename": "InventoryLevel",
        "_variant_pk": variant_id,
        "_available": available,
        "_location": location,
        "id": level_gid(variant_id, location["id"]),
        "isActive": True,
        "canDeactivate": False,
        "deactivationAlert": None,
        "createdAt": updated_at,
        "updatedAt": updated_at,
    }


def _variant_of_item(ctx: Context, item_id: str) -> dict[str, Any] | None:
    number = legacy_id(item_id, "InventoryItem")
    if number is None:
        return None
    return store.get_variant(ctx.conn, ctx.shop.domain, number - store.INVENTORY_ITEM_OFFSET)


def item_levels(src: dict[str, Any], ctx: Context, args: dict[str, Any]) -> Any:
    PageArgs.from_args(args, unbounded=ctx.bulk)
    variant = store.get_variant(ctx.conn, ctx.shop.domain, src["_variant_pk"])
    assert variant is not None
    built = []
    for location_id, (available, updated_at) in levels_of(
        ctx.conn, ctx.shop.domain, variant
    ).items():
        location = location_by_id(ctx.conn, ctx.shop.domain, location_id)
        assert location is not None
        built.append(level_node(variant["id"], location, available, updated_at))
    first, last = args.get("first"), args.get("last")
    shown = built[:first] if first is not None else built[-last:] if last else built
    cursors = [str(n["_location"]["id"]) for n in shown]
    return {
        "__typename": "InventoryLevelConnection",
        "edges": [
            {"__typename": "InventoryLevelEdge", "cursor": c, "node": n}
            for c, n in zip(cursors, shown, strict=True)
        ],
        "nodes": shown,
        "pageInfo": {
            "__typename": "PageInfo",
            "hasNextPage": len(shown) < len(built) and first is not None,
            "hasPreviousPage": len(shown) < len(built) and last is not None,
            "startCursor": cursors[0] if cursors else None,
            "endCursor": cursors[-1] if cursors else None,
        },
    }


def item_level(src: dict[str, Any], ctx: Context, args: dict[str, Any]) -> Any:
    number = legacy_id(args["locationId"], "Location")
    variant = store.get_variant(ctx.conn, ctx.shop.domain, src["_variant_pk"])
    if number is None or variant is None:
        return None
    level = levels_of(ctx.conn, ctx.shop.domain, variant).get(number)
    location = location_by_id(ctx.conn, ctx.shop.domain, number)
    if level is None or location is None:
        return None
    return level_node(variant["id"], location, *level)


def level_quantities(src: dict[str, Any], ctx: Context, args: dict[str, Any]) -> Any:
    result = []
    for name in args["names"]:
        if name not in QUANTITY_NAMES:
            raise argument_error(f"Invalid quantity name: {name!r}")
        quantity = src["_available"] if name in ("available", "on_hand") else 0
        result.append(
            {
                "__typename": "InventoryQuantity",
                "id": f"gid://shopify/InventoryQuantity/{src['_location']['id']}?"
                f"inventory_item_id={src['_variant_pk'] + store.INVENTORY_ITEM_OFFSET}&name={name}",
                "name": name,
                "quantity": quantity,
                "updatedAt": src["updatedAt"],
            }
        )
    return result


def level_item(src: dict[str, Any], ctx: Context, args: dict[str, Any]) -> Any:
    from syncapp.sandbox.shopify.graphql_api.resolvers import load_variant

    variant = load_variant(ctx, src["_variant_pk"])
    return variant["inventoryItem"] if variant else None


def level_location(src: dict[str, Any], ctx: Context, args: dict[str, Any]) -> Any:
    return location_node(src["_location"])


def locations(_: Any, ctx: Context, args: dict[str, Any]) -> Any:
    for name in ("query", "includeLegacy"):
        if args.get(name):
            raise NotImplementedInSandbox(f"Argument '{name}' of 'QueryRoot.locations'")
    sort = {"ID": "l.id", "NAME": "l.name"}.get(args.get("sortKey") or "NAME")
    if sort is None:
        raise NotImplementedInSandbox(f"Sort key LocationSortKeys.{args['sortKey']}")
    locations_of(ctx.conn, ctx.shop.domain)
    page = fetch_page(
        ctx.conn,
        table="sb_locations l",
        where="l.shop_domain = ?",
        params=[ctx.shop.domain],
        sort_expr=sort,
        id_expr="l.id",
        page=PageArgs.from_args(args, unbounded=ctx.bulk),
        select="l.*",
    )
    return connection("Location", page, [location_node(r) for r in page.rows])


def location(_: Any, ctx: Context, args: dict[str, Any]) -> Any:
    if args.get("id") is None:
        return location_node(locations_of(ctx.conn, ctx.shop.domain)[0])
    number = legacy_id(args["id"], "Location")
    row = location_by_id(ctx.conn, ctx.shop.domain, number) if number is not None else None
    return location_node(row) if row else None


def location_by_gid(ctx: Context, number: int) -> dict[str, Any] | None:
    row = location_by_id(ctx.conn, ctx.shop.domain, number)
    return location_node(row) if row else None


def inventory_item_by_gid(ctx: Context, number: int) -> dict[str, Any] | None:
    from syncapp.sandbox.shopify.graphql_api.resolvers import load_variant

    variant = load_variant(ctx, number - store.INVENTORY_ITEM_OFFSET)
    return variant["inventoryItem"] if variant else None


def location_inventory_level(src: dict[str, Any], ctx: Context, args: dict[str, Any]) -> Any:
    variant = _variant_of_item(ctx, args["inventoryItemId"])
    if variant is None:
        return None
    level = levels_of(ctx.conn, ctx.shop.domain, variant).get(src["_pk"])
    row = location_by_id(ctx.conn, ctx.shop.domain, src["_pk"])
    return level_node(variant["id"], row, *level) if level and row else None


# ---- mutations -----------------------------------------------------------------------------


def _error(typename: str, field: list[str], message: str, code: str | None) -> dict[str, Any]:
    return {"__typename": typename, "field": field, "message": message, "code": code}


def _digest(args: dict[str, Any]) -> str:
    return hashlib.sha256(json.dumps(args, sort_keys=True, default=str).encode()).hexdigest()


def _group_node(row: dict[str, Any]) -> dict[str, Any]:
    changes = json.loads(row["changes"])
    return {
        "__typename": "InventoryAdjustmentGroup",
        "id": gid("InventoryAdjustmentGroup", row["id"]),
        "createdAt": row["created_at"],
        "reason": row["reason"],
        "referenceDocumentUri": row["reference_document_uri"],
        "app": None,
        "staffMember": None,
        "_changes": changes,
    }


def group_changes(src: dict[str, Any], ctx: Context, args: dict[str, Any]) -> Any:
    wanted_items = set(args.get("inventoryItemIds") or ())
    wanted_locations = set(args.get("locationIds") or ())
    wanted_names = set(args.get("quantityNames") or ())
    result = []
    for change in src["_changes"]:
        item = item_gid(change["variant"])
        location_gid = gid("Location", change["location"])
        if (wanted_items and item not in wanted_items) or (
            wanted_locations and location_gid not in wanted_locations
        ):
            continue
        if wanted_names and change["name"] not in wanted_names:
            continue
        row = location_by_id(ctx.conn, ctx.shop.domain, change["location"])
        result.append(
            {
                "__typename": "InventoryChange",
                "name": change["name"],
                "delta": change["delta"],
                "quantityAfterChange": change["after"],
                "ledgerDocumentUri": change.get("ledger"),
                "location": location_node(row) if row else None,
                "_variant_pk": change["variant"],
            }
        )
    return result


def change_item(src: dict[str, Any], ctx: Context, args: dict[str, Any]) -> Any:
    return inventory_item_by_gid(ctx, src["_variant_pk"] + store.INVENTORY_ITEM_OFFSET)


def _payload(typename: str, group: dict[str, Any] | None, errors: list[Any]) -> dict[str, Any]:
    return {"__typename": typename, "inventoryAdjustmentGroup": group, "userErrors": errors}


def _replayed(
    ctx: Context, mutation: str, key: str, digest: str, typename: str, error_type: str
) -> dict[str, Any] | None:
    row = ctx.conn.execute(
        "SELECT * FROM sb_inventory_groups WHERE shop_domain = ? AND mutation = ?"
        " AND idempotency_key = ?",
        (ctx.shop.domain, mutation, key),
    ).fetchone()
    if row is None:
        return None
    if row["input_digest"] != digest:
        return _payload(
            typename,
            None,
            [
                _error(
                    error_type,
                    ["input"],
                    "The same idempotency key cannot be used with different operation parameters.",
                    "IDEMPOTENCY_KEY_PARAMETER_MISMATCH",
                )
            ],
        )
    return _payload(typename, _group_node(dict(row)), [])


def _require_key(ctx: Context, mutation: str) -> str:
    key = ctx.idempotency_key
    if key is None or not key.strip():
        # Shopify documents the requirement, not the wording of the error.
        raise argument_error(
            f"{mutation} requires the @idempotent(key:) directive as of API version 2026-04"
            " (shopify.dev/docs/api/usage/idempotent-requests); the key cannot be empty.",
            code="IDEMPOTENCY_KEY_REQUIRED",
        )
    return key


def _apply(
    ctx: Context,
    *,
    mutation: str,
    key: str,
    digest: str,
    args: dict[str, Any],
    changes: list[dict[str, Any]],
) -> dict[str, Any]:
    """Write the planned ``changes``, their webhooks and the group; returns the group row."""
    touched_products: set[int] = set()
    for change in changes:
        variant = store.get_variant(ctx.conn, ctx.shop.domain, change["variant"])
        assert variant is not None
        updated_at = set_available(
            ctx.conn, ctx.shop.domain, variant, change["location"], change["after"]
        )
        touched_products.add(variant["product_id"])
        record_webhook(
            ctx.conn,
            shop_domain=ctx.shop.domain,
            topic="inventory_levels/update",
            payload=payloads.inventory_level_payload(
                variant["id"] + store.INVENTORY_ITEM_OFFSET,
                change["location"],
                change["after"],
                updated_at,
            ),
        )
    for product_id in sorted(touched_products):
        store.update_product(ctx.conn, product_id, {})
        record_webhook(
            ctx.conn,
            shop_domain=ctx.shop.domain,
            topic="products/update",
            payload=payloads.product_payload(ctx.conn, product_id),
        )
    cursor = ctx.conn.execute(
        "INSERT INTO sb_inventory_groups (shop_domain, mutation, idempotency_key, input_digest,"
        " reason, reference_document_uri, changes, created_at) VALUES (?, ?, ?, ?, ?, ?, ?, ?)",
        (
            ctx.shop.domain,
            mutation,
            key,
            digest,
            args["input"]["reason"],
            args["input"].get("referenceDocumentUri"),
            json.dumps(changes),
            utcnow_iso(),
        ),
    )
    ctx.forget("product", "variants", "options", "item")
    row = ctx.conn.execute(
        "SELECT * FROM sb_inventory_groups WHERE id = ?", (cursor.lastrowid,)
    ).fetchone()
    return dict(row)


def _check_common(
    ctx: Context,
    values: dict[str, Any],
    index: int,
    list_name: str,
    error_type: str,
    errors: list[Any],
) -> tuple[dict[str, Any], int] | None:
    """The variant and location of one quantity/change, or None with the userError added."""
    path = ["input", list_name, str(index)]
    variant = _variant_of_item(ctx, values["inventoryItemId"])
    if variant is None:
        errors.append(
            _error(
                error_type,
                [*path, "inventoryItemId"],
                "The specified inventory item could not be found.",
                "INVALID_INVENTORY_ITEM",
            )
        )
        return None
    number = legacy_id(values["locationId"], "Location")
    if number is None or location_by_id(ctx.conn, ctx.shop.domain, number) is None:
        errors.append(
            _error(
                error_type,
                [*path, "locationId"],
                "The specified location could not be found.",
                "INVALID_LOCATION",
            )
        )
        return None
    return variant, number


def _check_cas(
    values: dict[str, Any],
    current: int,
    path: list[str],
    error_type: str,
    missing_code: str | None,
    errors: list[Any],
) -> bool:
    if "changeFromQuantity" not in values:
        errors.append(
            _error(
                error_type,
                [*path, "changeFromQuantity"],
                "changeFromQuantity is required as of API version 2026-04; pass null to opt out"
                " of the compare-and-swap check.",
                missing_code,
            )
        )
        return False
    expected = values["changeFromQuantity"]
    if expected is not None and expected != current:
        errors.append(
            _error(
                error_type,
                [*path, "changeFromQuantity"],
                "The changeFromQuantity value does not match persisted value.",
                "CHANGE_FROM_QUANTITY_STALE",
            )
        )
        return False
    return True


def set_quantities(_: Any, ctx: Context, args: dict[str, Any]) -> dict[str, Any]:
    typename, error_type = "InventorySetQuantitiesPayload", "InventorySetQuantitiesUserError"
    key = _require_key(ctx, "inventorySetQuantities")
    values = args["input"]
    if values.get("ignoreCompareQuantity") or any(
        q.get("compareQuantity") is not None for q in values["quantities"]
    ):
        raise NotImplementedInSandbox(
            "compareQuantity/ignoreCompareQuantity (replaced by changeFromQuantity in 2026-04)"
        )
    digest = _digest(args)
    replay = _replayed(ctx, "inventorySetQuantities", key, digest, typename, error_type)
    if replay is not None:
        return replay
    errors: list[Any] = []
    if values["name"] not in ("available", "on_hand"):
        errors.append(
            _error(
                error_type,
                ["input", "name"],
                "The quantity name must be either 'available' or 'on_hand'.",
                "INVALID_NAME",
            )
        )
    if values["reason"] not in REASONS:
        errors.append(
            _error(
                error_type,
                ["input", "reason"],
                "The specified reason is invalid.",
                "INVALID_REASON",
            )
        )
    changes: list[dict[str, Any]] = []
    seen: set[tuple[int, int]] = set()
    for index, quantity in enumerate(values["quantities"]):
        path = ["input", "quantities", str(index)]
        found = _check_common(ctx, quantity, index, "quantities", error_type, errors)
        if found is None:
            continue
        variant, location_id = found
        if (variant["id"], location_id) in seen:
            errors.append(
                _error(
                    error_type,
                    path,
                    "The combination of inventoryItemId and locationId must be unique.",
                    "NO_DUPLICATE_INVENTORY_ITEM_ID_GROUP_ID_PAIR",
                )
            )
            continue
        seen.add((variant["id"], location_id))
        if quantity["quantity"] < 0:
            errors.append(
                _error(
                    error_type,
                    [*path, "quantity"],
                    "The quantity can't be negative.",
                    "INVALID_QUANTITY_NEGATIVE",
                )
            )
            continue
        if quantity["quantity"] > MAX_SET_QUANTITY:
            errors.append(
                _error(
                    error_type,
                    [*path, "quantity"],
                    "The total quantity can't be higher than 1,000,000,000.",
                    "INVALID_QUANTITY_TOO_HIGH",
                )
            )
            continue
        current = levels_of(ctx.conn, ctx.shop.domain, variant).get(location_id, (0, ""))[0]
        if not _check_cas(quantity, current, path, error_type, "COMPARE_QUANTITY_REQUIRED", errors):
            continue
        changes.append(
            {
                "name": values["name"],
                "delta": quantity["quantity"] - current,
                "after": quantity["quantity"],
                "variant": variant["id"],
                "location": location_id,
            }
        )
    if errors:
        return _payload(typename, None, errors)
    row = _apply(
        ctx, mutation="inventorySetQuantities", key=key, digest=digest, args=args, changes=changes
    )
    return _payload(typename, _group_node(row), [])


def adjust_quantities(_: Any, ctx: Context, args: dict[str, Any]) -> dict[str, Any]:
    typename, error_type = "InventoryAdjustQuantitiesPayload", "InventoryAdjustQuantitiesUserError"
    key = _require_key(ctx, "inventoryAdjustQuantities")
    values = args["input"]
    digest = _digest(args)
    replay = _replayed(ctx, "inventoryAdjustQuantities", key, digest, typename, error_type)
    if replay is not None:
        return replay
    errors: list[Any] = []
    if values["name"] not in ("available", "on_hand"):
        # Other states (damaged, reserved…) need ledger documents the sandbox does not model.
        raise NotImplementedInSandbox(f"inventoryAdjustQuantities of quantity {values['name']!r}")
    if values["reason"] not in REASONS:
        errors.append(
            _error(
                error_type,
                ["input", "reason"],
                "The specified reason is invalid.",
                "INVALID_REASON",
            )
        )
    changes: list[dict[str, Any]] = []
    running: dict[tuple[int, int], int] = {}
    for index, change in enumerate(values["changes"]):
        path = ["input", "changes", str(index)]
        if change.get("ledgerDocumentUri"):
            errors.append(
                _error(
                    error_type,
                    [*path, "ledgerDocumentUri"],
                    "A ledger document URI is not allowed when adjusting available.",
                    "INVALID_AVAILABLE_DOCUMENT",
                )
            )
            continue
        found = _check_common(ctx, change, index, "changes", error_type, errors)
        if found is None:
            continue
        variant, location_id = found
        pair = (variant["id"], location_id)
        current = running.get(
            pair, levels_of(ctx.conn, ctx.shop.domain, variant).get(location_id, (0, ""))[0]
        )
        if not _check_cas(change, current, path, error_type, None, errors):
            continue
        after = current + change["delta"]
        if not -MAX_ADJUST_QUANTITY <= after <= MAX_ADJUST_QUANTITY:
            errors.append(
                _error(
                    error_type,
                    [*path, "delta"],
                    "The quantity can't be higher than 2,000,000,000."
                    if after > 0
                    else "The quantity can't be lower than -2,000,000,000.",
                    "INVALID_QUANTITY_TOO_HIGH" if after > 0 else "INVALID_QUANTITY_TOO_LOW",
                )
            )
            continue
        running[pair] = after
        changes.append(
            {
                "name": values["name"],
                "delta": change["delta"],
                "after": after,
                "variant": variant["id"],
                "location": location_id,
            }
        )
    if errors:
        return _payload(typename, None, errors)
    row = _apply(
        ctx,
        mutation="inventoryAdjustQuantities",
        key=key,
        digest=digest,
        args=args,
        changes=changes,
    )
    return _payload(typename, _group_node(row), [])


QUERIES: dict[str, Any] = {"locations": locations, "location": location}
MUTATIONS: dict[str, Any] = {
    "inventorySetQuantities": set_quantities,
    "inventoryAdjustQuantities": adjust_quantities,
}
FIELDS: dict[str, dict[str, Any]] = {
    "InventoryItem": {"inventoryLevels": item_levels, "inventoryLevel": item_level},
    "InventoryLevel": {
        "quantities": level_quantities,
        "item": level_item,
        "location": level_location,
    },
    "Location": {"inventoryLevel": location_inventory_level},
    "InventoryAdjustmentGroup": {"changes": group_changes},
    "InventoryChange": {"item": change_item},
}
