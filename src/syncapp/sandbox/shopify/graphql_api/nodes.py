"""Rows → GraphQL values: the sandbox's objects as the dicts the executor resolves from.

Each builder returns a dict keyed by GraphQL field name with ``__typename`` set; keys with a
leading ``_`` are the sandbox's own (primary keys) and never reach a client. Fields that need
more loading (variants of a product, metafields) are resolved lazily in ``resolvers``.
"""

from __future__ import annotations

import hashlib
import json
import time
from typing import Any

from syncapp.sandbox.shopify.graphql_api import store
from syncapp.sandbox.shopify.graphql_api.ids import gid
from syncapp.sandbox.shopify.graphql_api.pagination import encode_cursor
from syncapp.sandbox.shopify.shops import Shop


def product_node(row: dict[str, Any]) -> dict[str, Any]:
    return {
        "__typename": "Product",
        "_pk": row["id"],
        "id": gid("Product", row["id"]),
        "legacyResourceId": str(row["id"]),
        "title": row["title"],
        "handle": row["handle"],
        "descriptionHtml": row["description_html"],
        "vendor": row["vendor"],
        "productType": row["product_type"],
        "status": row["status"],
        "tags": store.tags_list(row["tags"]),
        "templateSuffix": row["template_suffix"],
        "publishedAt": row["published_at"] if row["status"] == "ACTIVE" else None,
        "createdAt": row["created_at"],
        "updatedAt": row["updated_at"],
        "defaultCursor": encode_cursor(row["id"], row["id"]),
        "isGiftCard": False,
        "giftCardTemplateSuffix": None,
        "requiresSellingPlan": False,
        "hasVariantsThatRequiresComponents": False,
        # Sandbox products carry no media: these answers are true, not placeholders.
        "featuredMedia": None,
        "mediaCount": {"__typename": "Count", "count": 0, "precision": "EXACT"},
    }


def variant_node(row: dict[str, Any]) -> dict[str, Any]:
    return {
        "__typename": "ProductVariant",
        "_pk": row["id"],
        "_product_id": row["product_id"],
        "_option_values": (row["option1"], row["option2"], row["option3"]),
        "id": gid("ProductVariant", row["id"]),
        "legacyResourceId": str(row["id"]),
        "title": row["title"],
        "sku": row["sku"],
        "price": row["price"],
        "compareAtPrice": row["compare_at_price"],
        "position": row["position"],
        "barcode": row["barcode"],
        "taxable": bool(row["taxable"]),
        "inventoryQuantity": row["inventory_quantity"],
        "inventoryPolicy": row["inventory_policy"],
        "availableForSale": row["inventory_quantity"] > 0 or row["inventory_policy"] == "CONTINUE",
        "createdAt": row["created_at"],
        "updatedAt": row["updated_at"],
        "defaultCursor": encode_cursor(row["id"], row["id"]),
        "requiresComponents": False,
        "showUnitPrice": False,
        "inventoryItem": {
            "__typename": "InventoryItem",
            "id": gid("InventoryItem", row["id"] + store.INVENTORY_ITEM_OFFSET),
            "legacyResourceId": str(row["id"] + store.INVENTORY_ITEM_OFFSET),
            "_variant_pk": row["id"],
            "sku": row["sku"],
            "createdAt": row["created_at"],
            "updatedAt": row["updated_at"],
        },
    }


def option_value_node(value: store.OptionValue, has_variants: bool) -> dict[str, Any]:
    return {
        "__typename": "ProductOptionValue",
        "id": gid("ProductOptionValue", value.id),
        "name": value.name,
        "hasVariants": has_variants,
        "linkedMetafieldValue": None,
        "swatch": None,
    }


def option_node(option: store.Option, used_values: set[str]) -> dict[str, Any]:
    return {
        "__typename": "ProductOption",
        "id": gid("ProductOption", option.id),
        "name": option.name,
        "position": option.position,
        "values": [v.name for v in option.values],
        "optionValues": [option_value_node(v, v.name in used_values) for v in option.values],
        "linkedMetafield": None,
    }


_JSON_TYPES = (
    "json",
    "number_integer",
    "number_decimal",
    "boolean",
    "rating",
    "volume",
    "weight",
    "dimension",
    "money",
    "link",
)


def metafield_node(row: dict[str, Any]) -> dict[str, Any]:
    value = row["value"]
    json_value: Any = value
    if row["type"].startswith("list.") or row["type"] in _JSON_TYPES:
        try:
            json_value = json.loads(value)
        except ValueError:
            json_value = value
    return {
        "__typename": "Metafield",
        "id": gid("Metafield", row["id"]),
        "legacyResourceId": str(row["id"]),
        "namespace": row["namespace"],
        "key": row["key"],
        "type": row["type"],
        "value": value,
        "jsonValue": json_value,
        "ownerType": row["owner_type"],
        "createdAt": row["created_at"],
        "updatedAt": row["updated_at"],
        "compareDigest": hashlib.sha256(
            f"{row['id']}:{row['updated_at']}:{value}".encode()
        ).hexdigest(),
        "sizeInBytes": len(value.encode()),
        "definition": None,
        "reference": None,
    }


_PLAN_DISPLAY = {
    "Standard": "Shopify",
    "Advanced": "Advanced",
    "Plus": "Shopify Plus",
    "Enterprise": "Shopify Plus",
}


def shop_node(shop: Shop) -> dict[str, Any]:
    display = _PLAN_DISPLAY.get(shop.plan_name, shop.plan_name)
    return {
        "__typename": "Shop",
        "id": shop.gid,
        "name": shop.name,
        "email": shop.email,
        "contactEmail": shop.email,
        "myshopifyDomain": shop.domain,
        "currencyCode": shop.currency_code,
        "enabledPresentmentCurrencies": [shop.currency_code],
        "ianaTimezone": "Etc/UTC",
        "timezoneAbbreviation": "UTC",
        "timezoneOffset": "+0000",
        "timezoneOffsetMinutes": 0,
        "url": f"https://{shop.domain}",
        "weightUnit": "KILOGRAMS",
        "unitSystem": "METRIC_SYSTEM",
        "taxesIncluded": False,
        "taxShipping": False,
        "setupRequired": False,
        "checkoutApiSupported": True,
        "plan": {
            "__typename": "ShopPlan",
            "displayName": display,
            "publicDisplayName": display,
            "partnerDevelopment": False,
            "shopifyPlus": shop.plan_name in ("Plus", "Enterprise"),
        },
        "primaryDomain": {
            "__typename": "Domain",
            "id": gid("Domain", shop.id),
            "host": shop.domain,
            "url": f"https://{shop.domain}",
            "sslEnabled": True,
        },
    }


def bulk_operation_status(row: dict[str, Any], now: float | None = None) -> str:
    """The stored status, or EXPIRED once the result URLs have stopped working.

    Shopify's BulkOperationStatus.EXPIRED: "The bulk operation URL has expired".
    """
    expires = row.get("url_expires_at")
    if expires is not None and (now if now is not None else time.time()) >= expires:
        return "EXPIRED"
    return str(row["status"])


def bulk_operation_node(row: dict[str, Any]) -> dict[str, Any]:
    return {
        "__typename": "BulkOperation",
        "id": gid("BulkOperation", row["id"]),
        "status": bulk_operation_status(row),
        "errorCode": row["error_code"],
        "createdAt": row["created_at"],
        "completedAt": row["completed_at"],
        "objectCount": str(row["object_count"]),
        "rootObjectCount": str(row["root_object_count"]),
        "fileSize": str(row["file_size"]) if row["file_size"] is not None else None,
        "url": row["url"],
        "partialDataUrl": row.get("partial_data_url"),
        "query": row["query"],
        "type": row["type"],
    }
