"""How the engine makes and keeps links, end to end through the sandboxes' webhooks and
notifications: a Shopify variant replaced by adding the first option is re-linked, creates on
either side match the other side's product by external reference and then by SKU (a SKU two
variants share is a recorded conflict, never a merge), and a link made writes the Shopify ids
into eManageCRM's external references once, its echo a no-op."""

from __future__ import annotations

import uuid
from collections.abc import AsyncIterator
from decimal import Decimal
from pathlib import Path
from typing import Any

import pytest
from sqlalchemy import select

from syncapp.sync.catalog import Product, Variant
from syncapp.sync.mapping import product_from_emanage
from syncapp.sync.models import VARIANT, SyncLink
from tests.integration.sync.engine_world import SyncWorld, shopify_graphql, sync_world
from tests.integration.sync.test_engine import (
    emanage_state,
    linked_tee,
    shopify_state,
)

pytestmark = pytest.mark.anyio


@pytest.fixture
def anyio_backend() -> str:
    return "asyncio"


@pytest.fixture
async def world(tmp_path: Path, request: pytest.FixtureRequest) -> AsyncIterator[SyncWorld]:
    # The eManageCRM sandbox delivers its notifications itself: the echo of every write the
    # engine makes there comes back as it would in production.
    async with sync_world(tmp_path, request.node.nodeid, deliver=True) as running:
        yield running


OPTIONS_CREATE = """
mutation($p: ID!, $o: [OptionCreateInput!]!) {
  productOptionsCreate(productId: $p, options: $o) {
    product { id } userErrors { field message code } } }
"""


def variant_links(world: SyncWorld, gid: str) -> list[SyncLink]:
    link = world.link(gid=gid)
    assert link is not None
    with world.runtime.sessions() as session:
        return list(
            session.scalars(
                select(SyncLink).where(SyncLink.parent_id == link.id, SyncLink.kind == VARIANT)
            )
        )


def emanage_price(variant: dict[str, Any], price: str) -> dict[str, Any]:
    prices = dict(variant["productPrices"])
    prices["DiscountedPrice"] = {"Value": Decimal(price), "FormattedValue": f"${price}"}
    return {**variant, "productPrices": prices}


@pytest.mark.parametrize("sku", ["MUG-1", None], ids=["with-sku", "without-sku"])
async def test_adding_the_first_option_in_shopify_relinks_the_replaced_variant(
    world: SyncWorld, sku: str | None
) -> None:
    """A product with only its standalone variant gets its first option (productOptionsCreate):
    Shopify replaces the variant by one with a new id. The eManageCRM variant stays the same
    one, takes the option value and the new id as its external reference, and the price link
    follows the new variant both ways."""
    mug = Product(
        title="Sync Mug",
        variants=(Variant(sku=sku, options=(), price=Decimal("9.50")),),
    )
    gid, eid = await linked_tee(world, mug)
    before = await emanage_state(world, eid)
    assert before is not None
    [old] = before.body["variants"]
    old_gid = old["externalRefs"]["shopifyVariantId"]
    assert old_gid is not None

    added = shopify_graphql(
        world, OPTIONS_CREATE, {"p": gid, "o": [{"name": "Color", "values": [{"name": "Red"}]}]}
    )
    assert added["productOptionsCreate"]["userErrors"] == []
    await world.settle()
    state = shopify_state(world, gid)
    assert state is not None
    [new] = state.variants
    assert new.shopify_id != old_gid  # Shopify replaced the variant
    after = await emanage_state(world, eid)
    assert after is not None
    [kept] = after.body["variants"]
    assert kept["variantId"] == old["variantId"]  # the same eManageCRM variant: no duplicate
    assert kept["options"] == ["Red"]
    assert kept["externalRefs"]["shopifyVariantId"] == new.shopify_id
    assert [(v.shopify_gid, v.emanage_id) for v in variant_links(world, gid)] == [
        (new.shopify_id, str(old["variantId"]))
    ]
    assert world.shopify_writes.count == 0

    # The price link: an eManageCRM price edit reaches the new Shopify variant.
    world.emanage_writes.count = 0
    await world.merchant_emanage.update_product(
        account_id=world.account_id,
        product_id=eid,
        body={**after.body, "variants": [emanage_price(kept, "11.25")]},
        version=after.version,
        idempotency_key=str(uuid.uuid4()),
        origin=None,
    )
    await world.settle()
    state = shopify_state(world, gid)
    assert state is not None
    [priced] = state.variants
    assert (priced.shopify_id, priced.price) == (new.shopify_id, Decimal("11.25"))
    final = await emanage_state(world, eid)
    assert final is not None
    assert [v["variantId"] for v in final.body["variants"]] == [old["variantId"]]
    assert product_from_emanage(final.body).variants[0].price == Decimal("11.25")
    assert world.emanage_writes.count == 0
    assert world.events(status="dead") == []
