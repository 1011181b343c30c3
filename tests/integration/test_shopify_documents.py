"""The app's Admin GraphQL documents sent the way the app sends them — shopifyapp's
``admin_graphql_request`` over HTTP — to the whole Shopify sandbox served by uvicorn: each runs
without errors and returns what the sync engine will read from it."""

from __future__ import annotations

import hashlib
import json
import time
from collections.abc import Iterator
from dataclasses import dataclass
from typing import Any
from urllib.parse import urlparse

import httpx
import pytest
from shopify_app import admin_graphql_request

from syncapp.connectors.shopify.documents import load_document
from syncapp.sandbox.shopify.seed import seed_demo_products
from tests.integration.sandbox.conftest import RunningSandbox, make_config, running_sandbox

API_VERSION = "2026-10"
DEMO_PRODUCTS = 6
# products_updated_since costs about 205 points a product as requested; 4 stay under 1,000.
PAGE_SIZE = 4


@dataclass
class ShopSession:
    """One shop of the sandbox with demo products and an Admin API token, as the app holds it."""

    sandbox: RunningSandbox
    domain: str
    token: str
    http: httpx.Client

    def send(self, document: str, variables: dict[str, Any] | None = None) -> dict[str, Any]:
        """Send app document ``document``; fails the test on any error, else returns ``data``."""
        result = admin_graphql_request(
            load_document(document),
            shop=self.domain.removesuffix(".myshopify.com"),
            access_token=self.token,
            api_version=API_VERSION,
            variables=variables,
            http_client=self.http,
        )
        assert result.ok, f"{document}.graphql: {result.log.code}: {result.response.body}"
        assert result.data is not None
        return result.data


@pytest.fixture(scope="module")
def sandbox(tmp_path_factory: pytest.TempPathFactory) -> Iterator[RunningSandbox]:
    """The whole sandbox on a free port, shared by this module's tests (each has its own shop)."""
    config = make_config(
        tmp_path_factory.mktemp("documents"), "http://127.0.0.1:9", deliver_webhooks=False
    )
    with running_sandbox(config) as running:
        yield running


@pytest.fixture
def session(sandbox: RunningSandbox, request: pytest.FixtureRequest) -> Iterator[ShopSession]:
    """A fresh shop named after the test, with demo products and a token for the app's scopes."""
    handle = "d" + hashlib.sha1(request.node.nodeid.encode()).hexdigest()[:12]  # noqa: S324
    domain = str(sandbox.create_shop(handle)["domain"])
    response = sandbox.control.post(f"/_sandbox/shops/{domain}/custom_token", json={})
    assert response.status_code == 200, response.text
    seed_demo_products(sandbox.state, domain, DEMO_PRODUCTS)
    with sandbox.shop_client() as http:
        yield ShopSession(sandbox, domain, str(response.json()["access_token"]), http)


def all_products(session: ShopSession, query: str | None = None) -> list[dict[str, Any]]:
    """Every product products_updated_since returns, following its cursor page by page."""
    products: list[dict[str, Any]] = []
    after: str | None = None
    while True:
        page = session.send(
            "products_updated_since", {"first": PAGE_SIZE, "after": after, "query": query}
        )["products"]
        products += page["nodes"]
        if not page["pageInfo"]["hasNextPage"]:
            return products
        after = page["pageInfo"]["endCursor"]


def new_product_input(title: str) -> dict[str, Any]:
    return {
        "title": title,
        "status": "ACTIVE",
        "productOptions": [{"name": "Size", "values": [{"name": "S"}, {"name": "M"}]}],
        "variants": [
            {"optionValues": [{"optionName": "Size", "name": s}], "price": p, "sku": f"DOC-{s}"}
            for s, p in (("S", "10.00"), ("M", "12.00"))
        ],
        "metafields": [
            {
                "namespace": "$app",
                "key": "origin",
                "type": "single_line_text_field",
                "value": "sync-op-1",
            }
        ],
    }


def wait_for_bulk(session: ShopSession, op_id: str, timeout: float = 30) -> dict[str, Any]:
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        op: dict[str, Any] = session.send("bulk_operation", {"id": op_id})["node"]
        if op["status"] not in ("CREATED", "RUNNING", "CANCELING"):
            return op
        time.sleep(0.05)
    raise AssertionError(f"bulk operation {op_id} did not finish within {timeout} s")


def test_shop_document_reads_the_shop(session: ShopSession) -> None:
    """shop.graphql returns the shop's domain, currency, time zone, plan and primary domain."""
    shop = session.send("shop")["shop"]
    assert shop["myshopifyDomain"] == session.domain
    assert shop["currencyCode"] == "USD"
    assert shop["ianaTimezone"]
    assert shop["plan"]["partnerDevelopment"] is False
    assert shop["primaryDomain"]["host"] == session.domain


def test_products_updated_since_pages_through_every_product(session: ShopSession) -> None:
    """Following endCursor at four a page reaches every product once, oldest change first."""
    products = all_products(session)
    assert len({p["id"] for p in products}) == len(products) == DEMO_PRODUCTS
    updated = [p["updatedAt"] for p in products]
    assert updated == sorted(updated)
    assert all(p["variants"]["nodes"] and p["options"] for p in products)


def test_products_updated_since_applies_the_search_query(session: ShopSession) -> None:
    """A $query of updated_at after every change returns no product."""
    assert all_products(session, "updated_at:>'2100-01-01T00:00:00Z'") == []


def test_product_document_reads_one_product_with_its_variants(session: ShopSession) -> None:
    """product.graphql returns the product a page listed, with the same variants."""
    listed = session.send("products_updated_since", {"first": 1})["products"]["nodes"][0]
    product = session.send("product", {"id": listed["id"]})["product"]
    assert product == listed


def test_product_set_creates_a_product_with_the_app_origin_metafield(
    session: ShopSession,
) -> None:
    """productSet by handle creates the product, and product.graphql reads back its origin."""
    payload = session.send(
        "product_set",
        {"input": new_product_input("Doc Tee"), "identifier": {"handle": "doc-tee"}},
    )["productSet"]
    assert payload["userErrors"] == []
    assert sorted(v["sku"] for v in payload["product"]["variants"]["nodes"]) == ["DOC-M", "DOC-S"]
    product = session.send("product", {"id": payload["product"]["id"]})["product"]
    assert product["handle"] == "doc-tee"
    assert product["metafield"] == {"value": "sync-op-1"}


def test_product_set_with_the_same_handle_updates_the_same_product(session: ShopSession) -> None:
    """A second productSet with the same identifier changes the product rather than adding one."""
    identifier = {"handle": "doc-tee"}
    first = session.send(
        "product_set", {"input": new_product_input("Doc Tee"), "identifier": identifier}
    )["productSet"]["product"]
    second = session.send(
        "product_set", {"input": new_product_input("Doc Tee v2"), "identifier": identifier}
    )["productSet"]
    assert second["userErrors"] == []
    assert second["product"]["id"] == first["id"]
    assert session.send("product", {"id": first["id"]})["product"]["title"] == "Doc Tee v2"


def test_variants_bulk_update_changes_a_price(session: ShopSession) -> None:
    """productVariantsBulkUpdate sets one variant's price and compare-at price."""
    product = session.send("products_updated_since", {"first": 1})["products"]["nodes"][0]
    variant = product["variants"]["nodes"][0]
    payload = session.send(
        "variants_bulk_update",
        {
            "productId": product["id"],
            "variants": [{"id": variant["id"], "price": "99.50", "compareAtPrice": "120.00"}],
        },
    )["productVariantsBulkUpdate"]
    assert payload["userErrors"] == []
    assert payload["productVariants"][0]["price"] == "99.50"
    assert payload["productVariants"][0]["compareAtPrice"] == "120.00"
    assert payload["product"]["id"] == product["id"]


def test_product_delete_removes_the_product(session: ShopSession) -> None:
    """productDelete returns the deleted id, and product.graphql then finds nothing."""
    product_id = session.send("products_updated_since", {"first": 1})["products"]["nodes"][0]["id"]
    payload = session.send("product_delete", {"id": product_id})["productDelete"]
    assert payload == {"deletedProductId": product_id, "userErrors": []}
    assert session.send("product", {"id": product_id})["product"] is None


def test_bulk_backfill_file_holds_every_product_and_variant(session: ShopSession) -> None:
    """The bulk inner query runs to COMPLETED; its JSONL has each product and each variant."""
    expected = all_products(session)
    started = session.send("bulk_products", {"query": load_document("bulk_products_inner")})
    assert started["bulkOperationRunQuery"]["userErrors"] == []
    op = wait_for_bulk(session, started["bulkOperationRunQuery"]["bulkOperation"]["id"])
    assert op["status"] == "COMPLETED", op
    body = session.sandbox.control.get(urlparse(op["url"]).path)
    assert body.status_code == 200, body.text
    lines = [json.loads(line) for line in body.text.splitlines()]
    products = [line for line in lines if "__parentId" not in line]
    variants = [line for line in lines if "__parentId" in line]
    assert sorted(p["id"] for p in products) == sorted(p["id"] for p in expected)
    assert len(variants) == sum(len(p["variants"]["nodes"]) for p in expected)
    assert int(op["rootObjectCount"]) == DEMO_PRODUCTS
    assert int(op["objectCount"]) == len(lines)


def test_current_bulk_operation_names_the_latest_operation(session: ShopSession) -> None:
    """current_bulk_operation returns the bulk query the shop started last."""
    started = session.send("bulk_products", {"query": load_document("bulk_products_inner")})
    op_id = started["bulkOperationRunQuery"]["bulkOperation"]["id"]
    wait_for_bulk(session, op_id)
    current = session.send("current_bulk_operation")["currentBulkOperation"]
    assert current["id"] == op_id
    assert current["status"] == "COMPLETED"


def test_bulk_operation_of_another_type_is_not_current(session: ShopSession) -> None:
    """Asking for the current MUTATION operation ignores a bulk query."""
    started = session.send("bulk_products", {"query": load_document("bulk_products_inner")})
    wait_for_bulk(session, started["bulkOperationRunQuery"]["bulkOperation"]["id"])
    assert session.send("current_bulk_operation", {"type": "MUTATION"}) == {
        "currentBulkOperation": None
    }
