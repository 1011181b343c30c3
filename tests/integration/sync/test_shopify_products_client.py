"""The sync's Shopify products client against the whole Shopify sandbox over HTTP, which
enforces Shopify's documented query costs and its leaky-bucket throttle (pitfalls 10, 15, 17,
19, 25, 26, 27)."""

from __future__ import annotations

import hashlib
import itertools
import json
import time
from collections.abc import Iterator
from concurrent.futures import ThreadPoolExecutor
from dataclasses import replace
from decimal import Decimal
from typing import Any
from urllib.parse import urlparse

import httpx
import pytest

from syncapp.connectors.shopify.products import ProductsClient
from syncapp.sync.catalog import Option, Product, Variant, WeightUnit
from syncapp.sync.fingerprint import fingerprint
from syncapp.sync.mapping import product_from_shopify, product_set_input, variant_bulk_input
from tests.integration.sandbox.conftest import RunningSandbox, make_config, running_sandbox
from tests.waiting import wait_until

API_VERSION = "2026-10"
FAULTS = "/_sandbox/graphql/faults"


@pytest.fixture(scope="module")
def sandbox(tmp_path_factory: pytest.TempPathFactory) -> Iterator[RunningSandbox]:
    """The whole sandbox on a free port, shared by this module's tests (each has its own shop)."""
    config = make_config(
        tmp_path_factory.mktemp("products"), "http://127.0.0.1:9", deliver_webhooks=False
    )
    with running_sandbox(config) as running:
        yield running


_OPEN: list[httpx.Client] = []


@pytest.fixture(autouse=True)
def _close_clients() -> Iterator[None]:
    """Every HTTP client a test opened is closed after it."""
    yield
    while _OPEN:
        _OPEN.pop().close()


def client_for(sandbox: RunningSandbox, name: str, plan: str = "Standard") -> ProductsClient:
    """A products client for a fresh sandbox shop on ``plan`` holding a token of the app."""
    # A 2,048-variant productSet keeps the sandbox (served in this process, under coverage)
    # busy for seconds, more beside `make test`'s other workers: no 10 s read timeout here.
    http = sandbox.shop_client(timeout=60)
    _OPEN.append(http)
    handle = "p" + hashlib.sha1(name.encode()).hexdigest()[:12]  # noqa: S324
    domain = str(sandbox.create_shop(handle, plan_name=plan)["domain"])
    token = sandbox.control.post(f"/_sandbox/shops/{domain}/custom_token", json={})
    assert token.status_code == 200, token.text
    return ProductsClient(
        shop=domain,
        access_token=str(token.json()["access_token"]),
        api_version=API_VERSION,
        http=http,
    )


def catalog_product(sizes: int, colors: int, title: str = "Big Tee") -> Product:
    """A product with sizes x colors variants, each with a SKU, prices and a weight."""
    size_values = tuple(f"S{i}" for i in range(sizes))
    color_values = tuple(f"C{i}" for i in range(colors))
    variants = tuple(
        Variant(
            sku=f"BIG-{s}-{c}",
            options=(s, c),
            price=Decimal("19.9") + n,
            compare_at_price=None if n % 2 else Decimal("29.90") + n,
            weight=Decimal("0.25"),
            weight_unit=WeightUnit.KILOGRAMS,
        )
        for n, (s, c) in enumerate(itertools.product(size_values, color_values))
    )
    return Product(
        title=title,
        vendor="Acme",
        product_type="Shirt",
        description="<p>Soft</p>",
        options=(Option("Size", size_values), Option("Color", color_values)),
        variants=variants,
    )


def strip_ids(product: Product) -> Product:
    return replace(
        product,
        shopify_id=None,
        variants=tuple(replace(v, shopify_id=None) for v in product.variants),
    )


def test_a_2048_variant_product_is_written_and_read_back_whole(sandbox: RunningSandbox) -> None:
    """productSet creates 2,048 variants; the paged read returns all of them, field for field."""
    client = client_for(sandbox, "big", plan="Plus")
    product = catalog_product(64, 32)
    created = client.set_product(product_set_input(product))
    read = client.read_product(created["id"])
    assert read is not None
    node, variants = read
    assert len(variants) == 2048 == len({v["id"] for v in variants})
    back = product_from_shopify(node, variants)
    assert strip_ids(back) == product
    assert fingerprint(back) == fingerprint(product)
    assert client.throttled == 0


def test_a_partial_price_update_leaves_the_rest_of_the_product_untouched(
    sandbox: RunningSandbox,
) -> None:
    """productVariantsBulkUpdate of one price changes that price only: the other variants, their
    SKUs and weights, and the product's metafield stay as they were."""
    client = client_for(sandbox, "partial")
    product = catalog_product(3, 1, title="Partial Tee")
    product_input = product_set_input(product)
    product_input["metafields"] = [
        {"namespace": "$app", "key": "origin", "type": "single_line_text_field", "value": "op-1"}
    ]
    created = client.set_product(product_input)
    before = client.read_product(created["id"])
    assert before is not None
    target = product_from_shopify(*before).variants[1]
    changed = replace(target, price=Decimal("7.5"))
    (updated,) = client.update_variants(
        created["id"], [variant_bulk_input(changed, frozenset({"price"}))]
    )
    assert Decimal(updated["price"]) == Decimal("7.50")
    after = client.read_product(created["id"])
    assert after is not None
    assert after[0]["metafield"] == {"value": "op-1"}
    old_variants = {v["id"]: v for v in before[1]}
    for variant in after[1]:
        if variant["id"] == target.shopify_id:
            assert Decimal(variant["price"]) == Decimal("7.5")
            assert {k: v for k, v in variant.items() if k != "price"} == {
                k: v for k, v in old_variants[variant["id"]].items() if k != "price"
            }
        else:
            assert variant == old_variants[variant["id"]]


def test_sku_and_weight_are_written_through_the_inventory_item(sandbox: RunningSandbox) -> None:
    """A SKU and weight edit via inventoryItem reads back identically."""
    client = client_for(sandbox, "sku")
    created = client.set_product(product_set_input(catalog_product(1, 1, title="Sku Tee")))
    read = client.read_product(created["id"])
    assert read is not None
    variant = replace(
        product_from_shopify(*read).variants[0],
        sku="NEW-SKU",
        weight=Decimal("1.5"),
        weight_unit=WeightUnit.POUNDS,
    )
    client.update_variants(
        created["id"], [variant_bulk_input(variant, frozenset({"sku", "weight"}))]
    )
    again = client.read_product(created["id"])
    assert again is not None
    assert product_from_shopify(*again).variants[0] == variant


def test_a_burst_of_writes_under_the_standard_plan_is_never_throttled(
    sandbox: RunningSandbox,
) -> None:
    """Thirty productSet writes (about 3,300 points against a 2,000-point bucket refilling at
    100/s) are paced by the budget: all succeed and none is THROTTLED."""
    client = client_for(sandbox, "burst")
    ids = {
        client.set_product(product_set_input(catalog_product(2, 1, title=f"Burst {i}")))["id"]
        for i in range(30)
    }
    assert len(ids) == 30
    assert client.throttled == 0
    assert client.budget.maximum == 2000
    assert client.budget.restore_rate == 100


def test_concurrent_writers_of_one_shop_share_the_budget_and_are_never_throttled(
    sandbox: RunningSandbox,
) -> None:
    """Sixteen threads (the worker's concurrent handlers of one shop) writing 30 products through
    one client, past the 2,000-point bucket: the check and the reservation are one step, so
    writers that waited side by side do not all spend the same refilled points."""
    client = client_for(sandbox, "concurrent-burst")
    titles = [f"Concurrent {i}" for i in range(30)]
    with ThreadPoolExecutor(max_workers=16) as pool:
        ids = set(
            pool.map(
                lambda t: client.set_product(product_set_input(catalog_product(2, 1, title=t)))[
                    "id"
                ],
                titles,
            )
        )
    assert len(ids) == 30
    assert client.throttled == 0


def test_archive_sets_only_the_status(sandbox: RunningSandbox) -> None:
    """productUpdate archives the product and leaves its title and variants."""
    client = client_for(sandbox, "archive")
    created = client.set_product(product_set_input(catalog_product(2, 1, title="Old Tee")))
    assert client.archive_product(created["id"])["status"] == "ARCHIVED"
    read = client.read_product(created["id"])
    assert read is not None
    assert read[0]["status"] == "ARCHIVED"
    assert read[0]["title"] == "Old Tee"
    assert len(read[1]) == 2


@pytest.mark.parametrize("status", [200, 429])
def test_a_throttled_answer_is_waited_out_not_failed(sandbox: RunningSandbox, status: int) -> None:
    """Forced THROTTLED answers (HTTP 200, or 429 with Retry-After) are retried until they pass."""
    client = client_for(sandbox, f"throttle-{status}")
    response = sandbox.control.post(FAULTS, json={"throttle_status": status, "throttle_next": 2})
    assert response.status_code == 200, response.text
    try:
        created = client.set_product(product_set_input(catalog_product(1, 1, title="Throttled")))
    finally:
        sandbox.control.delete(FAULTS)
    assert created["id"].startswith("gid://shopify/Product/")
    assert client.throttled == 2


def test_changed_since_lists_products_updated_at_or_after_the_watermark(
    sandbox: RunningSandbox,
) -> None:
    """The sweep's query is inclusive (>=): a product updated in the watermark's second is found."""
    client = client_for(sandbox, "sweep")
    created = client.set_product(product_set_input(catalog_product(1, 1, title="Swept")))
    read = client.read_product(created["id"])
    assert read is not None
    changed = list(client.changed_since(read[0]["updatedAt"]))
    assert created["id"] in {p["id"] for p in changed}
    assert list(client.changed_since("2100-01-01T00:00:00Z")) == []


def test_the_catalog_export_holds_every_synced_field(sandbox: RunningSandbox) -> None:
    """The backfill's bulk query completes; its JSONL maps to the products as written."""
    client = client_for(sandbox, "bulk")
    product = catalog_product(2, 2, title="Bulk Tee")
    created = client.set_product(product_set_input(product))
    op = client.start_catalog_export()
    state: dict[str, Any] = dict(op)

    def finished() -> bool:
        state.update(client.call("bulk_operation", {"id": op["id"]}, estimate=2)["node"])
        return state["status"] not in ("CREATED", "RUNNING")

    wait_until(finished, timeout=30, what="the bulk export to finish")
    op = state
    assert op["status"] == "COMPLETED", op
    lines = [json.loads(x) for x in sandbox.control.get(urlparse(op["url"]).path).text.splitlines()]
    (node,) = [x for x in lines if x["id"] == created["id"]]
    variants = [x for x in lines if x.get("__parentId") == created["id"]]
    assert strip_ids(product_from_shopify(node, variants)) == product


def test_retry_after_is_read_as_seconds(sandbox: RunningSandbox) -> None:
    """A 429 with ``Retry-After: 1`` is waited out for at least one second, never 1 ms."""
    client = client_for(sandbox, "retry-after")
    seen: list[float] = []
    client.http.event_hooks["response"].append(
        lambda r: seen.append(float(r.headers["Retry-After"])) if r.status_code == 429 else None
    )
    waits: list[float] = []

    def sleep(seconds: float) -> None:
        waits.append(seconds)
        time.sleep(seconds)

    client.sleep = sleep
    sandbox.control.post(FAULTS, json={"throttle_status": 429, "throttle_next": 1})
    try:
        client.set_product(product_set_input(catalog_product(1, 1, title="Later")))
    finally:
        sandbox.control.delete(FAULTS)
    assert seen
    assert seen[0] >= 1
    assert max(waits) >= seen[0]


def test_variants_are_found_by_their_exact_skus_across_products(sandbox: RunningSandbox) -> None:
    """One lookup of several SKUs: every variant with exactly one of them, across products
    (a SKU three products share is paged past the two a SKU first asks for), none whose SKU
    only starts with or contains one; quotes and spaces in a SKU are searched literally."""
    client = client_for(sandbox, "by-sku")
    odd = 'MUG "big" 1'
    made = [
        client.set_product(
            product_set_input(
                Product(
                    title=f"Mug {n}",
                    variants=(Variant(sku=sku, options=(), price=Decimal("5")),),
                )
            )
        )["id"]
        for n, sku in enumerate(["SHARED", "SHARED", "SHARED", "SHARED-2", odd, "ALONE"])
    ]
    found = client.variants_by_skus(["SHARED", odd, "MISSING"])
    by_sku = sorted((n["sku"], n["product"]["id"]) for n in found)
    assert by_sku == sorted(
        [("SHARED", made[0]), ("SHARED", made[1]), ("SHARED", made[2]), (odd, made[4])]
    )
    assert all(n["product"]["emanageId"] is None for n in found)
    # Alone, SHARED asks for two variants and has three: the third comes from the next page.
    alone = client.variants_by_skus(["SHARED"])
    assert sorted(n["product"]["id"] for n in alone) == sorted(made[:3])
