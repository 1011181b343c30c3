"""The sync engine end to end over HTTP: the Shopify sandbox's signed webhooks reach the app's
ingest, eManageCRM's product notifications its inbox, and a bus consumer of the sync's topics
reconciles each pair against the real sandboxes. Writes are counted at the sandboxes' doors
(engine_world.WriteCounter): every test checks that the app wrote exactly the real changes,
and that its own writes' echoes (webhooks and notifications) wrote nothing."""

from __future__ import annotations

import os
import uuid
from collections.abc import AsyncIterator
from dataclasses import replace
from decimal import Decimal
from pathlib import Path
from typing import Any

import pytest

from syncapp.bus.retry import RetryPolicy
from syncapp.connectors.emanage import EmanageProduct
from syncapp.sync.catalog import Option, Product, ProductStatus, Variant, money_text
from syncapp.sync.mapping import (
    emanage_product,
    product_from_emanage,
    product_from_shopify,
    product_set_input,
    variant_bulk_input,
)
from tests.integration.sync.engine_world import SyncWorld, notify, shopify_graphql, sync_world

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


async def linked_tee(world: SyncWorld, product: Product | None = None) -> tuple[str, str]:
    """A tee created in Shopify and synced; (its GID, its eManageCRM id); counters reset."""
    gid = shopify_create(world, product or tee())
    await world.settle()
    created = await the_emanage_product(world, gid)
    world.shopify_writes.count = world.emanage_writes.count = 0
    return gid, created.product_id


async def test_an_emanage_edit_reaches_shopify_and_its_echoes_write_nothing(
    world: SyncWorld,
) -> None:
    """A price and title edit in eManageCRM: one Shopify write; Shopify's products/update echo
    and a replay of the notification write nothing more."""
    gid, eid = await linked_tee(world)
    current = await emanage_state(world, eid)
    assert current is not None
    variants = [dict(v) for v in current.body["variants"]]
    for v in variants:
        if v["sku"] == "TEE-M":
            v["productPrices"] = {
                **v["productPrices"],
                "DiscountedPrice": {"Value": Decimal("18.25"), "FormattedValue": "$18.25"},
            }
    await merchant_edits_emanage(world, eid, name="Tee from the CRM", variants=variants)
    edited = await emanage_state(world, eid)
    assert edited is not None
    notify(world, edited)
    await world.settle()
    state = shopify_state(world, gid)
    assert state is not None
    assert names(state) == (
        "Tee from the CRM",
        [("TEE-M", "18.25", "29.90"), ("TEE-S", "19.90", None)],
    )
    assert world.shopify_writes.count == 2  # productSet (title) + productVariantsBulkUpdate
    notify(world, edited)  # replayed
    await world.settle()
    assert world.shopify_writes.count == 2
    assert world.emanage_writes.count == 0


async def test_an_emanage_product_appears_once_in_shopify(world: SyncWorld) -> None:
    """Created in eManageCRM, notified twice (a replay): one Shopify product, whose product
    and variant GIDs are written back once as the eManageCRM product's external references;
    Shopify's own products/create and products/update of it write nothing more."""
    body = emanage_product(tee("CRM Tee"), currency="USD")
    created = await world.merchant_emanage.create_product(
        account_id=world.account_id, body=body, idempotency_key=str(uuid.uuid4()), origin=None
    )
    notify(world, created, "product.created")
    notify(world, created, "product.created")
    await world.settle()
    link = world.link(emanage_id=created.product_id)
    assert link is not None
    assert link.shopify_gid is not None
    state = shopify_state(world, link.shopify_gid)
    assert state is not None
    assert names(state) == names(tee("CRM Tee"))
    assert world.shopify_writes.count == 1
    assert world.emanage_writes.count == 1  # the external references, once
    linked = await emanage_state(world, created.product_id)
    assert linked is not None
    assert linked.body["externalRefs"] == {"shopifyProductId": link.shopify_gid}
    by_sku = {v.sku: v.shopify_id for v in state.variants}
    assert {v["sku"]: v["externalRefs"]["shopifyVariantId"] for v in linked.body["variants"]} == (
        by_sku
    )
    assert len(world.events(source="shopify", topic="products/create")) == 1


async def test_a_delete_in_shopify_archives_in_emanage_and_an_archive_there_archives_here(
    world: SyncWorld,
) -> None:
    gid, eid = await linked_tee(world)
    world.merchant().call("product_delete", {"id": gid}, estimate=10)
    await world.settle()
    archived = await emanage_state(world, eid)
    assert archived is not None
    assert archived.body["status"] == "archived"
    assert world.emanage_writes.count == 1

    other_gid, other_eid = await linked_tee(world, tee("Other Tee"))
    current = await emanage_state(world, other_eid)
    assert current is not None
    gone = await world.merchant_emanage.archive_product(
        account_id=world.account_id,
        product_id=other_eid,
        version=current.version,
        idempotency_key=str(uuid.uuid4()),
        origin=None,
    )
    notify(world, gone, "product.archived")
    await world.settle()
    state = shopify_state(world, other_gid)
    assert state is not None
    assert state.status is ProductStatus.ARCHIVED
    assert world.shopify_writes.count == 1
    assert world.emanage_writes.count == 0


ADJUST = """
mutation($input: InventoryAdjustQuantitiesInput!, $key: String!) {
  inventoryAdjustQuantities(input: $input) @idempotent(key: $key) {
    userErrors { field message code } } }
"""
ITEM = """
query($id: ID!) { productVariant(id: $id) { inventoryItem { id } }
  locations(first: 1) { nodes { id } } }
"""


async def test_an_inventory_only_change_writes_nothing(world: SyncWorld) -> None:
    """Stock changes fire products/update (pitfall 5): no eManageCRM read of consequence and
    no write on either side."""
    gid, _ = await linked_tee(world)
    state = shopify_state(world, gid)
    assert state is not None
    before = len(world.events(source="shopify", topic="products/update"))
    for n, variant in enumerate(state.variants):
        found = shopify_graphql(world, ITEM, {"id": variant.shopify_id})
        change = {
            "inventoryItemId": found["productVariant"]["inventoryItem"]["id"],
            "locationId": found["locations"]["nodes"][0]["id"],
            "delta": -1,
            "changeFromQuantity": None,
        }
        result = shopify_graphql(
            world,
            ADJUST,
            {
                "input": {"name": "available", "reason": "correction", "changes": [change]},
                "key": f"stock-{n}",
            },
        )
        assert result["inventoryAdjustQuantities"]["userErrors"] == []
    await world.settle()
    assert len(world.events(source="shopify", topic="products/update")) >= before + 2
    assert world.emanage_writes.count == 0
    assert world.shopify_writes.count == 0


async def test_duplicated_reordered_and_replayed_notifications_converge_on_the_last_edits(
    world: SyncWorld,
) -> None:
    """Shopify duplicates and reorders its deliveries while the merchant edits the price three
    times; eManageCRM's notifications are replayed out of order. Both sides end at the last
    edit of each field, and each side was written once per real change of the other."""
    gid, eid = await linked_tee(world)
    faults = world.system.control.post(
        "/_sandbox/webhooks/faults", json={"duplicate": 1, "reorder": True}
    )
    assert faults.status_code == 200, faults.text
    state = shopify_state(world, gid)
    assert state is not None
    small = next(v for v in state.variants if v.sku == "TEE-S")
    for price in ("11", "12", "13"):
        world.merchant().update_variants(
            gid, [variant_bulk_input(replace(small, price=Decimal(price)), frozenset({"price"}))]
        )
    await world.settle()
    first = await emanage_state(world, eid)
    assert first is not None
    assert names(product_from_emanage(first.body))[1][1] == ("TEE-S", "13.00", None)
    shopify_changes = world.emanage_writes.count
    assert 1 <= shopify_changes <= 3  # one per price the engine saw; never more

    await merchant_edits_emanage(world, eid, name="Renamed once")
    once = await emanage_state(world, eid)
    await merchant_edits_emanage(world, eid, name="Renamed twice")
    twice = await emanage_state(world, eid)
    assert once is not None
    assert twice is not None
    notify(world, twice)
    notify(world, once)  # late: older than what the link will hold
    notify(world, twice)  # replayed
    await world.settle()
    final = shopify_state(world, gid)
    assert final is not None
    assert final.title == "Renamed twice"
    assert names(final)[1][1] == ("TEE-S", "13.00", None)
    assert world.shopify_writes.count == 1
    assert world.emanage_writes.count == shopify_changes
    assert world.events(status="dead") == []


async def test_emanage_unavailable_for_a_while_is_retried_and_applied(world: SyncWorld) -> None:
    """eManageCRM answers 503 three times: the event is retried under the bus's policy and
    applied afterwards; nothing is a dead letter, and the create happened once."""
    response = world.system.control.post(
        f"{world.emanage_url}/_sandbox/faults", json={"failNext": 3, "status": 503}
    )
    assert response.status_code == 200, response.text
    gid = shopify_create(world, tee("Patient Tee"))
    await world.settle()
    created = await the_emanage_product(world, gid)
    assert created.body["name"] == "Patient Tee"
    assert world.emanage_writes.count == 1
    assert world.events(status="dead") == []
    assert max(e.attempts for e in world.events(source="shopify")) >= 2


async def test_emanage_down_for_a_minute_loses_nothing_and_dead_letters_nothing(
    world: SyncWorld,
) -> None:
    """eManageCRM answers 503 to everything (its token endpoint too) for 60 s (5 s outside
    CI) while the merchant creates products and edits a synced one in Shopify. Under the
    worker's own retry policy (8 attempts, backoff from 2 s, the server's Retry-After as a
    floor) every change is applied once the outage ends: one eManageCRM product per Shopify
    product, the edit written once, and nothing in dead letters."""
    down = 60 if os.environ.get("CI") == "true" else 5
    gid, eid = await linked_tee(world)
    before = await emanage_state(world, eid)
    assert before is not None
    response = world.system.control.post(
        f"{world.emanage_url}/_sandbox/faults", json={"downForSeconds": down}
    )
    assert response.status_code == 200, response.text
    created = [shopify_create(world, tee(f"Outage Tee {n}")) for n in range(5)]
    world.merchant().set_product({"title": "Edited During Outage"}, identifier={"id": gid})
    await world.settle(within=down + 60, quiet=1.0, policy=RetryPolicy())
    for n, created_gid in enumerate(created):
        assert (await the_emanage_product(world, created_gid)).body["name"] == f"Outage Tee {n}"
    after = await emanage_state(world, eid)
    assert after is not None
    assert after.body["name"] == "Edited During Outage"
    assert after.version == before.version + 1  # written once, not once per attempt
    assert world.events(status="dead") == []
    # The outage was real: events were refused and retried, not handled before it began.
    assert max(e.attempts for e in world.events(source="shopify")) >= 2


async def test_a_permanent_refusal_is_a_dead_letter_and_replays_once_fixed(
    world: SyncWorld,
) -> None:
    """eManageCRM refuses the write (422): the event is a dead letter with the reason, at
    once; replayed after the fix, it applies."""
    from syncapp.bus.operators import replay

    gid, eid = await linked_tee(world)
    world.emanage_writes.fail_status, world.emanage_writes.fail_next = 422, 1
    world.merchant().set_product({"title": "Refused Tee"}, identifier={"id": gid})
    await world.settle()
    [dead] = world.events(status="dead")
    assert "eManageCRM refused" in (dead.last_error or "")
    assert dead.attempts == 1
    assert replay(world.runtime.sessions, ids=[dead.id]) == 1
    await world.settle()
    after = await emanage_state(world, eid)
    assert after is not None
    assert after.body["name"] == "Refused Tee"
    assert world.events(status="dead") == []


async def test_a_shared_sku_is_a_recorded_conflict_and_nothing_is_written(
    world: SyncWorld,
) -> None:
    twin = replace(
        tee("Twin Tee"),
        variants=tuple(replace(v, sku="TWIN") for v in tee().variants),
    )
    gid = shopify_create(world, twin)
    await world.settle()
    assert world.emanage_writes.count == 0
    conflicts = world.conflicts()
    assert [c.kind for c in conflicts] == ["shared_sku"]
    assert conflicts[0].field == "TWIN"
    assert world.link(gid=gid) is None


async def test_nothing_syncs_while_off_and_a_resync_request_brings_the_product_over(
    world: SyncWorld,
) -> None:
    """Keep Products Synchronized OFF: webhooks are acked without effect. ON again, the
    backfill's resync request (with the export's snapshot) creates the product once; a second
    request for it writes nothing."""
    from syncapp.sync.events import request_resync
    from syncapp.sync.state import set_keep_products_synchronized

    set_keep_products_synchronized(world.runtime.sessions, world.shop, False)
    gid = shopify_create(world, tee("Quiet Tee"))
    await world.settle()
    assert world.emanage_writes.count == 0
    assert world.link(gid=gid) is None
    set_keep_products_synchronized(world.runtime.sessions, world.shop, True)
    found = world.merchant().read_product(gid)
    assert found is not None
    node, variants = found
    snapshot = {**node, "variants": {"nodes": variants}}
    for _ in range(2):
        with world.runtime.sessions.begin() as session:
            request_resync(session, shop_domain=world.shop, reason="backfill", snapshot=snapshot)
        await world.settle()
    created = await the_emanage_product(world, gid)
    assert created.body["name"] == "Quiet Tee"
    assert world.emanage_writes.count == 1
    assert world.shopify_writes.count == 0
