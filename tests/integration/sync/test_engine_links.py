"""How the engine makes and keeps links, end to end through the sandboxes' webhooks and
notifications: a Shopify variant replaced by adding the first option is re-linked, creates on
either side match the other side's product by external reference and then by SKU (a SKU two
variants share is a recorded conflict, never a merge), and a link made writes the Shopify ids
into eManageCRM's external references once, its echo a no-op."""

from __future__ import annotations

import uuid
from collections.abc import AsyncIterator
from dataclasses import replace
from decimal import Decimal
from pathlib import Path
from typing import Any

import pytest
from sqlalchemy import select

from syncapp.connectors.emanage import EmanageProduct
from syncapp.sync.catalog import Product, Variant
from syncapp.sync.mapping import emanage_product, product_from_emanage, variant_bulk_input
from syncapp.sync.models import PRODUCT, VARIANT, SyncLink
from syncapp.sync.state import set_keep_products_synchronized, sync_status
from syncapp.web.sync_api.keys import create_key
from tests.integration.sync.engine_world import SyncWorld, shopify_graphql, sync_world
from tests.integration.sync.test_engine import (
    emanage_state,
    linked_tee,
    names,
    shopify_create,
    shopify_state,
    tee,
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


def add_first_option(world: SyncWorld, gid: str, how: str, sku: str | None) -> None:
    """The merchant adds option Color = Red to a product that has only its standalone variant:
    with productOptionsCreate, or with a productSet of the options and the variant without its
    id (ProductVariantSetInput.id: "create a new variant if absent")."""
    if how == "productOptionsCreate":
        added = shopify_graphql(
            world,
            OPTIONS_CREATE,
            {"p": gid, "o": [{"name": "Color", "values": [{"name": "Red"}]}]},
        )
        assert added["productOptionsCreate"]["userErrors"] == []
        return
    world.merchant().set_product(
        {
            "productOptions": [{"name": "Color", "values": [{"name": "Red"}]}],
            "variants": [
                {
                    "optionValues": [{"optionName": "Color", "name": "Red"}],
                    "price": "9.50",
                    "inventoryItem": {"sku": sku or ""},
                }
            ],
        },
        identifier={"id": gid},
    )


@pytest.mark.parametrize(
    ("how", "sku"),
    [("productOptionsCreate", "MUG-1"), ("productOptionsCreate", None), ("productSet", "MUG-1")],
    ids=["options-create-with-sku", "options-create-without-sku", "product-set-with-sku"],
)
async def test_adding_the_first_option_in_shopify_relinks_the_replaced_variant(
    world: SyncWorld, sku: str | None, how: str
) -> None:
    """A product with only its standalone variant gets its first option: Shopify replaces the
    variant by one with a new id. The eManageCRM variant stays the same one, takes the option
    value and the new id as its external reference, and the price link follows the new
    variant both ways."""
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

    add_first_option(world, gid, how, sku)
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
    # And the other way: a Shopify price edit of the new variant reaches the same eManageCRM one.
    world.merchant().update_variants(
        gid,
        [variant_bulk_input(replace(priced, price=Decimal("12.75")), frozenset({"price"}))],
    )
    await world.settle()
    last = await emanage_state(world, eid)
    assert last is not None
    [same] = last.body["variants"]
    assert same["variantId"] == old["variantId"]
    assert product_from_emanage(last.body).variants[0].price == Decimal("12.75")
    assert world.emanage_writes.count == 1
    assert world.shopify_writes.count == 1  # the eManageCRM price edit's, only
    assert world.events(status="dead") == []


async def test_variants_shopify_replaced_without_a_change_are_relinked_not_echoed(
    world: SyncWorld,
) -> None:
    """A productSet that lists the variants without their ids replaces them by equal ones
    with new ids: no field changed (the fingerprint is the agreed one), yet the links and
    eManageCRM's external references follow the new ids (one write), and nothing is created
    or removed on either side."""
    gid, eid = await linked_tee(world)
    before = await emanage_state(world, eid)
    assert before is not None
    old_ids = {v["variantId"] for v in before.body["variants"]}
    state = shopify_state(world, gid)
    assert state is not None
    again = {
        "productOptions": [{"name": "Size", "values": [{"name": "S"}, {"name": "M"}]}],
        "variants": [
            {
                "optionValues": [{"optionName": "Size", "name": v.options[0]}],
                "price": str(v.price),
                "compareAtPrice": None if v.compare_at_price is None else str(v.compare_at_price),
                "inventoryItem": {"sku": v.sku},
            }
            for v in state.variants
        ],
    }
    world.merchant().set_product(again, identifier={"id": gid})
    await world.settle()
    replaced = shopify_state(world, gid)
    assert replaced is not None
    new_ids = {v.sku: v.shopify_id for v in replaced.variants}
    assert not set(new_ids.values()) & {v.shopify_id for v in state.variants}
    after = await emanage_state(world, eid)
    assert after is not None
    assert {v["variantId"] for v in after.body["variants"]} == old_ids
    assert {v["sku"]: v["externalRefs"]["shopifyVariantId"] for v in after.body["variants"]} == (
        new_ids
    )
    assert sorted(str(v.shopify_gid) for v in variant_links(world, gid)) == sorted(
        str(i) for i in new_ids.values()
    )
    assert world.emanage_writes.count == 1
    assert world.shopify_writes.count == 0


# ---- creates are idempotent: matched by external reference, then by SKU


VARIANTS_BY_SKU = """
query($q: String!) { productVariants(first: 10, query: $q) { nodes { id product { id } } } }
"""


def shopify_products_with(world: SyncWorld, sku: str) -> set[str]:
    """The Shopify products that have a variant with ``sku``."""
    found = shopify_graphql(world, VARIANTS_BY_SKU, {"q": f'sku:"{sku}"'})
    return {n["product"]["id"] for n in found["productVariants"]["nodes"]}


async def emanage_products_with(world: SyncWorld, sku: str) -> set[str]:
    page = await world.merchant_emanage.list_products(account_id=world.account_id, sku=sku)
    return {p.product_id for p in page.items}


async def emanage_create(world: SyncWorld, product: Product) -> EmanageProduct:
    """The merchant creates a product in eManageCRM (no origin marker: not the app)."""
    return await world.merchant_emanage.create_product(
        account_id=world.account_id,
        body=emanage_product(product, currency="USD"),
        idempotency_key=str(uuid.uuid4()),
        origin=None,
    )


async def made_while_off(world: SyncWorld, make: Any) -> Any:
    """``make()`` with Keep Products Synchronized OFF: the webhooks and notifications it fires
    are acknowledged without effect, so its products exist unlinked (as a catalog does before
    the app); ON again afterwards."""
    set_keep_products_synchronized(world.runtime.sessions, world.shop, False)
    made = await make()
    await world.settle()
    set_keep_products_synchronized(world.runtime.sessions, world.shop, True)
    assert world.shopify_writes.count == world.emanage_writes.count == 0
    return made


def api_conflicts(world: SyncWorld) -> list[dict[str, Any]]:
    """The shop's open conflicts as the Sync API shows them (over HTTP, with an operator key)."""
    key = create_key(world.runtime.sessions, name="test", scopes=["sync:read"], shop=world.shop)
    response = world.system.app.get(
        f"/api/v1/shops/{world.shop}/conflicts", headers={"Authorization": f"Bearer {key}"}
    )
    assert response.status_code == 200, response.text
    found: list[dict[str, Any]] = response.json()
    return found


def product_links(world: SyncWorld) -> int:
    with world.runtime.sessions() as session:
        return len(list(session.scalars(select(SyncLink.id).where(SyncLink.kind == PRODUCT))))


async def test_an_emanage_product_created_while_the_shopify_one_exists_is_linked_to_it(
    world: SyncWorld,
) -> None:
    """The tee exists in Shopify (unlinked); the merchant creates it in eManageCRM too, without
    a reference: its notification finds the Shopify product by SKU and links the pair. No
    second Shopify product; eManageCRM gets the Shopify GIDs as its external references (one
    write), and that write's own notification writes nothing."""

    async def make() -> str:
        return shopify_create(world, tee())

    gid = await made_while_off(world, make)
    created = await emanage_create(world, tee())
    await world.settle()
    link = world.link(emanage_id=created.product_id)
    assert link is not None
    assert link.shopify_gid == gid
    assert shopify_products_with(world, "TEE-S") == {gid}
    assert world.shopify_writes.count == 0
    assert world.emanage_writes.count == 1  # the external references
    linked = await emanage_state(world, created.product_id)
    assert linked is not None
    state = shopify_state(world, gid)
    assert state is not None
    assert linked.body["externalRefs"] == {"shopifyProductId": gid}
    assert {v["sku"]: v["externalRefs"]["shopifyVariantId"] for v in linked.body["variants"]} == {
        v.sku: v.shopify_id for v in state.variants
    }
    # The references' notification arrived and was a no-op: a later edit writes once.
    echoes = [
        e for e in world.events(source="emanage") if f'"version":{linked.version}' in e.payload
    ]
    assert echoes, "the notification of the references write never arrived"
    world.merchant().set_product({"title": "Linked Tee"}, identifier={"id": gid})
    await world.settle()
    after = await emanage_state(world, created.product_id)
    assert after is not None
    assert (after.body["name"], after.version) == ("Linked Tee", linked.version + 1)
    assert after.body["externalRefs"] == linked.body["externalRefs"]
    assert world.emanage_writes.count == 2
    assert world.shopify_writes.count == 0
    assert world.events(status="dead") == []


async def test_a_shopify_product_created_while_the_emanage_one_exists_is_linked_to_it(
    world: SyncWorld,
) -> None:
    """The reverse: the tee exists in eManageCRM (unlinked); created in Shopify, it is matched
    by SKU: no eManageCRM create, one write of the external references, nothing back."""

    async def make() -> EmanageProduct:
        return await emanage_create(world, tee())

    existing = await made_while_off(world, make)
    gid = shopify_create(world, tee())
    await world.settle()
    link = world.link(gid=gid)
    assert link is not None
    assert link.emanage_id == existing.product_id
    assert await emanage_products_with(world, "TEE-S") == {existing.product_id}
    assert world.emanage_writes.count == 1
    assert world.shopify_writes.count == 0
    linked = await emanage_state(world, existing.product_id)
    assert linked is not None
    assert linked.body["externalRefs"] == {"shopifyProductId": gid}
    assert all(v["externalRefs"]["shopifyVariantId"] for v in linked.body["variants"])
    assert names(product_from_emanage(linked.body)) == names(tee())
    assert world.events(status="dead") == []


def solo(sku: str, title: str) -> Product:
    return Product(title=title, variants=(Variant(sku=sku, options=(), price=Decimal("5")),))


async def test_a_sku_two_emanage_products_share_is_a_conflict_not_a_merge(
    world: SyncWorld,
) -> None:
    """Two unlinked eManageCRM products have TEE-S; a Shopify product with TEE-S (and TEE-M,
    which only one of them has) is created: recorded as a shared-SKU conflict, shown by the
    sync status and the Sync API; nothing is linked, merged or created."""

    async def make() -> tuple[EmanageProduct, EmanageProduct]:
        return await emanage_create(world, tee("CRM Tee")), await emanage_create(
            world, solo("TEE-S", "Other CRM Tee")
        )

    first, second = await made_while_off(world, make)
    gid = shopify_create(world, tee())
    await world.settle()
    assert world.link(gid=gid) is None
    assert product_links(world) == 0
    assert world.emanage_writes.count == 0
    assert await emanage_products_with(world, "TEE-S") == {first.product_id, second.product_id}
    assert sync_status(world.runtime.sessions, world.shop).open_conflicts == 1
    [conflict] = api_conflicts(world)
    assert (conflict["kind"], conflict["field"]) == ("shared_sku", "TEE-S")
    assert sorted(conflict["emanage_value"]) == sorted(
        str(v["variantId"])
        for p in (first, second)
        for v in p.body["variants"]
        if v["sku"] == "TEE-S"
    )
    assert gid in conflict["reason"]
    for unchanged in (first, second):
        now = await emanage_state(world, unchanged.product_id)
        assert now is not None
        assert now.version == unchanged.version


async def test_a_sku_two_shopify_products_share_is_a_conflict_not_a_merge(
    world: SyncWorld,
) -> None:
    """The reverse: two unlinked Shopify products have MUG-X; an eManageCRM product with
    MUG-X is created: a shared-SKU conflict with both Shopify variants, no Shopify write. And
    SKUs spread over two products (TEE-S in one, TEE-M in another) for the eManageCRM tee with
    both: either link could be wrong, so that is recorded and nothing is written either."""

    async def make() -> tuple[str, ...]:
        return tuple(
            shopify_create(world, solo(sku, title))
            for sku, title in (
                ("MUG-X", "Mug A"),
                ("MUG-X", "Mug B"),
                ("TEE-S", "Small"),
                ("TEE-M", "Medium"),
            )
        )

    first, second, small, medium = await made_while_off(world, make)
    created = await emanage_create(world, solo("MUG-X", "CRM Mug"))
    tee_made = await emanage_create(world, tee("CRM Tee"))
    await world.settle()
    assert world.link(emanage_id=created.product_id) is None
    assert world.link(emanage_id=tee_made.product_id) is None
    assert world.shopify_writes.count == 0
    assert world.emanage_writes.count == 0
    assert shopify_products_with(world, "MUG-X") == {first, second}
    assert sync_status(world.runtime.sessions, world.shop).open_conflicts == 2
    by_kind = {c["kind"]: c for c in api_conflicts(world)}
    shared, ambiguous = by_kind["shared_sku"], by_kind["ambiguous_match"]
    assert shared["field"] == "MUG-X"
    variants = {
        v.shopify_id
        for gid in (first, second)
        for v in (shopify_state(world, gid) or tee()).variants
    }
    assert set(shared["shopify_value"]) == variants
    assert created.product_id in shared["reason"]
    assert sorted(ambiguous["shopify_value"]) == sorted([small, medium])
    assert tee_made.product_id in ambiguous["reason"]
