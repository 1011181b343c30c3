"""The HTTP endpoint of the sandbox's Admin GraphQL: routing, auth, request shapes, errors,
and query cost with Shopify's leaky-bucket throttle."""

from __future__ import annotations

import math
import time

from tests.unit.sandbox.conftest import API, OTHER_TOKEN, SHOP, TOKEN, Sandbox

INVALID_TOKEN = {
    "errors": "[API] Invalid API key or access token (unrecognized login or wrong password)"
}


def test_missing_token_is_401_with_shopifys_body(sandbox: Sandbox) -> None:
    """No X-Shopify-Access-Token header: 401 and Shopify's error body."""
    response = sandbox.client.post(API, json={"query": "{ shop { name } }"})
    assert response.status_code == 401
    assert response.json() == INVALID_TOKEN


def test_unknown_token_is_401(sandbox: Sandbox) -> None:
    """A token the sandbox never issued is refused."""
    response = sandbox.client.post(
        API, json={"query": "{ shop { name } }"}, headers={"X-Shopify-Access-Token": "shpat_nope"}
    )
    assert response.status_code == 401
    assert response.json() == INVALID_TOKEN


def test_another_shops_token_is_401(sandbox: Sandbox) -> None:
    """A live token of another shop does not open this shop."""
    response = sandbox.client.post(
        API, json={"query": "{ shop { name } }"}, headers={"X-Shopify-Access-Token": OTHER_TOKEN}
    )
    assert response.status_code == 401


def test_revoked_token_is_401(sandbox: Sandbox) -> None:
    """A revoked token stops working."""
    with sandbox.state.db.transaction() as conn:
        conn.execute("UPDATE access_tokens SET revoked = 1 WHERE token = ?", (TOKEN,))
    response = sandbox.client.post(
        API, json={"query": "{ shop { name } }"}, headers={"X-Shopify-Access-Token": TOKEN}
    )
    assert response.status_code == 401


def test_unknown_shop_host_is_404(sandbox: Sandbox) -> None:
    """A host naming no sandbox shop is not found."""
    response = sandbox.client.post(
        API,
        json={"query": "{ shop { name } }"},
        headers={"X-Shopify-Access-Token": TOKEN, "Host": "nowhere.myshopify.com"},
    )
    assert response.status_code == 404


def test_unknown_api_version_is_404(sandbox: Sandbox) -> None:
    """Only the configured API version is served."""
    response = sandbox.client.post(
        "/admin/api/2019-04/graphql.json",
        json={"query": "{ shop { name } }"},
        headers={"X-Shopify-Access-Token": TOKEN},
    )
    assert response.status_code == 404


def test_get_is_405(sandbox: Sandbox) -> None:
    """The endpoint accepts POST only."""
    response = sandbox.client.get(API, headers={"X-Shopify-Access-Token": TOKEN})
    assert response.status_code == 405


def test_shop_query_returns_data_and_cost_extensions(sandbox: Sandbox) -> None:
    """A valid query answers data and extensions.cost with the bucket's status."""
    body = sandbox.gql("{ shop { name myshopifyDomain } }")
    assert body["data"]["shop"]["myshopifyDomain"] == SHOP
    cost = body["extensions"]["cost"]
    assert cost["requestedQueryCost"] >= cost["actualQueryCost"] >= 1
    assert cost["throttleStatus"]["maximumAvailable"] == 2000.0
    assert cost["throttleStatus"]["restoreRate"] == 100.0
    assert cost["throttleStatus"]["currentlyAvailable"] >= 2000 - cost["actualQueryCost"]


def test_application_graphql_body_is_accepted(sandbox: Sandbox) -> None:
    """A raw document with Content-Type application/graphql runs like a JSON body."""
    response = sandbox.client.post(
        API,
        content=b"{ shop { myshopifyDomain } }",
        headers={"X-Shopify-Access-Token": TOKEN, "Content-Type": "application/graphql"},
    )
    assert response.status_code == 200
    assert response.json()["data"] == {"shop": {"myshopifyDomain": SHOP}}


def test_syntax_error_is_200_with_message_and_location(sandbox: Sandbox) -> None:
    """A document that does not parse answers errors with a location, no data."""
    body = sandbox.gql("{ shop { name }")
    assert "data" not in body
    [error] = body["errors"]
    assert error["message"].startswith("Syntax Error")
    assert error["locations"] == [{"line": 1, "column": 16}]


def test_unknown_field_is_reported_in_shopifys_words(sandbox: Sandbox) -> None:
    """A field missing from the schema is an undefinedField error as Shopify words it."""
    body = sandbox.gql("{ shop { nope } }")
    [error] = body["errors"]
    assert error["message"] == "Field 'nope' doesn't exist on type 'Shop'"
    assert error["extensions"]["code"] == "undefinedField"


def test_missing_query_is_400(sandbox: Sandbox) -> None:
    """A JSON body without a query is a bad request."""
    response = sandbox.client.post(
        API, json={"variables": {}}, headers={"X-Shopify-Access-Token": TOKEN}
    )
    assert response.status_code == 400


def test_query_over_max_cost_is_refused_without_data(sandbox: Sandbox) -> None:
    """A query asking more than 1000 points answers MAX_COST_EXCEEDED and runs nothing."""
    body = sandbox.gql(
        "{ products(first: 250) { nodes { id variants(first: 250) { nodes { id } } } } }"
    )
    assert "data" not in body
    [error] = body["errors"]
    assert error["extensions"]["code"] == "MAX_COST_EXCEEDED"
    assert error["message"].startswith(
        f"Query cost is {error['extensions']['cost']}, which exceeds the single query max"
        " cost limit (1000)."
    )
    assert body["extensions"]["cost"]["requestedQueryCost"] > 1000


def _fill(sandbox: Sandbox, count: int) -> None:
    with sandbox.state.db.transaction() as conn:
        conn.executemany(
            "INSERT INTO sb_products (shop_domain, title, handle, created_at, updated_at)"
            " VALUES (?, ?, ?, '2026-01-01T00:00:00Z', '2026-01-01T00:00:00Z')",
            [(SHOP, f"P{i}", f"p-{i}") for i in range(count)],
        )


EXPENSIVE = "{ products(first: 150) { nodes { id variants(first: 3) { nodes { id } } } } }"


def test_burst_of_expensive_queries_is_throttled_with_bucket_status(sandbox: Sandbox) -> None:
    """On a Standard shop (2000 points) a burst drains the bucket and then gets THROTTLED."""
    _fill(sandbox, 150)
    started = time.monotonic()
    bodies = [sandbox.gql(EXPENSIVE)]
    # The bucket refills at 100 points/s while the query runs: allow exactly that much.
    refill = math.ceil(100 * (time.monotonic() - started)) + 1
    bodies += [sandbox.gql(EXPENSIVE) for _ in range(5)]
    first_cost = bodies[0]["extensions"]["cost"]
    assert bodies[0]["data"] is not None
    assert first_cost["requestedQueryCost"] > first_cost["actualQueryCost"]
    available = first_cost["throttleStatus"]["currentlyAvailable"]
    assert (
        2000 - first_cost["actualQueryCost"]
        <= available
        <= 2000 - first_cost["actualQueryCost"] + refill
    )
    throttled = [b for b in bodies if b.get("errors")]
    assert throttled, "six 900-point queries in a burst must hit the 2000-point bucket"
    body = throttled[0]
    assert body["errors"] == [
        {
            "message": "Throttled",
            "extensions": {
                "code": "THROTTLED",
                "documentation": "https://shopify.dev/api/usage/rate-limits",
            },
        }
    ]
    assert "data" not in body
    cost = body["extensions"]["cost"]
    assert cost["actualQueryCost"] is None
    assert cost["throttleStatus"]["maximumAvailable"] == 2000.0
    assert cost["throttleStatus"]["restoreRate"] == 100.0
    assert cost["throttleStatus"]["currentlyAvailable"] < cost["requestedQueryCost"]


def test_throttle_buckets_are_per_shop(sandbox: Sandbox) -> None:
    """Draining one shop's bucket leaves another shop's bucket full."""
    _fill(sandbox, 150)
    for _ in range(6):
        sandbox.gql(EXPENSIVE)
    other = sandbox.client.post(
        API,
        json={"query": "{ shop { name } }"},
        headers={"X-Shopify-Access-Token": OTHER_TOKEN, "Host": "other.myshopify.com"},
    ).json()
    assert other["extensions"]["cost"]["throttleStatus"]["currentlyAvailable"] >= 1990
