"""The sandbox's products API over HTTP (every exchange checked against the contract): CRUD,
If-Match, idempotent replays, keyset paging by updatedSince, filters, the notification outbox,
tenant isolation, and the connector's round trip with exact Decimals."""

from __future__ import annotations

import json
import sqlite3
import uuid
from datetime import UTC, datetime
from decimal import Decimal
from typing import Any

import httpx
import pytest
from starlette.applications import Starlette

from syncapp.connectors.emanage import (
    EmanageClient,
    EmanageForbidden,
    EmanageValidationError,
    EmanageVersionConflict,
)
from syncapp.sandbox.emanage import products
from syncapp.sandbox.emanage.state import EmanageState
from syncapp.sync.catalog import Option, Product, ProductStatus, Variant
from syncapp.sync.mapping import emanage_product, product_from_emanage
from tests.integration.emanage.conftest import bearer, csrf_token, onboard, token
from tests.integration.emanage.test_sso_and_ui import sso_link

pytestmark = pytest.mark.anyio


def body(
    name: str = "Jet Fuel", *, price: Any = 19.9, sku: str = "JETF", **extra: Any
) -> dict[str, Any]:
    return {
        "name": name,
        "status": "active",
        "currency": "USD",
        "options": [{"name": "Size", "values": ["S", "M"]}],
        "externalRefs": {"shopifyProductId": "gid://shopify/Product/1"},
        "variants": [
            {
                "sku": f"{sku}-S",
                "options": ["S"],
                "weight": {"value": 0.5, "unit": "kg"},
                "productPrices": {
                    "DiscountedPrice": {"Value": price},
                    "FullRetailPrice": {"Value": 29},
                },
                "externalRefs": {"shopifyVariantId": "gid://shopify/ProductVariant/11"},
            },
            {
                "sku": f"{sku}-M",
                "options": ["M"],
                "productPrices": {"DiscountedPrice": {"Value": 21.5}},
            },
        ],
        **extra,
    }


def base(account_id: str) -> str:
    return f"/admin/v1/accounts/{account_id}/products"


def sandbox(app: Starlette) -> EmanageState:
    state: EmanageState = app.state.sandbox
    return state


def outbox(app: Starlette) -> list[sqlite3.Row]:
    with sandbox(app).db.transaction() as conn:
        return conn.execute("SELECT * FROM notification_outbox ORDER BY seq").fetchall()


def writer(token: str, key: str | None = None, **headers: str) -> dict[str, str]:
    return {**bearer(token, key or str(uuid.uuid4())), **headers}


async def create(
    http: httpx.AsyncClient, who: Any, payload: dict[str, Any] | None = None, **headers: str
) -> dict[str, Any]:
    response = await http.post(
        base(who.account_id), json=payload or body(), headers=writer(who.account_token, **headers)
    )
    assert response.status_code == 201, response.text
    result: dict[str, Any] = response.json()
    return result


async def test_create_read_replace_archive(http: httpx.AsyncClient, app: Starlette) -> None:
    """The resource round trips; a PUT replaces variants (kept, created, removed), bumps the
    version; archive sets the status; ETag is the version throughout."""
    who = await onboard(http)
    created = await create(http, who, **{"X-Sync-Origin": "syncapp"})
    assert created["version"] == 1
    assert created["lastWriteOrigin"] == "syncapp"
    assert [v["sku"] for v in created["variants"]] == ["JETF-S", "JETF-M"]
    assert "FullRetailPrice" not in created["variants"][1]["productPrices"]
    pid = created["productId"]

    got = await http.get(f"{base(who.account_id)}/{pid}", headers=bearer(who.account_token))
    assert got.headers["etag"] == '"1"'
    assert got.json() == created
    assert b'"Value":19.90' in got.content  # the currency's places, as a JSON number

    edited = got.json()
    kept = edited["variants"][0]
    kept["productPrices"]["DiscountedPrice"]["Value"] = 17.5
    edited["variants"] = [
        kept,
        {"sku": "JETF-L-NEW", "options": ["M"], "productPrices": {"DiscountedPrice": {"Value": 5}}},
    ]
    response = await http.put(
        f"{base(who.account_id)}/{pid}",
        json=edited,
        headers=writer(who.account_token, **{"If-Match": '"1"'}),
    )
    assert response.status_code == 200, response.text
    after = response.json()
    assert after["version"] == 2
    assert response.headers["etag"] == '"2"'
    assert after["lastWriteOrigin"] is None
    assert after["variants"][0]["variantId"] == kept["variantId"]
    assert after["variants"][0]["productPrices"]["DiscountedPrice"]["Value"] == 17.5
    assert after["variants"][1]["variantId"] not in {v["variantId"] for v in created["variants"]}

    archived = await http.post(
        f"{base(who.account_id)}/{pid}/archive",
        headers=writer(who.account_token, **{"If-Match": '"2"', "X-Sync-Origin": "syncapp"}),
    )
    assert archived.status_code == 200, archived.text
    assert archived.json()["status"] == "archived"
    assert archived.json()["version"] == 3
    types = [r["type"] for r in outbox(app)]
    assert types == ["product.created", "product.updated", "product.archived"]
    last = json.loads(outbox(app)[-1]["data"])
    assert last == {
        "productId": pid,
        "version": 3,
        "updatedAt": archived.json()["updatedAt"],
        "origin": "syncapp",
        "externalRefs": {"shopifyProductId": "gid://shopify/Product/1"},
    }


async def test_if_match_is_required_and_must_be_current(
    http: httpx.AsyncClient, app: Starlette
) -> None:
    """No If-Match → 428; a stale one → 412 with the current version, and nothing changes."""
    who = await onboard(http)
    pid = (await create(http, who))["productId"]
    url = f"{base(who.account_id)}/{pid}"
    missing = await http.put(url, json=body("X"), headers=writer(who.account_token))
    assert missing.status_code == 428
    assert missing.json()["code"] == "precondition_required"
    ok = await http.put(
        url, json=body("Y"), headers=writer(who.account_token, **{"If-Match": '"1"'})
    )
    assert ok.json()["version"] == 2
    stale = await http.put(
        url, json=body("Z"), headers=writer(who.account_token, **{"If-Match": '"1"'})
    )
    assert stale.status_code == 412
    assert stale.json()["currentVersion"] == 2
    again = await http.post(
        f"{url}/archive", headers=writer(who.account_token, **{"If-Match": "1"})
    )
    assert again.status_code == 412
    no_key = await http.put(
        url, json=body("Z"), headers={**bearer(who.account_token), "If-Match": '"2"'}
    )
    assert no_key.status_code == 400
    assert no_key.json()["code"] == "idempotency_key_required"
    current = await http.get(url, headers=bearer(who.account_token))
    assert (current.json()["name"], current.json()["version"]) == ("Y", 2)
    assert [r["type"] for r in outbox(app)] == ["product.created", "product.updated"]


async def test_an_unchanged_put_keeps_version_and_records_nothing(
    http: httpx.AsyncClient, app: Starlette
) -> None:
    """Sending back what was read (read-only members included) is a no-op."""
    who = await onboard(http)
    created = await create(http, who)
    sandbox(app).clock.advance(5)
    response = await http.put(
        f"{base(who.account_id)}/{created['productId']}",
        json=created,
        headers=writer(who.account_token, **{"If-Match": '"1"', "X-Sync-Origin": "other"}),
    )
    assert response.status_code == 200
    assert response.json() == created
    assert len(outbox(app)) == 1


async def test_an_idempotent_create_replays_the_same_product(
    http: httpx.AsyncClient, app: Starlette
) -> None:
    """The same key and body → the stored answer, no second product or event; without a key
    → 400."""
    who = await onboard(http)
    headers = writer(who.account_token, "create-jetf")
    first = await http.post(base(who.account_id), json=body(), headers=headers)
    second = await http.post(base(who.account_id), json=body(), headers=headers)
    assert second.status_code == 201
    assert second.headers["idempotent-replayed"] == "true"
    assert second.headers["etag"] == '"1"'
    assert second.json() == first.json()
    listed = await http.get(base(who.account_id), headers=bearer(who.account_token))
    assert len(listed.json()["items"]) == 1
    assert len(outbox(app)) == 1
    no_key = await http.post(base(who.account_id), json=body(), headers=bearer(who.account_token))
    assert no_key.status_code == 400


async def test_validation_names_field_paths(http: httpx.AsyncClient) -> None:
    """Too many decimals, a duplicate SKU, an unknown price type and a missing price → 422
    with the path of each; nothing is created."""
    who = await onboard(http)
    bad = body(price=19.999)
    bad["variants"][1]["sku"] = "JETF-S"
    bad["variants"][1]["productPrices"] = {"PreSaleAmount1": {"Value": 1}}
    response = await http.post(base(who.account_id), json=bad, headers=writer(who.account_token))
    assert response.status_code == 422
    assert set(response.json()["modelState"]) == {
        "variants[0].productPrices.DiscountedPrice.Value",
        "variants[1].sku",
        "variants[1].productPrices.PreSaleAmount1",
        "variants[1].productPrices.DiscountedPrice",
    }
    yen = body(price=1.5, currency="JPY")
    yen["variants"][0]["productPrices"]["FullRetailPrice"] = {"Value": 2000}
    response = await http.post(base(who.account_id), json=yen, headers=writer(who.account_token))
    assert set(response.json()["modelState"]) == {
        "variants[0].productPrices.DiscountedPrice.Value",  # 1.5 yen
        "variants[1].productPrices.DiscountedPrice.Value",  # 21.5 yen
    }
    listed = await http.get(base(who.account_id), headers=bearer(who.account_token))
    assert listed.json()["items"] == []


async def test_paging_by_updated_since_keeps_same_second_edits(
    http: httpx.AsyncClient, app: Starlette
) -> None:
    """Pages of 2 walk everything in (updatedAt, productId) order; two edits in the same
    second are both in updatedSince=<that second>; filters by Shopify id and SKU."""
    who = await onboard(http)
    made = [
        await create(
            http,
            who,
            body(
                f"P{i}",
                sku=f"S{i}",
                externalRefs={"shopifyProductId": f"gid://shopify/Product/{i}"},
            ),
        )
        for i in range(5)
    ]
    seen: list[str] = []
    after: str | None = None
    while True:
        params = {"limit": "2", **({"after": after} if after else {})}
        page = (
            await http.get(base(who.account_id), params=params, headers=bearer(who.account_token))
        ).json()
        seen += [p["productId"] for p in page["items"]]
        after = page["next"]
        if after is None:
            break
    assert seen == [p["productId"] for p in made]

    clock = sandbox(app).clock
    # A minute on, at the start of a second: both edits below land in that same second.
    clock.advance(60 + (1 - clock.now() % 1) + 0.001)
    stamps = []
    for p in made[3], made[1]:
        p["name"] += " (edited)"
        response = await http.put(
            f"{base(who.account_id)}/{p['productId']}",
            json=p,
            headers=writer(who.account_token, **{"If-Match": '"1"'}),
        )
        assert response.status_code == 200
        stamps.append(response.json()["updatedAt"])
    assert stamps[0] == stamps[1]
    # That second, inclusive: both edits are in, though stored at different fractions of it.
    stamp = stamps[0]
    since = (
        await http.get(
            base(who.account_id), params={"updatedSince": stamp}, headers=bearer(who.account_token)
        )
    ).json()
    assert {p["productId"] for p in since["items"]} == {made[1]["productId"], made[3]["productId"]}

    by_ref = await http.get(
        base(who.account_id),
        params={"shopifyProductId": "gid://shopify/Product/2"},
        headers=bearer(who.account_token),
    )
    assert [p["name"] for p in by_ref.json()["items"]] == ["P2"]
    by_sku = await http.get(
        base(who.account_id), params={"sku": "S4-M"}, headers=bearer(who.account_token)
    )
    assert [p["name"] for p in by_sku.json()["items"]] == ["P4"]


async def test_a_token_reaches_only_its_own_accounts_products(http: httpx.AsyncClient) -> None:
    """Account A's token on B's products: 403 account_mismatch (read and write); a product
    id of B under A's path: 404."""
    a = await onboard(http, "a.myshopify.com")
    b = await onboard(http, "b.myshopify.com")
    theirs = await create(http, b)
    for response in (
        await http.get(base(b.account_id), headers=bearer(a.account_token)),
        await http.get(
            f"{base(b.account_id)}/{theirs['productId']}", headers=bearer(a.account_token)
        ),
        await http.post(base(b.account_id), json=body(), headers=writer(a.account_token)),
    ):
        assert response.status_code == 403
        assert response.json()["code"] == "account_mismatch"
    system = await token(http)
    as_system = await http.get(base(b.account_id), headers=bearer(system))
    assert as_system.json()["code"] == "account_token_required"
    read_only = await token(http, account_id=b.account_id, scope="products:read")
    refused = await http.post(base(b.account_id), json=body(), headers=writer(read_only))
    assert (refused.status_code, refused.json()["code"]) == (403, "insufficient_scope")
    no_products = await token(http, account_id=b.account_id, scope="users:read")
    listed = await http.get(base(b.account_id), headers=bearer(no_products))
    assert (listed.status_code, listed.json()["code"]) == (403, "insufficient_scope")
    crossed = await http.get(
        f"{base(a.account_id)}/{theirs['productId']}", headers=bearer(a.account_token)
    )
    assert crossed.status_code == 404
    put = await http.put(
        f"{base(a.account_id)}/{theirs['productId']}",
        json=body(),
        headers=writer(a.account_token, **{"If-Match": '"1"'}),
    )
    assert put.status_code == 404


async def test_an_event_is_recorded_only_when_the_change_commits(
    app: Starlette, http: httpx.AsyncClient
) -> None:
    """The write and its notification are one transaction: a failure after the write leaves
    neither."""
    who = await onboard(http)
    state = sandbox(app)
    data = products.check_product(json.loads(json.dumps(body()), parse_float=Decimal))
    assert isinstance(data, products.ProductData)

    def failing_write() -> None:
        with state.db.transaction() as conn:
            products.create_product(
                conn, account_id=who.account_id, data=data, origin=None, now=state.clock.now()
            )
            raise RuntimeError("the commit fails")

    with pytest.raises(RuntimeError):
        failing_write()
    with state.db.transaction() as conn:
        assert conn.execute("SELECT COUNT(*) FROM products").fetchone()[0] == 0
    assert outbox(app) == []


# --- the connector --------------------------------------------------------------------------


def neutral() -> Product:
    return Product(
        title="Jet Fuel",
        status=ProductStatus.ACTIVE,
        description="<p>Fast</p>",
        vendor="Acme",
        product_type="Drinks",
        options=(Option("Size", ("S", "M")),),
        image=None,
        variants=(
            Variant(
                sku="JETF-S",
                options=("S",),
                price=Decimal("19.90"),
                compare_at_price=Decimal("29.99"),
                weight=Decimal("0.5"),
                shopify_id="gid://shopify/ProductVariant/11",
            ),
            Variant(
                sku="JETF-M",
                options=("M",),
                price=Decimal("0.10"),
                compare_at_price=None,
                weight=None,
                shopify_id="gid://shopify/ProductVariant/12",
            ),
        ),
        shopify_id="gid://shopify/Product/1",
    )


async def test_connector_round_trip_is_decimal_exact(
    client: EmanageClient, http: httpx.AsyncClient, app: Starlette
) -> None:
    """mapping.emanage_product → create → get → product_from_emanage is the same product,
    with Decimal("19.90") exactly; update with a stale version raises EmanageVersionConflict."""
    who = await onboard(http)
    source = neutral()
    created = await client.create_product(
        account_id=who.account_id,
        body=emanage_product(source, currency="USD"),
        idempotency_key="c-1",
    )
    assert created.version == 1
    assert created.last_write_origin == "syncapp"
    assert created.updated_at.tzinfo is not None
    got = await client.get_product(account_id=who.account_id, product_id=created.product_id)
    assert got is not None
    price = got.body["variants"][0]["productPrices"]["DiscountedPrice"]["Value"]
    assert isinstance(price, Decimal)
    assert str(price) == "19.90"
    back = product_from_emanage(got.body)
    assert back.variants[0].price == Decimal("19.90")
    assert back.variants[1].price == Decimal("0.10")
    assert back.variants[0].compare_at_price == Decimal("29.99")
    assert back.variants[0].weight == Decimal("0.5")
    assert [v.shopify_id for v in back.variants] == [v.shopify_id for v in source.variants]
    assert back.title == source.title
    assert back.options == source.options

    changed = emanage_product(back, currency="USD")
    changed["variants"][0]["productPrices"]["DiscountedPrice"]["Value"] = Decimal("18.00")
    updated = await client.update_product(
        account_id=who.account_id,
        product_id=got.product_id,
        body=changed,
        version=1,
        idempotency_key="u-1",
    )
    assert updated.version == 2
    with pytest.raises(EmanageVersionConflict) as conflict:
        await client.update_product(
            account_id=who.account_id,
            product_id=got.product_id,
            body=changed,
            version=1,
            idempotency_key="u-2",
        )
    assert conflict.value.current_version == 2
    archived = await client.archive_product(
        account_id=who.account_id,
        product_id=got.product_id,
        version=2,
        idempotency_key="a-1",
        origin=None,
    )
    assert archived.body["status"] == "archived"
    assert archived.last_write_origin is None

    page = await client.list_products(
        account_id=who.account_id, updated_since=datetime(2000, 1, 1, tzinfo=UTC)
    )
    assert [p.product_id for p in page.items] == [created.product_id]
    assert page.next is None
    assert (await client.list_products(account_id=who.account_id, sku="JETF-M")).items[
        0
    ].version == 3
    assert await client.get_product(account_id=who.account_id, product_id="999") is None
    bad = emanage_product(source, currency="USD")
    bad["variants"][0]["productPrices"]["DiscountedPrice"]["Value"] = Decimal("1.999")
    with pytest.raises(EmanageValidationError) as refused:
        await client.create_product(account_id=who.account_id, body=bad, idempotency_key="c-2")
    assert "variants[0].productPrices.DiscountedPrice.Value" in refused.value.field_errors
    other = await onboard(http, "other.myshopify.com")
    with pytest.raises(EmanageForbidden):
        # The connector asks for a token of the account it names: a token of another account
        # is never sent, so cross-account access shows as the sandbox's refusal of a mix-up.
        await client._call("GET", f"{base(other.account_id)}", account_id=who.account_id)


# --- Web Sales and the web UI ---------------------------------------------------------------


async def test_web_sales_prices_follow_the_product_variant(
    http: httpx.AsyncClient, client: EmanageClient
) -> None:
    """A package referencing a variant shows its current name, SKU and prices (times the
    package quantity); a price synced later shows on the next read; other packages keep
    their seeded values."""
    who = await onboard(http)
    created = await client.create_product(
        account_id=who.account_id, body=body(price=Decimal("19.90")), idempotency_key="c-1"
    )
    variant_id = created.body["variants"][0]["variantId"]
    campaign = await http.post(
        f"/_sandbox/accounts/{who.account_id}/campaigns",
        json={
            "name": "Jet",
            "products": [
                {"name": "Seeded", "sku": "SEED_1", "price": 10},
                {"name": "ignored", "variantId": variant_id, "quantity": 2},
            ],
        },
    )
    assert campaign.status_code == 201, campaign.text
    web_key = campaign.json()["webKey"]

    async def prices() -> list[dict[str, Any]]:
        response = await http.get(
            f"/api/campaigns/{web_key}/products/prices", headers={"X_CID": who.cid}
        )
        assert response.status_code == 200
        result: list[dict[str, Any]] = response.json()["prices"]
        return result

    seeded, synced = await prices()
    assert (seeded["productName"], seeded["sku"]) == ("Seeded", "SEED_1")
    assert seeded["productPrices"]["DiscountedPrice"]["Value"] == 10
    assert (synced["productName"], synced["sku"]) == ("Jet Fuel - S", "JETF-S")
    assert synced["productPrices"]["DiscountedPrice"] == {"Value": 39.8, "FormattedValue": "$39.80"}
    assert synced["productPrices"]["FullRetailPrice"]["Value"] == 58
    assert synced["productPrices"]["UnitDiscountRate"]["Value"] == 19.9

    changed = dict(created.body)
    changed["variants"][0]["productPrices"]["DiscountedPrice"]["Value"] = Decimal("17.45")
    await client.update_product(
        account_id=who.account_id,
        product_id=created.product_id,
        body=changed,
        version=1,
        idempotency_key="u-1",
    )
    _, synced = await prices()
    assert synced["productPrices"]["UnitDiscountRate"]["Value"] == 17.45
    assert synced["productPrices"]["DiscountedPrice"]["Value"] == 34.9

    other = await onboard(http, "other.myshopify.com")
    refused = await http.post(
        f"/_sandbox/accounts/{other.account_id}/campaigns",
        json={"name": "X", "products": [{"name": "p", "variantId": variant_id}]},
    )
    assert refused.status_code == 400


async def test_a_hand_edit_in_the_web_ui_is_a_new_version(
    http: httpx.AsyncClient, app: Starlette
) -> None:
    """The product page edits title, status, price, compare-at and SKU with a CSRF-checked
    form; the edit is a new version with origin none and a notification; a bad amount is a
    422 page; a stale form is refused."""
    who = await onboard(http)
    created = await create(http, who, **{"X-Sync-Origin": "syncapp"})
    pid = created["productId"]
    v1, v2 = (v["variantId"] for v in created["variants"])
    await http.get(await sso_link(http, who, redirectPath="/crm/products"))
    listing = await http.get("/crm/products")
    assert listing.status_code == 200
    assert f'href="/crm/products/{pid}"' in listing.text
    page = await http.get(f"/crm/products/{pid}")
    assert 'value="19.90"' in page.text
    form = {
        "csrf_token": csrf_token(page.text),
        "version": "1",
        "name": "Jet Fuel XL",
        "status": "archived",
        f"sku-{v1}": "JETF-S2",
        f"price-{v1}": "18.25",
        f"compare-{v1}": "",
        f"sku-{v2}": "JETF-M",
        f"price-{v2}": "21.50",
        f"compare-{v2}": "25",
    }
    bad = await http.post(f"/crm/products/{pid}", data={**form, f"price-{v1}": "18.255"})
    assert bad.status_code == 422
    assert "at most 2 decimals" in bad.text
    no_csrf = await http.post(f"/crm/products/{pid}", data={**form, "csrf_token": "x"})
    assert no_csrf.status_code == 403
    saved = await http.post(f"/crm/products/{pid}", data=form)
    assert saved.status_code == 303

    api = (
        await http.get(f"{base(who.account_id)}/{pid}", headers=bearer(who.account_token))
    ).json()
    assert (api["name"], api["status"], api["version"], api["lastWriteOrigin"]) == (
        "Jet Fuel XL",
        "archived",
        2,
        None,
    )
    first, second = api["variants"]
    assert (first["sku"], first["productPrices"]["DiscountedPrice"]["Value"]) == ("JETF-S2", 18.25)
    assert "FullRetailPrice" not in first["productPrices"]
    assert second["productPrices"]["FullRetailPrice"]["Value"] == 25
    assert first["weight"] == created["variants"][0]["weight"]  # untouched fields kept
    event = outbox(app)[-1]
    assert event["type"] == "product.archived"
    assert json.loads(event["data"])["origin"] is None

    stale = await http.post(f"/crm/products/{pid}", data=form)  # still says version 1
    assert stale.status_code == 409
