"""Shopify's own client (``shopifyapp``'s ``admin_graphql_request``) against the whole sandbox
served by uvicorn: it must work unchanged, as against Shopify."""

from __future__ import annotations

import time
from collections.abc import Iterator
from pathlib import Path

import httpx
import pytest
from shopify_app import admin_graphql_request

from syncapp.connectors.shopify.transport import ShopifyRedirectTransport
from syncapp.sandbox.shopify.app import create_app
from syncapp.sandbox.shopify.config import SandboxConfig
from syncapp.sandbox.shopify.seed import seed_demo_products
from syncapp.sandbox.shopify.shops import ensure_shop
from tests.integration.sandbox.conftest import serve

SHOP = "demo.myshopify.com"
TOKEN = "shpat_integration_0123456789"


@pytest.fixture
def served(tmp_path: Path) -> Iterator[tuple[str, object]]:
    config = SandboxConfig(
        database_path=tmp_path / "sandbox.db",
        client_id="client-id",
        client_secret="client-secret",
        app_url="http://127.0.0.1:1",
        deliver_webhooks=False,
    )
    app = create_app(config)
    state = app.state.sandbox
    with state.db.transaction() as conn:
        ensure_shop(conn, SHOP)
        conn.execute(
            "INSERT INTO access_tokens (token, shop_domain, kind, scope, expires_at, created_at)"
            " VALUES (?, ?, 'custom', 'read_products', NULL, ?)",
            (TOKEN, SHOP, time.time()),
        )
    seed_demo_products(state, SHOP, 5)
    with serve(app) as base_url:
        yield base_url, state


def test_admin_graphql_request_reads_shop_and_products(served: tuple[str, object]) -> None:
    """admin_graphql_request gets data and cost extensions from the served sandbox."""
    base_url, _ = served
    with httpx.Client(transport=ShopifyRedirectTransport(base_url)) as client:
        result = admin_graphql_request(
            "query($n: Int!) { shop { name myshopifyDomain } products(first: $n) {"
            " nodes { id title variants(first: 6) { nodes { sku price } } } } }",
            shop="demo",
            access_token=TOKEN,
            api_version="2026-10",
            variables={"n": 5},
            http_client=client,
        )
    assert result.ok, result.log
    assert result.data["shop"]["myshopifyDomain"] == SHOP
    assert len(result.data["products"]["nodes"]) == 5
    assert result.extensions["cost"]["throttleStatus"]["maximumAvailable"] == 2000.0


def test_admin_graphql_request_sees_a_bad_token_as_unauthorized(
    served: tuple[str, object],
) -> None:
    """A wrong token comes back as shopifyapp's 'unauthorized' result."""
    base_url, _ = served
    with httpx.Client(transport=ShopifyRedirectTransport(base_url)) as client:
        result = admin_graphql_request(
            "{ shop { name } }",
            shop="demo",
            access_token="shpat_wrong",
            api_version="2026-10",
            http_client=client,
        )
    assert not result.ok
    assert result.log.code == "unauthorized"
