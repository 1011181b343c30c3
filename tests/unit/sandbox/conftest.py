"""Fixtures for the Admin GraphQL engine's tests: a sandbox state with shops and tokens, and
the engine's own routes mounted in a Starlette app, reached in-process through TestClient."""

from __future__ import annotations

import json
import time
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import pytest
from starlette.applications import Starlette
from starlette.testclient import TestClient

from syncapp.sandbox.shopify import graphql_api
from syncapp.sandbox.shopify.config import SandboxConfig
from syncapp.sandbox.shopify.db import SandboxDB
from syncapp.sandbox.shopify.shops import ensure_shop
from syncapp.sandbox.shopify.state import SandboxState

SHOP = "demo.myshopify.com"
OTHER_SHOP = "other.myshopify.com"
TOKEN = "shpat_demo_token_0123456789"
OTHER_TOKEN = "shpat_other_token_0123456789"
API = "/admin/api/2026-10/graphql.json"


def make_state(tmp_path: Path) -> SandboxState:
    """A sandbox with two Standard-plan shops, each with a custom-app token."""
    config = SandboxConfig(
        database_path=tmp_path / "sandbox.db",
        client_id="test-client-id",
        client_secret="test-client-secret",
        app_url="http://127.0.0.1:1",
        public_url="http://sandbox.test",
    )
    state = SandboxState(config=config, db=SandboxDB(config.database_path))
    with state.db.transaction() as conn:
        for shop, token in ((SHOP, TOKEN), (OTHER_SHOP, OTHER_TOKEN)):
            ensure_shop(conn, shop, plan_name="Standard")
            conn.execute(
                "INSERT INTO access_tokens (token, shop_domain, kind, scope, expires_at,"
                " created_at) VALUES (?, ?, 'custom', 'read_products,write_products', NULL, ?)",
                (token, shop, time.time()),
            )
    return state


@dataclass
class Sandbox:
    """A sandbox state and an HTTP client for its GraphQL endpoint, as the demo shop."""

    state: SandboxState
    client: TestClient

    def gql(
        self, query: str, variables: dict[str, Any] | None = None, *, token: str = TOKEN
    ) -> dict[str, Any]:
        response = self.client.post(
            API,
            json={"query": query, "variables": variables},
            headers={"X-Shopify-Access-Token": token},
        )
        assert response.status_code == 200, response.text
        body: dict[str, Any] = response.json()
        return body

    def run(self, query: str, variables: dict[str, Any] | None = None) -> dict[str, Any]:
        """Run internally (no cost, no throttle); fails the test on GraphQL errors."""
        result = graphql_api.execute_internal(self.state, SHOP, query, variables)
        assert not result.get("errors"), result["errors"]
        data: dict[str, Any] = result["data"]
        return data

    def outbox(self, topic: str | None = None) -> list[dict[str, Any]]:
        with self.state.db.transaction() as conn:
            rows = conn.execute(
                "SELECT shop_domain, topic, payload FROM webhook_outbox ORDER BY id"
            ).fetchall()
        return [
            {"shop": r["shop_domain"], "topic": r["topic"], "payload": json.loads(r["payload"])}
            for r in rows
            if topic is None or r["topic"] == topic
        ]


@pytest.fixture
def sandbox(tmp_path: Path) -> Iterator[Sandbox]:
    state = make_state(tmp_path)
    app = Starlette(routes=graphql_api.routes(state))
    with TestClient(app, base_url=f"https://{SHOP}") as client:
        yield Sandbox(state, client)
    state.db.close()


PRODUCT_SET = """
mutation Set($input: ProductSetInput!, $identifier: ProductSetIdentifiers) {
  productSet(input: $input, identifier: $identifier, synchronous: true) {
    product {
      id title handle status tags vendor productType descriptionHtml updatedAt
      options { name position values }
      variants(first: 50) { nodes { id title sku price compareAtPrice position
        selectedOptions { name value } } }
    }
    userErrors { field message code }
  }
}
"""


def shirt_input(**overrides: Any) -> dict[str, Any]:
    """A two-size shirt, the smallest product with real options and variants."""
    value: dict[str, Any] = {
        "title": "Red Shirt",
        "vendor": "Acme",
        "productType": "Shirts",
        "tags": ["summer", "cotton"],
        "status": "ACTIVE",
        "productOptions": [{"name": "Size", "values": [{"name": "S"}, {"name": "M"}]}],
        "variants": [
            {
                "optionValues": [{"optionName": "Size", "name": "S"}],
                "price": "19.99",
                "compareAtPrice": "25.00",
                "sku": "RS-S",
            },
            {
                "optionValues": [{"optionName": "Size", "name": "M"}],
                "price": "21.00",
                "sku": "RS-M",
            },
        ],
    }
    value.update(overrides)
    return value
