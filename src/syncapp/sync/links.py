"""Pure helpers of the engine's bookkeeping: the agreed state as JSON (the link's ``agreed``
column), the variant links of a merged product, and the idempotency keys of writes.

Idempotency keys are derived, never random, so a retried or duplicated event sends the very
same key for the very same write and the other side answers it once:

- a **create** is keyed by the source side's id alone (``create`` of Shopify product G in
  eManageCRM is the same request however often it is retried, whatever G's state is by then);
- an **update** or **archive** is keyed by the target object, the version it is based on (the
  If-Match version) and the fingerprint of the target state: the same write of the same state
  on the same version is one request; a later real change (a new version, or another target)
  is a new key, so going back to an earlier state (price 10 → 12 → 10) is never swallowed
  as a replay of the first write.
"""

from __future__ import annotations

import hashlib
from collections.abc import Iterable, Mapping, Sequence
from dataclasses import replace
from datetime import datetime
from typing import Any

from syncapp.sync.catalog import Option, Product, ProductStatus, Variant, WeightUnit, money
from syncapp.sync.catalog import money_text as _text
from syncapp.sync.plan import VariantLink

__all__ = [
    "agreed_from_json",
    "agreed_to_json",
    "batch_key",
    "create_key",
    "fill_ids",
    "same_variant_ids",
    "shopify_product_gid",
    "snapshot_is_current",
    "variant_links_of",
    "with_shopify_refs",
    "write_key",
]

_KEY_PREFIX = "syncapp-"
PRODUCT_GID = "gid://shopify/Product/"


def agreed_to_json(product: Product) -> dict[str, Any]:
    """``product`` (ids included, clock left out) as JSON-able values; money as canonical text."""
    return {
        "title": product.title,
        "status": product.status.value,
        "description": product.description,
        "vendor": product.vendor,
        "product_type": product.product_type,
        "options": [{"name": o.name, "values": list(o.values)} for o in product.options],
        "image": product.image,
        "shopify_id": product.shopify_id,
        "emanage_id": product.emanage_id,
        "variants": [
            {
                "sku": v.sku,
                "options": list(v.options),
                "price": _text(v.price),
                "compare_at_price": None
                if v.compare_at_price is None
                else _text(v.compare_at_price),
                "weight": None if v.weight is None else _text(v.weight),
                "weight_unit": v.weight_unit.value,
                "shopify_id": v.shopify_id,
                "emanage_id": v.emanage_id,
            }
            for v in product.variants
        ],
    }


def agreed_from_json(data: Mapping[str, Any]) -> Product:
    """The inverse of :func:`agreed_to_json`."""
    return Product(
        title=str(data["title"]),
        status=ProductStatus(data["status"]),
        description=str(data.get("description") or ""),
        vendor=str(data.get("vendor") or ""),
        product_type=str(data.get("product_type") or ""),
        options=tuple(
            Option(str(o["name"]), tuple(str(v) for v in o["values"]))
            for o in data.get("options") or ()
        ),
        image=data.get("image"),
        shopify_id=data.get("shopify_id"),
        emanage_id=data.get("emanage_id"),
        variants=tuple(
            Variant(
                sku=v.get("sku"),
                options=tuple(str(x) for x in v.get("options") or ()),
                price=money(v["price"]),
                compare_at_price=None
                if v.get("compare_at_price") is None
                else money(v["compare_at_price"]),
                weight=None if v.get("weight") is None else money(v["weight"]),
                weight_unit=WeightUnit(v.get("weight_unit") or WeightUnit.KILOGRAMS),
                shopify_id=v.get("shopify_id"),
                emanage_id=v.get("emanage_id"),
            )
            for v in data.get("variants") or ()
        ),
    )


def fill_ids(product: Product, *, shopify: Product | None, emanage: Product | None) -> Product:
    """``product`` with the product and variant ids each side has for it: a variant takes the
    ids of the side's variant with the same SKU and option values (a variant just created
    there has its new id only on that side's answer). Ids already set stay."""

    def index(side: Product | None) -> dict[tuple[str | None, tuple[str, ...]], Variant]:
        return {} if side is None else {v.key: v for v in side.variants}

    by_s, by_e = index(shopify), index(emanage)
    variants = []
    for v in product.variants:
        s, e = by_s.get(v.key), by_e.get(v.key)
        variants.append(
            replace(
                v,
                shopify_id=(s.shopify_id if s else None) or v.shopify_id,
                emanage_id=(e.emanage_id if e else None) or v.emanage_id,
            )
        )
    return replace(
        product,
        shopify_id=(shopify.shopify_id if shopify else None) or product.shopify_id,
        emanage_id=(emanage.emanage_id if emanage else None) or product.emanage_id,
        variants=tuple(variants),
    )


def with_shopify_refs(emanage: Product, agreed: Product) -> Product:
    """eManageCRM's product ``emanage`` with its external references set to the Shopify ids
    the pair agreed on: the product's GID, and each variant's GID by its eManageCRM variant id
    (a variant the link does not know keeps its reference). Equal to ``emanage`` when the
    references are already right, so the engine writes them once, when a link is made or a
    Shopify id changed (a re-link), never on every sync. Only ids change: the fingerprint
    stays, so the notification of that write is an echo."""
    by_variant = {v.emanage_id: v.shopify_id for v in agreed.variants if v.emanage_id}
    return replace(
        emanage,
        shopify_id=agreed.shopify_id or emanage.shopify_id,
        variants=tuple(
            replace(v, shopify_id=by_variant.get(v.emanage_id or "") or v.shopify_id)
            for v in emanage.variants
        ),
    )


def same_variant_ids(links: Sequence[VariantLink], product: Product, *, shopify: bool) -> bool:
    """Whether ``product``'s variant ids of one side (Shopify's when ``shopify``) are the ones
    the link holds: an unchanged fingerprint with other ids is a replaced variant (Shopify's
    productSet without ids), to be re-linked, not an echo."""
    if shopify:
        return {v.shopify_id for v in product.variants} == {link.shopify_id for link in links}
    return {v.emanage_id for v in product.variants} == {link.emanage_id for link in links}


def variant_links_of(product: Product) -> tuple[VariantLink, ...]:
    """The variant links of an agreed product (one per variant, ids of both sides)."""
    return tuple(
        VariantLink(v.shopify_id, v.emanage_id, v.sku, v.options) for v in product.variants
    )


def _digest(parts: Iterable[object]) -> str:
    text = "\x1f".join("" if p is None else str(p) for p in parts)
    return hashlib.sha256(text.encode()).hexdigest()[:48]


def create_key(*, shop: str, target: str, source_id: str) -> str:
    """The Idempotency-Key of creating the counterpart of ``source_id`` on side ``target``."""
    return _KEY_PREFIX + _digest(("create", shop, target, source_id))


def batch_key(*, shop: str, target: str, scope: str, item_keys: Iterable[str]) -> str:
    """The Idempotency-Key of a batch of writes: the same items in the same ``scope`` (a
    backfill run) are the same batch. Each item carries its own key as well, which is what
    makes an item safe when it is sent again in another batch."""
    return _KEY_PREFIX + _digest(("batch", shop, target, scope, *item_keys))


def snapshot_is_current(taken: datetime | None, agreed_at: datetime | None) -> bool:
    """Whether a state of a Shopify product taken at ``taken`` (a bulk export's ``updatedAt``)
    may stand for the product, given the Shopify clock of the link's agreed state: not when
    the link already holds that state or a newer one (an edit after the export began)."""
    if agreed_at is None:
        return True
    return taken is not None and taken > agreed_at


def write_key(
    *, shop: str, target: str, object_id: str, action: str, version: int | None, fingerprint: str
) -> str:
    """The Idempotency-Key of ``action`` (update, archive) of ``object_id`` on side ``target``
    from ``version`` to the state whose fingerprint is ``fingerprint``."""
    return _KEY_PREFIX + _digest((action, shop, target, object_id, version, fingerprint))


def unique_skus(variants: Sequence[Variant]) -> list[str]:
    """The SKUs of ``variants`` in order, each once (what a match by SKU asks for)."""
    seen: dict[str, None] = {}
    for v in variants:
        if v.sku:
            seen.setdefault(v.sku)
    return list(seen)


def shopify_product_gid(body: object) -> str | None:
    """The product's GID from a REST-shaped webhook body: ``admin_graphql_api_id``, else the
    numeric ``id`` (deletes carry only that); None when the body names no product."""
    if not isinstance(body, Mapping):
        return None
    gid = body.get("admin_graphql_api_id")
    if isinstance(gid, str):
        tail = gid.removeprefix(PRODUCT_GID)
        return gid if gid.startswith(PRODUCT_GID) and tail.isdigit() else None
    ident = body.get("id")
    if isinstance(ident, bool):
        return None
    if isinstance(ident, int) and ident > 0:
        return f"{PRODUCT_GID}{ident}"
    if isinstance(ident, str) and ident.isdigit():
        return f"{PRODUCT_GID}{ident}"
    return None
