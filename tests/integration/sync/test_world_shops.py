"""The harness's second shop (:meth:`SyncWorld.add_shop`), as the latency benchmark uses it:
installed and signed up to an eManageCRM account of its own, synced by the same consumer to its
own account only; and a price saved on the Shopify admin's product form (no app token) travels
to that account like an API edit."""

from __future__ import annotations

from collections.abc import AsyncIterator
from decimal import Decimal
from pathlib import Path

import httpx
import pytest

from syncapp.sync.mapping import product_from_emanage
from tests.integration.sync.engine_world import SyncWorld, admin_set_prices, sync_world
from tests.integration.sync.test_engine import (
    emanage_state,
    names,
    shopify_create,
    shopify_state,
    tee,
    the_emanage_product,
)

pytestmark = pytest.mark.anyio


@pytest.fixture
def anyio_backend() -> str:
    return "asyncio"


@pytest.fixture
async def world(tmp_path: Path, request: pytest.FixtureRequest) -> AsyncIterator[SyncWorld]:
    async with sync_world(tmp_path, request.node.nodeid, deliver=True) as running:
        yield running


async def test_a_second_shop_syncs_to_its_own_account_and_admin_edits_travel(
    world: SyncWorld,
) -> None:
    other = await world.add_shop("second shop", plan_name="Plus")
    assert other.shop != world.shop
    assert other.account_id != world.account_id

    gid = shopify_create(other, tee())
    await world.settle()  # the first shop's consumer handles the second shop's events
    await other.settle()
    created = await the_emanage_product(other, gid)
    assert world.emanage_writes.count == 1
    mine = await world.merchant_emanage.list_products(account_id=world.account_id)
    assert mine.items == [], "the second shop's product reached the first shop's account"

    state = shopify_state(other, gid)
    assert state is not None
    small = next(v for v in state.variants if v.sku == "TEE-S")
    assert small.shopify_id is not None
    async with httpx.AsyncClient(timeout=10) as browser:
        await admin_set_prices(other, browser, gid, {str(small.shopify_id): "16.25"})
    await other.settle()
    after = await emanage_state(other, created.product_id)
    assert after is not None
    assert ("TEE-S", "16.25", None) in names(product_from_emanage(after.body))[1]
    # The admin's save is the merchant's, not the app's: no Shopify write was counted.
    assert world.shopify_writes.count == 0
    assert world.emanage_writes.count == 2
    assert Decimal("16.25") == shopify_price(other, gid, "TEE-S")


def shopify_price(world: SyncWorld, gid: str, sku: str) -> Decimal:
    state = shopify_state(world, gid)
    assert state is not None
    return next(v.price for v in state.variants if v.sku == sku)
