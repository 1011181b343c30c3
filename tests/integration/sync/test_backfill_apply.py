"""The backfill writing the export into eManageCRM in batches, both sandboxes served over
HTTP: unlinked products are created or matched (external reference, then SKU) through
``products:batch`` with links recorded in the cursor's transaction, so the notifications that
follow change nothing; a product edited after the export began is never regressed; a batch
whose answer was lost is re-sent after the restart without a duplicate."""

from __future__ import annotations

import asyncio
import uuid
from collections.abc import AsyncIterator
from decimal import Decimal
from pathlib import Path
from typing import Any

import httpx
import pytest
from sqlalchemy import func, select

from syncapp.bus.consumer import Consumer
from syncapp.bus.embedded import EmbeddedBus
from syncapp.bus.interface import subscriptions
from syncapp.connectors.emanage import EmanageClient, EmanageProduct
from syncapp.store.models import Shop
from syncapp.sync import jobs, state, topics
from syncapp.sync.backfill import CURSOR, advance_backfill
from syncapp.sync.catalog import Option, Product, Variant
from syncapp.sync.events import RESYNC_REQUESTED
from syncapp.sync.fingerprint import fingerprint
from syncapp.sync.mapping import (
    emanage_product,
    product_from_emanage,
    product_from_shopify,
    product_set_input,
)
from syncapp.sync.models import PRODUCT, SyncCursor, SyncLink
from syncapp.sync.runtime import SyncOptions, SyncRuntime
from tests.integration.sync.engine_world import (
    EMANAGE_ID,
    EMANAGE_SECRET,
    FAST,
    SyncWorld,
    sync_world,
)

pytestmark = pytest.mark.anyio


@pytest.fixture
def anyio_backend() -> str:
    return "asyncio"


def tee(n: int, price: str = "20.00") -> Product:
    return Product(
        title=f"Tee {n}",
        vendor="Acme",
        options=(Option("Size", ("S", "M", "L")),),
        variants=tuple(
            Variant(sku=f"TEE-{n}-{s}", options=(s,), price=Decimal(price) + i)
            for i, s in enumerate("SML")
        ),
    )


def cursor(world: SyncWorld) -> dict[str, Any]:
    with world.runtime.sessions() as session:
        shop_id = session.scalar(select(Shop.id).where(Shop.domain == world.shop))
        row = session.get(SyncCursor, (shop_id, CURSOR))
        assert row is not None
        return {**row.position, "done": row.done}


def product_links(world: SyncWorld) -> list[SyncLink]:
    with world.runtime.sessions() as session:
        return list(session.scalars(select(SyncLink).where(SyncLink.kind == PRODUCT)))


async def emanage_products(world: SyncWorld) -> list[EmanageProduct]:
    page = await world.merchant_emanage.list_products(account_id=world.account_id, limit=250)
    return page.items


def runtime(world: SyncWorld, emanage: EmanageClient | None = None, **options: Any) -> SyncRuntime:
    return SyncRuntime(
        world.runtime,
        SyncOptions(backfill_poll_seconds=0.05, **options),
        emanage=emanage or world.context.emanage,
        products_factory=world.context.products,
    )


async def drive(rt: SyncRuntime, world: SyncWorld, run: str, *, until: str | None = None) -> None:
    """Advance the run as the worker's handler does (a thread, the client's loop) until it is
    over, or until its state is ``until``."""
    loop = asyncio.get_running_loop()
    for _ in range(400):
        if until is not None and cursor(world)["state"] == until:
            return
        wait = await asyncio.to_thread(advance_backfill, rt, world.shop, run, loop=loop)
        if wait is None:
            return
        await asyncio.sleep(min(wait, 0.05))
    raise AssertionError(f"the backfill did not end: {cursor(world)}")


def sync_on(world: SyncWorld) -> str:
    assert state.set_keep_products_synchronized(world.runtime.sessions, world.shop, True)
    return str(cursor(world)["run"])


@pytest.fixture
async def world(tmp_path: Path, request: pytest.FixtureRequest) -> AsyncIterator[SyncWorld]:
    async with sync_world(tmp_path, request.node.nodeid, deliver=True) as running:
        state.set_keep_products_synchronized(running.runtime.sessions, running.shop, False)
        yield running


async def test_the_backfill_writes_in_batches_matches_existing_products_and_leaves_no_echo(
    world: SyncWorld,
) -> None:
    """Six Shopify products; eManageCRM already has Tee 0 (same SKUs and fields, no reference)
    and Tee 1 (its reference, another price). Through the bus: Tee 0 is matched by SKU (the
    engine then writes its references), Tee 1 is matched by reference and merged by the
    engine, the others are created by batch requests; no product is duplicated, and the
    product.created notifications of the batch (delivered, signed) cause no write on either
    side."""
    gids = [str(world.merchant().set_product(product_set_input(tee(n)))["id"]) for n in range(6)]
    await world.settle()  # the products/create webhooks, sync OFF
    same = await world.merchant_emanage.create_product(
        account_id=world.account_id,
        body=emanage_product(tee(0), currency="USD"),
        idempotency_key=str(uuid.uuid4()),
        origin=None,
    )
    other_price = emanage_product(tee(1, price="25.00"), currency="USD")
    other_price["externalRefs"] = {"shopifyProductId": gids[1]}
    referenced = await world.merchant_emanage.create_product(
        account_id=world.account_id,
        body=other_price,
        idempotency_key=str(uuid.uuid4()),
        origin=None,
    )
    await world.settle()  # their product.created notifications, sync OFF
    rt = runtime(world, backfill_batch=2)
    table = {**topics.topics(world.context), **jobs.topics(rt)}
    bus = EmbeddedBus(world.runtime.engine, policy=FAST, lease_seconds=30)
    consumer = Consumer(bus.consumer(sorted(table)), subscriptions(table), batch_size=16)
    try:
        sync_on(world)
        loop = asyncio.get_running_loop()
        deadline = loop.time() + 45
        while not cursor(world)["done"] or world.unsettled():
            assert loop.time() < deadline, cursor(world)
            if not await consumer.run_once():
                await asyncio.sleep(0.03)
        position = cursor(world)
        # The four new ones linked by the backfill itself; Tee 1 (differs) and Tee 0 (matched
        # by SKU, equal, but without its references) handed to the engine.
        assert (position["linked"], position["published"]) == (4, 2)
        assert world.emanage_writes.count >= 3  # three batches (and the engine's merge)
        writes = (world.emanage_writes.count, world.shopify_writes.count)
        await world.settle(quiet=1.0)  # every notification delivered and consumed
        assert (world.emanage_writes.count, world.shopify_writes.count) == writes
    finally:
        rt.close()
    links = {link.shopify_gid: link for link in product_links(world)}
    assert sorted(links) == sorted(gids)
    assert links[gids[0]].emanage_id == same.product_id
    assert links[gids[1]].emanage_id == referenced.product_id
    crm = await emanage_products(world)
    assert len(crm) == 6  # none duplicated
    assert {p.product_id for p in crm} == {link.emanage_id for link in links.values()}
    # Tee 1 merged by the engine: both sides agree now, whichever side's price won.
    merged = {p.product_id: product_from_emanage(p.body) for p in crm}[referenced.product_id]
    read = world.merchant().read_product(gids[1])
    assert read is not None
    assert fingerprint(product_from_shopify(*read)) == fingerprint(merged)


async def test_an_edit_made_after_the_export_is_never_regressed(world: SyncWorld) -> None:
    """The export is done; then the merchant renames Tee 0 and its webhook is applied (a link
    with the new state) before the backfill streams the file, and reprices Tee 1 after the
    backfill created it: eManageCRM ends with both edits, Tee 0 never rewritten with the
    export's title."""
    a = str(world.merchant().set_product(product_set_input(tee(0)))["id"])
    b = str(world.merchant().set_product(product_set_input(tee(1)))["id"])
    await world.settle()
    rt = runtime(world)
    try:
        run = sync_on(world)
        await drive(rt, world, run, until="streaming")  # the file is Shopify at export time
        renamed = product_set_input(tee(0))
        renamed["title"] = "Tee 0 (renamed after the export)"
        del renamed["variants"], renamed["productOptions"]
        world.merchant().set_product(renamed, identifier={"id": a})
        await world.settle()
        link_a = world.link(gid=a)
        assert link_a is not None
        assert link_a.emanage_id is not None
        await drive(rt, world, run)
        assert cursor(world)["linked"] == 1  # Tee 1 by the batch; Tee 0 went to the engine
        read = world.merchant().read_product(b)
        assert read is not None
        _node, variants = read
        world.merchant().update_variants(b, [{"id": variants[0]["id"], "price": "31.00"}])
        await world.settle(quiet=1.0)
    finally:
        rt.close()
    crm = {p.product_id: p for p in await emanage_products(world)}
    assert len(crm) == 2
    kept = crm[link_a.emanage_id]
    assert kept.body["name"] == "Tee 0 (renamed after the export)"
    assert kept.version == 1  # created by the engine from the edit, never rewritten
    link_b = world.link(gid=b)
    assert link_b is not None
    assert link_b.emanage_id is not None
    repriced = product_from_emanage(crm[link_b.emanage_id].body)
    assert repriced.variants[0].price == Decimal("31.00")


class LoseBatchAnswer(httpx.AsyncBaseTransport):
    """Real HTTP; the answer to the ``lose``-th batch request is lost after the sandbox has
    applied it (a connection reset, as when the worker dies mid-batch)."""

    def __init__(self, lose: int) -> None:
        self.inner = httpx.AsyncHTTPTransport()
        self.lose = lose
        self.batches = 0

    async def handle_async_request(self, request: httpx.Request) -> httpx.Response:
        response = await self.inner.handle_async_request(request)
        if request.url.path.endswith("products:batch"):
            self.batches += 1
            if self.batches == self.lose:
                await response.aread()
                await response.aclose()
                raise httpx.ReadError("connection reset by peer")
        return response

    async def aclose(self) -> None:
        await self.inner.aclose()


async def test_a_batch_whose_answer_was_lost_is_resent_after_a_restart_without_duplicates(
    world: SyncWorld,
) -> None:
    """Eight products in batches of three; the second batch is applied by eManageCRM but its
    answer never arrives, so the step fails with nothing of it (or of the third, in flight
    behind it) recorded. A restarted backfill (in
    batches of four, so the items come in other batches) replays the created items by their
    own keys: each product exists once in eManageCRM and is linked once."""
    gids = [str(world.merchant().set_product(product_set_input(tee(n)))["id"]) for n in range(8)]
    await world.settle()
    transport = LoseBatchAnswer(lose=2)
    async with httpx.AsyncClient(transport=transport, timeout=10) as http:
        lossy = EmanageClient(http, world.emanage_url, EMANAGE_ID, EMANAGE_SECRET)
        first = runtime(world, lossy, backfill_batch=3)
        try:
            run = sync_on(world)
            with pytest.raises(Exception, match="could not be reached"):
                await drive(first, world, run)
        finally:
            first.close()
    stopped = cursor(world)
    assert stopped["state"] == "streaming"
    assert stopped["linked"] == 3  # the first batch only
    # The lost batch was applied, and so was the last one, sent while the lost one's answer
    # was awaited (one batch in flight): nothing of either is linked yet.
    assert len(await emanage_products(world)) == 8
    second = runtime(world, backfill_batch=4)
    try:
        await drive(second, world, run)
    finally:
        second.close()
    position = cursor(world)
    assert (position["state"], position["linked"], position["published"]) == ("done", 8, 0)
    crm = await emanage_products(world)
    assert len(crm) == 8
    links = product_links(world)
    assert sorted(link.shopify_gid or "" for link in links) == sorted(gids)
    assert {link.emanage_id for link in links} == {p.product_id for p in crm}
    with world.runtime.sessions() as session:
        variants = session.scalar(
            select(func.count()).select_from(SyncLink).where(SyncLink.kind != PRODUCT)
        )
    assert variants == 8 * 3


async def test_a_product_emanage_refuses_fails_alone_and_reaches_the_dead_letters(
    world: SyncWorld,
) -> None:
    """One of three products has a description longer than eManageCRM takes: its batch item
    is refused on its own (the other two are created and linked in the same request), it goes
    to the engine, and the engine's create dead-letters it with eManageCRM's reason."""
    long = product_set_input(tee(1))
    long["descriptionHtml"] = "<p>" + "x" * 70_000 + "</p>"
    gids = [
        str(world.merchant().set_product(body)["id"])
        for body in (product_set_input(tee(0)), long, product_set_input(tee(2)))
    ]
    await world.settle()
    rt = runtime(world)
    table = {**topics.topics(world.context), **jobs.topics(rt)}
    bus = EmbeddedBus(world.runtime.engine, policy=FAST, lease_seconds=30)
    consumer = Consumer(bus.consumer(sorted(table)), subscriptions(table), batch_size=16)
    try:
        sync_on(world)
        loop = asyncio.get_running_loop()
        deadline = loop.time() + 30
        while not cursor(world)["done"] or world.unsettled():
            assert loop.time() < deadline, cursor(world)
            if not await consumer.run_once():
                await asyncio.sleep(0.03)
    finally:
        rt.close()
    position = cursor(world)
    assert (position["linked"], position["published"]) == (2, 1)
    assert {link.shopify_gid for link in product_links(world)} == {gids[0], gids[2]}
    assert len(await emanage_products(world)) == 2
    (dead,) = world.events(status="dead")
    assert dead.topic == RESYNC_REQUESTED.name
    assert "description" in (dead.last_error or "")
