"""Resolvers of the query root and of the lazily loaded fields of products and variants.

A resolver is ``fn(source, ctx, args) -> value``. ``FIELDS`` maps type → field → resolver;
anything not there is read from the source dict (see ``nodes``), and anything in neither is
a field the sandbox does not implement, which ``execution`` reports by name.
"""

from __future__ import annotations

import html
import re
from collections.abc import Callable
from decimal import Decimal
from typing import Any

from syncapp.sandbox.shopify.graphql_api import bulk_store, nodes, search, store
from syncapp.sandbox.shopify.graphql_api.context import Context
from syncapp.sandbox.shopify.graphql_api.errors import NotImplementedInSandbox, argument_error
from syncapp.sandbox.shopify.graphql_api.ids import gid, legacy_id, parse_gid
from syncapp.sandbox.shopify.graphql_api.pagination import PageArgs, connection, fetch_page

Resolver = Callable[[Any, Context, dict[str, Any]], Any]

# ---- loading with per-request caches -----------------------------------------------------


def load_product(ctx: Context, product_id: int) -> dict[str, Any] | None:
    def load() -> dict[str, Any] | None:
        row = store.get_product(ctx.conn, ctx.shop.domain, product_id)
        return nodes.product_node(row) if row else None

    result: dict[str, Any] | None = ctx.cached(("product", product_id), load)
    return result


def load_variant_rows(ctx: Context, product_id: int) -> list[dict[str, Any]]:
    rows: list[dict[str, Any]] = ctx.cached(
        ("variants", product_id), lambda: store.variants_of(ctx.conn, product_id)
    )
    return rows


def load_options(ctx: Context, product_id: int) -> list[store.Option]:
    options: list[store.Option] = ctx.cached(
        ("options", product_id), lambda: store.options_of(ctx.conn, product_id)
    )
    return options


def load_variant(ctx: Context, variant_id: int) -> dict[str, Any] | None:
    row = store.get_variant(ctx.conn, ctx.shop.domain, variant_id)
    return nodes.variant_node(row) if row else None


def app_namespace(ctx: Context, namespace: str | None) -> str:
    """Shopify's ``$app`` namespace aliases (and the default) → ``app--<client id>…``."""
    reserved = f"app--{ctx.state.config.client_id}"
    if namespace is None or namespace == "$app":
        return reserved
    if namespace.startswith("$app:"):
        return f"{reserved}--{namespace.removeprefix('$app:')}"
    return namespace


def node_by_gid(ctx: Context, value: str) -> dict[str, Any] | None:
    parsed = parse_gid(value)
    if parsed is None:
        raise argument_error(f"Invalid global id '{value}'", code="invalidGlobalId")
    kind, number = parsed
    if kind == "Product":
        return load_product(ctx, number)
    if kind == "ProductVariant":
        return load_variant(ctx, number)
    if kind == "BulkOperation":
        row = bulk_store.get(ctx.conn, ctx.shop.domain, number)
        return nodes.bulk_operation_node(row) if row else None
    if kind in ("Location", "InventoryItem", "ProductSetOperation"):
        # These modules import this one: resolve them at call time.
        from syncapp.sandbox.shopify.graphql_api import inventory, operations

        if kind == "Location":
            return inventory.location_by_gid(ctx, number)
        if kind == "InventoryItem":
            return inventory.inventory_item_by_gid(ctx, number)
        return operations.operation_by_id(ctx, number)
    if kind == "Shop":
        return nodes.shop_node(ctx.shop) if number == ctx.shop.id else None
    if kind in ("AppSubscription", "AppUsageRecord"):
        # billing imports mutations, which imports this module: resolve it at call time.
        from syncapp.sandbox.shopify.graphql_api import billing

        if kind == "AppSubscription":
            return billing.subscription_by_gid(ctx, value)
        return billing.usage_record_by_gid(ctx, value)
    raise NotImplementedInSandbox(f"node(id:) for {kind}")


# ---- query root ----------------------------------------------------------------------------

_PRODUCT_SORT = {
    "ID": "p.id",
    "RELEVANCE": "p.id",
    "TITLE": "p.title",
    "UPDATED_AT": "p.updated_at",
    "CREATED_AT": "p.created_at",
    "VENDOR": "p.vendor",
    "PRODUCT_TYPE": "p.product_type",
    "PUBLISHED_AT": "COALESCE(p.published_at, '')",
}

_VARIANT_SORT = {
    "ID": "v.id",
    "RELEVANCE": "v.id",
    "POSITION": "v.position",
    "SKU": "COALESCE(v.sku, '')",
    "TITLE": "v.title",
}


def _sort_expr(table: dict[str, str], key: str, type_name: str) -> str:
    if key not in table:
        raise NotImplementedInSandbox(f"Sort key {type_name}.{key}")
    return table[key]


def _reject(args: dict[str, Any], *names: str, field: str) -> None:
    for name in names:
        if args.get(name) is not None:
            raise NotImplementedInSandbox(f"Argument '{name}' of '{field}'")


def _search(
    ctx: Context, query: str | None, fields: dict[str | None, search.Handler]
) -> search.Compiled:
    compiled = search.compile_search(query, fields)
    if compiled.warnings:
        ctx.search_warnings.append({"query": query, "warnings": compiled.warnings})
    return compiled


def products(_: Any, ctx: Context, args: dict[str, Any]) -> dict[str, Any]:
    _reject(args, "savedSearchId", field="QueryRoot.products")
    page_args = PageArgs.from_args(args, unbounded=ctx.bulk)
    compiled = _search(ctx, args.get("query"), search.PRODUCT_FIELDS)
    page = fetch_page(
        ctx.conn,
        table="sb_products p",
        where=f"p.shop_domain = ? AND {compiled.sql}",
        params=[ctx.shop.domain, *compiled.params],
        sort_expr=_sort_expr(_PRODUCT_SORT, args.get("sortKey") or "ID", "ProductSortKeys"),
        id_expr="p.id",
        page=page_args,
        select="p.*",
    )
    built = []
    for row in page.rows:
        node = nodes.product_node(row)
        ctx.cache[("product", row["id"])] = node
        built.append(node)
    return connection("Product", page, built)


def variants_connection(
    ctx: Context, args: dict[str, Any], where: str, params: list[Any]
) -> dict[str, Any]:
    page_args = PageArgs.from_args(args, unbounded=ctx.bulk)
    page = fetch_page(
        ctx.conn,
        table="sb_variants v",
        where=where,
        params=params,
        sort_expr=_sort_expr(_VARIANT_SORT, args.get("sortKey") or "ID", "ProductVariantSortKeys"),
        id_expr="v.id",
        page=page_args,
        select="v.*",
    )
    return connection("ProductVariant", page, [nodes.variant_node(r) for r in page.rows])


def product_variants(_: Any, ctx: Context, args: dict[str, Any]) -> dict[str, Any]:
    _reject(args, "savedSearchId", field="QueryRoot.productVariants")
    compiled = _search(ctx, args.get("query"), search.VARIANT_FIELDS)
    return variants_connection(
        ctx, args, f"v.shop_domain = ? AND {compiled.sql}", [ctx.shop.domain, *compiled.params]
    )


def product(_: Any, ctx: Context, args: dict[str, Any]) -> dict[str, Any] | None:
    number = legacy_id(args["id"], "Product")
    return load_product(ctx, number) if number is not None else None


def product_by_handle(_: Any, ctx: Context, args: dict[str, Any]) -> dict[str, Any] | None:
    row = store.get_product_by_handle(ctx.conn, ctx.shop.domain, args["handle"])
    return nodes.product_node(row) if row else None


def product_by_identifier(_: Any, ctx: Context, args: dict[str, Any]) -> dict[str, Any] | None:
    identifier = args["identifier"]
    if identifier.get("id") is not None:
        return product(None, ctx, {"id": identifier["id"]})
    if identifier.get("handle") is not None:
        return product_by_handle(None, ctx, {"handle": identifier["handle"]})
    from syncapp.sandbox.shopify.graphql_api.mutations import product_by_custom_id

    row = product_by_custom_id(ctx, identifier["customId"])
    return nodes.product_node(row) if row else None


def product_variant(_: Any, ctx: Context, args: dict[str, Any]) -> dict[str, Any] | None:
    number = legacy_id(args["id"], "ProductVariant")
    return load_variant(ctx, number) if number is not None else None


def node(_: Any, ctx: Context, args: dict[str, Any]) -> dict[str, Any] | None:
    return node_by_gid(ctx, args["id"])


def nodes_(_: Any, ctx: Context, args: dict[str, Any]) -> list[dict[str, Any] | None]:
    if len(args["ids"]) > 250:
        raise argument_error("The ids argument accepts at most 250 ids.")
    return [node_by_gid(ctx, value) for value in args["ids"]]


def shop(_: Any, ctx: Context, args: dict[str, Any]) -> dict[str, Any]:
    return nodes.shop_node(ctx.shop)


def bulk_operation(_: Any, ctx: Context, args: dict[str, Any]) -> dict[str, Any] | None:
    number = legacy_id(args["id"], "BulkOperation")
    row = bulk_store.get(ctx.conn, ctx.shop.domain, number) if number is not None else None
    return nodes.bulk_operation_node(row) if row else None


def current_bulk_operation(_: Any, ctx: Context, args: dict[str, Any]) -> dict[str, Any] | None:
    row = bulk_store.current(ctx.conn, ctx.shop.domain, args.get("type") or "QUERY")
    return nodes.bulk_operation_node(row) if row else None


# ---- Product -------------------------------------------------------------------------------


def product_variants_field(src: dict[str, Any], ctx: Context, args: dict[str, Any]) -> Any:
    args = {**args, "sortKey": args.get("sortKey") or "POSITION"}
    return variants_connection(ctx, args, "v.product_id = ?", [src["_pk"]])


def product_variants_count(src: dict[str, Any], ctx: Context, args: dict[str, Any]) -> Any:
    return {
        "__typename": "Count",
        "count": len(load_variant_rows(ctx, src["_pk"])),
        "precision": "EXACT",
    }


def product_options(src: dict[str, Any], ctx: Context, args: dict[str, Any]) -> Any:
    options = load_options(ctx, src["_pk"])
    variants = load_variant_rows(ctx, src["_pk"])
    built = []
    for option in options:
        column = f"option{option.position}"
        used = {v[column] for v in variants if v.get(column) is not None}
        built.append(nodes.option_node(option, used))
    first = args.get("first")
    return built[:first] if first is not None else built


def _metafield_owner(src: dict[str, Any]) -> tuple[str, int]:
    kind = "PRODUCT" if src["__typename"] == "Product" else "PRODUCTVARIANT"
    return kind, src["_pk"]


def metafield_field(src: dict[str, Any], ctx: Context, args: dict[str, Any]) -> Any:
    owner_type, owner_id = _metafield_owner(src)
    row = store.get_metafield(
        ctx.conn, owner_type, owner_id, app_namespace(ctx, args.get("namespace")), args["key"]
    )
    return nodes.metafield_node(row) if row else None


def metafields_field(src: dict[str, Any], ctx: Context, args: dict[str, Any]) -> Any:
    owner_type, owner_id = _metafield_owner(src)
    page_args = PageArgs.from_args(args, unbounded=ctx.bulk)
    where = "m.owner_type = ? AND m.owner_id = ?"
    params: list[Any] = [owner_type, owner_id]
    if args.get("namespace") is not None:
        where += " AND m.namespace = ?"
        params.append(app_namespace(ctx, args["namespace"]))
    keys = args.get("keys")
    if keys:
        # keys are "namespace.key"; the namespace part may itself contain dots only as $app:…
        pairs = [k.rsplit(".", 1) for k in keys if "." in k]
        where += " AND (" + " OR ".join("(m.namespace = ? AND m.key = ?)" for _ in pairs) + ")"
        for ns, key in pairs:
            params += [app_namespace(ctx, ns), key]
    page = fetch_page(
        ctx.conn,
        table="sb_metafields m",
        where=where,
        params=params,
        sort_expr="m.id",
        id_expr="m.id",
        page=page_args,
        select="m.*",
    )
    return connection("Metafield", page, [nodes.metafield_node(r) for r in page.rows])


def _money(amount: Decimal, ctx: Context) -> dict[str, Any]:
    return {
        "__typename": "MoneyV2",
        "amount": _decimal_str(amount),
        "currencyCode": ctx.shop.currency_code,
    }


def _decimal_str(amount: Decimal) -> str:
    # Shopify's Decimal scalar drops trailing zeros past one decimal: "19.9", "20.0".
    text = format(amount.normalize(), "f")
    return text if "." in text else f"{text}.0"


def price_range(src: dict[str, Any], ctx: Context, args: dict[str, Any]) -> Any:
    prices = [Decimal(v["price"]) for v in load_variant_rows(ctx, src["_pk"])] or [Decimal(0)]
    return {
        "__typename": "ProductPriceRangeV2",
        "minVariantPrice": _money(min(prices), ctx),
        "maxVariantPrice": _money(max(prices), ctx),
    }


def total_inventory(src: dict[str, Any], ctx: Context, args: dict[str, Any]) -> Any:
    return sum(v["inventory_quantity"] for v in load_variant_rows(ctx, src["_pk"]))


def has_only_default_variant(src: dict[str, Any], ctx: Context, args: dict[str, Any]) -> Any:
    options = load_options(ctx, src["_pk"])
    return (
        len(options) == 1
        and options[0].name == store.DEFAULT_OPTION
        and [v.name for v in options[0].values] == [store.DEFAULT_VALUE]
    )


def has_out_of_stock(src: dict[str, Any], ctx: Context, args: dict[str, Any]) -> Any:
    return any(v["inventory_quantity"] <= 0 for v in load_variant_rows(ctx, src["_pk"]))


def description(src: dict[str, Any], ctx: Context, args: dict[str, Any]) -> Any:
    text = html.unescape(re.sub(r"<[^>]+>", " ", src["descriptionHtml"]))
    text = " ".join(text.split())
    limit = args.get("truncateAt")
    if limit is not None and len(text) > limit:
        return text[: max(limit - 3, 0)] + "..."
    return text


def empty_media(src: dict[str, Any], ctx: Context, args: dict[str, Any]) -> Any:
    PageArgs.from_args(args, unbounded=ctx.bulk)
    return {
        "__typename": "MediaConnection",
        "edges": [],
        "nodes": [],
        "pageInfo": {
            "__typename": "PageInfo",
            "hasNextPage": False,
            "hasPreviousPage": False,
            "startCursor": None,
            "endCursor": None,
        },
    }


# ---- ProductVariant ------------------------------------------------------------------------


def variant_product(src: dict[str, Any], ctx: Context, args: dict[str, Any]) -> Any:
    return load_product(ctx, src["_product_id"])


def variant_selected_options(src: dict[str, Any], ctx: Context, args: dict[str, Any]) -> Any:
    result = []
    for option in load_options(ctx, src["_product_id"]):
        value_name = src["_option_values"][option.position - 1]
        value = next((v for v in option.values if v.name == value_name), None)
        if value is None:
            continue
        result.append(
            {
                "__typename": "SelectedOption",
                "name": option.name,
                "value": value.name,
                "optionValue": nodes.option_value_node(value, True),
            }
        )
    return result


def variant_display_name(src: dict[str, Any], ctx: Context, args: dict[str, Any]) -> Any:
    parent = load_product(ctx, src["_product_id"])
    title = parent["title"] if parent else ""
    return f"{title} - {src['title']}"


def inventory_item_variant(src: dict[str, Any], ctx: Context, args: dict[str, Any]) -> Any:
    return load_variant(ctx, int(src["legacyResourceId"]) - store.INVENTORY_ITEM_OFFSET)


def _item(src: dict[str, Any], ctx: Context) -> dict[str, Any]:
    item: dict[str, Any] = ctx.cached(
        ("item", src["_variant_pk"]), lambda: store.inventory_item_of(ctx.conn, src["_variant_pk"])
    )
    return item


def inventory_item_tracked(src: dict[str, Any], ctx: Context, args: dict[str, Any]) -> Any:
    return bool(_item(src, ctx)["tracked"])


def inventory_item_requires_shipping(
    src: dict[str, Any], ctx: Context, args: dict[str, Any]
) -> Any:
    return bool(_item(src, ctx)["requires_shipping"])


def inventory_item_measurement(src: dict[str, Any], ctx: Context, args: dict[str, Any]) -> Any:
    item = _item(src, ctx)
    return {
        "__typename": "InventoryItemMeasurement",
        "id": gid("InventoryItemMeasurement", src["_variant_pk"] + store.INVENTORY_ITEM_OFFSET),
        "weight": {
            "__typename": "Weight",
            "value": float(item["weight_value"]),
            "unit": item["weight_unit"],
        },
    }


FIELDS: dict[str, dict[str, Resolver]] = {
    "QueryRoot": {
        "shop": shop,
        "product": product,
        "productByHandle": product_by_handle,
        "productByIdentifier": product_by_identifier,
        "products": products,
        "productVariant": product_variant,
        "productVariants": product_variants,
        "node": node,
        "nodes": nodes_,
        "bulkOperation": bulk_operation,
        "currentBulkOperation": current_bulk_operation,
    },
    "Product": {
        "variants": product_variants_field,
        "variantsCount": product_variants_count,
        "options": product_options,
        "metafield": metafield_field,
        "metafields": metafields_field,
        "priceRangeV2": price_range,
        "totalInventory": total_inventory,
        "hasOnlyDefaultVariant": has_only_default_variant,
        "hasOutOfStockVariants": has_out_of_stock,
        "description": description,
        "media": empty_media,
    },
    "ProductVariant": {
        "product": variant_product,
        "selectedOptions": variant_selected_options,
        "displayName": variant_display_name,
        "metafield": metafield_field,
        "metafields": metafields_field,
    },
    "InventoryItem": {
        "variant": inventory_item_variant,
        "tracked": inventory_item_tracked,
        "requiresShipping": inventory_item_requires_shipping,
        "measurement": inventory_item_measurement,
    },
}
