"""Bulk query operations of the sandbox: validation by Shopify's rules, the JSONL result with
``__parentId`` lines, the finish webhook, the concurrency limit and restart recovery."""

from __future__ import annotations

import json
import time
from pathlib import Path
from typing import Any

import pytest

from syncapp.sandbox.shopify import graphql_api
from syncapp.sandbox.shopify.graphql_api import bulk, bulk_store
from tests.unit.sandbox.conftest import PRODUCT_SET, SHOP, Sandbox, make_state

RUN = """
mutation($q: String!) { bulkOperationRunQuery(query: $q) {
  bulkOperation { id status } userErrors { field message code } } }
"""

PRODUCTS_WITH_VARIANTS = """
{ products(query: "status:active") { edges { node { id title
    variants { edges { node { id sku price } } } } } } }
"""


def three_variant_product(index: int) -> dict[str, Any]:
    sizes = ["S", "M", "L"]
    return {
        "title": f"Bulk {index}",
        "productOptions": [{"name": "Size", "values": [{"name": s} for s in sizes]}],
        "variants": [
            {
                "optionValues": [{"optionName": "Size", "name": s}],
                "price": f"{index}.{pos}0",
                "sku": f"B-{index}-{s}",
            }
            for pos, s in enumerate(sizes)
        ],
    }


def wait_finished(sandbox: Sandbox, op_id: str, timeout: float = 30) -> dict[str, Any]:
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        op: dict[str, Any] = sandbox.run(
            "query($id: ID!) { node(id: $id) { ... on BulkOperation { id status errorCode"
            " objectCount rootObjectCount fileSize url completedAt createdAt } } }",
            {"id": op_id},
        )["node"]
        if op["status"] not in ("CREATED", "RUNNING", "CANCELING"):
            return op
        time.sleep(0.05)
    raise AssertionError(f"bulk operation {op_id} did not finish in {timeout} s")


def test_bulk_query_writes_jsonl_with_parent_lines_and_fires_finish(sandbox: Sandbox) -> None:
    """300 products with 3 variants each give 1,200 JSONL lines, variants with __parentId."""
    for index in range(300):
        result = sandbox.run(PRODUCT_SET, {"input": three_variant_product(index)})
        assert result["productSet"]["userErrors"] == []
    started = sandbox.gql(RUN, {"q": PRODUCTS_WITH_VARIANTS})["data"]["bulkOperationRunQuery"]
    assert started["userErrors"] == []
    assert started["bulkOperation"]["status"] == "CREATED"
    op = wait_finished(sandbox, started["bulkOperation"]["id"])
    assert op["status"] == "COMPLETED"
    assert (op["objectCount"], op["rootObjectCount"]) == ("1200", "300")
    assert op["url"].startswith("http://sandbox.test/_sandbox/bulk/")
    response = sandbox.client.get(op["url"].removeprefix("http://sandbox.test"))
    assert response.status_code == 200
    assert int(op["fileSize"]) == len(response.content)
    lines = [json.loads(line) for line in response.text.splitlines()]
    products = [line for line in lines if "__parentId" not in line]
    variants = [line for line in lines if "__parentId" in line]
    assert len(products) == 300
    assert len(variants) == 900
    assert set(products[0]) == {"id", "title"}
    by_product: dict[str, list[str]] = {}
    for line in variants:
        by_product.setdefault(line["__parentId"], []).append(line["sku"])
    assert set(by_product) == {p["id"] for p in products}
    first = products[0]
    assert by_product[first["id"]] == [f"B-0-{s}" for s in "SML"]
    # groupObjects defaults to false (2026-01+): a child may come before its parent.
    assert "__parentId" in lines[0]
    [finish] = sandbox.outbox("bulk_operations/finish")
    assert finish["payload"] == {
        "admin_graphql_api_id": op["id"],
        "completed_at": op["completedAt"].replace("Z", "+00:00"),
        "created_at": op["createdAt"].replace("Z", "+00:00"),
        "error_code": None,
        "status": "completed",
        "type": "query",
    }
    current = sandbox.run("{ currentBulkOperation(type: QUERY) { id status } }")
    assert current["currentBulkOperation"] == {"id": op["id"], "status": "COMPLETED"}


def test_bulk_query_over_no_products_completes_without_a_file(sandbox: Sandbox) -> None:
    """An empty result completes with zero objects and no url, as on Shopify."""
    started = sandbox.run(RUN, {"q": "{ products { edges { node { id } } } }"})
    op = wait_finished(sandbox, started["bulkOperationRunQuery"]["bulkOperation"]["id"])
    assert (op["status"], op["objectCount"], op["url"]) == ("COMPLETED", "0", None)


@pytest.mark.parametrize(
    ("query", "fragment"),
    [
        ("{ shop { name } }", "at least one connection"),
        (
            "{ products { edges { node { id } } } productVariants { edges { node { id } } } }",
            "exactly one top-level field",
        ),
        (
            "{ products { edges { node { title variants { edges { node { id } } } } } } }",
            "must select the 'id' field",
        ),
        (
            "{ products { edges { node { id variants { edges { node { id metafields { edges {"
            " node { id } } } } } } } } } }",
            "nested more than 2 levels",
        ),
        (
            "{ products { edges { node { id x: productVariants { edges { node { id } } } } } } }",
            "Invalid bulk query",
        ),
        ("{ products { edges { node { id ", "Invalid bulk query"),
    ],
)
def test_invalid_bulk_queries_are_user_errors(sandbox: Sandbox, query: str, fragment: str) -> None:
    """Queries breaking bulk rules answer a userError on the query field and start nothing."""
    data = sandbox.run(RUN, {"q": query})["bulkOperationRunQuery"]
    assert data["bulkOperation"] is None
    [error] = data["userErrors"]
    assert error["field"] == ["query"]
    assert error["code"] == "INVALID"
    assert fragment in error["message"]


def test_more_than_five_connections_is_a_user_error(sandbox: Sandbox) -> None:
    """A bulk query may contain at most five connections."""
    query = (
        "{ products { edges { node { id a: variants { edges { node { id } } }"
        " b: variants { edges { node { id } } } c: variants { edges { node { id } } }"
        " d: variants { edges { node { id } } } e: variants { edges { node { id } } } } } } }"
    )
    error = sandbox.run(RUN, {"q": query})["bulkOperationRunQuery"]["userErrors"][0]
    assert "more than 5 connections" in error["message"]


def test_sixth_running_bulk_query_is_refused(sandbox: Sandbox) -> None:
    """With five query operations running, a sixth gets LIMIT_REACHED."""
    with sandbox.state.db.transaction() as conn:
        for _ in range(5):
            op_id = bulk_store.create(conn, SHOP, "QUERY", PRODUCTS_WITH_VARIANTS)
            bulk_store.update(conn, op_id, status="RUNNING")
    data = sandbox.run(RUN, {"q": PRODUCTS_WITH_VARIANTS})["bulkOperationRunQuery"]
    assert data["bulkOperation"] is None
    assert data["userErrors"][0]["code"] == "LIMIT_REACHED"


def test_restart_marks_interrupted_operations_failed(tmp_path: Path) -> None:
    """An operation left RUNNING by a stopped process is FAILED with INTERNAL_SERVER_ERROR."""
    state = make_state(tmp_path)
    with state.db.transaction() as conn:
        op_id = bulk_store.create(conn, SHOP, "QUERY", PRODUCTS_WITH_VARIANTS)
        bulk_store.update(conn, op_id, status="RUNNING")
    graphql_api.routes(state)  # what a restarted sandbox builds
    result = graphql_api.execute_internal(
        state, SHOP, "{ currentBulkOperation { status errorCode } }"
    )
    assert result["data"]["currentBulkOperation"] == {
        "status": "FAILED",
        "errorCode": "INTERNAL_SERVER_ERROR",
    }
    with state.db.transaction() as conn:
        row = conn.execute(
            "SELECT payload FROM webhook_outbox WHERE topic = 'bulk_operations/finish'"
        ).fetchone()
    assert json.loads(row["payload"])["status"] == "failed"
    state.db.close()


def test_cancel_stops_a_created_operation(sandbox: Sandbox) -> None:
    """bulkOperationCancel on an operation not yet finished ends it CANCELED."""
    with sandbox.state.db.transaction() as conn:
        op_id = bulk_store.create(conn, SHOP, "QUERY", "{ products { edges { node { id } } } }")
    gid = f"gid://shopify/BulkOperation/{op_id}"
    data = sandbox.run(
        "mutation($id: ID!) { bulkOperationCancel(id: $id) {"
        " bulkOperation { status } userErrors { message } } }",
        {"id": gid},
    )
    assert data["bulkOperationCancel"] == {
        "bulkOperation": {"status": "CANCELING"},
        "userErrors": [],
    }
    bulk.start(sandbox.state, SHOP, op_id).join(timeout=10)
    assert wait_finished(sandbox, gid)["status"] == "CANCELED"
