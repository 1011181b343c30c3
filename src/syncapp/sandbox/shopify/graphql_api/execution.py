"""Parse, validate and execute an Admin GraphQL document for one shop, Shopify-shaped.

This is the part shared by the HTTP endpoint (which adds auth, cost and throttling around
it), ``execute_internal`` (the sandbox's own pages and seeding) and bulk operations. The
executor's default field resolver is the place that turns "valid against the schema but not
modelled by the sandbox" into a named ``NOT_IMPLEMENTED_IN_SANDBOX`` error.
"""

from __future__ import annotations

import re
from collections.abc import Mapping
from dataclasses import dataclass
from functools import lru_cache
from typing import Any

from graphql import (
    DocumentNode,
    FieldNode,
    GraphQLAbstractType,
    GraphQLError,
    GraphQLResolveInfo,
    GraphQLSchema,
    OperationDefinitionNode,
    OperationType,
    execute_sync,
    parse,
    validate,
)
from graphql.execution import get_argument_values, get_directive_values, get_variable_values

from syncapp.sandbox.shopify.graphql_api import billing, bulk, inventory, mutations, operations
from syncapp.sandbox.shopify.graphql_api.context import Context
from syncapp.sandbox.shopify.graphql_api.errors import NOT_IMPLEMENTED_CODE, field_not_implemented
from syncapp.sandbox.shopify.graphql_api.resolvers import FIELDS, Resolver
from syncapp.sandbox.shopify.shops import Shop, get_shop
from syncapp.sandbox.shopify.state import SandboxState


def _merge(*tables: dict[str, dict[str, Resolver]]) -> dict[str, dict[str, Resolver]]:
    merged: dict[str, dict[str, Resolver]] = {}
    for table in tables:
        for type_name, fields in table.items():
            merged.setdefault(type_name, {}).update(fields)
    return merged


ALL_FIELDS: dict[str, dict[str, Resolver]] = _merge(
    FIELDS,
    billing.FIELDS,
    inventory.FIELDS,
    operations.FIELDS,
    {
        "QueryRoot": {**billing.QUERIES, **inventory.QUERIES, **operations.QUERIES},
        "Mutation": {
            **mutations.MUTATIONS,
            **bulk.MUTATIONS,
            **billing.MUTATIONS,
            **inventory.MUTATIONS,
            **operations.MUTATIONS,
        },
    },
)


def _idempotency_key(info: GraphQLResolveInfo[Context]) -> str | None:
    directive = info.schema.get_directive("idempotent")
    if directive is None:
        return None
    values = get_directive_values(directive, info.field_nodes[0], info.variable_values)
    return None if values is None else str(values["key"])


def field_resolver(source: Any, info: GraphQLResolveInfo[Context], **args: Any) -> Any:
    """Resolve from ``ALL_FIELDS``, else from the source dict, else name what is missing."""
    type_name = info.parent_type.name
    resolver = ALL_FIELDS.get(type_name, {}).get(info.field_name)
    if resolver is not None:
        if type_name == "Mutation":
            info.context.idempotency_key = _idempotency_key(info)
        return resolver(source, info.context, args)
    if isinstance(source, dict) and info.field_name in source:
        return source[info.field_name]
    raise field_not_implemented(type_name, info.field_name)


def type_resolver(
    value: Any, info: GraphQLResolveInfo[Context], abstract_type: GraphQLAbstractType
) -> str:
    return str(value["__typename"])


_UNDEFINED_FIELD = re.compile(r"^Cannot query field '([^']+)' on type '([^']+)'\.")


def format_error(error: GraphQLError) -> dict[str, Any]:
    """A GraphQL error as Shopify lays it out (message, locations, path, extensions.code)."""
    formatted: dict[str, Any] = dict(error.formatted)
    match = _UNDEFINED_FIELD.match(error.message)
    if match and not error.path:
        field, type_name = match.groups()
        formatted["message"] = f"Field '{field}' doesn't exist on type '{type_name}'"
        formatted["extensions"] = {
            "code": "undefinedField",
            "typeName": type_name,
            "fieldName": field,
        }
    return formatted


@dataclass(frozen=True)
class Prepared:
    """A parsed, validated document, or the errors that stopped it."""

    document: DocumentNode | None
    errors: list[dict[str, Any]]

    @property
    def ok(self) -> bool:
        return self.document is not None and not self.errors


def prepare(schema: GraphQLSchema, source: str) -> Prepared:
    """Parse and validate ``source``; apps resend the same documents, so results are cached."""
    return _prepare_cached(schema, source)


@lru_cache(maxsize=512)
def _prepare_cached(schema: GraphQLSchema, source: str) -> Prepared:
    try:
        document = parse(source)
    except GraphQLError as exc:
        return Prepared(None, [format_error(exc)])
    problems = validate(schema, document)
    if problems:
        return Prepared(None, [format_error(e) for e in problems])
    return Prepared(document, [])


def operation_of(
    document: DocumentNode, operation_name: str | None
) -> OperationDefinitionNode | None:
    operations = [d for d in document.definitions if isinstance(d, OperationDefinitionNode)]
    if operation_name is None:
        return operations[0] if len(operations) == 1 else None
    return next((o for o in operations if o.name and o.name.value == operation_name), None)


def is_mutation(document: DocumentNode, operation_name: str | None) -> bool:
    operation = operation_of(document, operation_name)
    return operation is not None and operation.operation == OperationType.MUTATION


def run_prepared(
    state: SandboxState,
    schema: GraphQLSchema,
    shop_domain: str,
    document: DocumentNode,
    variables: Mapping[str, Any] | None,
    operation_name: str | None,
    *,
    bulk_mode: bool = False,
) -> dict[str, Any]:
    """Execute in one transaction; returns ``{"data":…, "errors":[…]?, "extensions":…?}``.

    A mutation that touched anything the sandbox does not implement is rolled back whole (its
    writes and its webhooks) and answers ``data: null``: committing it and answering a null
    payload would make a retrying client repeat a change that did happen.
    """
    rolled_back = False
    try:
        with state.db.transaction() as conn:
            shop: Shop | None = get_shop(conn, shop_domain)
            if shop is None:
                raise LookupError(f"shop {shop_domain} does not exist in the sandbox")
            ctx = Context(state=state, conn=conn, shop=shop, bulk=bulk_mode)
            result = execute_sync(
                schema,
                document,
                variable_values=dict(variables) if variables else None,
                operation_name=operation_name,
                context_value=ctx,
                field_resolver=field_resolver,
                type_resolver=type_resolver,
            )
            if is_mutation(document, operation_name) and _not_implemented(result.errors):
                raise _RollBack
    except _RollBack:
        rolled_back = True
    body: dict[str, Any] = {}
    if rolled_back:
        body["errors"] = [
            _rolled_back_error(e) for e in result.errors or () if _is_not_implemented(e)
        ]
        body["data"] = None
        return body
    for callback in ctx.after_commit:
        callback()
    if result.errors:
        body["errors"] = [format_error(e) for e in result.errors]
    body["data"] = result.data
    if ctx.search_warnings:
        body["extensions"] = {"search": ctx.search_warnings}
    return body


MAX_INPUT_ARRAY = 250
# Arrays Shopify documents with a larger limit: productSet takes a product's 2,048 variants.
_INPUT_ARRAY_LIMITS: dict[tuple[str, ...], int] = {("productSet", "input", "variants"): 2048}


def input_size_errors(
    schema: GraphQLSchema,
    document: DocumentNode,
    variables: Mapping[str, Any] | None,
    operation_name: str | None,
) -> list[dict[str, Any]]:
    """Errors for input arrays of more than 250 items in the root fields' arguments.

    Shopify: "Input arguments that accept an array have a maximum size of 250 for all APIs.
    Requests return an error if an input array exceeds 250 items" (shopify.dev/docs/api/usage/
    limits; changelog graphql-input-objects-limited-to-250-items). The request then runs
    nothing. Only root fields are walked: they are where the sandbox takes input arrays.
    """
    operation = operation_of(document, operation_name)
    if operation is None:
        return []
    root_type = schema.get_root_type(operation.operation)
    coerced = get_variable_values(
        schema, operation.variable_definitions or (), dict(variables or {})
    )
    if root_type is None or isinstance(coerced, list):
        return []
    errors: list[dict[str, Any]] = []
    for selection in operation.selection_set.selections:
        if not isinstance(selection, FieldNode):
            continue
        field_def = root_type.fields.get(selection.name.value)
        if field_def is None:
            continue
        args = get_argument_values(field_def, selection, coerced)
        location = selection.loc.source.get_location(selection.loc.start) if selection.loc else None
        for name, value in args.items():
            _walk_input([selection.name.value, name], value, errors, location)
    return errors


def _walk_input(path: list[str], value: Any, errors: list[dict[str, Any]], location: Any) -> None:
    if isinstance(value, list):
        limit = _INPUT_ARRAY_LIMITS.get(tuple(p for p in path if not p.isdigit()), MAX_INPUT_ARRAY)
        if len(value) > limit:
            error: dict[str, Any] = {
                "message": (
                    f"The input array size of {len(value)} is greater than the maximum allowed"
                    f" of {limit}."
                ),
                "path": path,
                "extensions": {"code": "MAX_INPUT_SIZE_EXCEEDED"},
            }
            if location is not None:
                error["locations"] = [{"line": location.line, "column": location.column}]
            errors.append(error)
            return
        for index, item in enumerate(value):
            _walk_input([*path, str(index)], item, errors, location)
    elif isinstance(value, dict):
        for key, item in value.items():
            _walk_input([*path, key], item, errors, location)


class _RollBack(Exception):
    """Raised inside the transaction to undo a mutation that hit an unimplemented element."""


def _is_not_implemented(error: GraphQLError) -> bool:
    return (error.extensions or {}).get("code") == NOT_IMPLEMENTED_CODE


def _not_implemented(errors: list[GraphQLError] | None) -> bool:
    return any(_is_not_implemented(e) for e in errors or ())


def _rolled_back_error(error: GraphQLError) -> dict[str, Any]:
    formatted = format_error(error)
    formatted["message"] += "; the mutation was rolled back: nothing changed, no webhook fired"
    return formatted


def run_source(
    state: SandboxState,
    schema: GraphQLSchema,
    shop_domain: str,
    source: str,
    variables: Mapping[str, Any] | None = None,
    operation_name: str | None = None,
) -> dict[str, Any]:
    """Parse, validate and run ``source`` with no cost accounting (internal callers)."""
    prepared = prepare(schema, source)
    if not prepared.ok or prepared.document is None:
        return {"errors": prepared.errors}
    too_large = input_size_errors(schema, prepared.document, variables, operation_name)
    if too_large:
        return {"errors": too_large}
    return run_prepared(state, schema, shop_domain, prepared.document, variables, operation_name)
