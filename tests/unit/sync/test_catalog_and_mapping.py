"""Money, and the mappings Shopify ⇄ neutral ⇄ eManageCRM (pitfalls 11, 17, 19)."""

from __future__ import annotations

from dataclasses import replace
from decimal import Decimal

import pytest
from hypothesis import given
from hypothesis import strategies as st

from syncapp.sync.catalog import InvalidMoney, Product, money, money_text
from syncapp.sync.mapping import (
    emanage_product,
    product_from_emanage,
    product_from_shopify,
    product_set_input,
    shopify_node,
    variant_bulk_input,
)
from tests.unit.sync.strategies import amounts, products


def test_money_with_and_without_a_trailing_zero_is_the_same_amount() -> None:
    """ "19.9" and "19.90" parse to equal amounts with one canonical text."""
    assert money("19.9") == money("19.90")
    assert money_text(money("19.9")) == money_text(money("19.90")) == "19.90"


def test_money_keeps_sub_cent_digits() -> None:
    """A three-decimal Shopify Decimal is kept, not rounded to cents."""
    assert money_text(money("29.999")) == "29.999"


def test_a_json_float_becomes_its_shortest_decimal() -> None:
    """eManageCRM's JSON number 19.9 is Decimal("19.9"), not the float's binary expansion."""
    assert money(19.9) == Decimal("19.9")


@pytest.mark.parametrize("bad", ["NaN", "Infinity", "abc", True, None, [1]])
def test_money_refuses_what_is_not_a_finite_amount(bad: object) -> None:
    """NaN, infinities, text, booleans and other types raise InvalidMoney."""
    with pytest.raises(InvalidMoney):
        money(bad)


@given(amounts)
def test_money_text_round_trips(amount: Decimal) -> None:
    """Parsing the canonical text gives the same amount back."""
    assert money(money_text(amount)) == amount


def _without_emanage_ids(p: Product) -> Product:
    return replace(
        p, emanage_id=None, variants=tuple(replace(v, emanage_id=None) for v in p.variants)
    )


@given(products())
def test_shopify_round_trip_is_the_identity(product: Product) -> None:
    """neutral → Shopify node → neutral keeps every synced field (eManageCRM ids aside)."""
    back = product_from_shopify(shopify_node(product))
    assert back == _without_emanage_ids(product)
    assert back.updated_at == product.updated_at


@given(products())
def test_emanage_round_trip_is_the_identity(product: Product) -> None:
    """neutral → eManageCRM resource → neutral keeps every synced field and both ids."""
    assert product_from_emanage(emanage_product(product, currency="USD")) == product


@given(products())
def test_emanage_prices_are_discounted_and_full_retail(product: Product) -> None:
    """Price is DiscountedPrice, compare-at FullRetailPrice, both {Value, FormattedValue}."""
    body = emanage_product(product, currency="USD")
    for variant, out in zip(product.variants, body["variants"], strict=True):
        prices = out["productPrices"]
        assert prices["DiscountedPrice"]["Value"] == variant.price
        assert prices["DiscountedPrice"]["FormattedValue"] == "$" + money_text(variant.price)
        if variant.compare_at_price is None:
            assert "FullRetailPrice" not in prices
        else:
            assert prices["FullRetailPrice"]["Value"] == variant.compare_at_price


@given(products())
def test_product_set_input_sends_variants_and_options_together(product: Product) -> None:
    """productSet input carries productOptions with variants, SKU and weight in inventoryItem."""
    body = product_set_input(product)
    assert body["productOptions"]
    assert len(body["variants"]) == len(product.variants)
    for variant, out in zip(product.variants, body["variants"], strict=True):
        assert "sku" not in out
        assert "weight" not in out
        assert out["inventoryItem"]["sku"] == variant.sku
        assert len(out["optionValues"]) == len(body["productOptions"])
        assert ("measurement" in out["inventoryItem"]) == (variant.weight is not None)


def test_a_product_without_options_maps_to_shopify_default_title() -> None:
    """Shopify's standalone "Default Title" option is no option in the neutral model."""
    node = {
        "id": "gid://shopify/Product/9",
        "title": "Mug",
        "options": [{"name": "Title", "values": ["Default Title"]}],
        "variants": {
            "nodes": [
                {
                    "id": "gid://shopify/ProductVariant/9",
                    "sku": "MUG",
                    "price": "5.0",
                    "compareAtPrice": None,
                    "selectedOptions": [{"name": "Title", "value": "Default Title"}],
                    "inventoryQuantity": 3,
                }
            ]
        },
    }
    product = product_from_shopify(node)
    assert product.options == ()
    assert product.variants[0].options == ()
    assert product_set_input(product)["productOptions"] == [
        {"name": "Title", "values": [{"name": "Default Title"}]}
    ]


@given(products(), st.sets(st.sampled_from(["price", "compare_at_price", "sku", "weight"])))
def test_variant_bulk_input_carries_only_the_changed_fields(
    product: Product, fields: set[str]
) -> None:
    """A price-only change sends only price; SKU and weight go through inventoryItem."""
    out = variant_bulk_input(product.variants[0], frozenset(fields))
    assert ("price" in out) == ("price" in fields)
    assert ("compareAtPrice" in out) == ("compare_at_price" in fields)
    item = out.get("inventoryItem", {})
    assert ("sku" in item) == ("sku" in fields)
    assert ("measurement" in item) == ("weight" in fields)
    assert set(out) <= {"id", "price", "compareAtPrice", "inventoryItem"}
