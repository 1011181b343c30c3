"""Fingerprints of the synced fields: equal fingerprints mean "nothing to sync".

A fingerprint hashes the canonical form of a :class:`~syncapp.sync.catalog.Product`'s synced
fields: money as canonical text (``"19.9"`` = ``"19.90"``), variants in SKU-and-options order
(their order on a side does not matter), ids and ``updated_at`` left out (each side has its own),
and no inventory at all, so the ``products/update`` an order fires is a no-op. The engine stores
the fingerprint of the last agreed state per side; a fetched state with the same fingerprint is
an echo or a duplicate.
"""

from __future__ import annotations

import hashlib
from typing import Any

import orjson

from syncapp.sync.catalog import Product, Variant, money_text

__all__ = ["canonical", "fingerprint", "variant_canonical"]


def variant_canonical(variant: Variant) -> dict[str, Any]:
    """The synced fields of a variant as JSON-able values."""
    return {
        "sku": variant.sku or "",
        "options": list(variant.options),
        "price": money_text(variant.price),
        "compare_at_price": (
            None if variant.compare_at_price is None else money_text(variant.compare_at_price)
        ),
        # A variant without a weight has no unit to compare. Shopify reads a weight never
        # set as 0 kg, so a zero weight is no weight (else a product created in Shopify from
        # one without a weight would differ from its source at once).
        "weight": money_text(variant.weight) if variant.weight else None,
        "weight_unit": variant.weight_unit.value if variant.weight else None,
    }


def canonical(product: Product) -> dict[str, Any]:
    """The synced fields of a product as JSON-able values, variants sorted."""
    variants = sorted(
        (variant_canonical(v) for v in product.variants),
        key=lambda v: orjson.dumps(v, option=orjson.OPT_SORT_KEYS),
    )
    return {
        "title": product.title,
        "status": product.status.value,
        "description": product.description,
        "vendor": product.vendor,
        "product_type": product.product_type,
        "options": [{"name": o.name, "values": list(o.values)} for o in product.options],
        "image": product.image,
        "variants": variants,
    }


def fingerprint(product: Product) -> str:
    """A stable hex digest of :func:`canonical` (same on every machine and Python version)."""
    return hashlib.sha256(orjson.dumps(canonical(product), option=orjson.OPT_SORT_KEYS)).hexdigest()
