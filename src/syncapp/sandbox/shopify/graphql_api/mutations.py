"""Product mutations: productSet, productCreate, productUpdate, productDelete, the variant
bulk mutations (update, create, delete), productOptionsCreate and metafieldsSet, with Shopify's
userErrors for bad input and the webhooks each change fires.

Every mutation validates first and writes only when the input is valid, inside a SAVEPOINT
of the request's transaction, recording its webhook in that same transaction. Input fields
the sandbox does not model raise ``NotImplementedInSandbox`` rather than being ignored.

productSet follows Shopify's declarative semantics: ``productOptions`` and ``variants``, when
given, are the complete new sets; a variant input without ``id`` is a new variant, and
existing variants left out are deleted.
"""

from __future__ import annotations

import json
import sqlite3
from collections.abc import Callable, Iterator, Sequence
from contextlib import contextmanager
from dataclasses import dataclass, field
from decimal import Decimal, InvalidOperation
from typing import Any

from syncapp.sandbox.shopify.db import utcnow_iso
from syncapp.sandbox.shopify.events import record_webhook
from syncapp.sandbox.shopify.graphql_api import payloads, store
from syncapp.sandbox.shopify.graphql_api.context import Context
from syncapp.sandbox.shopify.graphql_api.errors import NotImplementedInSandbox
from syncapp.sandbox.shopify.graphql_api.ids import legacy_id
from syncapp.sandbox.shopify.graphql_api.resolvers import app_namespace, load_product, load_variant

MAX_OPTIONS = 3
MAX_VARIANTS = 2048

# ---- plumbing ------------------------------------------------------------------------------


@dataclass
class Errors:
    """userErrors being collected, typed as the payload's error type."""

    typename: str
    items: list[dict[str, Any]] = field(default_factory=list)

    def add(self, path: Sequence[str | int], message: str, code: str | None = None) -> None:
        entry: dict[str, Any] = {
            "__typename": self.typename,
            "field": [str(p) for p in path] or None,
            "message": message,
        }
        if self.typename != "UserError":
            entry["code"] = code
        self.items.append(entry)

    def __bool__(self) -> bool:
        return bool(self.items)


@contextmanager
def savepoint(conn: sqlite3.Connection) -> Iterator[None]:
    """Undo a mutation's partial writes if it fails half-way, keeping the outer transaction."""
    conn.execute("SAVEPOINT mutation")
    try:
        yield
    except BaseException:
        conn.execute("ROLLBACK TO mutation")
        conn.execute("RELEASE mutation")
        raise
    conn.execute("RELEASE mutation")


def reject_unsupported(values: dict[str, Any] | None, supported: set[str], type_name: str) -> None:
    # false and empty values ask for what the sandbox's products already are (no gift cards,
    # no selling plans, no collections), so only a real request for the feature is refused.
    for key, value in (values or {}).items():
        if key not in supported and value not in (None, False, [], ""):
            raise NotImplementedInSandbox(f"Input field '{type_name}.{key}'")


def parse_money(raw: Any) -> Decimal | None:
    """A Money input as Decimal; None when it is not a number."""
    try:
        value = Decimal(str(raw))
    except InvalidOperation:
        return None
    return value if value.is_finite() else None


# ISO 4217 minor units of the currencies that do not have two (every other currency has two).
_MINOR_UNITS = {
    **dict.fromkeys(
        (
            "BIF",
            "CLP",
            "DJF",
            "GNF",
            "ISK",
            "JPY",
            "KMF",
            "KRW",
            "PYG",
            "RWF",
            "UGX",
            "VND",
            "VUV",
            "XAF",
            "XOF",
            "XPF",
        ),
        0,
    ),
    **dict.fromkeys(("BHD", "IQD", "JOD", "KWD", "LYD", "OMR", "TND"), 3),
}


def minor_units(currency: str) -> int:
    return _MINOR_UNITS.get(currency, 2)


def check_money_precision(amount: Decimal, raw: Any, currency: str, field_name: str) -> None:
    """Refuse a price finer than the currency's smallest unit, loudly.

    What Shopify does with ``"19.999"`` for a USD price (round, truncate or refuse) is not in
    its documentation (the Money scalar only says "a monetary value string"), so the sandbox
    neither rounds nor truncates it: an engine relying on either would be fooled.
    """
    exponent = amount.normalize().as_tuple().exponent
    if isinstance(exponent, int) and -exponent > minor_units(currency):
        raise NotImplementedInSandbox(
            f"A price finer than {currency} allows ({field_name} {str(raw)!r}, more than"
            f" {minor_units(currency)} decimal places; Shopify documents no rounding rule)"
        )


def money_str(value: Decimal, currency: str = "USD") -> str:
    places = max(2, minor_units(currency))
    return str(value.quantize(Decimal(1).scaleb(-places)))


def fire_product(ctx: Context, topic: str, product_id: int) -> None:
    """Record ``topic`` for the product; a create is followed at once by an update, as
    Shopify sends them (statamic-rad-pack/shopify#239; pitfalls §3)."""
    payload = payloads.product_payload(ctx.conn, product_id)
    record_webhook(ctx.conn, shop_domain=ctx.shop.domain, topic=topic, payload=payload)
    if topic == "products/create" and ctx.state.config.update_after_create:
        record_webhook(
            ctx.conn, shop_domain=ctx.shop.domain, topic="products/update", payload=payload
        )


# ---- product fields ------------------------------------------------------------------------

_PRODUCT_INPUT_KEYS = {
    "title",
    "handle",
    "descriptionHtml",
    "vendor",
    "productType",
    "status",
    "tags",
    "templateSuffix",
    "metafields",
    "redirectNewHandle",
    "id",
}


def product_columns(
    ctx: Context,
    values: dict[str, Any],
    errors: Errors,
    prefix: Sequence[str],
    *,
    existing: dict[str, Any] | None,
) -> dict[str, Any]:
    """Validated column values for the product fields present in ``values``."""
    columns: dict[str, Any] = {}
    if "title" in values:
        title = (values["title"] or "").strip()
        if not title:
            errors.add([*prefix, "title"], "Title can't be blank", "INVALID_INPUT")
        elif len(title) > 255:
            errors.add(
                [*prefix, "title"], "Title is too long (maximum is 255 characters)", "INVALID_INPUT"
            )
        columns["title"] = title
    elif existing is None:
        errors.add([*prefix, "title"], "Title can't be blank", "INVALID_INPUT")
    exclude = existing["id"] if existing else None
    if values.get("handle"):
        handle = store.handleize(values["handle"])
        if store.handle_taken(ctx.conn, ctx.shop.domain, handle, exclude_id=exclude):
            errors.add(
                [*prefix, "handle"],
                f"Handle '{handle}' already in use. Please provide a new handle.",
                "HANDLE_NOT_UNIQUE",
            )
        columns["handle"] = handle
    elif existing is None and columns.get("title"):
        columns["handle"] = store.unique_handle(
            ctx.conn, ctx.shop.domain, store.handleize(columns["title"])
        )
    for key, column in (
        ("descriptionHtml", "description_html"),
        ("vendor", "vendor"),
        ("productType", "product_type"),
    ):
        if key in values:
            columns[column] = values[key] or ""
    if "templateSuffix" in values:
        columns["template_suffix"] = values["templateSuffix"]
    if values.get("status") is not None:
        if values["status"] == "UNLISTED":
            raise NotImplementedInSandbox("ProductStatus.UNLISTED")
        columns["status"] = values["status"]
        if values["status"] == "ACTIVE" and (existing is None or existing["published_at"] is None):
            columns["published_at"] = utcnow_iso()
    if "tags" in values:
        columns["tags"] = json.dumps(store.normalize_tags(values["tags"] or []))
    return columns


def validate_metafields(
    ctx: Context, inputs: Sequence[dict[str, Any]] | None, errors: Errors, prefix: Sequence[str]
) -> list[tuple[str, str, str, str]]:
    """(namespace, key, type, value) of each metafield input, checked as Shopify checks them."""
    result = []
    for index, mf in enumerate(inputs or []):
        reject_unsupported(mf, {"namespace", "key", "type", "value"}, "MetafieldInput")
        path = [*prefix, "metafields", str(index)]
        key = (mf.get("key") or "").strip()
        if not key:
            errors.add([*path, "key"], "Key can't be blank", "INVALID_METAFIELD")
            continue
        if not mf.get("type"):
            errors.add([*path, "type"], "Type can't be blank", "INVALID_METAFIELD")
            continue
        if mf.get("value") is None:
            errors.add([*path, "value"], "Value can't be blank", "INVALID_METAFIELD")
            continue
        if not 2 <= len(key) <= 64:
            errors.add(
                [*path, "key"],
                "Key is too short (minimum is 2 characters)"
                if len(key) < 2
                else "Key is too long (maximum is 64 characters)",
                "INVALID_METAFIELD",
            )
            continue
        namespace = app_namespace(ctx, mf.get("namespace"))
        result.append((namespace, key, str(mf["type"]), str(mf["value"])))
    return result


def write_metafields(
    ctx: Context,
    owner_type: str,
    owner_id: int,
    metafields: list[tuple[str, str, str, str]] | None,
    *,
    replace: bool = False,
) -> None:
    """Upsert ``metafields``; with ``replace`` the owner's others are deleted (productSet).

    ``None`` means the input had no ``metafields`` field: nothing is touched.
    """
    if metafields is None:
        return
    if replace:
        store.delete_metafields_except(
            ctx.conn, owner_type, owner_id, {(ns, key) for ns, key, _, _ in metafields}
        )
    for namespace, key, type_, value in metafields:
        store.upsert_metafield(
            ctx.conn,
            owner_type=owner_type,
            owner_id=owner_id,
            namespace=namespace,
            key=key,
            type_=type_,
            value=value,
        )


# ---- variants ------------------------------------------------------------------------------

_VARIANT_SET_KEYS = {
    "id",
    "optionValues",
    "price",
    "compareAtPrice",
    "sku",
    "barcode",
    "taxable",
    "inventoryPolicy",
    "inventoryQuantities",
    "position",
    "metafields",
    "inventoryItem",
}
_VARIANT_BULK_KEYS = {
    "id",
    "optionValues",
    "price",
    "compareAtPrice",
    "barcode",
    "taxable",
    "inventoryPolicy",
    "inventoryQuantities",
    "metafields",
    "inventoryItem",
}


def variant_columns(
    values: dict[str, Any],
    errors: Errors,
    path: Sequence[str],
    code_invalid: str,
    *,
    currency: str,
) -> dict[str, Any]:
    """Validated scalar columns of a variant input (prices, sku, barcode, inventory)."""
    columns: dict[str, Any] = {}
    for key, column in (("price", "price"), ("compareAtPrice", "compare_at_price")):
        if key not in values:
            continue
        raw = values[key]
        if raw is None:
            if key == "price":
                errors.add([*path, key], "Price can't be blank", code_invalid)
            columns[column] = None
            continue
        amount = parse_money(raw)
        if amount is None:
            errors.add([*path, key], f"{_label(key)} is not a number", code_invalid)
        elif amount < 0:
            errors.add(
                [*path, key], f"{_label(key)} must be greater than or equal to 0", code_invalid
            )
        elif amount >= Decimal("1000000000000000000"):
            errors.add(
                [*path, key], f"{_label(key)} must be less than 1000000000000000000", code_invalid
            )
        else:
            check_money_precision(amount, raw, currency, f"{type_prefix(path)}.{key}")
            columns[column] = money_str(amount, currency)
    if "sku" in values:
        columns["sku"] = values["sku"]
    item = values.get("inventoryItem")
    if item:
        columns[ITEM_KEY] = inventory_item_columns(item, errors, [*path, "inventoryItem"])
        if "sku" in item:
            columns["sku"] = item["sku"]
    if "barcode" in values:
        columns["barcode"] = values["barcode"]
    if values.get("taxable") is not None:
        columns["taxable"] = 1 if values["taxable"] else 0
    if values.get("inventoryPolicy") is not None:
        columns["inventory_policy"] = values["inventoryPolicy"]
    quantities = values.get("inventoryQuantities")
    if quantities:
        levels: list[tuple[str, int]] = []
        for q in quantities:
            if "quantity" in q:  # ProductSetInventoryInput {locationId, name, quantity}
                if q.get("name") not in ("available", "on_hand"):
                    raise NotImplementedInSandbox(f"Inventory quantity name '{q.get('name')}'")
                levels.append((q["locationId"], int(q["quantity"])))
            else:  # InventoryLevelInput {locationId, availableQuantity}
                levels.append((q["locationId"], int(q["availableQuantity"])))
        columns[LEVELS_KEY] = levels
    return columns


# Inventory-item columns and inventory levels ride in a variant's planned columns under these
# keys (store ignores them); write_inventory_item stores them once the variant row exists.
ITEM_KEY = "_inventory_item"
LEVELS_KEY = "_inventory_levels"


def inventory_item_columns(
    item: dict[str, Any], errors: Errors, path: Sequence[str]
) -> dict[str, Any]:
    """Validated ``sb_inventory_items`` columns of an ``InventoryItemInput``."""
    reject_unsupported(
        item, {"sku", "tracked", "requiresShipping", "measurement"}, "InventoryItemInput"
    )
    columns: dict[str, Any] = {}
    if item.get("tracked") is not None:
        columns["tracked"] = 1 if item["tracked"] else 0
    if item.get("requiresShipping") is not None:
        columns["requires_shipping"] = 1 if item["requiresShipping"] else 0
    measurement = item.get("measurement")
    if measurement:
        reject_unsupported(measurement, {"weight"}, "InventoryItemMeasurementInput")
        weight = measurement.get("weight")
        if weight:
            if weight["value"] < 0:
                errors.add(
                    [*path, "measurement", "weight", "value"],
                    "Weight must be greater than or equal to 0",
                    "INVALID_INPUT",
                )
            else:
                columns["weight_value"] = float(weight["value"])
                columns["weight_unit"] = weight["unit"]
    return columns


def write_inventory_item(ctx: Context, variant_id: int, cols: dict[str, Any]) -> None:
    from syncapp.sandbox.shopify.graphql_api import inventory

    if cols.get(ITEM_KEY):
        store.update_inventory_item(ctx.conn, variant_id, cols[ITEM_KEY])
    if cols.get(LEVELS_KEY):
        inventory.write_initial_levels(ctx, variant_id, cols[LEVELS_KEY], "variants")


def type_prefix(path: Sequence[str]) -> str:
    return ".".join(p for p in path if not p.isdigit())


def _label(key: str) -> str:
    return "Price" if key == "price" else "Compare at price"


@dataclass(frozen=True)
class OptionSpec:
    name: str
    values: tuple[str, ...]


def resolve_option_values(
    raw: Sequence[dict[str, Any]],
    options: Sequence[OptionSpec],
    existing: Sequence[store.Option],
    errors: Errors,
    path: Sequence[str],
    codes: dict[str, str],
) -> tuple[str | None, str | None, str | None] | None:
    """A variant's ``optionValues`` → option1..3 in the order of ``options``."""
    by_name = {opt.name: index for index, opt in enumerate(options)}
    by_id = {f"gid://shopify/ProductOption/{o.id}": o.name for o in existing}
    value_by_id = {
        f"gid://shopify/ProductOptionValue/{v.id}": v.name for o in existing for v in o.values
    }
    chosen: list[str | None] = [None, None, None]
    ok = True
    for index, item in enumerate(raw):
        item_path = [*path, "optionValues", str(index)]
        name = item.get("optionName") or by_id.get(item.get("optionId") or "")
        value = item.get("name") or value_by_id.get(item.get("id") or "")
        if item.get("linkedMetafieldValue") is not None:
            raise NotImplementedInSandbox(
                "Input field 'VariantOptionValueInput.linkedMetafieldValue'"
            )
        if name is None or name not in by_name:
            errors.add(
                item_path,
                f"Option '{name or item.get('optionId')}' does not exist.",
                codes["option_missing"],
            )
            ok = False
            continue
        if value is None or value not in options[by_name[name]].values:
            errors.add(
                item_path,
                f"Option value '{value or item.get('id')}' does not exist for option '{name}'.",
                codes["value_missing"],
            )
            ok = False
            continue
        chosen[by_name[name]] = value
    for index, opt in enumerate(options):
        if chosen[index] is None and ok:
            errors.add(
                [*path, "optionValues"],
                f"The variant is missing a value for option '{opt.name}'.",
                codes["values_missing"],
            )
            ok = False
    return (chosen[0], chosen[1], chosen[2]) if ok else None


# ---- productSet ----------------------------------------------------------------------------

_SET_CODES = {
    "option_missing": "OPTION_DOES_NOT_EXIST",
    "value_missing": "OPTION_VALUE_DOES_NOT_EXIST",
    "values_missing": "OPTION_VALUES_MISSING",
}


def _parse_option_set(
    raw: Sequence[dict[str, Any]] | None,
    existing: Sequence[store.Option],
    errors: Errors,
    path: Sequence[str],
    create_input: bool,
) -> list[OptionSpec]:
    specs: list[OptionSpec] = []
    if raw is None:
        return specs
    type_name = "OptionCreateInput" if create_input else "OptionSetInput"
    value_type = "OptionValueCreateInput" if create_input else "OptionValueSetInput"
    if len(raw) > MAX_OPTIONS:
        errors.add(path, "Can only specify a maximum of 3 options", "OPTIONS_OVER_LIMIT")
        return specs
    by_id = {f"gid://shopify/ProductOption/{o.id}": o for o in existing}
    seen: set[str] = set()
    ordered = sorted(enumerate(raw), key=lambda pair: pair[1].get("position") or pair[0] + 1)
    for index, opt in ordered:
        reject_unsupported(opt, {"id", "name", "position", "values"}, type_name)
        opt_path = [*path, str(index)]
        old = by_id.get(opt.get("id") or "")
        if opt.get("id") and old is None:
            errors.add([*opt_path, "id"], "Option does not exist", "OPTION_DOES_NOT_EXIST")
            continue
        name = (opt.get("name") or (old.name if old else "")).strip()
        if not name:
            errors.add([*opt_path, "name"], "Option name can't be blank", "INVALID_INPUT")
            continue
        if name.lower() in seen:
            errors.add(
                [*opt_path, "name"], f"Duplicated option name '{name}'.", "DUPLICATED_OPTION_NAME"
            )
            continue
        seen.add(name.lower())
        old_values = {
            f"gid://shopify/ProductOptionValue/{v.id}": v.name for v in (old.values if old else ())
        }
        values: list[str] = []
        for value_index, value in enumerate(opt.get("values") or []):
            reject_unsupported(value, {"id", "name"}, value_type)
            value_name = (value.get("name") or old_values.get(value.get("id") or "") or "").strip()
            if not value_name:
                errors.add(
                    [*opt_path, "values", str(value_index), "name"],
                    "Option value name can't be blank",
                    "INVALID_INPUT",
                )
            elif value_name in values:
                errors.add(
                    [*opt_path, "values", str(value_index), "name"],
                    f"Duplicated option value '{value_name}'.",
                    "DUPLICATED_OPTION_VALUE",
                )
            else:
                values.append(value_name)
        if not values:
            errors.add(
                [*opt_path, "values"],
                f"Option '{name}' must have at least one value.",
                "OPTION_VALUES_MISSING",
            )
            continue
        specs.append(OptionSpec(name, tuple(values)))
    return specs


def product_set(_: Any, ctx: Context, args: dict[str, Any]) -> dict[str, Any]:
    errors = Errors("ProductSetUserError")
    values: dict[str, Any] = args["input"]
    if args.get("synchronous") is False:
        from syncapp.sandbox.shopify.graphql_api import operations

        return operations.start_product_set(ctx, args)
    reject_unsupported(
        values, _PRODUCT_INPUT_KEYS | {"productOptions", "variants"}, "ProductSetInput"
    )
    identifier = args.get("identifier") or {}
    existing: dict[str, Any] | None = None
    custom_id = identifier.get("customId")
    if custom_id is not None:
        existing = product_by_custom_id(ctx, custom_id)
        if existing is None:
            # The product created through its customId carries it, so the next upsert finds it.
            values = {**values, "metafields": _with_custom_id(ctx, values, custom_id)}
    target_id = identifier.get("id") or values.get("id")
    if target_id is not None:
        number = legacy_id(target_id, "Product")
        existing = store.get_product(ctx.conn, ctx.shop.domain, number) if number else None
        if existing is None:
            field_path = ["identifier", "id"] if identifier.get("id") else ["input", "id"]
            errors.add(field_path, "Product does not exist", "PRODUCT_DOES_NOT_EXIST")
            return _set_payload(None, errors)
    elif identifier.get("handle") is not None:
        existing = store.get_product_by_handle(ctx.conn, ctx.shop.domain, identifier["handle"])
        if existing is None and "handle" not in values:
            # A product created through its identifier gets that handle.
            values = {**values, "handle": identifier["handle"]}

    columns = product_columns(ctx, values, errors, ["input"], existing=existing)
    metafields = validate_metafields(ctx, values.get("metafields"), errors, ["input"])
    old_options = store.options_of(ctx.conn, existing["id"]) if existing else []
    old_variants = store.variants_of(ctx.conn, existing["id"]) if existing else []
    raw_options = values.get("productOptions")
    raw_variants = values.get("variants")
    errors_before_options = len(errors.items)
    specs = _parse_option_set(
        raw_options, old_options, errors, ["input", "productOptions"], create_input=False
    )
    if raw_options is not None and raw_variants is None and not errors:
        errors.add(
            ["input", "variants"],
            "Variants input is required when options are given.",
            "VARIANTS_INPUT_MISSING",
        )
    # 2024-07+: variants and productOptions travel together, on creates and updates alike.
    if raw_variants is not None and raw_options is None:
        errors.add(
            ["input", "productOptions"],
            "Product options input is required when variants are given.",
            "PRODUCT_OPTIONS_INPUT_MISSING",
        )
    if raw_variants is not None and len(raw_variants) > MAX_VARIANTS:
        errors.add(
            ["input", "variants"],
            f"Can only specify a maximum of {MAX_VARIANTS} variants",
            "VARIANTS_OVER_LIMIT",
        )
    planned: list[tuple[int | None, tuple[str | None, ...], dict[str, Any], list[Any] | None]] = []
    # Variants are checked against the options, so only once the options themselves are valid.
    if raw_variants is not None and len(errors.items) == errors_before_options:
        old_ids = {v["id"] for v in old_variants}
        combos: set[tuple[str | None, ...]] = set()
        for index, variant in enumerate(raw_variants):
            reject_unsupported(variant, _VARIANT_SET_KEYS, "ProductVariantSetInput")
            path = ["input", "variants", str(index)]
            variant_id = None
            if variant.get("id") is not None:
                variant_id = legacy_id(variant["id"], "ProductVariant")
                if variant_id not in old_ids:
                    errors.add(
                        [*path, "id"],
                        "Product variant does not exist",
                        "PRODUCT_VARIANT_DOES_NOT_EXIST",
                    )
                    continue
            chosen = resolve_option_values(
                variant.get("optionValues") or [], specs, old_options, errors, path, _SET_CODES
            )
            cols = variant_columns(
                variant, errors, path, "INVALID_VARIANT", currency=ctx.shop.currency_code
            )
            if variant_id is None and "price" not in cols:
                cols["price"] = "0.00"
            mfs = (
                validate_metafields(ctx, variant["metafields"], errors, path)
                if variant.get("metafields") is not None
                else None
            )
            if chosen is None:
                continue
            if chosen in combos:
                errors.add(
                    [*path, "optionValues"],
                    f"The variant '{store.variant_title(chosen)}' already exists.",
                    "DUPLICATED_OPTION_VALUE",
                )
                continue
            combos.add(chosen)
            cols["position"] = variant.get("position") or index + 1
            planned.append((variant_id, chosen, cols, mfs))
    if errors:
        return _set_payload(None, errors)

    with savepoint(ctx.conn):
        if existing is None:
            product_id = store.insert_product(ctx.conn, ctx.shop.domain, columns)
        else:
            product_id = existing["id"]
            store.update_product(ctx.conn, product_id, columns)
        if raw_variants is not None:
            _apply_variant_set(ctx, product_id, specs, planned, old_variants)
        elif existing is None:
            _create_default_variant(ctx, product_id)
        # productSet replaces list fields wholesale: metafields it does not list are deleted.
        write_metafields(
            ctx,
            "PRODUCT",
            product_id,
            metafields if values.get("metafields") is not None else None,
            replace=True,
        )
        ctx.forget("product", "variants", "options", "item")
        fire_product(ctx, "products/create" if existing is None else "products/update", product_id)
    return _set_payload(load_product(ctx, product_id), errors)


def _apply_variant_set(
    ctx: Context,
    product_id: int,
    specs: Sequence[OptionSpec],
    planned: Sequence[tuple[int | None, tuple[str | None, ...], dict[str, Any], list[Any] | None]],
    old_variants: Sequence[dict[str, Any]],
) -> None:
    keep = {variant_id for variant_id, *_ in planned if variant_id is not None}
    for old in old_variants:
        if old["id"] not in keep:
            store.delete_variant(ctx.conn, old["id"])
    store.replace_options(ctx.conn, product_id, [(s.name, s.values) for s in specs])
    for variant_id, chosen, cols, mfs in planned:
        cols = {
            **cols,
            "option1": chosen[0],
            "option2": chosen[1],
            "option3": chosen[2],
            "title": store.variant_title(chosen),
        }
        if variant_id is None:
            variant_id = store.insert_variant(ctx.conn, ctx.shop.domain, product_id, cols)
        else:
            store.update_variant(ctx.conn, variant_id, cols)
        write_inventory_item(ctx, variant_id, cols)
        write_metafields(ctx, "PRODUCTVARIANT", variant_id, mfs, replace=True)


def _create_default_variant(ctx: Context, product_id: int) -> None:
    store.replace_options(ctx.conn, product_id, [(store.DEFAULT_OPTION, [store.DEFAULT_VALUE])])
    store.insert_variant(
        ctx.conn,
        ctx.shop.domain,
        product_id,
        {
            "title": store.DEFAULT_VALUE,
            "option1": store.DEFAULT_VALUE,
            "position": 1,
            "price": "0.00",
        },
    )


def product_by_custom_id(ctx: Context, custom_id: dict[str, Any]) -> dict[str, Any] | None:
    """The product whose metafield ``namespace.key`` has ``value`` (``identifier.customId``).

    Shopify requires a metafield definition with the unique-values capability (changelog
    productset-and-customerset-mutations-now-support-upserts); the sandbox keeps no
    definitions, so any product metafield serves, and two products sharing a value are refused.
    """
    namespace = app_namespace(ctx, custom_id.get("namespace"))
    rows = ctx.conn.execute(
        "SELECT owner_id FROM sb_metafields m JOIN sb_products p ON p.id = m.owner_id"
        " WHERE m.owner_type = 'PRODUCT' AND p.shop_domain = ? AND m.namespace = ?"
        " AND m.key = ? AND m.value = ?",
        (ctx.shop.domain, namespace, custom_id["key"], custom_id["value"]),
    ).fetchall()
    if len(rows) > 1:
        raise NotImplementedInSandbox(
            f"customId {namespace}.{custom_id['key']}={custom_id['value']!r} shared by"
            f" {len(rows)} products (Shopify's unique-values definition would forbid it)"
        )
    return store.get_product(ctx.conn, ctx.shop.domain, rows[0]["owner_id"]) if rows else None


def _with_custom_id(
    ctx: Context, values: dict[str, Any], custom_id: dict[str, Any]
) -> list[dict[str, Any]]:
    namespace = app_namespace(ctx, custom_id.get("namespace"))
    listed = [
        m
        for m in values.get("metafields") or []
        if not (
            app_namespace(ctx, m.get("namespace")) == namespace and m.get("key") == custom_id["key"]
        )
    ]
    return [
        *listed,
        {
            "namespace": namespace,
            "key": custom_id["key"],
            "type": "single_line_text_field",
            "value": custom_id["value"],
        },
    ]


def _set_payload(product: dict[str, Any] | None, errors: Errors) -> dict[str, Any]:
    return {
        "__typename": "ProductSetPayload",
        "product": product,
        "productSetOperation": None,
        "userErrors": errors.items,
    }


# ---- productCreate / productUpdate / productDelete -------------------------------------------


def _reject_legacy_arguments(args: dict[str, Any], mutation: str) -> None:
    if args.get("input") is not None:
        raise NotImplementedInSandbox(f"Argument 'input' of 'Mutation.{mutation}' (use 'product')")
    if args.get("media"):
        raise NotImplementedInSandbox(f"Argument 'media' of 'Mutation.{mutation}'")


def product_create(_: Any, ctx: Context, args: dict[str, Any]) -> dict[str, Any]:
    _reject_legacy_arguments(args, "productCreate")
    errors = Errors("UserError")
    values: dict[str, Any] = args.get("product") or {}
    reject_unsupported(
        values,
        (_PRODUCT_INPUT_KEYS - {"id", "redirectNewHandle"}) | {"productOptions"},
        "ProductCreateInput",
    )
    columns = product_columns(ctx, values, errors, [], existing=None)
    metafields = validate_metafields(ctx, values.get("metafields"), errors, [])
    specs = _parse_option_set(
        values.get("productOptions"), [], errors, ["productOptions"], create_input=True
    )
    if errors:
        return {
            "__typename": "ProductCreatePayload",
            "product": None,
            "shop": _shop(ctx),
            "userErrors": errors.items,
        }
    with savepoint(ctx.conn):
        product_id = store.insert_product(ctx.conn, ctx.shop.domain, columns)
        if specs:
            # Shopify creates one variant from the first value of each option.
            store.replace_options(ctx.conn, product_id, [(s.name, s.values) for s in specs])
            first = tuple(s.values[0] for s in specs) + (None,) * (3 - len(specs))
            store.insert_variant(
                ctx.conn,
                ctx.shop.domain,
                product_id,
                {
                    "title": store.variant_title(first),
                    "option1": first[0],
                    "option2": first[1],
                    "option3": first[2],
                    "position": 1,
                    "price": "0.00",
                },
            )
        else:
            _create_default_variant(ctx, product_id)
        write_metafields(ctx, "PRODUCT", product_id, metafields)
        fire_product(ctx, "products/create", product_id)
    ctx.forget("product", "variants", "options", "item")
    return {
        "__typename": "ProductCreatePayload",
        "product": load_product(ctx, product_id),
        "shop": _shop(ctx),
        "userErrors": [],
    }


def _shop(ctx: Context) -> dict[str, Any]:
    from syncapp.sandbox.shopify.graphql_api.nodes import shop_node

    return shop_node(ctx.shop)


def product_update(_: Any, ctx: Context, args: dict[str, Any]) -> dict[str, Any]:
    _reject_legacy_arguments(args, "productUpdate")
    errors = Errors("UserError")
    values: dict[str, Any] = args.get("product") or {}
    reject_unsupported(values, _PRODUCT_INPUT_KEYS, "ProductUpdateInput")
    identifier = args.get("identifier") or {}
    existing: dict[str, Any] | None = None
    if identifier.get("customId") is not None:
        existing = product_by_custom_id(ctx, identifier["customId"])
    elif identifier.get("handle") is not None:
        existing = store.get_product_by_handle(ctx.conn, ctx.shop.domain, identifier["handle"])
    else:
        raw_id = identifier.get("id") or values.get("id")
        number = legacy_id(raw_id, "Product") if raw_id else None
        existing = store.get_product(ctx.conn, ctx.shop.domain, number) if number else None
    if existing is None:
        errors.add(["id"], "Product does not exist")
        return {"__typename": "ProductUpdatePayload", "product": None, "userErrors": errors.items}
    columns = product_columns(ctx, values, errors, [], existing=existing)
    metafields = validate_metafields(ctx, values.get("metafields"), errors, [])
    if errors:
        return {"__typename": "ProductUpdatePayload", "product": None, "userErrors": errors.items}
    with savepoint(ctx.conn):
        store.update_product(ctx.conn, existing["id"], columns)
        write_metafields(ctx, "PRODUCT", existing["id"], metafields)
        fire_product(ctx, "products/update", existing["id"])
    ctx.forget("product", "variants", "options", "item")
    return {
        "__typename": "ProductUpdatePayload",
        "product": load_product(ctx, existing["id"]),
        "userErrors": [],
    }


def product_delete(_: Any, ctx: Context, args: dict[str, Any]) -> dict[str, Any]:
    if args.get("synchronous") is False:
        raise NotImplementedInSandbox("productDelete(synchronous: false)")
    number = legacy_id(args["input"]["id"], "Product")
    existing = store.get_product(ctx.conn, ctx.shop.domain, number) if number else None
    if existing is None:
        errors = Errors("UserError")
        errors.add(["id"], "Product does not exist")
        return {
            "__typename": "ProductDeletePayload",
            "deletedProductId": None,
            "productDeleteOperation": None,
            "shop": _shop(ctx),
            "userErrors": errors.items,
        }
    with savepoint(ctx.conn):
        store.delete_product(ctx.conn, existing["id"])
        record_webhook(
            ctx.conn,
            shop_domain=ctx.shop.domain,
            topic="products/delete",
            payload=payloads.product_delete_payload(existing["id"]),
        )
    ctx.forget("product", "variants", "options", "item")
    return {
        "__typename": "ProductDeletePayload",
        "deletedProductId": f"gid://shopify/Product/{existing['id']}",
        "productDeleteOperation": None,
        "shop": _shop(ctx),
        "userErrors": [],
    }


# ---- productVariantsBulkUpdate / productVariantsBulkCreate ---------------------------------

_BULK_UPDATE_CODES = {
    "option_missing": "OPTION_DOES_NOT_EXIST",
    "value_missing": "OPTION_VALUE_DOES_NOT_EXIST",
    "values_missing": "NEED_TO_ADD_OPTION_VALUES",
}


def _product_argument(ctx: Context, args: dict[str, Any], errors: Errors) -> dict[str, Any] | None:
    """The shop's product named by ``args["productId"]``; None with PRODUCT_DOES_NOT_EXIST
    added to ``errors`` when there is none (the variant and option mutations' first check)."""
    number = legacy_id(args["productId"], "Product")
    existing = store.get_product(ctx.conn, ctx.shop.domain, number) if number else None
    if existing is None:
        errors.add(["productId"], "Product does not exist", "PRODUCT_DOES_NOT_EXIST")
    return existing


def _bulk_payload(
    typename: str, product_id: int | None, variant_ids: list[int], ctx: Context, errors: Errors
) -> dict[str, Any]:
    return {
        "__typename": typename,
        "product": load_product(ctx, product_id) if product_id else None,
        "productVariants": [load_variant(ctx, v) for v in variant_ids] if product_id else None,
        "userErrors": errors.items,
    }


def variants_bulk_update(_: Any, ctx: Context, args: dict[str, Any]) -> dict[str, Any]:
    if args.get("media"):
        raise NotImplementedInSandbox("Argument 'media' of 'Mutation.productVariantsBulkUpdate'")
    errors = Errors("ProductVariantsBulkUpdateUserError")
    typename = "ProductVariantsBulkUpdatePayload"
    existing = _product_argument(ctx, args, errors)
    if existing is None:
        return _bulk_payload(typename, None, [], ctx, errors)
    product_id = existing["id"]
    current = {v["id"]: v for v in store.variants_of(ctx.conn, product_id)}
    options = store.options_of(ctx.conn, product_id)
    specs = [OptionSpec(o.name, tuple(v.name for v in o.values)) for o in options]
    plans: list[tuple[int, dict[str, Any], list[Any]]] = []
    for index, variant in enumerate(args["variants"]):
        reject_unsupported(variant, _VARIANT_BULK_KEYS, "ProductVariantsBulkInput")
        path = ["variants", str(index)]
        before = len(errors.items)
        if variant.get("inventoryQuantities"):
            errors.add(
                [*path, "inventoryQuantities"],
                "Inventory quantities can only be"
                " provided during create. To update inventory for existing variants,"
                " use inventoryAdjustQuantities.",
                "NO_INVENTORY_QUANTITIES_ON_VARIANTS_UPDATE",
            )
        if variant.get("id") is None:
            errors.add(
                [*path, "id"],
                "Product variant is missing ID attribute",
                "PRODUCT_VARIANT_ID_MISSING",
            )
            continue
        variant_id = legacy_id(variant["id"], "ProductVariant")
        if variant_id is None or variant_id not in current:
            errors.add(
                [*path, "id"], "Product variant does not exist", "PRODUCT_VARIANT_DOES_NOT_EXIST"
            )
            continue
        cols = variant_columns(
            {k: v for k, v in variant.items() if k != "inventoryQuantities"},
            errors,
            path,
            "INVALID_INPUT",
            currency=ctx.shop.currency_code,
        )
        for key in ("price", "compare_at_price"):
            if key in cols and cols[key] is None and key == "price":
                cols.pop(key)
        if variant.get("optionValues"):
            old = current[variant_id]
            merged = _merge_option_values(variant["optionValues"], specs, old)
            chosen = resolve_option_values(merged, specs, options, errors, path, _BULK_UPDATE_CODES)
            if chosen is not None:
                cols.update(
                    option1=chosen[0],
                    option2=chosen[1],
                    option3=chosen[2],
                    title=store.variant_title(chosen),
                )
        mfs = validate_metafields(ctx, variant.get("metafields"), errors, path)
        if len(errors.items) == before:
            plans.append((variant_id, cols, mfs))
    if errors and not args.get("allowPartialUpdates"):
        return _bulk_payload(typename, None, [], ctx, errors)
    combos = {(v["option1"], v["option2"], v["option3"]): vid for vid, v in current.items()}
    for variant_id, cols, _mfs in plans:
        if "option1" in cols:
            combo = (cols["option1"], cols["option2"], cols["option3"])
            if combos.get(combo, variant_id) != variant_id:
                errors.add(
                    ["variants"],
                    f"The variant '{cols['title']}' already exists.",
                    "VARIANT_ALREADY_EXISTS",
                )
            combos[combo] = variant_id
    if errors and not args.get("allowPartialUpdates"):
        return _bulk_payload(typename, None, [], ctx, errors)
    with savepoint(ctx.conn):
        for variant_id, cols, mfs in plans:
            store.update_variant(ctx.conn, variant_id, cols)
            write_inventory_item(ctx, variant_id, cols)
            write_metafields(ctx, "PRODUCTVARIANT", variant_id, mfs)
        if plans:
            _sync_option_values_with_variants(ctx, product_id, specs)
            store.update_product(ctx.conn, product_id, {})
            fire_product(ctx, "products/update", product_id)
    ctx.forget("product", "variants", "options", "item")
    return _bulk_payload(typename, product_id, [p[0] for p in plans], ctx, errors)


def _merge_option_values(
    raw: Sequence[dict[str, Any]], specs: Sequence[OptionSpec], old: dict[str, Any]
) -> list[dict[str, Any]]:
    """Options a variant update leaves out keep their current value."""
    given = {item.get("optionName") for item in raw}
    merged = list(raw)
    for index, spec in enumerate(specs):
        if spec.name not in given and not any(item.get("optionId") for item in raw):
            merged.append({"optionName": spec.name, "name": old[f"option{index + 1}"]})
    return merged


def _sync_option_values_with_variants(
    ctx: Context, product_id: int, specs: Sequence[OptionSpec]
) -> None:
    """Keep declared values, append values variants now use, as Shopify's option model does."""
    variants = store.variants_of(ctx.conn, product_id)
    updated = []
    for index, spec in enumerate(specs):
        values = list(spec.values)
        for v in variants:
            value = v[f"option{index + 1}"]
            if value is not None and value not in values:
                values.append(value)
        updated.append((spec.name, values))
    store.replace_options(ctx.conn, product_id, updated)


_BULK_CREATE_CODES = {
    "option_missing": "OPTION_VALUES_FOR_NUMBER_OF_UNKNOWN_OPTIONS",
    "value_missing": "INVALID",
    "values_missing": "NEED_TO_ADD_OPTION_VALUES",
}


def variants_bulk_create(_: Any, ctx: Context, args: dict[str, Any]) -> dict[str, Any]:
    if args.get("media"):
        raise NotImplementedInSandbox("Argument 'media' of 'Mutation.productVariantsBulkCreate'")
    errors = Errors("ProductVariantsBulkCreateUserError")
    typename = "ProductVariantsBulkCreatePayload"
    existing = _product_argument(ctx, args, errors)
    if existing is None:
        return _bulk_payload(typename, None, [], ctx, errors)
    product_id = existing["id"]
    strategy = args.get("strategy") or "DEFAULT"
    options = store.options_of(ctx.conn, product_id)
    current = store.variants_of(ctx.conn, product_id)
    standalone = (
        len(options) == 1
        and options[0].name == store.DEFAULT_OPTION
        and len(current) == 1
        and current[0]["option1"] == store.DEFAULT_VALUE
    )
    drop_standalone = standalone and strategy != "PRESERVE_STANDALONE_VARIANT"
    specs = (
        []
        if drop_standalone
        else [OptionSpec(o.name, tuple(v.name for v in o.values)) for o in options]
    )
    # New option names and values named by the inputs extend the product's options.
    for variant in args["variants"]:
        for item in variant.get("optionValues") or []:
            name, value = item.get("optionName"), item.get("name")
            if not name or not value:
                continue
            index = next((i for i, s in enumerate(specs) if s.name == name), None)
            if (
                index is None
                and len(specs) < MAX_OPTIONS
                and not current[1:]
                and (drop_standalone or not current)
            ):
                specs.append(OptionSpec(name, (value,)))
            elif index is not None and value not in specs[index].values:
                specs[index] = OptionSpec(name, (*specs[index].values, value))
    combos = {
        (v["option1"], v["option2"], v["option3"]) for v in ([] if drop_standalone else current)
    }
    plans: list[tuple[tuple[str | None, ...], dict[str, Any], list[Any]]] = []
    position = 0 if drop_standalone else len(current)
    for index, variant in enumerate(args["variants"]):
        reject_unsupported(variant, _VARIANT_BULK_KEYS - {"id"}, "ProductVariantsBulkInput")
        path = ["variants", str(index)]
        chosen = resolve_option_values(
            variant.get("optionValues") or [], specs, options, errors, path, _BULK_CREATE_CODES
        )
        cols = variant_columns(
            variant, errors, path, "INVALID_INPUT", currency=ctx.shop.currency_code
        )
        mfs = validate_metafields(ctx, variant.get("metafields"), errors, path)
        if chosen is None:
            continue
        if chosen in combos:
            errors.add(
                [*path, "optionValues"],
                f"The variant '{store.variant_title(chosen)}' already exists.",
                "VARIANT_ALREADY_EXISTS",
            )
            continue
        combos.add(chosen)
        position += 1
        cols.setdefault("price", "0.00")
        cols["position"] = position
        plans.append((chosen, cols, mfs))
    if len(combos) > MAX_VARIANTS:
        errors.add(
            ["variants"], f"Can only specify a maximum of {MAX_VARIANTS} variants", "INVALID_INPUT"
        )
    if errors:
        return _bulk_payload(typename, None, [], ctx, errors)
    created: list[int] = []
    with savepoint(ctx.conn):
        if drop_standalone:
            store.delete_variant(ctx.conn, current[0]["id"])
        store.replace_options(ctx.conn, product_id, [(s.name, s.values) for s in specs])
        for combo, cols, mfs in plans:
            cols = {
                **cols,
                "option1": combo[0],
                "option2": combo[1],
                "option3": combo[2],
                "title": store.variant_title(combo),
            }
            variant_id = store.insert_variant(ctx.conn, ctx.shop.domain, product_id, cols)
            write_inventory_item(ctx, variant_id, cols)
            write_metafields(ctx, "PRODUCTVARIANT", variant_id, mfs)
            created.append(variant_id)
        store.update_product(ctx.conn, product_id, {})
        fire_product(ctx, "products/update", product_id)
    ctx.forget("product", "variants", "options", "item")
    return _bulk_payload(typename, product_id, created, ctx, errors)


MUTATIONS: dict[str, Callable[[Any, Context, dict[str, Any]], Any]] = {
    "productSet": product_set,
    "productCreate": product_create,
    "productUpdate": product_update,
    "productDelete": product_delete,
    "productVariantsBulkUpdate": variants_bulk_update,
    "productVariantsBulkCreate": variants_bulk_create,
}


# ---- metafieldsSet ---------------------------------------------------------------------------

MAX_METAFIELDS_SET = 25


def _metafield_owner(ctx: Context, owner_id: str) -> tuple[str, int] | None:
    """(owner type, owner id) of a product or variant gid of this shop; None if there is none.

    Other owner kinds (customers, orders, the shop…) are not modelled and are refused loudly.
    """
    from syncapp.sandbox.shopify.graphql_api.ids import parse_gid

    parsed = parse_gid(owner_id)
    if parsed is None:
        return None
    kind, number = parsed
    if kind == "Product":
        found = store.get_product(ctx.conn, ctx.shop.domain, number)
        return ("PRODUCT", number) if found else None
    if kind == "ProductVariant":
        found = store.get_variant(ctx.conn, ctx.shop.domain, number)
        return ("PRODUCTVARIANT", number) if found else None
    raise NotImplementedInSandbox(f"metafieldsSet on a {kind} owner")


def metafields_set(_: Any, ctx: Context, args: dict[str, Any]) -> dict[str, Any]:
    """Set up to 25 metafields atomically: one bad input and none is written.

    Source: admin-graphql 2026-10 mutations/metafieldsSet ("up to 25 metafields", "atomic":
    all or nothing; ``compareDigest`` makes the write a compare-and-swap, STALE_OBJECT when
    the metafield changed since it was read). No webhook fires: Shopify's products/update is
    no reliable trigger for metafield changes (pitfalls §6), so the sandbox sends none.
    """
    from syncapp.sandbox.shopify.graphql_api.nodes import metafield_node

    errors = Errors("MetafieldsSetUserError")
    inputs = args["metafields"]
    typename = "MetafieldsSetPayload"
    if len(inputs) > MAX_METAFIELDS_SET:
        errors.add(
            ["metafields"],
            f"Exceeded the maximum metafields input limit of {MAX_METAFIELDS_SET}.",
            "LESS_THAN_OR_EQUAL_TO",
        )
        return {"__typename": typename, "metafields": None, "userErrors": errors.items}
    planned: list[tuple[str, int, str, str, str]] = []
    for index, mf in enumerate(inputs):
        path = ["metafields", str(index)]
        owner = _metafield_owner(ctx, mf["ownerId"])
        if owner is None:
            errors.add([*path, "ownerId"], "Owner does not exist.", "INVALID")
            continue
        namespace = app_namespace(ctx, mf.get("namespace"))
        key = (mf.get("key") or "").strip()
        if not 2 <= len(key) <= 64:
            errors.add(
                [*path, "key"],
                "Key is too short (minimum is 2 characters)"
                if len(key) < 2
                else "Key is too long (maximum is 64 characters)",
                "TOO_SHORT" if len(key) < 2 else "TOO_LONG",
            )
            continue
        current = store.get_metafield(ctx.conn, owner[0], owner[1], namespace, key)
        type_ = mf.get("type") or (current["type"] if current else None)
        if not type_:
            errors.add([*path, "type"], "Type can't be blank", "BLANK")
            continue
        if mf["value"] == "":
            errors.add([*path, "value"], "Value can't be blank", "BLANK")
            continue
        digest = mf.get("compareDigest")
        if digest is not None and (
            current is None or metafield_node(current)["compareDigest"] != digest
        ):
            errors.add(
                [*path, "compareDigest"],
                "The resource has been updated since it was loaded. Try again with an updated"
                " `compareDigest` value.",
                "STALE_OBJECT",
            )
            continue
        planned.append((owner[0], owner[1], namespace, key, type_))
    if errors:
        return {"__typename": typename, "metafields": None, "userErrors": errors.items}
    written = []
    with savepoint(ctx.conn):
        for (owner_type, owner_id, namespace, key, type_), mf in zip(planned, inputs, strict=True):
            store.upsert_metafield(
                ctx.conn,
                owner_type=owner_type,
                owner_id=owner_id,
                namespace=namespace,
                key=key,
                type_=type_,
                value=str(mf["value"]),
            )
            row = store.get_metafield(ctx.conn, owner_type, owner_id, namespace, key)
            assert row is not None
            written.append(metafield_node(row))
    return {"__typename": typename, "metafields": written, "userErrors": []}


# ---- productVariantsBulkDelete -----------------------------------------------------------


def variants_bulk_delete(_: Any, ctx: Context, args: dict[str, Any]) -> dict[str, Any]:
    """Delete variants of one product; the last variant cannot go (CANNOT_DELETE_LAST_VARIANT).

    Source: admin-graphql 2026-10 mutations/productVariantsBulkDelete and
    enums/ProductVariantsBulkDeleteUserErrorCode. Option values no variant uses any more are
    dropped, as Shopify's option model keeps only values with variants after a delete
    (inferred from ProductOptionValue.hasVariants).
    """
    errors = Errors("ProductVariantsBulkDeleteUserError")
    typename = "ProductVariantsBulkDeletePayload"
    existing = _product_argument(ctx, args, errors)
    if existing is None:
        return {"__typename": typename, "product": None, "userErrors": errors.items}
    product_id = existing["id"]
    current = {v["id"]: v for v in store.variants_of(ctx.conn, product_id)}
    doomed = {legacy_id(v, "ProductVariant") for v in args["variantsIds"]}
    if None in doomed or not doomed <= set(current):
        errors.add(
            ["variantsIds"],
            "At least one variant does not belong to the product",
            "AT_LEAST_ONE_VARIANT_DOES_NOT_BELONG_TO_THE_PRODUCT",
        )
    elif doomed == set(current):
        errors.add(["variantsIds"], "Cannot delete default variant.", "CANNOT_DELETE_LAST_VARIANT")
    if errors:
        return {"__typename": typename, "product": None, "userErrors": errors.items}
    with savepoint(ctx.conn):
        for variant_id in doomed:
            assert variant_id is not None
            store.delete_variant(ctx.conn, variant_id)
        remaining = store.variants_of(ctx.conn, product_id)
        kept_options = []
        for option in store.options_of(ctx.conn, product_id):
            used = {v[f"option{option.position}"] for v in remaining}
            kept_options.append((option.name, [v.name for v in option.values if v.name in used]))
        store.replace_options(ctx.conn, product_id, kept_options)
        for position, variant in enumerate(remaining, start=1):
            store.update_variant(ctx.conn, variant["id"], {"position": position})
        store.update_product(ctx.conn, product_id, {})
        fire_product(ctx, "products/update", product_id)
    ctx.forget("product", "variants", "options", "item")
    return {"__typename": typename, "product": load_product(ctx, product_id), "userErrors": []}


# ---- productOptionsCreate ----------------------------------------------------------------


def options_create(_: Any, ctx: Context, args: dict[str, Any]) -> dict[str, Any]:
    """Add options to a product; existing variants take each new option's first value, and
    with ``variantStrategy: CREATE`` a variant is made for every further combination.

    Source: admin-graphql 2026-10 mutations/productOptionsCreate and
    enums/ProductOptionCreateVariantStrategy. On a product that has only the standalone
    "Default Title" variant, the new options replace "Title" and the variant is replaced by one
    with a new id (pitfalls §14: adding the first option replaces the standalone variant's id;
    the sandbox takes the reading that fools an engine keyed on the old id).
    """
    errors = Errors("ProductOptionsCreateUserError")
    typename = "ProductOptionsCreatePayload"
    existing = _product_argument(ctx, args, errors)
    if existing is None:
        return {"__typename": typename, "product": None, "userErrors": errors.items}
    product_id = existing["id"]
    options = store.options_of(ctx.conn, product_id)
    variants = store.variants_of(ctx.conn, product_id)
    standalone = (
        len(options) == 1
        and options[0].name == store.DEFAULT_OPTION
        and len(variants) == 1
        and variants[0]["option1"] == store.DEFAULT_VALUE
    )
    kept = (
        [] if standalone else [OptionSpec(o.name, tuple(v.name for v in o.values)) for o in options]
    )
    for option in args["options"]:
        if option.get("position") not in (None, len(kept) + 1 + args["options"].index(option)):
            raise NotImplementedInSandbox(
                "productOptionsCreate with a position before existing options"
            )
    new = _parse_option_set(args["options"], [], errors, ["options"], create_input=True)
    names = {s.name.lower() for s in kept}
    for index, spec in enumerate(new):
        if spec.name.lower() in names:
            errors.add(
                ["options", str(index), "name"],
                f"Option '{spec.name}' already exists.",
                "OPTION_ALREADY_EXISTS",
            )
    if len(kept) + len(new) > MAX_OPTIONS:
        errors.add(["options"], "Can only specify a maximum of 3 options", "OPTIONS_OVER_LIMIT")
    strategy = args.get("variantStrategy") or "LEAVE_AS_IS"
    base_rows = [] if standalone else variants
    extra_count = 0
    if strategy == "CREATE" and not errors:
        combos = 1
        for spec in new:
            combos *= len(spec.values)
        extra_count = max(len(base_rows), 1) * combos - max(len(base_rows), 1)
        if max(len(base_rows), 1) + extra_count > MAX_VARIANTS:
            errors.add(
                ["options"],
                "The number of variants created would exceed the limit.",
                "TOO_MANY_VARIANTS_CREATED",
            )
    if errors:
        return {"__typename": typename, "product": None, "userErrors": errors.items}
    specs = [*kept, *new]
    offset = len(kept)
    with savepoint(ctx.conn):
        store.replace_options(ctx.conn, product_id, [(s.name, s.values) for s in specs])
        templates: list[dict[str, Any]]
        if standalone:
            old = variants[0]
            store.delete_variant(ctx.conn, old["id"])
            templates = [{**old, "option1": None, "option2": None, "option3": None}]
        else:
            templates = variants
        firsts = [s.values[0] for s in new]
        position = 0
        combos_new: list[tuple[str, ...]] = [tuple(firsts)]
        if strategy == "CREATE":
            combos_new = [()]
            for spec in new:
                combos_new = [(*c, v) for c in combos_new for v in spec.values]
        for template in templates:
            base = [template[f"option{i + 1}"] for i in range(offset)]
            for combo in combos_new:
                values = [*base, *combo] + [None] * (3 - offset - len(combo))
                cols = {
                    "option1": values[0],
                    "option2": values[1],
                    "option3": values[2],
                    "title": store.variant_title(values),
                }
                position += 1
                if combo == tuple(firsts) and not standalone:
                    store.update_variant(ctx.conn, template["id"], {**cols, "position": position})
                    continue
                copied = {
                    key: template[key]
                    for key in (
                        "price",
                        "compare_at_price",
                        "taxable",
                        "inventory_policy",
                        "barcode",
                    )
                }
                if combo == tuple(firsts):  # the standalone variant's replacement keeps its data
                    copied.update(
                        sku=template["sku"], inventory_quantity=template["inventory_quantity"]
                    )
                store.insert_variant(
                    ctx.conn, ctx.shop.domain, product_id, {**copied, **cols, "position": position}
                )
        store.update_product(ctx.conn, product_id, {})
        fire_product(ctx, "products/update", product_id)
    ctx.forget("product", "variants", "options", "item")
    return {
        "__typename": typename,
        "product": load_product(ctx, product_id),
        "userErrors": [],
    }


MUTATIONS.update(
    {
        "metafieldsSet": metafields_set,
        "productVariantsBulkDelete": variants_bulk_delete,
        "productOptionsCreate": options_create,
    }
)
