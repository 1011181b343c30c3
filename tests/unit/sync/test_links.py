"""The engine's pure bookkeeping: the agreed state survives its JSON column, ids are filled
from each side by variant key, and idempotency keys are derived so that a retried write reuses
its key while a different write (another version or target) never does."""

from __future__ import annotations

from dataclasses import replace
from decimal import Decimal

import orjson
from hypothesis import given
from hypothesis import strategies as st

from syncapp.sync.catalog import Product, Variant
from syncapp.sync.fingerprint import fingerprint
from syncapp.sync.links import (
    agreed_from_json,
    agreed_to_json,
    create_key,
    fill_ids,
    shopify_product_gid,
    unique_skus,
    variant_links_of,
    write_key,
)
from tests.unit.sync.strategies import products


@given(products())
def test_the_agreed_state_round_trips_through_json(product: Product) -> None:
    """Through real JSON text (what the column stores): equal product, equal fingerprint."""
    text = orjson.dumps(agreed_to_json(product))
    back = agreed_from_json(orjson.loads(text))
    assert back == replace(product, updated_at=None)
    assert fingerprint(back) == fingerprint(product)


@given(products(with_ids=False), products())
def test_ids_are_filled_by_variant_key_and_never_change_the_fingerprint(
    merged: Product, side: Product
) -> None:
    """A variant takes the ids of the side's variant with the same SKU and options; others
    keep theirs (None); the synced fields are untouched."""
    filled = fill_ids(merged, shopify=side, emanage=side)
    assert fingerprint(filled) == fingerprint(merged)
    by_key = {v.key: v for v in side.variants}
    for v in filled.variants:
        match = by_key.get(v.key)
        assert v.shopify_id == (match.shopify_id if match else None)
        assert v.emanage_id == (match.emanage_id if match else None)
    assert filled.shopify_id == side.shopify_id
    assert [link.sku for link in variant_links_of(filled)] == [v.sku for v in filled.variants]


ids = st.text("abc123", min_size=1, max_size=6)


@given(ids, ids, st.integers(1, 5), st.integers(1, 5), ids, ids)
def test_write_keys_are_equal_exactly_when_the_write_is(
    obj1: str, obj2: str, v1: int, v2: int, fp1: str, fp2: str
) -> None:
    a = write_key(
        shop="s", target="emanage", object_id=obj1, action="update", version=v1, fingerprint=fp1
    )
    b = write_key(
        shop="s", target="emanage", object_id=obj2, action="update", version=v2, fingerprint=fp2
    )
    assert (a == b) == ((obj1, v1, fp1) == (obj2, v2, fp2))
    assert len(a) <= 64


def test_a_create_key_depends_on_the_source_object_only() -> None:
    """Retried or duplicated, the create of one Shopify product's counterpart is one request;
    another product or shop is another."""
    key = create_key(shop="a.myshopify.com", target="emanage", source_id="gid://shopify/Product/1")
    assert key == create_key(
        shop="a.myshopify.com", target="emanage", source_id="gid://shopify/Product/1"
    )
    assert key != create_key(
        shop="a.myshopify.com", target="emanage", source_id="gid://shopify/Product/2"
    )
    assert key != create_key(
        shop="b.myshopify.com", target="emanage", source_id="gid://shopify/Product/1"
    )


def test_going_back_to_an_earlier_state_is_a_new_key() -> None:
    """10 → 12 → 10: the third write has the first write's target but a newer version."""
    first = write_key(
        shop="s", target="emanage", object_id="P", action="update", version=1, fingerprint="f10"
    )
    third = write_key(
        shop="s", target="emanage", object_id="P", action="update", version=3, fingerprint="f10"
    )
    assert first != third


def test_unique_skus_keeps_order_and_skips_blanks() -> None:
    vs = [Variant(sku=s, options=(), price=Decimal(1)) for s in ("B", None, "A", "B", "")]
    assert unique_skus(vs) == ["B", "A"]


@given(st.integers(1, 10**15))
def test_a_product_gid_comes_from_the_gid_or_the_numeric_id(n: int) -> None:
    gid = f"gid://shopify/Product/{n}"
    assert shopify_product_gid({"admin_graphql_api_id": gid, "id": n}) == gid
    assert shopify_product_gid({"id": n}) == gid  # products/delete carries only the id
    assert shopify_product_gid({"id": str(n)}) == gid


def test_a_payload_naming_no_product_gives_none() -> None:
    """An order body replayed under products/update, a malformed body, a bool id."""
    assert shopify_product_gid({"admin_graphql_api_id": "gid://shopify/Order/5", "id": 5}) is None
    assert shopify_product_gid({"admin_graphql_api_id": "gid://shopify/Product/x"}) is None
    assert shopify_product_gid({"id": True}) is None
    assert shopify_product_gid({"id": -3}) is None
    assert shopify_product_gid([1, 2]) is None
    assert shopify_product_gid({}) is None
