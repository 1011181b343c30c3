"""Shopify ⇄ neutral ⇄ eManageCRM, as pure functions over plain JSON-shaped dicts.

Shopify's side is what the ``SyncProduct`` fragment (connectors/shopify/graphql/product.graphql)
returns and what ``productSet`` / ``productVariantsBulkUpdate`` take. eManageCRM's side is its
product resource: prices keyed by its own price types, ``productPrices.DiscountedPrice`` being
Shopify's price and ``productPrices.FullRetailPrice`` the compare-at price, each
``{Value, FormattedValue}`` (``FormattedValue`` is display only and never read back). The full
table is in docs/adr/0016. For every product ``p`` the synced fields survive both round trips:
``product_from_shopify(shopify_node(p)) == p`` and ``product_from_emanage(emanage_product(p)) == p``
(ids of the other side aside, which each side stores as an external reference).
"""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from datetime import datetime
from decimal import Decimal
from typing import Any

from syncapp.errors import SyncAppError
from syncapp.sync.catalog import (
    Option,
    Product,
    ProductStatus,
    Variant,
    WeightUnit,
    money,
    money_text,
)

__all__ = [
    "DEFAULT_OPTION",
    "UnmappableProduct",
    "emanage_product",
    "formatted_money",
    "product_from_emanage",
    "product_from_shopify",
    "product_set_input",
    "shopify_node",
    "variant_bulk_input",
]

# Shopify's stand-in option of a product without options: one variant "Default Title".
DEFAULT_OPTION = Option("Title", ("Default Title",))

_EMANAGE_UNITS = {
    WeightUnit.GRAMS: "g",
    WeightUnit.KILOGRAMS: "kg",
    WeightUnit.OUNCES: "oz",
    WeightUnit.POUNDS: "lb",
}
_UNITS_FROM_EMANAGE = {v: k for k, v in _EMANAGE_UNITS.items()}
_SYMBOLS = {"USD": "$", "CAD": "CA$", "AUD": "A$", "EUR": "€", "GBP": "£", "JPY": "¥"}


class UnmappableProduct(SyncAppError, ValueError):
    """A product the other side cannot represent (an unknown status, unit or option count)."""


def _parse_time(value: object) -> datetime | None:
    if not isinstance(value, str) or not value:
        return None
    return datetime.fromisoformat(value.replace("Z", "+00:00"))


def _optional_money(value: object) -> Decimal | None:
    return None if value is None else money(value)


def _weight(value: object) -> Decimal | None:
    # Shopify's Weight.value is a Float; its shortest repr is the weight that was entered.
    return None if value is None else money(value)


# ---------------------------------------------------------------- Shopify


def _shopify_options(node: Mapping[str, Any]) -> tuple[Option, ...]:
    options = tuple(
        Option(str(o["name"]), tuple(str(v) for v in o.get("values") or ()))
        for o in node.get("options") or ()
    )
    return () if options == (DEFAULT_OPTION,) else options


def _shopify_variant(node: Mapping[str, Any], option_names: Sequence[str]) -> Variant:
    selected = {str(s["name"]): str(s["value"]) for s in node.get("selectedOptions") or ()}
    weight = (((node.get("inventoryItem") or {}).get("measurement") or {}).get("weight")) or {}
    return Variant(
        sku=node.get("sku") or None,
        options=tuple(selected[name] for name in option_names if name in selected),
        price=money(node["price"]),
        compare_at_price=_optional_money(node.get("compareAtPrice")),
        weight=_weight(weight.get("value")),
        weight_unit=WeightUnit(weight.get("unit") or WeightUnit.KILOGRAMS),
        shopify_id=node.get("id"),
    )


def _image_url(node: Mapping[str, Any]) -> str | None:
    media = node.get("featuredMedia") or {}
    image = ((media.get("preview") or {}).get("image")) or {}
    url = image.get("url")
    return str(url) if url else None


def product_from_shopify(
    node: Mapping[str, Any], variants: Sequence[Mapping[str, Any]] | None = None
) -> Product:
    """The neutral product of a ``SyncProduct`` node; ``variants`` are all its variant nodes
    when they were paged separately (else the node's own ``variants.nodes``)."""
    options = _shopify_options(node)
    names = [o.name for o in options]
    variant_nodes = variants if variants is not None else (node.get("variants") or {}).get("nodes")
    return Product(
        title=str(node["title"]),
        status=ProductStatus(node.get("status") or ProductStatus.ACTIVE),
        description=str(node.get("descriptionHtml") or ""),
        vendor=str(node.get("vendor") or ""),
        product_type=str(node.get("productType") or ""),
        options=options,
        image=_image_url(node),
        variants=tuple(_shopify_variant(v, names) for v in variant_nodes or ()),
        shopify_id=node.get("id"),
        updated_at=_parse_time(node.get("updatedAt")),
    )


def _weight_input(variant: Variant) -> dict[str, Any] | None:
    if variant.weight is None:
        return None
    # WeightInput.value is a Float in the schema; the decimal text converts exactly enough.
    return {"weight": {"unit": variant.weight_unit.value, "value": float(variant.weight)}}


def _option_values(product: Product, variant: Variant) -> list[dict[str, str]]:
    if not product.options:
        return [{"optionName": DEFAULT_OPTION.name, "name": DEFAULT_OPTION.values[0]}]
    if len(variant.options) != len(product.options):
        raise UnmappableProduct(
            f"variant {variant.sku or variant.shopify_id!r} has {len(variant.options)} option"
            f" values for {len(product.options)} options of {product.title!r}"
        )
    return [
        {"optionName": o.name, "name": value}
        for o, value in zip(product.options, variant.options, strict=True)
    ]


def product_set_input(product: Product) -> dict[str, Any]:
    """``ProductSetInput`` for a create or a full replacement: variants and productOptions are
    always sent together (2024-07+), SKU and weight through ``inventoryItem``. Lists in it
    replace the product's lists wholesale, so partial changes never go through here."""
    options = product.options or (DEFAULT_OPTION,)
    variants = []
    for v in product.variants:
        item: dict[str, Any] = {"sku": v.sku or ""}
        measurement = _weight_input(v)
        if measurement is not None:
            item["measurement"] = measurement
        entry: dict[str, Any] = {
            "optionValues": _option_values(product, v),
            "price": money_text(v.price),
            "compareAtPrice": None
            if v.compare_at_price is None
            else money_text(v.compare_at_price),
            "inventoryItem": item,
        }
        if v.shopify_id:
            entry["id"] = v.shopify_id
        variants.append(entry)
    result: dict[str, Any] = {
        "title": product.title,
        "status": product.status.value,
        "descriptionHtml": product.description,
        "vendor": product.vendor,
        "productType": product.product_type,
        "productOptions": [
            {"name": o.name, "values": [{"name": value} for value in o.values]} for o in options
        ],
        "variants": variants,
    }
    if product.image:
        result["files"] = [{"originalSource": product.image, "contentType": "IMAGE"}]
    return result


def variant_bulk_input(variant: Variant, fields: frozenset[str]) -> dict[str, Any]:
    """``ProductVariantsBulkInput`` changing only ``fields`` (names of :class:`Variant`
    attributes: price, compare_at_price, sku, weight) of the variant ``variant.shopify_id``."""
    if not variant.shopify_id:
        raise UnmappableProduct(f"variant {variant.sku!r} has no Shopify id to update")
    entry: dict[str, Any] = {"id": variant.shopify_id}
    if "price" in fields:
        entry["price"] = money_text(variant.price)
    if "compare_at_price" in fields:
        cap = variant.compare_at_price
        entry["compareAtPrice"] = None if cap is None else money_text(cap)
    item: dict[str, Any] = {}
    if "sku" in fields:
        item["sku"] = variant.sku or ""
    if fields & {"weight", "weight_unit"}:
        item["measurement"] = _weight_input(variant) or {"weight": None}
    if item:
        entry["inventoryItem"] = item
    return entry


def shopify_node(product: Product) -> dict[str, Any]:
    """The ``SyncProduct`` node Shopify returns for ``product`` (the inverse of
    :func:`product_from_shopify`; builds sandbox fixtures and proves the round trip)."""
    options = product.options or (DEFAULT_OPTION,)
    names = [o.name for o in options]

    def variant(v: Variant) -> dict[str, Any]:
        values = v.options if product.options else DEFAULT_OPTION.values
        weight = (
            None if v.weight is None else {"unit": v.weight_unit.value, "value": float(v.weight)}
        )
        return {
            "id": v.shopify_id,
            "sku": v.sku or "",
            "price": money_text(v.price),
            "compareAtPrice": None
            if v.compare_at_price is None
            else money_text(v.compare_at_price),
            "selectedOptions": [
                {"name": n, "value": value} for n, value in zip(names, values, strict=False)
            ],
            "inventoryItem": {"measurement": {"weight": weight}},
        }

    return {
        "id": product.shopify_id,
        "title": product.title,
        "status": product.status.value,
        "descriptionHtml": product.description,
        "vendor": product.vendor,
        "productType": product.product_type,
        "updatedAt": None if product.updated_at is None else product.updated_at.isoformat(),
        "options": [{"name": o.name, "values": list(o.values)} for o in options],
        "featuredMedia": (
            {"preview": {"image": {"url": product.image}}} if product.image else None
        ),
        "variants": {"nodes": [variant(v) for v in product.variants]},
    }


# ---------------------------------------------------------------- eManageCRM


def formatted_money(amount: Decimal, currency: str) -> str:
    """eManageCRM's display text of an amount (``$49.99``); never parsed back."""
    symbol = _SYMBOLS.get(currency, f"{currency} ")
    return f"{symbol}{money_text(amount)}"


def _price_value(amount: Decimal, currency: str) -> dict[str, Any]:
    return {"Value": amount, "FormattedValue": formatted_money(amount, currency)}


def emanage_product(product: Product, *, currency: str) -> dict[str, Any]:
    """eManageCRM's product resource for ``product``. ``Value`` members are Decimals: the
    connector serializes them as JSON numbers without going through float."""
    status = "active" if product.status is ProductStatus.ACTIVE else "archived"

    def variant(v: Variant) -> dict[str, Any]:
        prices = {"DiscountedPrice": _price_value(v.price, currency)}
        if v.compare_at_price is not None:
            prices["FullRetailPrice"] = _price_value(v.compare_at_price, currency)
        return {
            "variantId": v.emanage_id,
            "sku": v.sku,
            "options": list(v.options),
            "weight": (
                None
                if v.weight is None
                else {"value": v.weight, "unit": _EMANAGE_UNITS[v.weight_unit]}
            ),
            "productPrices": prices,
            "externalRefs": {"shopifyVariantId": v.shopify_id},
        }

    return {
        "productId": product.emanage_id,
        "name": product.title,
        "status": status,
        "draft": product.status is ProductStatus.DRAFT,
        "description": product.description,
        "vendor": product.vendor,
        "productType": product.product_type,
        "options": [{"name": o.name, "values": list(o.values)} for o in product.options],
        "imageUrl": product.image,
        "currency": currency,
        "externalRefs": {"shopifyProductId": product.shopify_id},
        "updatedAt": None if product.updated_at is None else product.updated_at.isoformat(),
        "variants": [variant(v) for v in product.variants],
    }


def _emanage_status(body: Mapping[str, Any]) -> ProductStatus:
    status = body.get("status")
    if status == "active":
        return ProductStatus.ACTIVE
    if status == "archived":
        return ProductStatus.DRAFT if body.get("draft") else ProductStatus.ARCHIVED
    raise UnmappableProduct(f"eManageCRM product status {status!r} is not active or archived")


def _emanage_variant(body: Mapping[str, Any]) -> Variant:
    prices = body.get("productPrices") or {}
    full = prices.get("FullRetailPrice")
    weight = body.get("weight") or {}
    unit = weight.get("unit") or "kg"
    if unit not in _UNITS_FROM_EMANAGE:
        raise UnmappableProduct(f"eManageCRM weight unit {unit!r} is not one of g, kg, oz, lb")
    return Variant(
        sku=body.get("sku") or None,
        options=tuple(str(v) for v in body.get("options") or ()),
        price=money(prices["DiscountedPrice"]["Value"]),
        compare_at_price=None if full is None else money(full["Value"]),
        weight=_weight(weight.get("value")),
        weight_unit=_UNITS_FROM_EMANAGE[unit],
        shopify_id=(body.get("externalRefs") or {}).get("shopifyVariantId"),
        emanage_id=None if body.get("variantId") is None else str(body["variantId"]),
    )


def product_from_emanage(body: Mapping[str, Any]) -> Product:
    """The neutral product of an eManageCRM product resource."""
    return Product(
        title=str(body["name"]),
        status=_emanage_status(body),
        description=str(body.get("description") or ""),
        vendor=str(body.get("vendor") or ""),
        product_type=str(body.get("productType") or ""),
        options=tuple(
            Option(str(o["name"]), tuple(str(v) for v in o.get("values") or ()))
            for o in body.get("options") or ()
        ),
        image=body.get("imageUrl") or None,
        variants=tuple(_emanage_variant(v) for v in body.get("variants") or ()),
        shopify_id=(body.get("externalRefs") or {}).get("shopifyProductId"),
        emanage_id=None if body.get("productId") is None else str(body["productId"]),
        updated_at=_parse_time(body.get("updatedAt")),
    )
