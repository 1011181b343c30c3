"""``POST …/products:batch`` over HTTP (every exchange checked against the contract): items
succeed or fail one by one, creates match existing products (external reference, then SKU),
each item's key is the key of the single write it stands for, and a replayed batch or item
changes nothing."""

from __future__ import annotations

import uuid
from decimal import Decimal
from typing import Any

import httpx
import pytest
from starlette.applications import Starlette

from syncapp.connectors.emanage import BatchWrite, EmanageClient
from tests.integration.emanage.conftest import bearer, onboard
from tests.integration.emanage.test_products import base, body, create, outbox, writer

pytestmark = pytest.mark.anyio


def item(key: str, product: dict[str, Any], **extra: Any) -> dict[str, Any]:
    return {"key": key, "product": product, **extra}


def shirt(n: int, *, ref: str | None = None, sku: str | None = None) -> dict[str, Any]:
    return body(
        f"Shirt {n}",
        sku=sku or f"SH{n}",
        externalRefs={"shopifyProductId": ref or f"gid://shopify/Product/{900 + n}"},
    )


def count_products(app: Starlette) -> int:
    state = app.state.sandbox
    with state.db.transaction() as conn:
        return int(conn.execute("SELECT COUNT(*) FROM products").fetchone()[0])


async def test_items_succeed_or_fail_one_by_one_and_a_replay_changes_nothing(
    http: httpx.AsyncClient, app: Starlette
) -> None:
    """One batch: a create, a product matched by reference, one matched by SKU, an invalid
    product, a reused key: each gets its own result and the bad ones stop nothing; the same
    batch again (its key) and the same items in a new batch change nothing."""
    who = await onboard(http)
    by_ref = await create(http, who, shirt(1, ref="gid://shopify/Product/1"))
    by_sku = await create(http, who, body("Shirt in the CRM", sku="SKU2", externalRefs={}))
    used = str(uuid.uuid4())
    await create(http, who, shirt(9), key=used)
    invalid = shirt(4)
    invalid["variants"][0]["productPrices"]["DiscountedPrice"]["Value"] = 1.234
    items = [
        item("k-new", shirt(3), match=True),
        item("k-ref", shirt(1, ref="gid://shopify/Product/1"), match=True),
        item("k-sku", shirt(2, sku="SKU2"), match=True),
        item("k-bad", invalid, match=True),
        item(used, shirt(5), match=True),
    ]
    events_before = len(outbox(app))
    headers = writer(who.account_token, "batch-1", **{"X-Sync-Origin": "syncapp"})
    response = await http.post(
        f"{base(who.account_id)}:batch", json={"items": items}, headers=headers
    )
    assert response.status_code == 200, response.text
    results = response.json()["items"]
    assert [(r["key"], r["status"], r["matchedBy"]) for r in results] == [
        ("k-new", "created", None),
        ("k-ref", "matched", "externalRef"),
        ("k-sku", "matched", "sku"),
        ("k-bad", "error", None),
        (used, "conflict", None),
    ]
    created = results[0]["product"]
    assert created["lastWriteOrigin"] == "syncapp"
    assert results[1]["product"]["productId"] == by_ref["productId"]
    assert results[2]["product"] == by_sku  # matched, unchanged
    assert "variants[0].productPrices.DiscountedPrice.Value" in results[3]["error"]["modelState"]
    assert results[4]["error"]["code"] == "idempotency_key_reused"
    assert count_products(app) == 4  # three before, one created
    assert [r["type"] for r in outbox(app)[events_before:]] == ["product.created"]

    again = await http.post(f"{base(who.account_id)}:batch", json={"items": items}, headers=headers)
    assert again.headers["idempotent-replayed"] == "true"
    assert again.json() == response.json()
    fresh = writer(who.account_token, "batch-2", **{"X-Sync-Origin": "syncapp"})
    items_again = await http.post(
        f"{base(who.account_id)}:batch", json={"items": items[:1]}, headers=fresh
    )
    (replayed,) = items_again.json()["items"]
    assert (replayed["status"], replayed["replayed"]) == ("created", True)
    assert replayed["product"] == created
    # The item's key is the single create's: sent alone, the same create is a replay too.
    alone = await http.post(
        base(who.account_id),
        json=shirt(3),
        headers=writer(who.account_token, "k-new", **{"X-Sync-Origin": "syncapp"}),
    )
    assert (alone.status_code, alone.headers["idempotent-replayed"]) == (201, "true")
    assert alone.json()["productId"] == created["productId"]
    assert count_products(app) == 4
    assert [r["type"] for r in outbox(app)[events_before:]] == ["product.created"]


async def test_a_product_is_matched_once_per_batch_and_an_ambiguous_sku_is_never_guessed(
    http: httpx.AsyncClient, app: Starlette
) -> None:
    """Two items naming one existing product by SKU: the first takes it, the second is
    created; a SKU two products have matches neither (a conflict, nothing written); a
    reference taken twice conflicts."""
    who = await onboard(http)
    existing = await create(http, who, body("Existing", sku="ONE", externalRefs={}))
    await create(http, who, body("Twin A", sku="TWIN", externalRefs={}))
    await create(http, who, body("Twin B", sku="TWIN", externalRefs={}))
    items = [
        item("a", shirt(1, sku="ONE"), match=True),
        item("b", shirt(2, sku="ONE"), match=True),
        item("c", shirt(3, sku="TWIN"), match=True),
        item("d", shirt(7, ref="gid://shopify/Product/77"), match=True),
        item("e", shirt(8, ref="gid://shopify/Product/77"), match=True),
    ]
    response = await http.post(
        f"{base(who.account_id)}:batch", json={"items": items}, headers=writer(who.account_token)
    )
    results = response.json()["items"]
    assert [r["status"] for r in results] == [
        "matched",
        "created",
        "conflict",
        "created",
        "conflict",
    ]
    assert results[0]["product"]["productId"] == existing["productId"]
    assert results[2]["error"]["code"] == "ambiguous_match"
    assert results[4]["error"]["code"] == "already_matched"
    assert count_products(app) == 3 + 2


async def test_replacements_are_guarded_by_their_version_item_by_item(
    http: httpx.AsyncClient, client: EmanageClient
) -> None:
    """Through the connector: a replacement at the current version is applied, one at an old
    version is a conflict with the current version, a missing product an error; Decimals
    round trip exactly."""
    who = await onboard(http)
    first = await create(http, who, shirt(1))
    second = await create(http, who, shirt(2))
    renamed = {**shirt(1), "name": "Shirt 1 renamed"}
    renamed["variants"][0]["productPrices"]["DiscountedPrice"]["Value"] = Decimal("19.90")
    results = await client.batch_products(
        account_id=who.account_id,
        items=[
            BatchWrite("u-1", renamed, product_id=first["productId"], version=1),
            BatchWrite("u-2", shirt(2), product_id=second["productId"], version=7),
            BatchWrite("u-3", shirt(3), product_id="3999999", version=1),
            BatchWrite("u-4", shirt(4), match=True),
        ],
        idempotency_key=str(uuid.uuid4()),
    )
    assert [r.status for r in results] == ["updated", "conflict", "error", "created"]
    updated = results[0].product
    assert updated is not None
    assert (updated.version, updated.body["name"]) == (2, "Shirt 1 renamed")
    assert updated.body["variants"][0]["productPrices"]["DiscountedPrice"]["Value"] == Decimal(
        "19.90"
    )
    assert (results[1].code, results[1].current_version) == ("version_conflict", 1)
    assert results[2].code == "product_not_found"
    got = await http.get(
        f"{base(who.account_id)}/{second['productId']}", headers=bearer(who.account_token)
    )
    assert got.json()["version"] == 1  # the conflicting item changed nothing


async def test_a_malformed_batch_is_refused_whole(http: httpx.AsyncClient, app: Starlette) -> None:
    who = await onboard(http)
    response = await http.post(
        f"{base(who.account_id)}:batch",
        json={"items": [item("ok", shirt(1)), {"product": shirt(2)}]},
        headers=writer(who.account_token),
    )
    assert response.status_code == 422, response.text
    assert "items[1].key" in response.json()["modelState"]
    assert count_products(app) == 0
