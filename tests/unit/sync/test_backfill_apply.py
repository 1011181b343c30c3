"""The backfill's pure routing and settling (syncapp.sync.backfill_apply): which exported
products go into an eManageCRM batch and which to the engine, and what a batch result means."""

from __future__ import annotations

from dataclasses import replace
from datetime import UTC, datetime, timedelta
from typing import Any

from hypothesis import given, settings
from hypothesis import strategies as st

from syncapp.connectors.emanage import BatchResult, EmanageProduct
from syncapp.sync.backfill_apply import Target, batch_writes, route, run_marker, settle
from syncapp.sync.bulk_jsonl import Assembled, Position
from syncapp.sync.catalog import Product, ProductStatus
from syncapp.sync.fingerprint import fingerprint
from syncapp.sync.links import create_key
from syncapp.sync.mapping import emanage_product, shopify_node
from tests.unit.sync.strategies import products

FEW = settings(max_examples=20, deadline=None)
GID = "gid://shopify/Product/7"
WHEN = datetime(2026, 12, 7, 10, 0, tzinfo=UTC)


def exported(product: Product) -> Assembled:
    node = shopify_node(replace(product, shopify_id=GID, updated_at=WHEN))
    return Assembled(gid=GID, snapshot=node, first=Position(0, 0))


def answered(
    product: Product, status: str, *, emanage_id: str = "3100001", ref: str | None = GID
) -> BatchResult:
    body: dict[str, Any] = emanage_product(
        replace(
            product,
            shopify_id=ref,
            emanage_id=emanage_id,
            variants=tuple(replace(v, emanage_id=f"52{i}") for i, v in enumerate(product.variants)),
        ),
        currency="USD",
    )
    body.update(version=1, updatedAt="2026-12-07T10:00:05Z", lastWriteOrigin="syncapp")
    return BatchResult(
        idempotency_key="k",
        status=status,  # type: ignore[arg-type]
        replayed=False,
        matched_by="sku" if status == "matched" else None,
        product=EmanageProduct.from_body(body),
    )


@FEW
@given(products(with_ids=False))
def test_an_unlinked_whole_product_goes_into_the_batch_keyed_as_the_engines_create(
    product: Product,
) -> None:
    (routed,) = route([exported(product)], {}, "run1")
    assert routed.target is Target.WRITE
    assert routed.product is not None
    assert fingerprint(routed.product) == fingerprint(product)
    (item,) = batch_writes("s.myshopify.com", "USD", [routed])
    assert item.idempotency_key == create_key(
        shop="s.myshopify.com", target="emanage", source_id=GID
    )
    assert item.match is True
    assert item.body["externalRefs"] == {"shopifyProductId": GID}


@FEW
@given(products(with_ids=False), st.sampled_from(["engine-op", None, "backfill/other"]))
def test_a_linked_product_goes_to_the_engine_unless_this_run_linked_it(
    product: Product, operation: str | None
) -> None:
    (other,) = route([exported(product)], {GID: operation}, "run1")
    assert other.target is Target.ENGINE
    (again,) = route([exported(product)], {GID: run_marker("run1")}, "run1")
    assert again.target is Target.DONE


def test_an_incomplete_or_repeated_sku_product_goes_to_the_engine() -> None:
    incomplete = Assembled(gid=GID, snapshot=None, first=Position(0, 0))
    base = Product(title="T", variants=())
    assert route([incomplete], {}, "r")[0].target is Target.ENGINE
    from decimal import Decimal

    from syncapp.sync.catalog import Option, Variant

    twice = replace(
        base,
        options=(Option("Size", ("S", "M")),),
        variants=(
            Variant(sku="X", options=("S",), price=Decimal(1)),
            Variant(sku="X", options=("M",), price=Decimal(1)),
        ),
    )
    assert route([exported(twice)], {}, "r")[0].target is Target.ENGINE


@FEW
@given(products())
def test_a_created_product_is_linked_with_both_ids_and_the_exports_clock(product: Product) -> None:
    (routed,) = route([exported(product)], {}, "r")
    assert routed.product is not None
    result = settle(routed.product, GID, answered(product, "created"))
    assert result.outcome is not None
    agreed = result.outcome.agreed
    assert agreed is not None
    assert fingerprint(agreed) == fingerprint(product)
    assert (agreed.shopify_id, agreed.emanage_id) == (GID, "3100001")
    assert all(v.emanage_id and v.shopify_id for v in agreed.variants)
    assert result.outcome.shopify_updated_at == WHEN
    assert result.outcome.emanage_version == 1
    assert result.outcome.emanage_updated_at == WHEN + timedelta(seconds=5)
    assert result.archived is (product.status is ProductStatus.ARCHIVED)


@FEW
@given(products(with_ids=False), products(with_ids=False))
def test_a_match_is_linked_only_when_the_sides_agree(mine: Product, theirs: Product) -> None:
    (routed,) = route([exported(mine)], {}, "r")
    assert routed.product is not None
    same = settle(routed.product, GID, answered(mine, "matched"))
    assert same.outcome is not None
    assert not same.archived
    other = settle(routed.product, GID, answered(theirs, "matched"))
    assert (other.outcome is None) is (fingerprint(theirs) != fingerprint(mine))
    # Matched by SKU without its reference: the engine writes the references (ADR 0024).
    unreferenced = settle(routed.product, GID, answered(mine, "matched", ref=None))
    assert unreferenced.outcome is None


@FEW
@given(products(with_ids=False), st.sampled_from(["conflict", "error"]))
def test_a_refused_item_goes_to_the_engine(product: Product, status: str) -> None:
    (routed,) = route([exported(product)], {}, "r")
    assert routed.product is not None
    refused = BatchResult("k", status, False, None, None, code="idempotency_key_reused")  # type: ignore[arg-type]
    assert settle(routed.product, GID, refused).outcome is None
