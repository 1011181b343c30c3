"""Fingerprints of the synced fields (pitfalls 1, 5, 19, 20)."""

from __future__ import annotations

import random
from dataclasses import replace
from decimal import Decimal

from hypothesis import given
from hypothesis import strategies as st

from syncapp.sync.catalog import Product
from syncapp.sync.fingerprint import fingerprint
from syncapp.sync.mapping import (
    emanage_product,
    product_from_emanage,
    product_from_shopify,
    shopify_node,
)
from tests.unit.sync.strategies import products


@given(products(), st.randoms())
def test_variant_order_does_not_change_the_fingerprint(
    product: Product, rnd: random.Random
) -> None:
    """The same variants listed in another order give the same fingerprint."""
    shuffled = list(product.variants)
    rnd.shuffle(shuffled)
    assert fingerprint(replace(product, variants=tuple(shuffled))) == fingerprint(product)


@given(products())
def test_both_sides_fingerprint_the_same_product_alike(product: Product) -> None:
    """The Shopify and the eManageCRM form of one product fingerprint alike (ids, clocks aside)."""
    from_shopify = product_from_shopify(shopify_node(product))
    from_emanage = product_from_emanage(emanage_product(product, currency="EUR"))
    assert fingerprint(from_shopify) == fingerprint(from_emanage) == fingerprint(product)


@given(products())
def test_inventory_only_changes_keep_the_fingerprint(product: Product) -> None:
    """A products/update fired by an order (inventory and timestamps only) is a no-op."""
    node = shopify_node(product)
    for i, variant in enumerate(node["variants"]["nodes"]):
        variant["inventoryQuantity"] = i * 7 - 3
        variant["inventoryItem"]["tracked"] = True
    node["updatedAt"] = "2031-01-01T00:00:00+00:00"
    node["totalInventory"] = 42
    assert fingerprint(product_from_shopify(node)) == fingerprint(product)


@given(products())
def test_trailing_zeros_in_prices_keep_the_fingerprint(product: Product) -> None:
    """ "19.9" and "19.90" as a price fingerprint alike."""
    node = shopify_node(product)
    for variant in node["variants"]["nodes"]:
        variant["price"] = variant["price"] + "0"
    assert fingerprint(product_from_shopify(node)) == fingerprint(product)


@given(
    products(), st.sampled_from(["title", "price", "compare_at_price", "sku", "weight", "status"])
)
def test_a_change_of_a_synced_field_changes_the_fingerprint(product: Product, name: str) -> None:
    """Every synced field is covered: changing one changes the fingerprint."""
    v = product.variants[0]
    if name == "title":
        changed = replace(product, title=product.title + "!")
    elif name == "status":
        others = [s for s in type(product.status) if s is not product.status]
        changed = replace(product, status=others[0])
    else:
        field_value = {
            "price": v.price + Decimal("0.01"),
            "compare_at_price": (v.compare_at_price or Decimal(0)) + Decimal("1"),
            "sku": (v.sku or "") + "X",
            "weight": (v.weight or Decimal(0)) + Decimal("1"),
        }[name]
        changed = replace(
            product, variants=(replace(v, **{name: field_value}), *product.variants[1:])
        )
    assert fingerprint(changed) != fingerprint(product)


def test_fingerprint_is_a_stable_digest() -> None:
    """The digest does not depend on the process (no hash randomisation, no repr of floats)."""
    product = Product(title="Tee")
    assert fingerprint(product) == fingerprint(Product(title="Tee"))
    assert len(fingerprint(product)) == 64
