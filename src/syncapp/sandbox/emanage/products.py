"""Products: eManageCRM's product catalogue, the resource the Sync App keeps in step with
Shopify (ADR 0015, docs/contracts/emanage.md "Products").

``/admin/v1/accounts/{accountId}/products``: keyset-paged reads ordered by
``(updatedAt, productId)`` with an inclusive ``updatedSince``, a full-replacement ``PUT``
guarded by ``If-Match: "<version>"`` (428 without, 412 with a stale one), ``POST …/archive``,
and ``Idempotency-Key`` on every write. A write that changes nothing keeps the version and
``updatedAt``. Every committed change records a notification (:func:`events.record_event`) in
the same transaction, and an optional ``X-Sync-Origin`` header is kept as the product's
``lastWriteOrigin`` so a subscriber can tell its own writes from the merchant's.

Money is exact: request bodies are parsed with :class:`~decimal.Decimal`, amounts are stored as
decimal text with the currency's places and answered as JSON numbers written from that text
(``19.90``), never through a float. The web UI (:mod:`ui`) edits products through
:func:`replace_product`, the same write path as the API (origin ``None``).
"""

from __future__ import annotations

import base64
import binascii
import json
import math
import re
import sqlite3
from dataclasses import dataclass, replace
from datetime import UTC, datetime
from decimal import Decimal
from typing import Any

import orjson
from starlette.requests import Request
from starlette.responses import Response
from starlette.routing import BaseRoute, Route

from syncapp.sandbox.emanage import events
from syncapp.sandbox.emanage.common import (
    Principal,
    account_access,
    api_error,
    authenticate,
    require_scope,
    validation_error,
)
from syncapp.sandbox.emanage.idempotency import (
    MAX_KEY_LENGTH,
    run_idempotent,
    store_answer,
    stored_answer,
    value_fingerprint,
)
from syncapp.sandbox.emanage.state import EmanageState, iso
from syncapp.sandbox.emanage.websales import CURRENCIES

# ISO 4217 minor units of the currencies a product may be priced in.
CURRENCY_DECIMALS: dict[str, int] = {"USD": 2, "CAD": 2, "AUD": 2, "EUR": 2, "GBP": 2, "JPY": 0}
STATUSES = ("active", "archived")
WEIGHT_UNITS = ("g", "kg", "oz", "lb")
PRICE_TYPES = ("DiscountedPrice", "FullRetailPrice")
MAX_PRICE = Decimal("1000000000")
MAX_VARIANTS = 100
MAX_OPTIONS = 3
DEFAULT_LIMIT = 100
MAX_LIMIT = 250
ORIGIN_RE = re.compile(r"^[A-Za-z0-9._:-]{1,64}$")
# Read-only members of the resource: accepted in a body (a client may send back what it read)
# and ignored, so a GET → edit → PUT round trip needs no pruning.
READ_ONLY = frozenset({"productId", "version", "updatedAt", "lastWriteOrigin"})
PRODUCT_FIELDS = frozenset(
    {
        "name",
        "status",
        "draft",
        "description",
        "vendor",
        "productType",
        "options",
        "imageUrl",
        "currency",
        "externalRefs",
        "variants",
    }
)
VARIANT_FIELDS = frozenset(
    {"variantId", "sku", "options", "weight", "productPrices", "externalRefs"}
)


# --------------------------------------------------------------------------- JSON with Decimals


def _default(value: object) -> object:
    if isinstance(value, Decimal):
        # The decimal text itself, as a JSON number: 19.90 stays 19.90 (no float in between).
        return orjson.Fragment(format(value, "f").encode())
    raise TypeError(f"{type(value).__name__} is not JSON serializable")


def dumps(value: Any) -> bytes:
    return orjson.dumps(value, default=_default)


class MoneyJSONResponse(Response):
    """A JSON answer whose Decimals are written as exact JSON numbers."""

    media_type = "application/json"

    def render(self, content: Any) -> bytes:
        return dumps(content)


def format_money(amount: Decimal, currency: str) -> str:
    """``FormattedValue``: display text, never read back."""
    sign = CURRENCIES.get(currency, (currency, currency + " "))[1]
    return f"{sign}{amount:,.{CURRENCY_DECIMALS.get(currency, 2)}f}"


# --------------------------------------------------------------------------- the resource


@dataclass(frozen=True)
class VariantData:
    variant_id: str | None
    sku: str | None
    options: tuple[str, ...]
    weight_value: Decimal | None
    weight_unit: str | None
    price: Decimal
    full_retail_price: Decimal | None
    shopify_variant_id: str | None


@dataclass(frozen=True)
class ProductData:
    """A product's content: what a write sets and what "unchanged" compares."""

    name: str
    status: str
    draft: bool
    description: str
    vendor: str
    product_type: str
    options: tuple[tuple[str, tuple[str, ...]], ...]
    image_url: str | None
    currency: str
    shopify_product_id: str | None
    variants: tuple[VariantData, ...]


def _price(amount: Decimal, currency: str) -> dict[str, Any]:
    places = CURRENCY_DECIMALS.get(currency, 2)
    value = amount.quantize(Decimal(1).scaleb(-places))
    return {"Value": value, "FormattedValue": format_money(value, currency)}


def _variant_json(v: VariantData, currency: str) -> dict[str, Any]:
    prices = {"DiscountedPrice": _price(v.price, currency)}
    if v.full_retail_price is not None:
        prices["FullRetailPrice"] = _price(v.full_retail_price, currency)
    return {
        "variantId": v.variant_id,
        "sku": v.sku,
        "options": list(v.options),
        "weight": None
        if v.weight_value is None
        else {"value": v.weight_value.normalize(), "unit": v.weight_unit},
        "productPrices": prices,
        "externalRefs": {"shopifyVariantId": v.shopify_variant_id},
    }


def _data_of(conn: sqlite3.Connection, row: sqlite3.Row) -> ProductData:
    variants = conn.execute(
        "SELECT * FROM product_variants WHERE product_id = ? ORDER BY position, id", (row["id"],)
    ).fetchall()
    return ProductData(
        name=row["name"],
        status=row["status"],
        draft=bool(row["draft"]),
        description=row["description"],
        vendor=row["vendor"],
        product_type=row["product_type"],
        options=tuple((o["name"], tuple(o["values"])) for o in json.loads(row["options"])),
        image_url=row["image_url"],
        currency=row["currency"],
        shopify_product_id=row["shopify_product_id"],
        variants=tuple(
            VariantData(
                variant_id=str(v["id"]),
                sku=v["sku"],
                options=tuple(json.loads(v["options"])),
                weight_value=None if v["weight_value"] is None else Decimal(v["weight_value"]),
                weight_unit=v["weight_unit"],
                price=Decimal(v["price"]),
                full_retail_price=None
                if v["full_retail_price"] is None
                else Decimal(v["full_retail_price"]),
                shopify_variant_id=v["shopify_variant_id"],
            )
            for v in variants
        ),
    )


def product_json(conn: sqlite3.Connection, row: sqlite3.Row) -> dict[str, Any]:
    """The product resource (Decimals in money and weights; answer it with ``dumps``)."""
    data = _data_of(conn, row)
    return {
        "productId": str(row["id"]),
        "version": row["version"],
        "name": data.name,
        "status": data.status,
        "draft": data.draft,
        "description": data.description,
        "vendor": data.vendor,
        "productType": data.product_type,
        "options": [{"name": n, "values": list(vs)} for n, vs in data.options],
        "imageUrl": data.image_url,
        "currency": data.currency,
        "externalRefs": {"shopifyProductId": data.shopify_product_id},
        "lastWriteOrigin": row["last_write_origin"],
        "updatedAt": iso(row["updated_at"]),
        "variants": [_variant_json(v, data.currency) for v in data.variants],
    }


def find_product(conn: sqlite3.Connection, account_id: str, product_id: str) -> sqlite3.Row | None:
    if not product_id.isdigit() or len(product_id) > 18:
        return None
    row: sqlite3.Row | None = conn.execute(
        "SELECT * FROM products WHERE id = ? AND account_id = ?", (int(product_id), account_id)
    ).fetchone()
    return row


# --------------------------------------------------------------------------- validation


class _Checker:
    """Reads a product body, collecting messages by field path (``variants[0].sku``)."""

    def __init__(self) -> None:
        self.errors: dict[str, list[str]] = {}

    def add(self, path: str, message: str) -> None:
        self.errors.setdefault(path, []).append(message)

    def unknown(self, body: dict[str, Any], allowed: frozenset[str], prefix: str) -> None:
        for name in sorted(set(body) - allowed):
            self.add(prefix + name, f"Unknown field '{name}'.")

    def text(
        self,
        body: dict[str, Any],
        name: str,
        path: str,
        *,
        required: bool = False,
        nullable: bool = True,
        max_length: int = 255,
    ) -> str | None:
        value = body.get(name)
        if value is None:
            if required or (name in body and not nullable):
                self.add(path, f"'{name}' is required.")
            return None
        if not isinstance(value, str):
            self.add(path, f"'{name}' must be a string.")
            return None
        if len(value) > max_length:
            self.add(path, f"'{name}' must be at most {max_length} characters.")
        return value

    def ref(self, body: dict[str, Any], name: str, prefix: str) -> str | None:
        """``externalRefs.<name>`` of ``body`` (the only member externalRefs has)."""
        refs = body.get("externalRefs") or {}
        if not isinstance(refs, dict):
            self.add(prefix + "externalRefs", "'externalRefs' must be an object.")
            return None
        self.unknown(refs, frozenset({name}), prefix + "externalRefs.")
        return self.text(refs, name, f"{prefix}externalRefs.{name}")

    def money(self, value: object, path: str, currency: str | None) -> Decimal | None:
        if isinstance(value, bool) or not isinstance(value, int | Decimal):
            self.add(path, "Give the amount as a JSON number.")
            return None
        amount = Decimal(value)
        if not amount.is_finite() or amount < 0 or amount >= MAX_PRICE:
            self.add(path, f"The amount must be at least 0 and below {MAX_PRICE}.")
            return None
        places = CURRENCY_DECIMALS.get(currency or "", 2)
        exponent = amount.normalize().as_tuple().exponent
        assert isinstance(exponent, int)
        if -exponent > places:
            self.add(path, f"{currency or 'The currency'} amounts have at most {places} decimals.")
            return None
        return amount


def _object(value: object) -> dict[str, Any] | None:
    return value if isinstance(value, dict) else None


def check_product(body: dict[str, Any]) -> ProductData | dict[str, list[str]]:
    """The product a body describes, or its field errors (paths as keys)."""
    c = _Checker()
    c.unknown(body, PRODUCT_FIELDS | READ_ONLY, "")
    name = c.text(body, "name", "name", required=True)
    if name is not None and not name.strip():
        c.add("name", "'name' must not be blank.")
    status = body.get("status")
    if status not in STATUSES:
        c.add("status", "'status' must be 'active' or 'archived'.")
    draft = body.get("draft", False)
    if not isinstance(draft, bool):
        c.add("draft", "'draft' must be true or false.")
        draft = False
    description = c.text(body, "description", "description", max_length=65535) or ""
    vendor = c.text(body, "vendor", "vendor") or ""
    product_type = c.text(body, "productType", "productType") or ""
    image_url = c.text(body, "imageUrl", "imageUrl", max_length=2048) or None
    if image_url is not None and not image_url.startswith(("http://", "https://")):
        c.add("imageUrl", "'imageUrl' must be an http(s) URL.")
    currency = body.get("currency")
    if not isinstance(currency, str) or currency not in CURRENCY_DECIMALS:
        c.add("currency", f"'currency' must be one of {', '.join(CURRENCY_DECIMALS)}.")
        currency = None
    shopify_product_id = c.ref(body, "shopifyProductId", "")

    options: list[tuple[str, tuple[str, ...]]] = []
    raw_options = body.get("options") or []
    if not isinstance(raw_options, list) or len(raw_options) > MAX_OPTIONS:
        c.add("options", f"'options' must be a list of at most {MAX_OPTIONS} options.")
        raw_options = []
    for i, raw in enumerate(raw_options):
        path = f"options[{i}]"
        option = _object(raw)
        if option is None:
            c.add(path, "An option is an object {name, values}.")
            continue
        c.unknown(option, frozenset({"name", "values"}), path + ".")
        option_name = c.text(option, "name", path + ".name", required=True)
        values = option.get("values")
        if (
            not isinstance(values, list)
            or not values
            or not all(isinstance(v, str) and 0 < len(v) <= 255 for v in values)
        ):
            c.add(path + ".values", "'values' must be a non-empty list of strings.")
            values = []
        elif len(set(values)) != len(values):
            c.add(path + ".values", "Option values must be unique.")
        if option_name is not None:
            options.append((option_name, tuple(values)))
    if len({n for n, _ in options}) != len(options):
        c.add("options", "Option names must be unique.")

    variants: list[VariantData] = []
    raw_variants = body.get("variants")
    if not isinstance(raw_variants, list) or not 1 <= len(raw_variants) <= MAX_VARIANTS:
        c.add("variants", f"'variants' must be a list of 1 to {MAX_VARIANTS} variants.")
        raw_variants = []
    seen_skus: dict[str, int] = {}
    seen_ids: set[str] = set()
    for i, raw in enumerate(raw_variants):
        path = f"variants[{i}]"
        v = _object(raw)
        if v is None:
            c.add(path, "A variant is an object.")
            continue
        c.unknown(v, VARIANT_FIELDS, path + ".")
        variant_id = c.text(v, "variantId", path + ".variantId", max_length=18)
        if variant_id is not None:
            if variant_id in seen_ids:
                c.add(path + ".variantId", "The variant is listed twice.")
            seen_ids.add(variant_id)
        sku = c.text(v, "sku", path + ".sku") or None
        if sku is not None:
            if sku in seen_skus:
                c.add(path + ".sku", f"SKU {sku!r} is also variants[{seen_skus[sku]}]'s.")
            seen_skus.setdefault(sku, i)
        values = v.get("options") or []
        if not isinstance(values, list) or not all(isinstance(x, str) for x in values):
            c.add(path + ".options", "'options' must be a list of option values.")
            values = []
        elif len(values) != len(options):
            c.add(path + ".options", f"Give one value for each of the {len(options)} options.")
        else:
            for (option_name, allowed), value in zip(options, values, strict=True):
                if allowed and value not in allowed:
                    c.add(path + ".options", f"{value!r} is not a value of {option_name!r}.")
        weight_value: Decimal | None = None
        weight_unit: str | None = None
        weight = v.get("weight")
        if weight is not None:
            w = _object(weight)
            if w is None:
                c.add(path + ".weight", "'weight' is an object {value, unit} or null.")
            else:
                c.unknown(w, frozenset({"value", "unit"}), path + ".weight.")
                raw_value = w.get("value")
                if (
                    isinstance(raw_value, bool)
                    or not isinstance(raw_value, int | Decimal)
                    or not Decimal(raw_value).is_finite()
                    or not 0 <= Decimal(raw_value) < MAX_PRICE
                ):
                    c.add(path + ".weight.value", "The weight is a number of at least 0.")
                else:
                    weight_value = Decimal(raw_value)
                weight_unit = w.get("unit")
                if weight_unit not in WEIGHT_UNITS:
                    c.add(
                        path + ".weight.unit", f"'unit' must be one of {', '.join(WEIGHT_UNITS)}."
                    )
        prices = _object(v.get("productPrices"))
        price: Decimal | None = None
        full: Decimal | None = None
        if prices is None:
            c.add(path + ".productPrices", "'productPrices' is required.")
        else:
            for key in sorted(set(prices) - set(PRICE_TYPES)):
                c.add(f"{path}.productPrices.{key}", f"Price type {key!r} is not set here.")
            for key in PRICE_TYPES:
                member = prices.get(key)
                member_path = f"{path}.productPrices.{key}"
                if member is None:
                    if key == "DiscountedPrice":
                        c.add(member_path, "'DiscountedPrice' (the selling price) is required.")
                    continue
                m = _object(member)
                if m is None or "Value" not in m:
                    c.add(member_path, "A price is an object {Value, FormattedValue}.")
                    continue
                c.unknown(m, frozenset({"Value", "FormattedValue"}), member_path + ".")
                amount = c.money(m["Value"], member_path + ".Value", currency)
                if key == "DiscountedPrice":
                    price = amount
                else:
                    full = amount
        shopify_variant_id = c.ref(v, "shopifyVariantId", path + ".")
        if price is not None:
            variants.append(
                VariantData(
                    variant_id=variant_id,
                    sku=sku,
                    options=tuple(values),
                    weight_value=weight_value,
                    weight_unit=weight_unit if weight_value is not None else None,
                    price=price,
                    full_retail_price=full,
                    shopify_variant_id=shopify_variant_id,
                )
            )
    if c.errors:
        return c.errors
    assert name is not None
    assert currency is not None
    return ProductData(
        name=name.strip(),
        status=str(status),
        draft=draft,
        description=description,
        vendor=vendor,
        product_type=product_type,
        options=tuple(options),
        image_url=image_url,
        currency=str(currency),
        shopify_product_id=shopify_product_id,
        variants=tuple(variants),
    )


# --------------------------------------------------------------------------- writes


def _amount_text(amount: Decimal | None, currency: str) -> str | None:
    if amount is None:
        return None
    places = CURRENCY_DECIMALS.get(currency, 2)
    return str(amount.quantize(Decimal(1).scaleb(-places)))


def _write_variants(conn: sqlite3.Connection, product_id: int, data: ProductData) -> None:
    kept = [int(v.variant_id) for v in data.variants if v.variant_id is not None]
    placeholders = ",".join("?" * len(kept))
    conn.execute(
        f"DELETE FROM product_variants WHERE product_id = ? AND id NOT IN ({placeholders})",  # noqa: S608 - placeholders only
        (product_id, *kept),
    )
    new_rows = []
    for position, v in enumerate(data.variants):
        values = (
            position,
            v.sku,
            json.dumps(list(v.options)),
            None if v.weight_value is None else format(v.weight_value.normalize(), "f"),
            v.weight_unit,
            _amount_text(v.price, data.currency),
            _amount_text(v.full_retail_price, data.currency),
            v.shopify_variant_id,
        )
        if v.variant_id is None:
            new_rows.append((*values, product_id))
        else:
            conn.execute(
                "UPDATE product_variants SET position = ?, sku = ?, options = ?, weight_value = ?,"
                " weight_unit = ?, price = ?, full_retail_price = ?, shopify_variant_id = ?"
                " WHERE id = ? AND product_id = ?",
                (*values, int(v.variant_id), product_id),
            )
    # New variants in one statement, in position order (their ids follow it).
    conn.executemany(
        "INSERT INTO product_variants (position, sku, options, weight_value, weight_unit,"
        " price, full_retail_price, shopify_variant_id, product_id)"
        " VALUES (?, ?, ?, ?, ?, ?, ?, ?, ?)",
        new_rows,
    )


def _product_columns(data: ProductData) -> tuple[Any, ...]:
    return (
        data.name,
        data.status,
        int(data.draft),
        data.description,
        data.vendor,
        data.product_type,
        json.dumps([{"name": n, "values": list(vs)} for n, vs in data.options]),
        data.image_url,
        data.currency,
        data.shopify_product_id,
    )


def _notify(conn: sqlite3.Connection, row: sqlite3.Row, event_type: str, now: float) -> None:
    events.record_event(
        conn,
        account_id=row["account_id"],
        event_type=event_type,
        data={
            "productId": str(row["id"]),
            "version": row["version"],
            "updatedAt": iso(row["updated_at"]),
            "origin": row["last_write_origin"],
            "externalRefs": {"shopifyProductId": row["shopify_product_id"]},
        },
        occurred_at=iso(now),
    )


def _reload(conn: sqlite3.Connection, product_id: int) -> sqlite3.Row:
    row: sqlite3.Row = conn.execute("SELECT * FROM products WHERE id = ?", (product_id,)).fetchone()
    return row


def create_product(
    conn: sqlite3.Connection,
    *,
    account_id: str,
    data: ProductData,
    origin: str | None,
    now: float,
) -> sqlite3.Row:
    """Insert a product (version 1) with new variants and record ``product.created``."""
    cursor = conn.execute(
        "INSERT INTO products (name, status, draft, description, vendor, product_type, options,"
        " image_url, currency, shopify_product_id, account_id, version, last_write_origin,"
        " created_at, updated_at) VALUES (?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?, 1, ?, ?, ?)",
        (*_product_columns(data), account_id, origin, now, now),
    )
    product_id = int(cursor.lastrowid or 0)
    new = replace(data, variants=tuple(replace(v, variant_id=None) for v in data.variants))
    _write_variants(conn, product_id, new)
    row = _reload(conn, product_id)
    _notify(conn, row, "product.created", now)
    return row


def unknown_variants(
    conn: sqlite3.Connection, row: sqlite3.Row, data: ProductData
) -> dict[str, list[str]]:
    """Field errors for variant ids that are not this product's variants."""
    own = {
        str(v["id"])
        for v in conn.execute("SELECT id FROM product_variants WHERE product_id = ?", (row["id"],))
    }
    return {
        f"variants[{i}].variantId": [f"{v.variant_id!r} is not a variant of this product."]
        for i, v in enumerate(data.variants)
        if v.variant_id is not None and v.variant_id not in own
    }


def replace_product(
    conn: sqlite3.Connection,
    *,
    row: sqlite3.Row,
    data: ProductData,
    origin: str | None,
    now: float,
) -> tuple[sqlite3.Row, bool]:
    """Replace the product's content (variant ids already checked with
    :func:`unknown_variants`); returns the row and whether anything changed. A change bumps
    the version and ``updatedAt``, keeps ``origin`` and records ``product.updated`` (or
    ``product.archived`` when it moved the product to archived); no change, no event."""
    current = _data_of(conn, row)
    if current == data:
        return row, False
    conn.execute(
        "UPDATE products SET name = ?, status = ?, draft = ?, description = ?, vendor = ?,"
        " product_type = ?, options = ?, image_url = ?, currency = ?, shopify_product_id = ?,"
        " version = version + 1, last_write_origin = ?, updated_at = ? WHERE id = ?",
        (*_product_columns(data), origin, now, row["id"]),
    )
    _write_variants(conn, row["id"], data)
    new_row = _reload(conn, row["id"])
    archived = current.status != "archived" and data.status == "archived"
    _notify(conn, new_row, "product.archived" if archived else "product.updated", now)
    return new_row, True


def archive_product(
    conn: sqlite3.Connection, *, row: sqlite3.Row, origin: str | None, now: float
) -> tuple[sqlite3.Row, bool]:
    """Set the status to archived (a no-op when it is already)."""
    data = _data_of(conn, row)
    return replace_product(
        conn, row=row, data=replace(data, status="archived"), origin=origin, now=now
    )


# --------------------------------------------------------------------------- batches

MAX_BATCH = 250
BATCH_ITEM_FIELDS = frozenset({"key", "product", "match", "productId", "ifMatch"})


@dataclass(frozen=True)
class BatchItem:
    """One item of ``POST …/products:batch``: a create (``match``: look for the product first)
    or, with ``product_id`` and ``if_match``, a replacement. ``plain`` is the item's product as
    ``json.loads`` reads it (floats), for its fingerprint."""

    key: str
    product: dict[str, Any]
    plain: Any
    match: bool
    product_id: str | None
    if_match: int | None


def check_batch(body: dict[str, Any], plain: Any) -> list[BatchItem] | dict[str, list[str]]:
    """The items of a batch body, or the field errors of its shape (an item's product is
    checked later, on its own: a bad product fails its item, not the batch)."""
    c = _Checker()
    c.unknown(body, frozenset({"items"}), "")
    raw_items = body.get("items")
    plain_items = plain.get("items") if isinstance(plain, dict) else None
    if (
        not isinstance(raw_items, list)
        or not isinstance(plain_items, list)
        or not 1 <= len(raw_items) <= MAX_BATCH
    ):
        c.add("items", f"'items' must be a list of 1 to {MAX_BATCH} items.")
        return c.errors
    items: list[BatchItem] = []
    for i, (raw, plain_item) in enumerate(zip(raw_items, plain_items, strict=True)):
        path = f"items[{i}]"
        item = _object(raw)
        if item is None or not isinstance(plain_item, dict):
            c.add(path, "An item is an object {key, product, match?, productId?, ifMatch?}.")
            continue
        c.unknown(item, BATCH_ITEM_FIELDS, path + ".")
        key = item.get("key")
        if not isinstance(key, str) or not key.strip() or len(key) > MAX_KEY_LENGTH:
            c.add(path + ".key", f"'key' is the item's Idempotency-Key (1 to {MAX_KEY_LENGTH}).")
            key = ""
        product = _object(item.get("product"))
        if product is None:
            c.add(path + ".product", "'product' is a product object, as POST takes it.")
        match = item.get("match", False)
        if not isinstance(match, bool):
            c.add(path + ".match", "'match' must be true or false.")
        product_id = item.get("productId")
        if_match = item.get("ifMatch")
        if product_id is not None:
            if not isinstance(product_id, str) or not product_id:
                c.add(path + ".productId", "'productId' must be a product id.")
            if isinstance(if_match, bool) or not isinstance(if_match, int) or if_match < 1:
                c.add(path + ".ifMatch", "A replacement needs 'ifMatch': the version you read.")
            if match is True:
                c.add(path + ".match", "'match' is for creates (no 'productId').")
        elif if_match is not None:
            c.add(path + ".ifMatch", "'ifMatch' goes with 'productId'.")
        if product is not None and isinstance(match, bool):
            items.append(
                BatchItem(
                    key=key,
                    product=product,
                    plain=plain_item.get("product"),
                    match=match,
                    product_id=product_id if isinstance(product_id, str) else None,
                    if_match=if_match if isinstance(if_match, int) else None,
                )
            )
    return c.errors or items


def match_existing(
    conn: sqlite3.Connection, account_id: str, data: ProductData, claimed: set[int]
) -> tuple[sqlite3.Row, str] | tuple[str, str] | None:
    """The existing product a create stands for, and how it was found: the one whose external
    reference is the item's; else, by SKU, the one product that has any of the item's SKUs and
    no other Shopify reference. Never a guess: SKUs found in several such products are a
    conflict (``ambiguous_match``), as is a reference an earlier item of the batch took
    (``already_matched``); a product an earlier item created or matched is no SKU candidate.
    Returns ``(row, "externalRef" | "sku")``, ``(code, message)`` for a conflict, or None."""
    if data.shopify_product_id is not None:
        # The planner prefers the (account, updatedAt) index for the ORDER BY and then scans
        # the account: name the index that finds the few rows.
        row: sqlite3.Row | None = conn.execute(
            "SELECT * FROM products INDEXED BY products_by_shopify_id"
            " WHERE account_id = ? AND shopify_product_id = ? ORDER BY updated_at, id LIMIT 1",
            (account_id, data.shopify_product_id),
        ).fetchone()
        if row is not None:
            if row["id"] in claimed:
                return (
                    "already_matched",
                    f"Product {row['id']} is already an earlier item's of this batch.",
                )
            return row, "externalRef"
    skus = sorted({v.sku for v in data.variants if v.sku is not None})
    if not skus:
        return None
    marks = ",".join("?" * len(skus))
    candidates = [
        r
        for r in conn.execute(
            f"SELECT * FROM products WHERE +account_id = ? AND id IN (SELECT product_id FROM"  # noqa: S608 - placeholders only
            f" product_variants WHERE sku IN ({marks})) ORDER BY updated_at, id",
            (account_id, *skus),
        )
        if not (r["shopify_product_id"] and r["shopify_product_id"] != data.shopify_product_id)
        and r["id"] not in claimed
    ]
    if not candidates:
        return None
    if len(candidates) > 1:
        ids = ", ".join(str(r["id"]) for r in candidates[:10])
        return (
            "ambiguous_match",
            f"The product's SKUs are in several products ({ids}): none is matched.",
        )
    return candidates[0], "sku"


def _item_error(key: str, status: str, code: str, message: str, **extra: Any) -> dict[str, Any]:
    error = {"code": code, "message": message, **{k: v for k, v in extra.items() if v}}
    return {
        "key": key,
        "status": status,
        "replayed": False,
        "matchedBy": None,
        "product": None,
        "error": error,
    }


def _item_answer(
    key: str, status: str, product: Any, *, replayed: bool = False, matched_by: str | None = None
) -> dict[str, Any]:
    return {
        "key": key,
        "status": status,
        "replayed": replayed,
        "matchedBy": matched_by,
        "product": product,
        "error": None,
    }


def run_batch(
    conn: sqlite3.Connection,
    *,
    account_id: str,
    client_id: str,
    items: list[BatchItem],
    origin: str | None,
    now: float,
) -> list[dict[str, Any]]:
    """Every item in order, each on its own: a refused item changes nothing and does not stop
    the others. An item that writes stores its answer under its key exactly as the single
    request it stands for (``POST …/products`` for a create, ``PUT …/products/{id}`` for a
    replacement), so a replayed item — in this batch, a later one, or sent alone — gets the
    stored answer and changes nothing; a matched item writes nothing and stores nothing."""
    base = f"/admin/v1/accounts/{account_id}/products"
    claimed: set[int] = set()
    out: list[dict[str, Any]] = []
    for item in items:
        path = base if item.product_id is None else f"{base}/{item.product_id}"
        method = "POST" if item.product_id is None else "PUT"
        print_ = value_fingerprint(method, path, item.plain)
        stored = stored_answer(conn, client_id, item.key)
        if stored is not None:
            if stored["fingerprint"] != print_:
                out.append(
                    _item_error(
                        item.key,
                        "conflict",
                        "idempotency_key_reused",
                        "This key was used for a different request; use a new key.",
                    )
                )
                continue
            answer = json.loads(stored["body"], parse_float=Decimal)
            if stored["status"] >= 300:
                out.append({**_item_error(item.key, "conflict", "", ""), "error": answer})
                out[-1]["replayed"] = True
                continue
            status = "created" if stored["status"] == 201 else "updated"
            out.append(_item_answer(item.key, status, answer, replayed=True))
            continue
        checked = check_product(item.product)
        if isinstance(checked, dict):
            fields = ", ".join(sorted(checked))
            out.append(
                _item_error(
                    item.key,
                    "error",
                    "validation_failed",
                    f"The product is invalid: check {fields}.",
                    modelState=checked,
                )
            )
            continue
        if item.product_id is None:
            out.append(
                _batch_create(
                    conn, item, checked, account_id, client_id, claimed, now, origin, print_
                )
            )
            continue
        out.append(_batch_replace(conn, item, checked, account_id, client_id, now, origin, print_))
    return out


def _batch_create(
    conn: sqlite3.Connection,
    item: BatchItem,
    data: ProductData,
    account_id: str,
    client_id: str,
    claimed: set[int],
    now: float,
    origin: str | None,
    print_: str,
) -> dict[str, Any]:
    if any(v.variant_id is not None for v in data.variants):
        return _item_error(
            item.key,
            "error",
            "validation_failed",
            "A new product's variants have no ids yet.",
            modelState={
                f"variants[{i}].variantId": ["A new product's variants have no ids yet."]
                for i, v in enumerate(data.variants)
                if v.variant_id is not None
            },
        )
    if item.match:
        found = match_existing(conn, account_id, data, claimed)
        if found is not None:
            row, how = found
            if isinstance(row, str):
                return _item_error(item.key, "conflict", row, how)
            claimed.add(row["id"])
            return _item_answer(item.key, "matched", product_json(conn, row), matched_by=how)
    row = create_product(conn, account_id=account_id, data=data, origin=origin, now=now)
    claimed.add(row["id"])
    answer = product_json(conn, row)
    store_answer(
        conn,
        client_id=client_id,
        key=item.key,
        fingerprint=print_,
        status=201,
        body=dumps(answer).decode(),
        headers={
            "location": f"/admin/v1/accounts/{account_id}/products/{row['id']}",
            "etag": _etag(row["version"]),
        },
        now=now,
    )
    return _item_answer(item.key, "created", answer)


def _batch_replace(
    conn: sqlite3.Connection,
    item: BatchItem,
    data: ProductData,
    account_id: str,
    client_id: str,
    now: float,
    origin: str | None,
    print_: str,
) -> dict[str, Any]:
    assert item.product_id is not None
    row = find_product(conn, account_id, item.product_id)
    if row is None:
        return _item_error(
            item.key,
            "error",
            "product_not_found",
            f"This account has no product {item.product_id}.",
        )
    if row["version"] != item.if_match:
        return _item_error(
            item.key,
            "conflict",
            "version_conflict",
            f"The product is at version {row['version']}, not {item.if_match}: read it again"
            " and apply your change to that version.",
            currentVersion=row["version"],
        )
    if errors := unknown_variants(conn, row, data):
        return _item_error(
            item.key,
            "error",
            "validation_failed",
            f"The request is invalid: check {', '.join(sorted(errors))}.",
            modelState=errors,
        )
    row, changed = replace_product(conn, row=row, data=data, origin=origin, now=now)
    answer = product_json(conn, row)
    store_answer(
        conn,
        client_id=client_id,
        key=item.key,
        fingerprint=print_,
        status=200,
        body=dumps(answer).decode(),
        headers={"etag": _etag(row["version"])},
        now=now,
    )
    return _item_answer(item.key, "updated" if changed else "unchanged", answer)


# --------------------------------------------------------------------------- paging


def encode_cursor(updated_at: float, product_id: int) -> str:
    raw = json.dumps([repr(updated_at), product_id], separators=(",", ":")).encode()
    return base64.urlsafe_b64encode(raw).rstrip(b"=").decode()


def decode_cursor(value: str) -> tuple[float, int] | None:
    try:
        raw = base64.urlsafe_b64decode(value + "=" * (-len(value) % 4))
        updated, product_id = json.loads(raw)
        return float(updated), int(product_id)
    except (ValueError, TypeError, binascii.Error):
        return None


def parse_since(value: str) -> float | None:
    """An ISO 8601 date-time as epoch seconds (naive means UTC); None if it is not one."""
    text = value.strip()
    if text[-1:] in ("z", "Z"):
        text = text[:-1] + "+00:00"
    try:
        when = datetime.fromisoformat(text)
    except ValueError:
        return None
    if when.tzinfo is None:
        when = when.replace(tzinfo=UTC)
    return when.timestamp()


def list_products(
    conn: sqlite3.Connection,
    *,
    account_id: str,
    since: float | None,
    after: tuple[float, int] | None,
    limit: int,
    shopify_product_id: str | None,
    sku: str | None,
) -> tuple[list[dict[str, Any]], str | None]:
    """One page in (updatedAt, productId) order, and the cursor of the next one."""
    # With a filter, the few rows it finds are sorted; without, the (account, updatedAt)
    # index gives the order (the planner would take it and scan the account either way).
    by_sku_only = sku is not None and shopify_product_id is None
    where = ["+account_id = ?" if by_sku_only else "account_id = ?"]
    args: list[Any] = [account_id]
    if since is not None:
        # updatedAt is shown to the second: a product changed at 10:00:00.7 shows 10:00:00
        # and must be in updatedSince=10:00:00, so the bound is the second, inclusive.
        where.append("updated_at >= ?")
        args.append(float(math.floor(since)))
    if after is not None:
        where.append("(updated_at > ? OR (updated_at = ? AND id > ?))")
        args.extend([after[0], after[0], after[1]])
    if shopify_product_id is not None:
        where.append("shopify_product_id = ?")
        args.append(shopify_product_id)
    if sku is not None:
        # Through the SKU index (an EXISTS per product would scan the account's products).
        where.append("id IN (SELECT product_id FROM product_variants WHERE sku = ?)")
        args.append(sku)
    index = " INDEXED BY products_by_shopify_id" if shopify_product_id is not None else ""
    rows = conn.execute(
        f"SELECT * FROM products{index} WHERE {' AND '.join(where)}"  # noqa: S608 - fixed clauses
        " ORDER BY updated_at, id LIMIT ?",
        (*args, limit + 1),
    ).fetchall()
    page = rows[:limit]
    next_cursor = (
        encode_cursor(page[-1]["updated_at"], page[-1]["id"]) if len(rows) > limit else None
    )
    return [product_json(conn, r) for r in page], next_cursor


# --------------------------------------------------------------------------- routes


def _etag(version: int) -> str:
    return f'"{version}"'


def _answer(conn: sqlite3.Connection, row: sqlite3.Row, status: int = 200) -> Response:
    headers = {"ETag": _etag(row["version"])}
    if status == 201:
        headers["Location"] = f"/admin/v1/accounts/{row['account_id']}/products/{row['id']}"
    return MoneyJSONResponse(product_json(conn, row), status_code=status, headers=headers)


def parse_if_match(value: str) -> int | None:
    """The version an ``If-Match`` names (``"3"``, ``W/"3"`` or ``3``), or None."""
    text = value.strip()
    if text.startswith("W/"):
        text = text[2:]
    text = text.strip('"')
    return int(text) if text.isdigit() and len(text) < 12 else None


def not_found(product_id: str) -> Response:
    return api_error(404, "product_not_found", f"This account has no product {product_id}.")


async def read_decimal_json(request: Request) -> dict[str, Any] | Response:
    """The body as a JSON object with numbers parsed exactly (Decimal; ints stay ints)."""
    raw = await request.body()
    try:
        body = json.loads(raw, parse_float=Decimal)
    except ValueError:
        return api_error(400, "invalid_request", "The body is not valid JSON.")
    if not isinstance(body, dict):
        return api_error(400, "invalid_request", "The body must be a JSON object.")
    return body


def routes(state: EmanageState) -> list[BaseRoute]:
    """``/admin/v1/accounts/{accountId}/products`` and its items."""

    def caller(request: Request, scope: str) -> Principal | Response:
        principal = authenticate(state, request)
        if isinstance(principal, Response):
            return principal
        if (refused := require_scope(principal, scope)) is not None:
            return refused
        return principal

    def origin_of(request: Request) -> str | Response | None:
        origin = request.headers.get("x-sync-origin")
        if origin is None or not origin.strip():
            return None
        if not ORIGIN_RE.match(origin.strip()):
            return api_error(
                400, "invalid_request", "'X-Sync-Origin' is 1 to 64 letters, digits or . _ : -"
            )
        return origin.strip()

    def account_id_of(request: Request) -> str:
        return str(request.path_params["account_id"])

    async def list_route(request: Request) -> Response:
        principal = caller(request, "products:read")
        if isinstance(principal, Response):
            return principal
        query = request.query_params
        since = after = None
        if (raw_since := query.get("updatedSince")) is not None:
            since = parse_since(raw_since)
            if since is None:
                return api_error(
                    400, "invalid_request", "'updatedSince' must be an ISO 8601 date-time."
                )
        if (raw_after := query.get("after")) is not None:
            after = decode_cursor(raw_after)
            if after is None:
                return api_error(400, "invalid_request", "'after' is not a cursor of this list.")
        raw_limit = query.get("limit", str(DEFAULT_LIMIT))
        if not raw_limit.isdigit() or not 1 <= int(raw_limit) <= MAX_LIMIT:
            return api_error(400, "invalid_request", f"'limit' must be 1 to {MAX_LIMIT}.")
        with state.db.transaction() as conn:
            account = account_access(conn, principal, account_id_of(request), data=True)
            if isinstance(account, Response):
                return account
            items, next_cursor = list_products(
                conn,
                account_id=account["id"],
                since=since,
                after=after,
                limit=int(raw_limit),
                shopify_product_id=query.get("shopifyProductId"),
                sku=query.get("sku"),
            )
        return MoneyJSONResponse({"items": items, "next": next_cursor})

    async def get_route(request: Request) -> Response:
        principal = caller(request, "products:read")
        if isinstance(principal, Response):
            return principal
        product_id = str(request.path_params["product_id"])
        with state.db.transaction() as conn:
            account = account_access(conn, principal, account_id_of(request), data=True)
            if isinstance(account, Response):
                return account
            row = find_product(conn, account["id"], product_id)
            if row is None:
                return not_found(product_id)
            return _answer(conn, row)

    async def create_route(request: Request) -> Response:
        principal = caller(request, "products:write")
        if isinstance(principal, Response):
            return principal
        origin = origin_of(request)
        if isinstance(origin, Response):
            return origin
        body = await read_decimal_json(request)
        if isinstance(body, Response):
            return body
        checked = check_product(body)

        def write(conn: sqlite3.Connection) -> Response:
            account = account_access(conn, principal, account_id_of(request), data=True)
            if isinstance(account, Response):
                return account
            if isinstance(checked, dict):
                return validation_error(checked)
            if any(v.variant_id is not None for v in checked.variants):
                return validation_error(
                    {
                        f"variants[{i}].variantId": ["A new product's variants have no ids yet."]
                        for i, v in enumerate(checked.variants)
                        if v.variant_id is not None
                    }
                )
            row = create_product(
                conn, account_id=account["id"], data=checked, origin=origin, now=state.clock.now()
            )
            return _answer(conn, row, 201)

        return await run_idempotent(state, request, principal, write)

    async def batch_route(request: Request) -> Response:
        principal = caller(request, "products:write")
        if isinstance(principal, Response):
            return principal
        origin = origin_of(request)
        if isinstance(origin, Response):
            return origin
        body = await read_decimal_json(request)
        if isinstance(body, Response):
            return body
        raw = await request.body()
        try:
            plain = orjson.loads(raw)  # as json.loads reads it (floats), only faster
        except orjson.JSONDecodeError:
            plain = json.loads(raw)  # NaN, Infinity: the product checks refuse them
        checked = check_batch(body, plain)

        def write(conn: sqlite3.Connection) -> Response:
            account = account_access(conn, principal, account_id_of(request), data=True)
            if isinstance(account, Response):
                return account
            if isinstance(checked, dict):
                return validation_error(checked)
            results = run_batch(
                conn,
                account_id=account["id"],
                client_id=principal.client_id,
                items=checked,
                origin=origin,
                now=state.clock.now(),
            )
            return MoneyJSONResponse({"items": results})

        return await run_idempotent(state, request, principal, write)

    async def guarded_write(request: Request, change: str) -> Response:
        principal = caller(request, "products:write")
        if isinstance(principal, Response):
            return principal
        origin = origin_of(request)
        if isinstance(origin, Response):
            return origin
        if_match = request.headers.get("if-match")
        if if_match is None or not if_match.strip():
            return api_error(
                428,
                "precondition_required",
                "Send 'If-Match: \"<version>\"' with the version you read (the ETag).",
            )
        expected = parse_if_match(if_match)
        if expected is None:
            return api_error(
                400, "invalid_request", "'If-Match' must be a version ETag like \"3\"."
            )
        checked: ProductData | dict[str, list[str]] | None = None
        if change == "replace":
            body = await read_decimal_json(request)
            if isinstance(body, Response):
                return body
            checked = check_product(body)
        product_id = str(request.path_params["product_id"])

        def write(conn: sqlite3.Connection) -> Response:
            account = account_access(conn, principal, account_id_of(request), data=True)
            if isinstance(account, Response):
                return account
            row = find_product(conn, account["id"], product_id)
            if row is None:
                return not_found(product_id)
            if isinstance(checked, dict):
                return validation_error(checked)
            if row["version"] != expected:
                return api_error(
                    412,
                    "version_conflict",
                    f"The product is at version {row['version']}, not {expected}: read it again"
                    " and apply your change to that version.",
                    currentVersion=row["version"],
                )
            now = state.clock.now()
            if checked is None:
                row, _ = archive_product(conn, row=row, origin=origin, now=now)
                return _answer(conn, row)
            if errors := unknown_variants(conn, row, checked):
                return validation_error(errors)
            row, _ = replace_product(conn, row=row, data=checked, origin=origin, now=now)
            return _answer(conn, row)

        return await run_idempotent(state, request, principal, write)

    async def replace_route(request: Request) -> Response:
        return await guarded_write(request, "replace")

    async def archive_route(request: Request) -> Response:
        return await guarded_write(request, "archive")

    async def collection(request: Request) -> Response:
        return await (list_route if request.method == "GET" else create_route)(request)

    async def item(request: Request) -> Response:
        return await (get_route if request.method == "GET" else replace_route)(request)

    # One route per path, so a 405 lists every method of the resource in Allow.
    base = "/admin/v1/accounts/{account_id}/products"
    return [
        Route(base, collection, methods=["GET", "POST"]),
        Route(base + ":batch", batch_route, methods=["POST"]),
        Route(base + "/{product_id}", item, methods=["GET", "PUT"]),
        Route(base + "/{product_id}/archive", archive_route, methods=["POST"]),
    ]
