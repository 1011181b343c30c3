"""Queries of the sandbox's Admin GraphQL: products paging, search, nodes, shop, and the
loud error for what the sandbox does not implement."""

from __future__ import annotations

from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest

from syncapp.sandbox.shopify import graphql_api
from syncapp.sandbox.shopify.seed import seed_demo_products
from tests.unit.sandbox.conftest import SHOP, Sandbox, make_state

PAGE = """
query($first: Int, $after: String, $last: Int, $before: String, $query: String,
      $sortKey: ProductSortKeys, $reverse: Boolean) {
  products(first: $first, after: $after, last: $last, before: $before, query: $query,
           sortKey: $sortKey, reverse: $reverse) {
    edges { cursor node { id title updatedAt } }
    pageInfo { hasNextPage hasPreviousPage startCursor endCursor }
  }
}
"""

COUNT = 300


@pytest.fixture(scope="module")
def catalogue(tmp_path_factory: pytest.TempPathFactory) -> Iterator[Sandbox]:
    """300 seeded demo products; updated_at spread over one per minute from 2026-01-01."""
    state = make_state(Path(tmp_path_factory.mktemp("catalogue")))
    assert seed_demo_products(state, SHOP, COUNT) == COUNT
    with state.db.transaction() as conn:
        conn.execute(
            "UPDATE sb_products SET updated_at = strftime('%Y-%m-%dT%H:%M:%SZ', '2026-01-01',"
            " '+' || (id - (SELECT MIN(id) FROM sb_products)) || ' minutes')"
        )
    yield Sandbox(state, client=None)  # type: ignore[arg-type]
    state.db.close()


def all_pages(sandbox: Sandbox, **args: Any) -> list[dict[str, Any]]:
    nodes: list[dict[str, Any]] = []
    after = None
    while True:
        page = sandbox.run(PAGE, {"first": 70, "after": after, **args})["products"]
        nodes += [e["node"] for e in page["edges"]]
        assert page["pageInfo"]["hasPreviousPage"] is (after is not None)
        if not page["pageInfo"]["hasNextPage"]:
            return nodes
        assert page["pageInfo"]["endCursor"] == page["edges"][-1]["cursor"]
        after = page["pageInfo"]["endCursor"]


def test_forward_paging_visits_every_product_once_in_id_order(catalogue: Sandbox) -> None:
    """Following endCursor pages through all 300 products, each once, by ascending id."""
    ids = [int(n["id"].rsplit("/", 1)[1]) for n in all_pages(catalogue)]
    assert len(ids) == COUNT
    assert ids == sorted(ids)
    assert len(set(ids)) == COUNT


def test_backward_paging_with_last_and_before_returns_the_preceding_page(
    catalogue: Sandbox,
) -> None:
    """last/before yields the items just before the cursor, in forward order."""
    first_page = catalogue.run(PAGE, {"first": 20})["products"]
    cursor = first_page["edges"][10]["cursor"]
    back = catalogue.run(PAGE, {"last": 5, "before": cursor})["products"]
    assert [e["node"]["id"] for e in back["edges"]] == [
        e["node"]["id"] for e in first_page["edges"][5:10]
    ]
    assert back["pageInfo"]["hasPreviousPage"] is True
    assert back["pageInfo"]["hasNextPage"] is True


def test_updated_at_query_with_quoted_value_filters_strictly_after(catalogue: Sandbox) -> None:
    """updated_at:>'…' returns exactly the products updated after the instant."""
    nodes = all_pages(catalogue, query="updated_at:>'2026-01-01T03:00:00Z'", sortKey="UPDATED_AT")
    assert len(nodes) == COUNT - 181
    assert all(n["updatedAt"] > "2026-01-01T03:00:00Z" for n in nodes)
    assert [n["updatedAt"] for n in nodes] == sorted(n["updatedAt"] for n in nodes)


def test_updated_at_query_combines_bounds_with_and(catalogue: Sandbox) -> None:
    """Two comparisons joined by AND (unquoted values) select a closed-open window."""
    nodes = all_pages(
        catalogue, query="updated_at:>=2026-01-01T01:00:00Z AND updated_at:<2026-01-01T02:00:00Z"
    )
    assert len(nodes) == 60


def test_reverse_title_sort_orders_titles_descending(catalogue: Sandbox) -> None:
    """sortKey TITLE with reverse gives titles in descending order."""
    page = catalogue.run(PAGE, {"first": 50, "sortKey": "TITLE", "reverse": True})["products"]
    titles = [e["node"]["title"] for e in page["edges"]]
    assert titles == sorted(titles, reverse=True)


def test_sku_and_tag_and_status_terms_filter_products(catalogue: Sandbox) -> None:
    """sku:, tag: and status: narrow the products as Shopify's search does."""
    by_sku = catalogue.run(PAGE, {"first": 5, "query": "sku:NG-00001-1"})["products"]["edges"]
    assert [e["node"]["title"] for e in by_sku] == ["Aurora Cotton T-Shirt"]
    tagged = all_pages(catalogue, query="tag:sale status:active")
    data = catalogue.run(
        """query($ids: [ID!]!) { nodes(ids: $ids) { ... on Product {
        tags status } } }""",
        {"ids": [n["id"] for n in tagged[:100]]},
    )
    assert tagged
    assert all("sale" in n["tags"] and n["status"] == "ACTIVE" for n in data["nodes"])


def test_paging_without_first_or_last_is_an_error(catalogue: Sandbox) -> None:
    """A connection needs first or last, as on Shopify."""
    result = graphql_api.execute_internal(catalogue.state, SHOP, "{ products { nodes { id } } }")
    assert result["errors"][0]["message"] == "you must provide one of first or last"


def test_node_and_nodes_resolve_products_and_variants(catalogue: Sandbox) -> None:
    """node(id:) and nodes(ids:) find products and variants by gid; unknown ids are null."""
    product = catalogue.run(
        "{ products(first: 1) { nodes { id variants(first: 1) { nodes { id } } } } }"
    )["products"]["nodes"][0]
    variant_id = product["variants"]["nodes"][0]["id"]
    data = catalogue.run(
        """query($ids: [ID!]!, $v: ID!) {
        nodes(ids: $ids) { __typename id }
        node(id: $v) { ... on ProductVariant { product { id } } } }""",
        {"ids": [product["id"], variant_id, "gid://shopify/Product/1"], "v": variant_id},
    )
    assert data["nodes"] == [
        {"__typename": "Product", "id": product["id"]},
        {"__typename": "ProductVariant", "id": variant_id},
        None,
    ]
    assert data["node"] == {"product": {"id": product["id"]}}


def test_product_variants_query_finds_variants_by_sku(catalogue: Sandbox) -> None:
    """productVariants(query: "sku:…") returns the variant with that SKU."""
    data = catalogue.run(
        '{ productVariants(first: 5, query: "sku:NG-00001-2") {'
        " nodes { sku price product { title } } } }"
    )
    assert [n["sku"] for n in data["productVariants"]["nodes"]] == ["NG-00001-2"]


def test_shop_fields_describe_the_shop(catalogue: Sandbox) -> None:
    """shop answers the shop's identity, plan and domain."""
    data = catalogue.run(
        "{ shop { id name email contactEmail myshopifyDomain currencyCode"
        " ianaTimezone plan { displayName partnerDevelopment shopifyPlus }"
        " primaryDomain { host url } } }"
    )
    shop = data["shop"]
    assert shop["myshopifyDomain"] == SHOP
    assert shop["currencyCode"] == "USD"
    assert shop["plan"] == {
        "displayName": "Shopify",
        "partnerDevelopment": False,
        "shopifyPlus": False,
    }
    assert shop["primaryDomain"] == {"host": SHOP, "url": f"https://{SHOP}"}


def test_unimplemented_field_is_a_named_error_not_a_null(catalogue: Sandbox) -> None:
    """A schema-valid field the sandbox lacks answers NOT_IMPLEMENTED_IN_SANDBOX naming it."""
    result = graphql_api.execute_internal(
        catalogue.state, SHOP, "{ products(first: 1) { nodes { id onlineStorePreviewUrl } } }"
    )
    [error] = result["errors"]
    assert error["message"] == (
        "Field 'Product.onlineStorePreviewUrl' is not implemented by the Shopify sandbox"
    )
    assert error["extensions"] == {"code": "NOT_IMPLEMENTED_IN_SANDBOX"}
    assert error["path"] == ["products", "nodes", 0, "onlineStorePreviewUrl"]


def test_unimplemented_root_field_is_a_named_error(catalogue: Sandbox) -> None:
    """A query root field the sandbox does not serve is reported by name."""
    result = graphql_api.execute_internal(
        catalogue.state, SHOP, "{ orders(first: 1) { nodes { id } } }"
    )
    assert result["errors"][0]["message"] == (
        "Field 'QueryRoot.orders' is not implemented by the Shopify sandbox"
    )


def test_paging_ten_thousand_products_by_updated_at_sees_each_once_in_order(
    tmp_path: Path,
) -> None:
    """Paging 10,000 products 250 at a time by updated_at returns each one once, in order."""
    state = make_state(tmp_path)
    with state.db.transaction() as conn:
        conn.executemany(
            "INSERT INTO sb_products (shop_domain, title, handle, created_at, updated_at)"
            " VALUES (?, ?, ?, ?, ?)",
            [
                (SHOP, f"P{i}", f"p-{i}", "2026-01-01T00:00:00Z", f"2026-02-01T00:{i % 60:02d}:00Z")
                for i in range(10_000)
            ],
        )
    sandbox = Sandbox(state, client=None)  # type: ignore[arg-type]
    ids: list[str] = []
    stamps: list[str] = []
    after = None
    while True:
        page = sandbox.run(
            PAGE,
            {
                "first": 250,
                "after": after,
                "sortKey": "UPDATED_AT",
                "query": "updated_at:>'2026-01-15T00:00:00Z'",
            },
        )["products"]
        ids += [edge["node"]["id"] for edge in page["edges"]]
        stamps += [edge["node"]["updatedAt"] for edge in page["edges"]]
        if not page["pageInfo"]["hasNextPage"]:
            break
        after = page["pageInfo"]["endCursor"]
    # Speed is a benchmark's business; here: complete, no duplicates, sorted as asked.
    assert len(ids) == len(set(ids)) == 10_000
    assert stamps == sorted(stamps)
