"""Backfill and reconcile with the engine, both sandboxes served: turning Keep Products
Synchronized on links every Shopify product to one eManageCRM product (an existing one with
the same SKU is matched, not duplicated); a later sweep finds nothing to do, and an eManageCRM
edit whose notification was lost reaches Shopify through the eManageCRM sweep."""

from __future__ import annotations

import asyncio
import uuid
from collections.abc import AsyncIterator, Iterator
from decimal import Decimal
from pathlib import Path

import pytest

from syncapp.bus.consumer import Consumer
from syncapp.bus.embedded import EmbeddedBus
from syncapp.bus.interface import subscriptions
from syncapp.sync import jobs, state, topics
from syncapp.sync.catalog import Option, Product, Variant
from syncapp.sync.mapping import emanage_product, product_from_shopify, product_set_input
from syncapp.sync.reconcile import sweep_emanage, sweep_shopify
from syncapp.sync.runtime import SyncOptions, SyncRuntime
from tests.integration.sync.engine_world import FAST, SyncWorld, sync_world

pytestmark = pytest.mark.anyio


@pytest.fixture
def anyio_backend() -> str:
    return "asyncio"


@pytest.fixture
async def world(tmp_path: Path, request: pytest.FixtureRequest) -> AsyncIterator[SyncWorld]:
    async with sync_world(tmp_path, request.node.nodeid) as running:
        yield running


def mug(n: int) -> Product:
    return Product(
        title=f"Mug {n}",
        vendor="Acme",
        options=(Option("Size", ("S", "L")),),
        variants=(
            Variant(sku=f"MUG-{n}-S", options=("S",), price=Decimal("9.90") + n),
            Variant(sku=f"MUG-{n}-L", options=("L",), price=Decimal("12.90") + n),
        ),
    )


async def settle(world: SyncWorld, consumer: Consumer) -> None:
    """Consume the backfill's steps and the engine's events until the backfill is over and
    nothing of the shop is left unsettled."""
    loop = asyncio.get_running_loop()
    deadline = loop.time() + 60
    idle = 0
    while idle < 15:
        assert loop.time() < deadline, f"{world.unsettled()} events unsettled"
        settled = await consumer.run_once()
        idle = 0 if settled or world.unsettled() else idle + 1
        await asyncio.sleep(0.03)


@pytest.fixture
def rt(world: SyncWorld) -> Iterator[SyncRuntime]:
    """The backfill's runtime on the engine's clients (one cost budget per shop)."""
    runtime = SyncRuntime(
        world.runtime,
        SyncOptions(backfill_poll_seconds=0.05),
        emanage=world.context.emanage,
        products_factory=world.context.products,
    )
    yield runtime
    runtime.close()


async def test_sync_on_backfills_through_the_engine_and_the_sweeps_catch_a_lost_edit(
    world: SyncWorld, rt: SyncRuntime
) -> None:
    """Sync ON: three Shopify products, one already in eManageCRM, end up as three linked
    pairs (the existing one matched by SKU); a sweep then publishes nothing; an eManageCRM edit
    whose notification was lost is published by the eManageCRM sweep and reaches Shopify."""
    shop = world.shop
    sessions = world.runtime.sessions
    state.set_keep_products_synchronized(sessions, shop, False)
    gids = [str(world.merchant().set_product(product_set_input(mug(n)))["id"]) for n in range(3)]
    # eManageCRM already sells Mug 0 (same SKUs), created by the merchant there.
    existing = await world.merchant_emanage.create_product(
        account_id=world.account_id,
        body=emanage_product(mug(0), currency="USD"),
        idempotency_key=str(uuid.uuid4()),
        origin=None,
    )
    table = {**topics.topics(world.context), **jobs.topics(rt)}
    bus = EmbeddedBus(world.runtime.engine, policy=FAST, lease_seconds=30)
    consumer = Consumer(bus.consumer(sorted(table)), subscriptions(table), batch_size=16)
    await settle(world, consumer)  # the products/create webhooks, sync OFF
    before = world.emanage_writes.count

    assert state.set_keep_products_synchronized(sessions, shop, True)
    await settle(world, consumer)

    links = [world.link(gid=g) for g in gids]
    assert all(link is not None and link.emanage_id for link in links)
    assert links[0] is not None
    assert links[0].emanage_id == existing.product_id  # matched by SKU, not duplicated
    page = await world.merchant_emanage.list_products(account_id=world.account_id)
    assert len(page.items) == 3
    # One batch request (Mug 1 and Mug 2 created, Mug 0 matched by SKU), then the engine's
    # write of Mug 0's external references.
    assert world.emanage_writes.count - before == 2

    # A sweep now re-reads nothing new: every product agrees with its link.
    assert await asyncio.to_thread(sweep_shopify, rt, shop) == 0
    assert await sweep_emanage(rt, shop) == 0

    # The merchant edits Mug 1 in eManageCRM and the notification is lost.
    assert links[1] is not None
    assert links[1].emanage_id is not None
    current = await world.merchant_emanage.get_product(
        account_id=world.account_id, product_id=links[1].emanage_id
    )
    assert current is not None
    await world.merchant_emanage.update_product(
        account_id=world.account_id,
        product_id=links[1].emanage_id,
        body={**current.body, "name": "Mug 1 (renamed in the CRM)"},
        version=current.version,
        idempotency_key=str(uuid.uuid4()),
        origin=None,
    )
    assert await sweep_emanage(rt, shop) == 1
    await settle(world, consumer)
    read = world.merchant().read_product(gids[1])
    assert read is not None
    assert product_from_shopify(*read).title == "Mug 1 (renamed in the CRM)"
    # Agreed again: the next sweeps publish nothing.
    assert await sweep_emanage(rt, shop) == 0
    assert await asyncio.to_thread(sweep_shopify, rt, shop) == 0
