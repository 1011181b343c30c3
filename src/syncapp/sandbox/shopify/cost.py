"""Shopify's calculated query cost, as pure functions over a parsed GraphQL document.

This module owns the numbers the sandbox reports in ``extensions.cost`` (``requestedQueryCost``
and ``actualQueryCost``) and the single-query ceiling behind ``MAX_COST_EXCEEDED``. It does no
I/O and keeps no state; the GraphQL endpoint prices a document before it executes it and prices
the result afterwards.

The rules are Shopify's documented ones (https://shopify.dev/docs/apps/build/apis/graphql-admin/
rate-limits, and Shopify Engineering's "Rate Limiting GraphQL APIs by Calculating Query
Complexity"):

- scalars and enums cost 0, ``__typename`` and introspection fields cost 0;
- a field returning an object costs 1 plus the cost of its selection; a list of objects is priced
  as one object (the table has no list rule, and Shopify sizes only connections);
- a field returning an interface or a union costs 1 plus the most expensive of the selections its
  possible types could take ("maximum of possible selections");
- a connection (a field whose type is an object type named ``...Connection``: all 195 such types in
  the 2026-10 schema are Relay connections with ``edges``/``pageInfo``, and every field returning
  one takes ``first``, none with a default; most also take ``last``) costs 2 plus ``first`` (or
  ``last``) times the cost of one item, an item being one ``node`` (or one element of ``nodes``):
  "two points plus the number of returned objects". The ``edges`` wrapper and ``pageInfo`` are
  covered by the 2 points. With neither ``first`` nor ``last`` Shopify answers "you must provide
  one of first or last" and reports ``requestedQueryCost: 2`` (Shopify/shopify-api-js's recorded
  response for ``products { edges { node { id } } }``), so the page size is 0, not a guess;
- a root mutation field costs 10 — except the product mutations Shopify prices by their input
  ("dynamic complexity", changelog 2025-10-01: dynamic-complexity-for-productvariantsbulkcreate-
  and-productvariantsbulkupdate-mutations and dynamic-complexity-cost-for-productcreate-and-
  productupdate-mutations): ``productVariantsBulkCreate``/``Update`` cost 10 + 0.2 per input
  variant + 0.6 per variant media + 0.4 per variant metafield + 1.9 per product media, and
  ``productCreate``/``productUpdate`` 10 + 0.4 per product metafield + 1.9 per product media.
  The changelog does not say how the fraction is rounded; the sandbox rounds up (an app pacing
  against it never under-reserves) and counts a variant's media as its ``mediaSrc`` entries plus
  one for a ``mediaId``. Shopify's answers show that the payload is not simply added:
  ``bulkOperationRunQuery { bulkOperation { id status createdAt } userErrors { field message } }``
  and ``draftOrderCreate { draftOrder { id legacyResourceId } userErrors { ... } }`` both report
  ``requestedQueryCost: 10`` (10 + 2 would be 12), while a ``fulfillmentCreate`` whose payload
  selects a connection reports 23. So a mutation field costs the larger of 10 and its selection.

The actual cost applies the same rules to the response: a field present in ``data`` costs its own
points even when it is null (Shopify reports ``actualQueryCost: 1`` for a ``product`` that came back
null, and 2 for a connection that failed), nothing below a null is charged, a connection is charged
for the items it returned, and a mutation field is never charged less than 10. ``data`` of None
means every root field came back null.

Known divergence: production Shopify now sizes connections below ``first`` with an undocumented
formula (a community.shopify.dev thread shows ``requestedQueryCost: 25``, not the documented 503,
for ``product { variants(first: 250) { nodes { inventoryItem { id tracked } } } }``, and 23 rather
than 57 for the ``fulfillmentCreate`` above). The sandbox keeps the documented, linear rule, which
charges more than production in every case we could compare: an app that paces itself against the
sandbox errs on the side of not being throttled.
"""

from __future__ import annotations

import math
from collections.abc import Iterator, Mapping, Sequence
from dataclasses import dataclass, field
from typing import Any

from graphql import (
    DocumentNode,
    FieldNode,
    FragmentDefinitionNode,
    FragmentSpreadNode,
    GraphQLAbstractType,
    GraphQLError,
    GraphQLField,
    GraphQLIncludeDirective,
    GraphQLInterfaceType,
    GraphQLNamedType,
    GraphQLObjectType,
    GraphQLSchema,
    GraphQLSkipDirective,
    GraphQLUnionType,
    InlineFragmentNode,
    OperationDefinitionNode,
    OperationType,
    SelectionNode,
    SelectionSetNode,
    get_named_type,
    get_operation_ast,
    is_leaf_type,
)
from graphql.execution import (
    VariableValues,
    get_argument_values,
    get_directive_values,
    get_variable_values,
)

__all__ = [
    "CONNECTION_COST",
    "MAX_QUERY_COST",
    "MUTATION_COST",
    "OBJECT_COST",
    "QueryCostError",
    "actual_cost",
    "requested_cost",
]

MAX_QUERY_COST = 1000
"""Shopify refuses a query whose requested cost exceeds this, whatever the plan."""

OBJECT_COST = 1
CONNECTION_COST = 2
MUTATION_COST = 10

_Fields = dict[str, list[FieldNode]]


class QueryCostError(ValueError):
    """The document cannot be priced: unknown operation, bad variables or an unknown field.

    The endpoint validates documents before pricing them, so this means a caller skipped validation.
    """


@dataclass(frozen=True)
class _Context:
    schema: GraphQLSchema
    fragments: Mapping[str, FragmentDefinitionNode]
    variables: VariableValues
    # A result walks the same selections once per returned object: collect each only once.
    collected: dict[tuple[str, tuple[int, ...]], _Fields] = field(default_factory=dict)


def requested_cost(
    schema: GraphQLSchema,
    document: DocumentNode,
    variables: Mapping[str, Any] | None,
    operation_name: str | None,
) -> int:
    """Price the operation before execution, as Shopify's ``requestedQueryCost``."""
    ctx, operation, root_type = _prepare(schema, document, variables, operation_name)
    fields = _collect(ctx, root_type, [operation.selection_set])
    if operation.operation is OperationType.MUTATION:
        return sum(
            max(
                _mutation_base(ctx, _field_def(root_type, nodes), nodes),
                _selection_cost(ctx, _field_def(root_type, nodes), nodes),
            )
            for nodes in fields.values()
        )
    return sum(_field_cost(ctx, root_type, nodes) for nodes in fields.values())


def actual_cost(
    schema: GraphQLSchema,
    document: DocumentNode,
    variables: Mapping[str, Any] | None,
    operation_name: str | None,
    data: Mapping[str, Any] | None,
) -> int:
    """Price the operation's result, as Shopify's ``actualQueryCost``.

    ``data`` must be a result the operation can produce (at most ``first``/``last`` items per
    connection); then the actual cost never exceeds the requested cost.
    """
    ctx, operation, root_type = _prepare(schema, document, variables, operation_name)
    fields = _collect(ctx, root_type, [operation.selection_set])
    root_data: Mapping[str, Any] = (
        data if data is not None else dict.fromkeys(fields)  # every root field null
    )
    if operation.operation is OperationType.MUTATION:
        total = 0
        for key, nodes in fields.items():
            field_def = _field_def(root_type, nodes)
            value = root_data.get(key)
            below = _children_actual(ctx, field_def, nodes, value) if value is not None else 0
            total += max(_mutation_base(ctx, field_def, nodes), below)
        return total
    return _object_actual(ctx, root_type, fields, root_data)


# --- dynamic complexity of product mutations ----------------------------------------------------

VARIANT_COST = 0.2
VARIANT_MEDIA_COST = 0.6
METAFIELD_COST = 0.4
PRODUCT_MEDIA_COST = 1.9


def _mutation_base(ctx: _Context, field_def: GraphQLField, nodes: Sequence[FieldNode]) -> int:
    """A root mutation field's own points: 10, or its dynamic complexity (see the module doc)."""
    name = nodes[0].name.value
    if name not in (
        "productVariantsBulkCreate",
        "productVariantsBulkUpdate",
        "productCreate",
        "productUpdate",
    ):
        return MUTATION_COST
    args = get_argument_values(field_def, nodes[0], ctx.variables)
    points = float(MUTATION_COST) + PRODUCT_MEDIA_COST * len(args.get("media") or ())
    if name.startswith("productVariantsBulk"):
        for variant in args.get("variants") or ():
            media = len(variant.get("mediaSrc") or ()) + (1 if variant.get("mediaId") else 0)
            points += VARIANT_COST + VARIANT_MEDIA_COST * media
            points += METAFIELD_COST * len(variant.get("metafields") or ())
    else:
        product = args.get("product") or args.get("input") or {}
        points += METAFIELD_COST * len(product.get("metafields") or ())
    # Sums of tenths in binary floating point: round off the noise before rounding up.
    return math.ceil(round(points, 6))


# --- preparation and field collection ------------------------------------------------------------


def _prepare(
    schema: GraphQLSchema,
    document: DocumentNode,
    variables: Mapping[str, Any] | None,
    operation_name: str | None,
) -> tuple[_Context, OperationDefinitionNode, GraphQLObjectType]:
    operation = get_operation_ast(document, operation_name)
    if operation is None:
        wanted = f"an operation named {operation_name!r}" if operation_name else "one operation"
        raise QueryCostError(
            f"The document does not contain {wanted}: pass operationName when the document "
            "holds several operations."
        )
    root_type = schema.get_root_type(operation.operation)
    if root_type is None:
        raise QueryCostError(f"The schema has no {operation.operation.value} type.")
    coerced = get_variable_values(
        schema, operation.variable_definitions or (), dict(variables or {})
    )
    if isinstance(coerced, list):
        raise QueryCostError("; ".join(error.message for error in coerced))
    fragments = {
        definition.name.value: definition
        for definition in document.definitions
        if isinstance(definition, FragmentDefinitionNode)
    }
    return _Context(schema, fragments, coerced), operation, root_type


def _collect(
    ctx: _Context, runtime_type: GraphQLObjectType, selection_sets: Sequence[SelectionSetNode]
) -> _Fields:
    """Group the fields that apply to ``runtime_type`` by response key, as execution does."""
    cache_key = (runtime_type.name, tuple(id(selection_set) for selection_set in selection_sets))
    cached = ctx.collected.get(cache_key)
    if cached is None:
        cached = ctx.collected[cache_key] = _collect_uncached(ctx, runtime_type, selection_sets)
    return cached


def _collect_uncached(
    ctx: _Context, runtime_type: GraphQLObjectType, selection_sets: Sequence[SelectionSetNode]
) -> _Fields:
    fields: _Fields = {}
    visited_fragments: set[str] = set()

    def visit(selection_set: SelectionSetNode) -> None:
        for selection in selection_set.selections:
            if not _included(ctx, selection):
                continue
            if isinstance(selection, FieldNode):
                key = selection.alias.value if selection.alias else selection.name.value
                fields.setdefault(key, []).append(selection)
            elif isinstance(selection, InlineFragmentNode):
                condition = selection.type_condition
                if condition is None or _applies(ctx, condition.name.value, runtime_type):
                    visit(selection.selection_set)
            elif isinstance(selection, FragmentSpreadNode):
                name = selection.name.value
                fragment = ctx.fragments.get(name)
                if name in visited_fragments or fragment is None:
                    continue
                visited_fragments.add(name)
                if _applies(ctx, fragment.type_condition.name.value, runtime_type):
                    visit(fragment.selection_set)

    for selection_set in selection_sets:
        visit(selection_set)
    return fields


def _included(ctx: _Context, node: SelectionNode) -> bool:
    skip = get_directive_values(GraphQLSkipDirective, node, ctx.variables)
    if skip is not None and skip["if"] is True:
        return False
    include = get_directive_values(GraphQLIncludeDirective, node, ctx.variables)
    return include is None or include["if"] is not False


def _applies(ctx: _Context, condition: str, runtime_type: GraphQLObjectType) -> bool:
    condition_type = ctx.schema.get_type(condition)
    if condition_type is runtime_type:
        return True
    if isinstance(condition_type, GraphQLInterfaceType | GraphQLUnionType):
        return ctx.schema.is_sub_type(condition_type, runtime_type)
    return False


def _field_def(parent_type: GraphQLObjectType, nodes: Sequence[FieldNode]) -> GraphQLField:
    name = nodes[0].name.value
    field_def: GraphQLField | None = parent_type.fields.get(name)
    if field_def is None:
        raise QueryCostError(
            f"Cannot query field {name!r} on type {parent_type.name!r}: validate the document "
            "against the schema before pricing it."
        )
    return field_def


def _sub_selections(nodes: Sequence[FieldNode]) -> list[SelectionSetNode]:
    return [node.selection_set for node in nodes if node.selection_set is not None]


def _possible_types(ctx: _Context, named_type: GraphQLNamedType) -> Sequence[GraphQLObjectType]:
    if isinstance(named_type, GraphQLObjectType):
        return [named_type]
    if isinstance(named_type, GraphQLInterfaceType | GraphQLUnionType):
        return ctx.schema.get_possible_types(named_type)
    return []


def _is_connection(named_type: GraphQLNamedType) -> bool:
    return isinstance(named_type, GraphQLObjectType) and named_type.name.endswith("Connection")


def _page_size(ctx: _Context, field_def: GraphQLField, nodes: Sequence[FieldNode]) -> int:
    size = 0
    for node in nodes:
        try:
            arguments = get_argument_values(field_def, node, ctx.variables)
        except GraphQLError as error:
            raise QueryCostError(error.message) from error
        for name in ("first", "last"):
            value = arguments.get(name)
            if isinstance(value, int) and not isinstance(value, bool):
                size = max(size, value)
    return size


# --- requested cost -------------------------------------------------------------------------------


def _field_cost(ctx: _Context, parent_type: GraphQLObjectType, nodes: Sequence[FieldNode]) -> int:
    if nodes[0].name.value.startswith("__"):
        return 0
    field_def = _field_def(parent_type, nodes)
    named_type = get_named_type(field_def.type)
    if is_leaf_type(named_type):
        return 0
    if _is_connection(named_type):
        return _connection_cost(ctx, field_def, nodes)
    return OBJECT_COST + _selection_cost(ctx, field_def, nodes)


def _selection_cost(ctx: _Context, field_def: GraphQLField, nodes: Sequence[FieldNode]) -> int:
    """The most expensive selection any possible type of the field's return type could take."""
    selection_sets = _sub_selections(nodes)
    best = 0
    for runtime_type in _possible_types(ctx, get_named_type(field_def.type)):
        fields = _collect(ctx, runtime_type, selection_sets)
        best = max(best, sum(_field_cost(ctx, runtime_type, sub) for sub in fields.values()))
    return best


def _connection_cost(ctx: _Context, field_def: GraphQLField, nodes: Sequence[FieldNode]) -> int:
    connection_type = get_named_type(field_def.type)
    assert isinstance(connection_type, GraphQLObjectType)
    fields = _collect(ctx, connection_type, _sub_selections(nodes))
    item = 0
    extra = 0
    for sub in fields.values():
        name = sub[0].name.value
        if name == "edges":
            # The edge wrapper is free; its `node` is the item's object point.
            item = max(item, _selection_cost(ctx, _field_def(connection_type, sub), sub))
        elif name == "nodes":
            item = max(item, _field_cost(ctx, connection_type, sub))
        elif name != "pageInfo":
            extra += _field_cost(ctx, connection_type, sub)
    return CONNECTION_COST + _page_size(ctx, field_def, nodes) * item + extra


# --- actual cost ----------------------------------------------------------------------------------


def _object_actual(
    ctx: _Context, runtime_type: GraphQLObjectType, fields: _Fields, value: Mapping[str, Any]
) -> int:
    total = 0
    for key, sub in fields.items():
        if key in value:
            total += _field_actual(ctx, runtime_type, sub, value[key])
    return total


def _field_actual(
    ctx: _Context, parent_type: GraphQLObjectType, nodes: Sequence[FieldNode], value: Any
) -> int:
    if nodes[0].name.value.startswith("__"):
        return 0
    field_def = _field_def(parent_type, nodes)
    named_type = get_named_type(field_def.type)
    if is_leaf_type(named_type):
        return 0
    if _is_connection(named_type):
        return CONNECTION_COST + (
            _connection_items_actual(ctx, field_def, nodes, value) if value is not None else 0
        )
    return OBJECT_COST + (
        _children_actual(ctx, field_def, nodes, value) if value is not None else 0
    )


def _children_actual(
    ctx: _Context, field_def: GraphQLField, nodes: Sequence[FieldNode], value: Any
) -> int:
    """What was returned below a non-null object field; a list is priced by its dearest element."""
    named_type = get_named_type(field_def.type)
    selection_sets = _sub_selections(nodes)
    return max(
        (_one_object_actual(ctx, named_type, selection_sets, item) for item in _objects(value)),
        default=0,
    )


def _one_object_actual(
    ctx: _Context,
    named_type: GraphQLNamedType,
    selection_sets: Sequence[SelectionSetNode],
    value: Mapping[str, Any],
) -> int:
    candidates = _possible_types(ctx, named_type)
    typename = value.get("__typename")
    if isinstance(named_type, GraphQLAbstractType) and isinstance(typename, str):
        # The response names the concrete type; without it any possible type may have matched.
        candidates = [t for t in candidates if t.name == typename] or candidates
    return max(
        (
            _object_actual(ctx, runtime_type, _collect(ctx, runtime_type, selection_sets), value)
            for runtime_type in candidates
        ),
        default=0,
    )


def _connection_items_actual(
    ctx: _Context, field_def: GraphQLField, nodes: Sequence[FieldNode], value: Any
) -> int:
    if not isinstance(value, Mapping):
        return 0
    connection_type = get_named_type(field_def.type)
    assert isinstance(connection_type, GraphQLObjectType)
    fields = _collect(ctx, connection_type, _sub_selections(nodes))
    items = 0
    extra = 0
    for key, sub in fields.items():
        if key not in value:
            continue
        name = sub[0].name.value
        sub_def = _field_def(connection_type, sub)
        item_type = get_named_type(sub_def.type)
        if name == "edges":
            # An edge costs what its `node` cost; the wrapper itself is free.
            edges = _objects(value[key])
            selection_sets = _sub_selections(sub)
            items = max(
                items,
                sum(_one_object_actual(ctx, item_type, selection_sets, e) for e in edges),
            )
        elif name == "nodes":
            elements = value[key] if isinstance(value[key], list) else []
            items = max(
                items,
                sum(
                    OBJECT_COST
                    + (
                        _one_object_actual(ctx, item_type, _sub_selections(sub), element)
                        if isinstance(element, Mapping)
                        else 0
                    )
                    for element in elements
                ),
            )
        elif name != "pageInfo":
            extra += _field_actual(ctx, connection_type, sub, value[key])
    return items + extra


def _objects(value: Any) -> Iterator[Mapping[str, Any]]:
    """The non-null objects in a field's value, flattening lists of any depth."""
    if isinstance(value, Mapping):
        yield value
    elif isinstance(value, list):
        for item in value:
            yield from _objects(item)
