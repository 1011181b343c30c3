"""Shopify's calculated query cost on the real Admin 2026-10 schema.

The figures come from Shopify: its rate-limit docs and engineering blog (the rules and the
``shop``/``orders`` examples), responses Shopify sent (recorded in Shopify/shopify-api-js tests,
microsoft/ALAppExtensions' Shopify connector fixtures and a community.shopify.dev thread), and the
products page the sync would be tempted to send.
"""

from __future__ import annotations

import gzip
import json
from collections.abc import Mapping
from pathlib import Path
from typing import Any

import pytest
from graphql import (
    DocumentNode,
    ExecutionResult,
    GraphQLAbstractType,
    GraphQLEnumType,
    GraphQLList,
    GraphQLNonNull,
    GraphQLObjectType,
    GraphQLOutputType,
    GraphQLResolveInfo,
    GraphQLSchema,
    Undefined,
    build_client_schema,
    execute,
    get_named_type,
    is_leaf_type,
    parse,
    validate,
)
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from syncapp.sandbox.shopify.cost import (
    MAX_QUERY_COST,
    QueryCostError,
    actual_cost,
    requested_cost,
)

SCHEMA_PATH = Path(__file__).parents[3] / "src/syncapp/sandbox/shopify/schema/admin_2026-10.json.gz"


@pytest.fixture(scope="module")
def schema() -> GraphQLSchema:
    with gzip.open(SCHEMA_PATH) as handle:
        introspection = json.load(handle)
    return build_client_schema(introspection["data"], assume_valid=True)


def _document(schema: GraphQLSchema, source: str) -> DocumentNode:
    document = parse(source)
    errors = validate(schema, document)
    assert not errors, [error.message for error in errors]
    return document


def requested(
    schema: GraphQLSchema,
    source: str,
    variables: Mapping[str, Any] | None = None,
    operation_name: str | None = None,
) -> int:
    return requested_cost(schema, _document(schema, source), variables, operation_name)


def actual(
    schema: GraphQLSchema,
    source: str,
    data: Mapping[str, Any] | None,
    variables: Mapping[str, Any] | None = None,
) -> int:
    return actual_cost(schema, _document(schema, source), variables, None, data)


# --- figures Shopify documents or reported --------------------------------------------------------

SHOP = "{ shop { id name timezoneOffsetMinutes customerAccounts } }"
ORDERS = """{ orders(first: 5, query: "fulfillment_status:shipped") {
  edges { node { id name displayFulfillmentStatus } } } }"""
NO_PAGE_SIZE = "query getProducts { products { edges { node { id } } } }"
INVENTORY = """query getVariantsInventoryItem($id: ID!) { product(id: $id) {
  variants(first: 250) { nodes { inventoryItem { id tracked } } } } }"""
BULK_RUN = """mutation { bulkOperationRunQuery(query: "{ products { edges { node { id } } } }") {
  bulkOperation { id status createdAt } userErrors { field message } } }"""
DRAFT_CREATE = """mutation { draftOrderCreate(input: {email: "a@example.com"}) {
  draftOrder { id legacyResourceId } userErrors { field message } } }"""
FULFILLMENT_CREATE = """mutation { fulfillmentCreate(fulfillment: {notifyCustomer: true,
  lineItemsByFulfillmentOrder: [{fulfillmentOrderId: "gid://shopify/FulfillmentOrder/1",
  fulfillmentOrderLineItems: [{id: "gid://shopify/FulfillmentOrderLineItem/1", quantity: 10}]}]}) {
  fulfillment { legacyResourceId name createdAt updatedAt deliveredAt displayStatus
    estimatedDeliveryAt status totalQuantity location { legacyResourceId }
    trackingInfo { number url company } service { serviceName type }
    fulfillmentLineItems(first: 10) { pageInfo { endCursor hasNextPage }
      nodes { id quantity originalTotalSet { presentmentMoney { amount } shopMoney { amount } }
        lineItem { id isGiftCard } } } }
  userErrors { field message } } }"""
PRODUCTS_PAGE = """{ products(first: 250) { edges { node { id title
  variants(first: 100) { edges { node { id price } } } } } } }"""


def test_an_object_with_only_scalars_costs_one_point(schema: GraphQLSchema) -> None:
    """Shopify's blog prices ``shop { id name timezoneOffsetMinutes customerAccounts }`` at 1."""
    assert requested(schema, SHOP) == 1


def test_a_connection_costs_two_points_plus_one_per_requested_object(
    schema: GraphQLSchema,
) -> None:
    """The blog's ``orders(first: 5)`` costs two for the connection plus five orders: 7."""
    assert requested(schema, ORDERS) == 7


def test_a_connection_without_first_or_last_is_requested_at_two_points(
    schema: GraphQLSchema,
) -> None:
    """Shopify reported ``requestedQueryCost: 2`` for ``products { edges { node { id } } }``."""
    assert requested(schema, NO_PAGE_SIZE) == 2


def test_a_failed_connection_still_costs_its_two_points(schema: GraphQLSchema) -> None:
    """Shopify reported ``actualQueryCost: 2`` when that query failed with ``data: null``."""
    assert actual(schema, NO_PAGE_SIZE, None) == 2


def test_nested_objects_in_a_connection_are_multiplied_by_first(schema: GraphQLSchema) -> None:
    """The documented rule prices 250 variants with an inventory item each at 1 + 2 + 250 x 2."""
    assert requested(schema, INVENTORY, {"id": "gid://shopify/Product/1"}) == 503


def test_a_null_object_costs_its_own_point_and_nothing_below(schema: GraphQLSchema) -> None:
    """Shopify reported ``actualQueryCost: 1`` when that ``product`` came back null."""
    assert actual(schema, INVENTORY, {"product": None}, {"id": "gid://shopify/Product/1"}) == 1


def test_a_mutation_with_a_plain_payload_costs_ten_points(schema: GraphQLSchema) -> None:
    """Shopify reported 10 requested and 10 actual for ``bulkOperationRunQuery``."""
    data = {
        "bulkOperationRunQuery": {
            "bulkOperation": {"id": "gid://shopify/BulkOperation/1", "status": "CREATED"},
            "userErrors": [],
        }
    }
    assert (requested(schema, BULK_RUN), actual(schema, BULK_RUN, data)) == (10, 10)


def test_the_payload_objects_of_a_mutation_are_not_added_to_its_ten_points(
    schema: GraphQLSchema,
) -> None:
    """Shopify reported 10, not 12, for ``draftOrderCreate { draftOrder {..} userErrors {..} }``."""
    assert requested(schema, DRAFT_CREATE) == 10


def test_a_mutation_payload_dearer_than_ten_points_sets_the_requested_cost(
    schema: GraphQLSchema,
) -> None:
    """A payload with a connection costs more than 10 (Shopify: 23; the documented rule: 57)."""
    assert requested(schema, FULFILLMENT_CREATE) == 57


def test_a_mutation_whose_payload_came_back_null_costs_ten_points(
    schema: GraphQLSchema,
) -> None:
    """Shopify reported ``actualQueryCost: 10`` for that refused ``fulfillmentCreate``."""
    data = {
        "fulfillmentCreate": {
            "fulfillment": None,
            "userErrors": [{"field": ["fulfillment"], "message": "no access"}],
        }
    }
    assert actual(schema, FULFILLMENT_CREATE, data) == 10


def test_a_full_products_page_with_all_variants_exceeds_the_single_query_limit(
    schema: GraphQLSchema,
) -> None:
    """250 products x 100 variants is 2 + 250 x (1 + 2 + 100) points, far above 1,000."""
    cost = requested(schema, PRODUCTS_PAGE)
    assert (cost, cost > MAX_QUERY_COST) == (25_752, True)


# --- the rules on their own ---------------------------------------------------------------------


def test_nested_connections_multiply(schema: GraphQLSchema) -> None:
    """``products(first: 10)`` of ``variants(first: 5)`` costs 2 + 10 x (1 + 2 + 5) = 82."""
    query = """{ products(first: 10) { edges { node { title
      variants(first: 5) { edges { node { price } } } } } } }"""
    assert requested(schema, query) == 82


def test_page_info_and_cursors_are_covered_by_the_connection_points(
    schema: GraphQLSchema,
) -> None:
    """``pageInfo`` and ``cursor`` add nothing to 2 + first x node."""
    query = """{ products(first: 10) { pageInfo { hasNextPage endCursor }
      edges { cursor node { id } } } }"""
    assert requested(schema, query) == 12


def test_edges_and_nodes_together_price_each_item_once(schema: GraphQLSchema) -> None:
    """Selecting both ``edges { node }`` and ``nodes`` still returns one object per item."""
    query = "{ products(first: 10) { edges { node { id } } nodes { id title } } }"
    assert requested(schema, query) == 12


def test_the_page_size_comes_from_a_variable(schema: GraphQLSchema) -> None:
    """``first: $n`` with n = 20 costs 2 + 20."""
    query = "query ($n: Int) { products(first: $n) { nodes { id } } }"
    assert requested(schema, query, {"n": 20}) == 22


def test_the_page_size_falls_back_to_the_variable_default(schema: GraphQLSchema) -> None:
    """``$n: Int = 7`` without a value costs 2 + 7."""
    query = "query ($n: Int = 7) { products(first: $n) { nodes { id } } }"
    assert requested(schema, query, {}) == 9


def test_last_sizes_a_connection_like_first(schema: GraphQLSchema) -> None:
    """``last: 4`` costs 2 + 4."""
    assert requested(schema, "{ products(last: 4) { nodes { id } } }") == 6


def test_aliased_connections_are_priced_separately(schema: GraphQLSchema) -> None:
    """Two aliases of ``products`` cost (2 + 2) + (2 + 3)."""
    query = "{ a: products(first: 2) { nodes { id } } b: products(first: 3) { nodes { id } } }"
    assert requested(schema, query) == 9


def test_named_and_inline_fragments_cost_what_the_fields_cost(schema: GraphQLSchema) -> None:
    """A fragment spread and an inline fragment of the same fields cost 2 + 3 x (1 + 1)."""
    query = """query { products(first: 3) {
        nodes { ...P ... on Product { featuredMedia { id } } } } }
      fragment P on Product { id title featuredMedia { alt } }"""
    assert requested(schema, query) == 8


def test_skip_and_include_remove_fields_from_the_price(schema: GraphQLSchema) -> None:
    """A skipped object and an excluded connection cost nothing."""
    query = """query ($with: Boolean!) { shop @skip(if: true) { id }
      products(first: 5) @include(if: $with) { nodes { id } } }"""
    assert (
        requested(schema, query, {"with": False}),
        requested(schema, query, {"with": True}),
    ) == (
        0,
        7,
    )


def test_typename_and_introspection_are_free(schema: GraphQLSchema) -> None:
    """``__typename`` and ``__schema`` add nothing."""
    query = "{ __typename __schema { types { name } } shop { __typename } }"
    assert requested(schema, query) == 1


def test_an_interface_costs_one_point_plus_its_dearest_possible_selection(
    schema: GraphQLSchema,
) -> None:
    """``node`` costs 1 + max(Product: 2 + 3, Order: 0)."""
    query = """{ node(id: "gid://shopify/Product/1") { id
      ... on Product { title variants(first: 3) { nodes { id } } } ... on Order { name } } }"""
    assert requested(schema, query) == 6


def test_a_union_costs_one_point_plus_its_dearest_possible_selection(
    schema: GraphQLSchema,
) -> None:
    """product 1 + metafield 1 + reference 1 + max(Product: 1, Collection: 2 + 2) = 7."""
    query = """{ product(id: "gid://shopify/Product/1") { metafield(key: "custom.x") {
      reference { ... on Product { featuredMedia { id } }
                  ... on Collection { products(first: 2) { nodes { id } } } } } } }"""
    assert requested(schema, query) == 7


def test_a_list_of_objects_is_priced_as_one_object(schema: GraphQLSchema) -> None:
    """``options { optionValues }`` is two objects, not multiplied by any length."""
    query = '{ product(id: "gid://shopify/Product/1") { options { name optionValues { name } } } }'
    assert requested(schema, query) == 3


def test_each_root_mutation_field_costs_ten_points(schema: GraphQLSchema) -> None:
    """Two mutations in one operation cost 10 each."""
    query = """mutation { a: draftOrderCreate(input: {}) { draftOrder { id } }
      b: draftOrderCreate(input: {}) { userErrors { message } } }"""
    assert requested(schema, query) == 20


def test_the_operation_is_chosen_by_name(schema: GraphQLSchema) -> None:
    """Each named operation of a document is priced on its own."""
    query = """query Cheap { shop { id } }
      query Dear { products(first: 50) { nodes { id } } }"""
    assert (
        requested(schema, query, operation_name="Cheap"),
        requested(schema, query, operation_name="Dear"),
    ) == (1, 52)


def test_an_unknown_operation_name_is_refused(schema: GraphQLSchema) -> None:
    """Pricing an operation the document lacks raises QueryCostError naming it."""
    with pytest.raises(QueryCostError, match="'Missing'"):
        requested(schema, "query Here { shop { id } }", operation_name="Missing")


def test_an_ambiguous_document_without_an_operation_name_is_refused(
    schema: GraphQLSchema,
) -> None:
    """Two operations and no operationName cannot be priced."""
    with pytest.raises(QueryCostError, match="operationName"):
        requested(schema, "query A { shop { id } } query B { shop { name } }")


def test_variables_of_the_wrong_type_are_refused(schema: GraphQLSchema) -> None:
    """A string for an Int variable raises QueryCostError."""
    with pytest.raises(QueryCostError, match="Int"):
        requested(schema, "query ($n: Int) { products(first: $n) { nodes { id } } }", {"n": "ten"})


# --- actual cost --------------------------------------------------------------------------------


def test_a_connection_is_charged_for_the_items_it_returned(schema: GraphQLSchema) -> None:
    """Three of ten requested products cost 2 + 3."""
    query = "{ products(first: 10) { edges { node { id } } } }"
    data = {"products": {"edges": [{"node": {"id": str(i)}} for i in range(3)]}}
    assert actual(schema, query, data) == 5


def test_nested_connections_are_charged_per_returned_item(schema: GraphQLSchema) -> None:
    """Two products with 1 and 3 variants cost 2 + (1 + 2 + 1) + (1 + 2 + 3)."""
    query = "{ products(first: 10) { nodes { id variants(first: 5) { nodes { id } } } } }"
    data = {
        "products": {
            "nodes": [
                {"id": "1", "variants": {"nodes": [{"id": "a"}]}},
                {"id": "2", "variants": {"nodes": [{"id": "b"}, {"id": "c"}, {"id": "d"}]}},
            ]
        }
    }
    assert actual(schema, query, data) == 12


def test_actual_cost_follows_aliases(schema: GraphQLSchema) -> None:
    """The response is read under the aliases: 2 + 1 for ``a`` and a null ``b`` at 2."""
    query = "{ a: products(first: 2) { nodes { id } } b: products(first: 3) { nodes { id } } }"
    data = {"a": {"nodes": [{"id": "1"}]}, "b": None}
    assert actual(schema, query, data) == 5


def test_an_interface_result_is_charged_for_its_concrete_type(schema: GraphQLSchema) -> None:
    """An Order behind ``node`` costs 1, though a Product could have cost 6."""
    query = """{ node(id: "gid://shopify/Order/1") { __typename
      ... on Product { variants(first: 3) { nodes { id } } } ... on Order { name } } }"""
    assert actual(schema, query, {"node": {"__typename": "Order", "name": "#1001"}}) == 1


def test_a_mutation_is_charged_ten_points_even_without_data(schema: GraphQLSchema) -> None:
    """A mutation that failed as a whole still costs its 10 points."""
    assert actual(schema, DRAFT_CREATE, None) == 10


# --- actual never exceeds requested -------------------------------------------------------------

PROPERTY_DOCUMENTS = [
    """query ($n: Int, $m: Int, $flag: Boolean!) {
      shop { name }
      products(first: $n) { pageInfo { hasNextPage } edges { cursor node { ...Prod } }
        nodes { id options { name optionValues { name } } } }
      again: products(last: $m) @include(if: $flag) { nodes { id featuredMedia { id } } } }
    fragment Prod on Product { id title
      variants(first: $m) { edges { node { id price inventoryItem { id tracked } } } } }""",
    """query ($n: Int, $m: Int, $flag: Boolean!) {
      node(id: "gid://shopify/Product/1") { __typename id
        ... on Product { title collections(first: $n) { nodes { id title } } }
        ... on Order { lineItems(first: $m) { nodes { id variant { id } } } } }
      nodes(ids: ["gid://shopify/Product/1"]) { id
        ... on Product @skip(if: $flag) { variants(first: $m) { nodes { id } } } } }""",
    """query ($n: Int, $m: Int, $flag: Boolean!) {
      product(id: "gid://shopify/Product/1") { id
        metafield(key: "custom.x") { reference {
          ... on Product { featuredMedia { id } }
          ... on Collection { products(first: $n) { nodes { id } } } } }
        media(first: $m) @include(if: $flag) {
          nodes { id ... on MediaImage { image { url } } } } } }""",
    """mutation ($n: Int, $m: Int, $flag: Boolean!) {
      productCreate(product: {title: "x"}) {
        product { id variants(first: $n) { nodes { id } } media(first: $m) { nodes { id } } }
        userErrors @include(if: $flag) { field message } } }""",
]


def _random_result(
    schema: GraphQLSchema,
    document: DocumentNode,
    variables: dict[str, Any],
    draw: st.DrawFn,
) -> Mapping[str, Any] | None:
    """Execute the document with resolvers that return random, schema-shaped values.

    Any field may come back null (a non-null one then nulls its parent, as execution does),
    lists have random lengths, and a connection returns at most ``first``/``last`` items.
    """

    def value_of(type_: GraphQLOutputType, info: GraphQLResolveInfo, args: dict[str, Any]) -> Any:
        nullable = not isinstance(type_, GraphQLNonNull)
        if draw(st.integers(0, 9)) == 0 and (nullable or draw(st.integers(0, 4)) == 0):
            return None
        inner = type_.of_type if isinstance(type_, GraphQLNonNull) else type_
        if isinstance(inner, GraphQLList):
            parent = info.parent_type.name
            if parent.endswith("Connection") and info.field_name in ("edges", "nodes"):
                length = draw(st.integers(0, args.get("__page__", 3)))
            else:
                length = draw(st.integers(0, 3))
            return [value_of(inner.of_type, info, args) for _ in range(length)]
        named = get_named_type(inner)
        if isinstance(named, GraphQLEnumType):
            return next(iter(named.values.values())).value
        if is_leaf_type(named):
            return {"Int": 0, "Float": 0.0, "Boolean": False}.get(named.name, "x")
        if named.name.endswith("Connection"):
            page = max(args.get("first") or 0, args.get("last") or 0)
            return {"__page__": page}
        return {}

    def resolve(source: Any, info: GraphQLResolveInfo, **args: Any) -> Any:
        if isinstance(source, dict) and "__page__" in source:
            args = {**args, "__page__": source["__page__"]}
        return value_of(info.return_type, info, args)

    def resolve_type(value: Any, info: GraphQLResolveInfo, abstract: GraphQLAbstractType) -> str:
        names = sorted(t.name for t in schema.get_possible_types(abstract))
        return draw(st.sampled_from(names))

    result = execute(
        schema,
        document,
        variable_values=variables,
        field_resolver=resolve,
        type_resolver=resolve_type,
    )
    assert isinstance(result, ExecutionResult)
    return result.data


@pytest.mark.parametrize(
    "source", PROPERTY_DOCUMENTS, ids=["products", "node", "union", "mutation"]
)
@settings(max_examples=60, deadline=None, suppress_health_check=[HealthCheck.too_slow])
@given(
    n=st.integers(0, 6),
    m=st.integers(0, 6),
    flag=st.booleans(),
    data=st.data(),
)
def test_actual_cost_never_exceeds_requested_cost(
    schema: GraphQLSchema, source: str, n: int, m: int, flag: bool, data: st.DataObject
) -> None:
    """Whatever a query returns (items, nulls, errors, concrete types), actual <= requested."""
    document = _document(schema, source)
    variables = {"n": n, "m": m, "flag": flag}
    result = _random_result(schema, document, variables, data.draw)
    assert actual_cost(schema, document, variables, None, result) <= requested_cost(
        schema, document, variables, None
    )


def test_a_full_result_costs_what_was_requested(schema: GraphQLSchema) -> None:
    """A page filled to ``first`` with every object present costs exactly the requested points."""
    query = "{ products(first: 2) { nodes { id featuredMedia { id } } } }"
    data = {"products": {"nodes": [{"id": "1", "featuredMedia": {"id": "m"}}] * 2}}
    assert actual(schema, query, data) == requested(schema, query) == 6


def test_every_connection_field_takes_first_without_a_default(schema: GraphQLSchema) -> None:
    """Each field returning a ``...Connection`` type is sized by ``first``, never by a default."""
    unsized = [
        f"{owner.name}.{name}"
        for owner in schema.type_map.values()
        if isinstance(owner, GraphQLObjectType) and not owner.name.startswith("__")
        for name, field in owner.fields.items()
        if get_named_type(field.type).name.endswith("Connection")
        and ("first" not in field.args or field.args["first"].default_value is not Undefined)
    ]
    assert unsized == []
