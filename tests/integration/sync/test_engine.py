"""The sync engine end to end over HTTP: the Shopify sandbox's signed webhooks reach the app's
ingest, eManageCRM's product notifications its inbox, and a bus consumer of the sync's topics
reconciles each pair against the real sandboxes. Writes are counted at the sandboxes' doors
(engine_world.WriteCounter): every test checks that the app wrote exactly the real changes,
and that its own writes' echoes (webhooks and notifications) wrote nothing."""

from __future__ import annotations

import uuid
from collections.abc import AsyncIterator
from decimal import Decimal
from pathlib import Path
from typing import Any

import pytest

from syncapp.connectors.emanage import EmanageProduct
from syncapp.sync.catalog import Option, Product, Variant, money_text
from syncapp.sync.mapping import (
    product_from_emanage,
    product_from_shopify,
    product_set_input,
    variant_bulk_input,
)
from tests.integration.sync.engine_world import SyncWorld, sync_world

pytestmark = pytest.mark.anyio


@pytest.fixture
def anyio_backend() -> str:
    return "asyncio"


@pytest.fixture
async def world(tmp_path: Path, request: pytest.FixtureRequest) -> AsyncIterator[SyncWorld]:
    async with sync_world(tmp_path, request.node.nodeid) as running:
        yield running


def tee(title: str = "Sync Tee", price: str = "19.90") -> Product:
    return Product(
        title=title,
        vendor="Acme",
        product_type="Shirt",
        description="<p>Soft</p>",
        options=(Option("Size", ("S", "M")),),
        variants=(
            Variant(sku="TEE-S", options=("S",), price=Decimal(price)),
            Variant(
                sku="TEE-M",
                options=("M",),
                price=Decimal("21.90"),
                compare_at_price=Decimal("29.90"),
            ),
        ),
    )


def shopify_create(world: SyncWorld, product: Product) -> str:
    """The merchant creates a product in Shopify; its GID."""
    return str(world.merchant().set_product(product_set_input(product))["id"])


def shopify_state(world: SyncWorld, gid: str) -> Product | None:
    found = world.merchant().read_product(gid)
    return None if found is None else product_from_shopify(*found)


async def emanage_state(world: SyncWorld, product_id: str) -> EmanageProduct | None:
    return await world.merchant_emanage.get_product(
        account_id=world.account_id, product_id=product_id
    )


async def the_emanage_product(world: SyncWorld, gid: str) -> EmanageProduct:
    page = await world.merchant_emanage.list_products(
        account_id=world.account_id, shopify_product_id=gid
    )
    assert len(page.items) == 1, page.items
    return page.items[0]


async def merchant_edits_emanage(world: SyncWorld, product_id: str, **changes: Any) -> None:
    """The merchant edits the product in eManageCRM (no origin marker: not the app)."""
    current = await emanage_state(world, product_id)
    assert current is not None
    body = dict(current.body)
    body.update(changes)
    await world.merchant_emanage.update_product(
        account_id=world.account_id,
        product_id=product_id,
        body=body,
        version=current.version,
        idempotency_key=str(uuid.uuid4()),
        origin=None,
    )


def names(product: Product) -> tuple[str, list[tuple[str | None, str, str | None]]]:
    """Title and (SKU, price, compare-at) per variant, money as canonical text."""
    return product.title, sorted(
        (
            v.sku,
            money_text(v.price),
            None if v.compare_at_price is None else money_text(v.compare_at_price),
        )
        for v in product.variants
    )


async def test_a_shopify_product_appears_once_in_emanage_and_its_edits_follow(
    world: SyncWorld,
) -> None:
    """Create (with products/create + products/update racing), then a title, a price and a
    compare-at price edit: one eManageCRM create, one update per edit, no Shopify write."""
    gid = shopify_create(world, tee())
    await world.settle()
    created = await the_emanage_product(world, gid)
    assert world.emanage_writes.count == 1
    assert names(product_from_emanage(created.body)) == names(tee())

    merchant = world.merchant()
    merchant.set_product({"title": "Sync Tee II"}, identifier={"id": gid})
    await world.settle()
    state = shopify_state(world, gid)
    assert state is not None
    small = next(v for v in state.variants if v.sku == "TEE-S")
    merchant.update_variants(
        gid,
        [
            variant_bulk_input(
                Variant(
                    sku="TEE-S",
                    options=("S",),
                    price=Decimal("17.5"),
                    compare_at_price=Decimal("25"),
                    shopify_id=small.shopify_id,
                ),
                frozenset({"price", "compare_at_price"}),
            )
        ],
    )
    await world.settle()
    after = await emanage_state(world, created.product_id)
    assert after is not None
    title, variants = names(product_from_emanage(after.body))
    assert title == "Sync Tee II"
    assert variants == [("TEE-M", "21.90", "29.90"), ("TEE-S", "17.50", "25.00")]
    assert world.emanage_writes.count == 3
    assert world.shopify_writes.count == 0
    link = world.link(gid=gid)
    assert link is not None
    assert link.emanage_id == created.product_id
    assert world.events(status="dead") == []
