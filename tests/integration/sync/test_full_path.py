"""The whole path of a change, with nothing stored by the test: an eManageCRM edit (through its
products API, and by hand on its web UI's product page) is delivered, signed, by the sandbox to
the app's ``/webhooks/emanage`` (the subscription made as the worker makes it), lands in the
bus's inbox, and the engine writes it to the Shopify sandbox; a Shopify edit goes back through
the Shopify sandbox's webhook, the app's ingest and the engine to eManageCRM."""

from __future__ import annotations

import re
import uuid
from collections.abc import AsyncIterator
from decimal import Decimal
from pathlib import Path

import httpx
import pytest

from syncapp.sync.catalog import Variant
from syncapp.sync.mapping import product_from_emanage, variant_bulk_input
from tests.integration.emanage.conftest import csrf_token
from tests.integration.sync.engine_world import SyncWorld, sync_world
from tests.integration.sync.test_engine import (
    emanage_state,
    merchant_edits_emanage,
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


async def edit_on_the_web_ui(world: SyncWorld, product_id: str, sku: str, price: str) -> None:
    """The merchant signs in through an SSO link and changes one variant's price by hand."""
    user = await world.merchant_emanage.create_user(
        account_id=world.account_id,
        email="owner@sync.example",
        name="Owner",
        idempotency_key=str(uuid.uuid4()),
    )
    link = await world.merchant_emanage.create_sso_link(
        account_id=world.account_id,
        user_id=user.id,
        idempotency_key=str(uuid.uuid4()),
        redirect_path="/crm/products",
    )
    async with httpx.AsyncClient(base_url=world.emanage_url, timeout=10) as browser:
        signed_in = await browser.get(link.url)
        assert signed_in.status_code == 303, signed_in.text
        listing = await browser.get("/crm/products")
        assert f'href="/crm/products/{product_id}"' in listing.text
        page = await browser.get(f"/crm/products/{product_id}")
        assert page.status_code == 200
        current = await emanage_state(world, product_id)
        assert current is not None
        form = {
            "csrf_token": csrf_token(page.text),
            "version": str(current.version),
            "name": str(current.body["name"]),
            "status": str(current.body["status"]),
        }
        for variant in current.body["variants"]:
            vid = variant["variantId"]
            prices = variant.get("productPrices") or {}
            compare = (prices.get("FullRetailPrice") or {}).get("Value")
            form[f"sku-{vid}"] = variant["sku"] or ""
            form[f"price-{vid}"] = (
                price
                if variant["sku"] == sku
                else str(Decimal(str(prices["DiscountedPrice"]["Value"])))
            )
            form[f"compare-{vid}"] = "" if compare is None else str(Decimal(str(compare)))
        saved = await browser.post(f"/crm/products/{product_id}", data=form)
        assert saved.status_code == 303, re.sub(r"\s+", " ", saved.text)[:2000]


async def test_edits_on_either_side_travel_the_whole_path_and_their_echoes_write_nothing(
    world: SyncWorld,
) -> None:
    """Shopify create → eManageCRM; an API edit and a web UI edit in eManageCRM → Shopify
    (one write each); a Shopify price edit → eManageCRM; every delivered echo writes nothing."""
    gid = shopify_create(world, tee())
    await world.settle()
    created = await the_emanage_product(world, gid)
    assert world.emanage_writes.count == 1
    assert world.shopify_writes.count == 0
    # The engine's own create came back as a delivered notification and was settled.
    assert world.events(source="emanage")

    current = await emanage_state(world, created.product_id)
    assert current is not None
    await merchant_edits_emanage(world, created.product_id, name="Renamed in the CRM")
    await world.settle()
    state = shopify_state(world, gid)
    assert state is not None
    assert state.title == "Renamed in the CRM"
    assert world.shopify_writes.count == 1
    assert world.emanage_writes.count == 1

    await edit_on_the_web_ui(world, created.product_id, "TEE-M", "18.25")
    await world.settle()
    state = shopify_state(world, gid)
    assert state is not None
    assert names(state) == (
        "Renamed in the CRM",
        [("TEE-M", "18.25", "29.90"), ("TEE-S", "19.90", None)],
    )
    assert world.shopify_writes.count == 2
    assert world.emanage_writes.count == 1

    small = next(v for v in state.variants if v.sku == "TEE-S")
    world.merchant().update_variants(
        gid,
        [
            variant_bulk_input(
                Variant(
                    sku="TEE-S", options=("S",), price=Decimal("17.5"), shopify_id=small.shopify_id
                ),
                frozenset({"price"}),
            )
        ],
    )
    await world.settle()
    after = await emanage_state(world, created.product_id)
    assert after is not None
    assert names(product_from_emanage(after.body))[1] == [
        ("TEE-M", "18.25", "29.90"),
        ("TEE-S", "17.50", None),
    ]
    assert world.emanage_writes.count == 2
    assert world.shopify_writes.count == 2
    assert world.events(status="dead") == []
