"""Bulk query operations: validate the inner query by Shopify's rules, run it in a background
thread page by page, and stream the result as JSONL (nested connection items as their own
lines with ``__parentId``) to a file the sandbox serves at ``/_sandbox/bulk/<name>.jsonl``.

Memory stays bounded: the root connection is read one page at a time, each page written out
and dropped. A process that stops mid-operation leaves it RUNNING in the database; the next
start marks it FAILED with ``INTERNAL_SERVER_ERROR`` (``recover_interrupted``), as Shopify's
own infrastructure failures surface.
"""

from __future__ import annotations

import json
import logging
import secrets
import threading
import time
from collections.abc import Iterator
from pathlib import Path
from typing import Any

from graphql import (
    ArgumentNode,
    DocumentNode,
    FieldNode,
    FragmentDefinitionNode,
    FragmentSpreadNode,
    GraphQLError,
    GraphQLList,
    GraphQLNonNull,
    GraphQLObjectType,
    GraphQLSchema,
    InlineFragmentNode,
    IntValueNode,
    NameNode,
    OperationDefinitionNode,
    OperationType,
    SelectionSetNode,
    StringValueNode,
    get_named_type,
    parse,
    validate,
)
from graphql.type.definition import GraphQLOutputType, is_abstract_type

from syncapp.sandbox.shopify.db import utcnow_iso
from syncapp.sandbox.shopify.events import record_webhook
from syncapp.sandbox.shopify.faults import BULK_URL_LIFETIME, ApiFaults
from syncapp.sandbox.shopify.graphql_api import bulk_store, nodes, payloads
from syncapp.sandbox.shopify.graphql_api.context import Context
from syncapp.sandbox.shopify.graphql_api.ids import legacy_id
from syncapp.sandbox.shopify.state import SandboxState

log = logging.getLogger(__name__)

MAX_CONNECTIONS = 5
MAX_CONNECTION_DEPTH = 2
MAX_RUNNING_QUERIES = 5
PAGE_SIZE = 250
_PAGE_ALIAS = "_sandboxPageInfo"


def bulk_dir(state: SandboxState) -> Path:
    return Path(state.config.database_path).parent / "bulk"


# ---- validation ----------------------------------------------------------------------------


class BulkQueryError(Exception):
    """The inner query breaks a bulk rule; the message is the userError's."""


def _is_connection(type_: GraphQLOutputType) -> bool:
    named = get_named_type(type_)
    return (
        isinstance(named, GraphQLObjectType)
        and named.name.endswith("Connection")
        and ("edges" in named.fields or "nodes" in named.fields)
    )


def _is_list(type_: GraphQLOutputType) -> bool:
    inner = type_.of_type if isinstance(type_, GraphQLNonNull) else type_
    return isinstance(inner, GraphQLList)


def check_bulk_query(schema: GraphQLSchema, source: str) -> tuple[DocumentNode, FieldNode]:
    """The parsed document and its one root connection field, or ``BulkQueryError``."""
    try:
        document = parse(source)
    except GraphQLError as exc:
        raise BulkQueryError(f"Invalid bulk query: {exc.message}") from exc
    problems = validate(schema, document)
    if problems:
        raise BulkQueryError(f"Invalid bulk query: {problems[0].message}")
    operations = [d for d in document.definitions if isinstance(d, OperationDefinitionNode)]
    if len(operations) != 1 or operations[0].operation != OperationType.QUERY:
        raise BulkQueryError("Bulk queries must contain exactly one query operation.")
    if operations[0].variable_definitions:
        raise BulkQueryError("Bulk queries cannot use variables.")
    fragments = {
        d.name.value: d for d in document.definitions if isinstance(d, FragmentDefinitionNode)
    }
    query_type = schema.query_type
    assert query_type is not None
    roots = [
        s for s in _fields(operations[0].selection_set, fragments) if s.name.value != "__typename"
    ]
    if len(roots) != 1:
        raise BulkQueryError("Bulk queries must contain exactly one top-level field.")
    root = roots[0]
    root_def = query_type.fields[root.name.value]
    if not _is_connection(root_def.type):
        raise BulkQueryError("Bulk queries must contain at least one connection.")
    counter = [1]
    connection_type = get_named_type(root_def.type)
    assert isinstance(connection_type, GraphQLObjectType)
    _check_connection(schema, root, connection_type, 1, counter, fragments)
    return document, root


def _fields(
    selection_set: SelectionSetNode | None, fragments: dict[str, FragmentDefinitionNode]
) -> Iterator[FieldNode]:
    """Field selections, with fragments inlined (the type condition is not needed here)."""
    if selection_set is None:
        return
    for selection in selection_set.selections:
        if isinstance(selection, FieldNode):
            yield selection
        elif isinstance(selection, InlineFragmentNode):
            yield from _fields(selection.selection_set, fragments)
        elif isinstance(selection, FragmentSpreadNode):
            yield from _fields(fragments[selection.name.value].selection_set, fragments)


def _check_connection(
    schema: GraphQLSchema,
    field: FieldNode,
    connection_type: GraphQLObjectType,
    depth: int,
    counter: list[int],
    fragments: dict[str, FragmentDefinitionNode],
) -> None:
    for sub in _fields(field.selection_set, fragments):
        name = sub.name.value
        if name == "edges":
            for edge_field in _fields(sub.selection_set, fragments):
                if edge_field.name.value == "node":
                    node_type = get_named_type(connection_type.fields["edges"].type)
                    assert isinstance(node_type, GraphQLObjectType)
                    _check_node(
                        schema,
                        edge_field,
                        get_named_type(node_type.fields["node"].type),
                        depth,
                        counter,
                        fragments,
                    )
        elif name == "nodes":
            _check_node(
                schema,
                sub,
                get_named_type(connection_type.fields["nodes"].type),
                depth,
                counter,
                fragments,
            )


def _check_node(
    schema: GraphQLSchema,
    node_field: FieldNode,
    node_type: Any,
    depth: int,
    counter: list[int],
    fragments: dict[str, FragmentDefinitionNode],
) -> None:
    has_nested = False
    for sub in _walk_objects(schema, node_field, node_type, fragments, in_list=False):
        sub_field, sub_def, in_list = sub
        if not _is_connection(sub_def.type):
            continue
        if in_list:
            raise BulkQueryError(
                "Queries that contain a connection field within a list field"
                " are not currently supported."
            )
        counter[0] += 1
        if counter[0] > MAX_CONNECTIONS:
            raise BulkQueryError(
                f"Bulk queries cannot contain more than {MAX_CONNECTIONS} connections."
            )
        if depth + 1 > MAX_CONNECTION_DEPTH:
            raise BulkQueryError(
                f"Bulk queries cannot contain connections nested more than"
                f" {MAX_CONNECTION_DEPTH} levels deep."
            )
        has_nested = True
        nested_type = get_named_type(sub_def.type)
        assert isinstance(nested_type, GraphQLObjectType)
        _check_connection(schema, sub_field, nested_type, depth + 1, counter, fragments)
    if has_nested and not any(
        f.name.value == "id" and f.alias is None
        for f in _fields(node_field.selection_set, fragments)
    ):
        raise BulkQueryError(
            "The parent 'node' field for a nested connection must select the 'id' field without"
            " an alias and must be of 'Node' type."
        )


def _walk_objects(
    schema: GraphQLSchema,
    field: FieldNode,
    parent_type: Any,
    fragments: dict[str, FragmentDefinitionNode],
    *,
    in_list: bool,
) -> Iterator[tuple[FieldNode, Any, bool]]:
    """Fields under ``field`` (through plain objects, stopping at connections)."""
    for sub in _fields(field.selection_set, fragments):
        name = sub.name.value
        if name.startswith("__"):
            continue
        candidates = (
            schema.get_possible_types(parent_type)
            if is_abstract_type(parent_type)
            else [parent_type]
        )
        field_def = next((t.fields[name] for t in candidates if name in t.fields), None)
        if field_def is None:
            continue
        yield sub, field_def, in_list
        if _is_connection(field_def.type):
            continue
        named = get_named_type(field_def.type)
        if isinstance(named, GraphQLObjectType) or is_abstract_type(named):
            yield from _walk_objects(
                schema, sub, named, fragments, in_list=in_list or _is_list(field_def.type)
            )


# ---- mutations -----------------------------------------------------------------------------


def _user_error(message: str, code: str, field: list[str] | None) -> dict[str, Any]:
    return {
        "__typename": "BulkOperationUserError",
        "field": field,
        "message": message,
        "code": code,
    }


def run_query(_: Any, ctx: Context, args: dict[str, Any]) -> dict[str, Any]:
    from syncapp.sandbox.shopify.graphql_api.schema import admin_schema

    schema = admin_schema(ctx.state.config.api_version)
    try:
        check_bulk_query(schema, args["query"])
    except BulkQueryError as exc:
        return {
            "__typename": "BulkOperationRunQueryPayload",
            "bulkOperation": None,
            "userErrors": [_user_error(str(exc), "INVALID", ["query"])],
        }
    if bulk_store.count_active(ctx.conn, ctx.shop.domain, "QUERY") >= MAX_RUNNING_QUERIES:
        return {
            "__typename": "BulkOperationRunQueryPayload",
            "bulkOperation": None,
            "userErrors": [
                _user_error(
                    f"A maximum of {MAX_RUNNING_QUERIES} bulk query operations can run at the"
                    " same time for this app and shop.",
                    "LIMIT_REACHED",
                    None,
                )
            ],
        }
    op_id = bulk_store.create(
        ctx.conn, ctx.shop.domain, "QUERY", args["query"], group_objects=bool(args["groupObjects"])
    )
    state, shop_domain = ctx.state, ctx.shop.domain
    faults = state.faults.current

    def launch() -> None:
        start(state, shop_domain, op_id, faults)

    ctx.after_commit.append(launch)
    row = bulk_store.get(ctx.conn, ctx.shop.domain, op_id)
    assert row is not None
    return {
        "__typename": "BulkOperationRunQueryPayload",
        "bulkOperation": nodes.bulk_operation_node(row),
        "userErrors": [],
    }


def cancel(_: Any, ctx: Context, args: dict[str, Any]) -> dict[str, Any]:
    number = legacy_id(args["id"], "BulkOperation")
    row = bulk_store.get(ctx.conn, ctx.shop.domain, number) if number else None
    if row is None:
        return {
            "__typename": "BulkOperationCancelPayload",
            "bulkOperation": None,
            "userErrors": [
                {
                    "__typename": "UserError",
                    "field": ["id"],
                    "message": "Bulk operation does not exist",
                }
            ],
        }
    if row["status"] not in ("CREATED", "RUNNING"):
        return {
            "__typename": "BulkOperationCancelPayload",
            "bulkOperation": nodes.bulk_operation_node(row),
            "userErrors": [
                {
                    "__typename": "UserError",
                    "field": None,
                    "message": "A bulk operation cannot be canceled when it is"
                    f" {row['status'].lower()}",
                }
            ],
        }
    bulk_store.update(ctx.conn, row["id"], status="CANCELING")
    row = bulk_store.get(ctx.conn, ctx.shop.domain, row["id"])
    assert row is not None
    return {
        "__typename": "BulkOperationCancelPayload",
        "bulkOperation": nodes.bulk_operation_node(row),
        "userErrors": [],
    }


MUTATIONS = {"bulkOperationRunQuery": run_query, "bulkOperationCancel": cancel}


# ---- running -------------------------------------------------------------------------------


def start(
    state: SandboxState, shop_domain: str, op_id: int, faults: ApiFaults | None = None
) -> threading.Thread:
    """Run operation ``op_id`` in a daemon thread (the sandbox process owns no worker pool).

    ``faults`` are those set when the operation was created (``/_sandbox/graphql/faults``).
    """
    thread = threading.Thread(
        target=_run_safely,
        args=(state, shop_domain, op_id, faults or ApiFaults()),
        name=f"bulk-{op_id}",
        daemon=True,
    )
    thread.start()
    return thread


def _finish(state: SandboxState, shop_domain: str, op_id: int, **fields: Any) -> None:
    with state.db.transaction() as conn:
        bulk_store.update(conn, op_id, completed_at=utcnow_iso(), **fields)
        row = bulk_store.get(conn, shop_domain, op_id)
        assert row is not None
        record_webhook(
            conn,
            shop_domain=shop_domain,
            topic="bulk_operations/finish",
            payload=payloads.bulk_finish_payload(row),
        )


def _run_safely(state: SandboxState, shop_domain: str, op_id: int, faults: ApiFaults) -> None:
    try:
        _run(state, shop_domain, op_id, faults)
    except Exception:
        log.exception("bulk operation %s failed", op_id)
        try:
            _finish(state, shop_domain, op_id, status="FAILED", error_code="INTERNAL_SERVER_ERROR")
        except Exception:
            # The database is gone (sandbox shutting down); the next start marks it FAILED.
            log.exception("could not record the failure of bulk operation %s", op_id)


def _paged_document(document: DocumentNode, root: FieldNode, after: str | None) -> DocumentNode:
    """The document with the root connection asked for one page after ``after``."""
    args = [
        a for a in root.arguments or () if a.name.value not in ("first", "last", "after", "before")
    ]
    args.append(
        ArgumentNode(name=NameNode(value="first"), value=IntValueNode(value=str(PAGE_SIZE)))
    )
    if after is not None:
        args.append(ArgumentNode(name=NameNode(value="after"), value=StringValueNode(value=after)))
    page_info = FieldNode(
        alias=NameNode(value=_PAGE_ALIAS),
        name=NameNode(value="pageInfo"),
        arguments=(),
        directives=(),
        selection_set=SelectionSetNode(
            selections=(
                FieldNode(name=NameNode(value="hasNextPage"), arguments=(), directives=()),
                FieldNode(name=NameNode(value="endCursor"), arguments=(), directives=()),
            )
        ),
    )
    assert root.selection_set is not None
    new_root = FieldNode(
        alias=root.alias,
        name=root.name,
        arguments=tuple(args),
        directives=root.directives,
        selection_set=SelectionSetNode(selections=(*root.selection_set.selections, page_info)),
    )
    operation = next(d for d in document.definitions if isinstance(d, OperationDefinitionNode))
    new_operation = OperationDefinitionNode(
        operation=operation.operation,
        name=operation.name,
        variable_definitions=operation.variable_definitions,
        directives=operation.directives,
        selection_set=SelectionSetNode(selections=(new_root,)),
    )
    others = [d for d in document.definitions if not isinstance(d, OperationDefinitionNode)]
    return DocumentNode(definitions=(new_operation, *others))


def _connection_items(value: dict[str, Any]) -> list[Any]:
    if isinstance(value.get("edges"), list):
        return [edge.get("node") for edge in value["edges"] if isinstance(edge, dict)]
    if isinstance(value.get("nodes"), list):
        return list(value["nodes"])
    return []


def _is_connection_value(value: Any) -> bool:
    return (
        isinstance(value, dict)
        and bool(value)
        and set(value) <= {"edges", "nodes", "pageInfo", _PAGE_ALIAS}
        and ("edges" in value or "nodes" in value)
    )


def flatten(item: dict[str, Any], parent_id: str | None) -> Iterator[dict[str, Any]]:
    """One JSONL object for ``item`` (its nested connections removed), then their items."""
    own: dict[str, Any] = {}
    children: list[Any] = []
    for key, value in item.items():
        if _is_connection_value(value):
            children.extend(_connection_items(value))
        else:
            own[key] = value
    if parent_id is not None:
        own["__parentId"] = parent_id
    yield own
    for child in children:
        if isinstance(child, dict):
            yield from flatten(child, item.get("id"))


def ungrouped(lines: list[dict[str, Any]]) -> list[dict[str, Any]]:
    """A page's lines as ``groupObjects: false`` may lay them out: children first, interleaved
    across their parents (round-robin), then the parents.

    Shopify (changelog bulk-operations-group-objects-default-changed-to-false, 2026-01):
    ungrouped output is the default and faster, and documents no order, so a child may come
    before its parent and lines of different products interleave. This layout is the most
    hostile one a parser can meet; grouped output (``groupObjects: true``) keeps the old order.
    """
    roots = [line for line in lines if "__parentId" not in line]
    by_parent: dict[Any, list[dict[str, Any]]] = {}
    for line in lines:
        if "__parentId" in line:
            by_parent.setdefault(line["__parentId"], []).append(line)
    children: list[dict[str, Any]] = []
    queues = list(by_parent.values())
    while queues:
        children.extend(queue.pop(0) for queue in queues)
        queues = [queue for queue in queues if queue]
    return children + roots


def _cancel_requested(state: SandboxState, shop_domain: str, op_id: int) -> bool:
    with state.db.transaction() as conn:
        current = bulk_store.get(conn, shop_domain, op_id)
    return current is not None and current["status"] == "CANCELING"


def _stay_running(
    state: SandboxState, shop_domain: str, op_id: int, started: float, running_ms: int
) -> bool:
    """Hold the operation RUNNING until ``running_ms`` passed; False when canceled meanwhile."""
    deadline = started + running_ms / 1000
    pause = threading.Event()
    while time.monotonic() < deadline:
        if _cancel_requested(state, shop_domain, op_id):
            return False
        pause.wait(min(0.02, max(deadline - time.monotonic(), 0)))
    return True


def _file_url(state: SandboxState, name: str) -> str:
    return f"{state.config.public_url.rstrip('/')}/_sandbox/bulk/{name}"


def _run(state: SandboxState, shop_domain: str, op_id: int, faults: ApiFaults) -> None:
    from syncapp.sandbox.shopify.graphql_api.execution import run_prepared
    from syncapp.sandbox.shopify.graphql_api.schema import admin_schema

    started = time.monotonic()
    schema = admin_schema(state.config.api_version)
    with state.db.transaction() as conn:
        row = bulk_store.get(conn, shop_domain, op_id)
        assert row is not None
        if row["status"] == "CREATED":  # a cancel requested before the start stays requested
            bulk_store.update(conn, op_id, status="RUNNING")
    document, root = check_bulk_query(schema, row["query"])
    grouped = bool(row["group_objects"])
    key = root.alias.value if root.alias else root.name.value
    directory = bulk_dir(state)
    directory.mkdir(parents=True, exist_ok=True)
    name = f"{secrets.token_urlsafe(24)}.jsonl"
    path = directory / name
    objects = roots = 0
    after: str | None = None
    canceled = False
    with path.open("w", encoding="utf-8") as out:
        while True:
            if _cancel_requested(state, shop_domain, op_id):
                canceled = True
                break
            result = run_prepared(
                state,
                schema,
                shop_domain,
                _paged_document(document, root, after),
                None,
                None,
                bulk_mode=True,
            )
            if result.get("errors"):
                raise RuntimeError(f"bulk page failed: {result['errors'][0]['message']}")
            connection = result["data"][key]
            page_info = connection.pop(_PAGE_ALIAS)
            lines: list[dict[str, Any]] = []
            for item in _connection_items(connection):
                roots += 1
                lines.extend(flatten(item, None))
            for line in lines if grouped else ungrouped(lines):
                objects += 1
                out.write(json.dumps(line, separators=(",", ":")) + "\n")
            if not page_info["hasNextPage"]:
                break
            after = page_info["endCursor"]
    if not canceled and faults.bulk_running_ms:
        canceled = not _stay_running(state, shop_domain, op_id, started, faults.bulk_running_ms)
    if canceled or faults.bulk_outcome == "CANCELED":
        path.unlink(missing_ok=True)
        _finish(
            state,
            shop_domain,
            op_id,
            status="CANCELED",
            object_count=objects,
            root_object_count=roots,
        )
        return
    ttl = faults.bulk_url_ttl_s if faults.bulk_url_ttl_s is not None else BULK_URL_LIFETIME
    if faults.bulk_outcome is not None and faults.bulk_outcome.startswith("FAILED_"):
        _fail_with_partial_data(state, shop_domain, op_id, path, faults.bulk_outcome, ttl)
        return
    size = path.stat().st_size
    url: str | None = _file_url(state, name)
    if objects == 0:
        # Shopify gives no file for an empty result.
        path.unlink(missing_ok=True)
        url, size = None, 0
    _finish(
        state,
        shop_domain,
        op_id,
        status="COMPLETED",
        object_count=objects,
        root_object_count=roots,
        file_size=size,
        file_name=name if url else None,
        url=url,
        url_expires_at=time.time() + ttl if url else None,
    )


def _fail_with_partial_data(
    state: SandboxState, shop_domain: str, op_id: int, path: Path, outcome: str, ttl: float
) -> None:
    """FAILED with ``errorCode`` and the first half of the lines at ``partialDataUrl``.

    Shopify (BulkOperationErrorCode TIMEOUT / INTERNAL_SERVER_ERROR: "partial or incomplete
    data"; BulkOperation.partialDataUrl): a failed query may leave partial results; ``url``
    stays null.
    """
    lines = path.read_text(encoding="utf-8").splitlines(keepends=True)
    kept = lines[: len(lines) // 2]
    path.unlink(missing_ok=True)
    error_code = outcome.removeprefix("FAILED_")
    partial_name: str | None = None
    if kept:
        partial_name = f"{secrets.token_urlsafe(24)}.jsonl"
        (path.parent / partial_name).write_text("".join(kept), encoding="utf-8")
    _finish(
        state,
        shop_domain,
        op_id,
        status="FAILED",
        error_code=error_code,
        object_count=len(kept) if partial_name else 0,
        root_object_count=sum(1 for line in kept if '"__parentId"' not in line)
        if partial_name
        else 0,
        partial_file_name=partial_name,
        partial_data_url=_file_url(state, partial_name) if partial_name else None,
        url_expires_at=time.time() + ttl if partial_name else None,
    )


def recover_interrupted(state: SandboxState) -> int:
    """Mark operations a stopped process left unfinished FAILED; returns how many."""
    with state.db.transaction() as conn:
        stale = bulk_store.interrupted(conn)
    for row in stale:
        if row["status"] == "CANCELING":
            _finish(state, row["shop_domain"], row["id"], status="CANCELED")
        else:
            _finish(
                state,
                row["shop_domain"],
                row["id"],
                status="FAILED",
                error_code="INTERNAL_SERVER_ERROR",
            )
    return len(stale)
