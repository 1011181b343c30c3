"""Demo seeding: idempotent, deterministic, through productSet (so it fires webhooks)."""

from __future__ import annotations

from syncapp.sandbox.shopify.seed import demo_product_input, seed_demo_products
from tests.unit.sandbox.conftest import SHOP, Sandbox


def test_seeding_creates_only_the_missing_products(sandbox: Sandbox) -> None:
    """Seeding to 10, again to 10, then to 12 creates 10, 0, then 2 products."""
    assert seed_demo_products(sandbox.state, SHOP, 10) == 10
    assert seed_demo_products(sandbox.state, SHOP, 10) == 0
    assert seed_demo_products(sandbox.state, SHOP, 12) == 2
    assert len(sandbox.outbox("products/create")) == 12


def test_seeded_products_have_options_variants_prices_and_skus(sandbox: Sandbox) -> None:
    """Every demo product has 1-3 options, 1-6 variants, prices and SKUs."""
    seed_demo_products(sandbox.state, SHOP, 30)
    products = sandbox.run(
        "{ products(first: 30) { nodes { vendor productType tags options { name }"
        " variants(first: 10) { nodes { sku price compareAtPrice } } } } }"
    )["products"]["nodes"]
    assert len(products) == 30
    for product in products:
        assert 1 <= len(product["options"]) <= 3
        assert 1 <= len(product["variants"]["nodes"]) <= 6
        assert product["vendor"]
        assert product["productType"]
        assert product["tags"]
        assert all(v["sku"] and float(v["price"]) > 0 for v in product["variants"]["nodes"])
    assert any(v["compareAtPrice"] for p in products for v in p["variants"]["nodes"])


def test_demo_product_inputs_are_deterministic_and_distinct() -> None:
    """Product n is always the same input, and no two demo products share a title."""
    assert demo_product_input(7) == demo_product_input(7)
    titles = {demo_product_input(i)["title"] for i in range(1000)}
    assert len(titles) == 1000
