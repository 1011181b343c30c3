"""``POST /admin/api/<version>/graphql.json``: auth, cost, throttle, then execution.

The order is Shopify's: the host names the shop (unknown → 404), the access token must be a
live one of that shop (else 401 with Shopify's body), the document must parse and validate
(else 200 with ``errors``), its requested cost must be at most 1000 (``MAX_COST_EXCEEDED``)
and available in the (app, shop) bucket (``THROTTLED``); then it runs, the unused points are
refunded, and ``extensions.cost`` reports both costs and the bucket.
"""

from __future__ import annotations

import json
import math
import time
from collections.abc import Mapping
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from graphql import GraphQLSchema, OperationDefinitionNode
from graphql.execution.values import get_variable_values
from starlette.concurrency import run_in_threadpool
from starlette.requests import Request
from starlette.responses import FileResponse, JSONResponse, PlainTextResponse, Response

from syncapp.sandbox.shopify import cost, throttle
from syncapp.sandbox.shopify.faults import ApiFaults, parse_faults
from syncapp.sandbox.shopify.graphql_api import bulk, bulk_store
from syncapp.sandbox.shopify.graphql_api.execution import (
    format_error,
    input_size_errors,
    operation_of,
    prepare,
    run_prepared,
)
from syncapp.sandbox.shopify.graphql_api.nodes import bulk_operation_status
from syncapp.sandbox.shopify.graphql_api.schema import admin_schema, has_schema
from syncapp.sandbox.shopify.oauth import not_on_shop_host
from syncapp.sandbox.shopify.shops import PLAN_LIMITS, get_shop, shop_domain_from_host
from syncapp.sandbox.shopify.state import SandboxState
from syncapp.sandbox.shopify.tokens import shop_for_access_token

INVALID_TOKEN_BODY = {
    "errors": "[API] Invalid API key or access token (unrecognized login or wrong password)"
}
THROTTLED_ERROR = {
    "message": "Throttled",
    "extensions": {
        "code": "THROTTLED",
        "documentation": "https://shopify.dev/api/usage/rate-limits",
    },
}


def max_cost_error(requested: int) -> dict[str, Any]:
    return {
        "message": (
            f"Query cost is {requested}, which exceeds the single query max cost limit"
            f" ({cost.MAX_QUERY_COST}).\n\nSee https://shopify.dev/concepts/about-apis/rate-limits"
            " for more information on how the\ncost of a query is calculated.\n\nTo query larger"
            " amounts of data with fewer limits, bulk operations should be used instead.\nSee"
            " https://shopify.dev/tutorials/perform-bulk-operations-with-admin-api for usage"
            " details.\n"
        ),
        "extensions": {
            "code": "MAX_COST_EXCEEDED",
            "cost": requested,
            "maxCost": cost.MAX_QUERY_COST,
            "documentation": "https://shopify.dev/api/usage/rate-limits",
        },
    }


@dataclass(frozen=True)
class GraphQLRequest:
    query: str
    variables: dict[str, Any] | None
    operation_name: str | None


class BadRequest(Exception):
    """The HTTP body is not a GraphQL request; ``body`` is Shopify's 400 answer."""

    def __init__(self, body: dict[str, Any]) -> None:
        super().__init__(json.dumps(body))
        self.body = body


def parse_body(content_type: str, raw: bytes) -> GraphQLRequest:
    """A request from a JSON body or an ``application/graphql`` body."""
    missing = {"errors": {"query": "Required parameter missing or invalid"}}
    if content_type.split(";", 1)[0].strip().lower() == "application/graphql":
        text = raw.decode("utf-8", errors="replace")
        if not text.strip():
            raise BadRequest(missing)
        return GraphQLRequest(text, None, None)
    try:
        data = json.loads(raw or b"null")
    except json.JSONDecodeError as exc:
        raise BadRequest({"errors": f"Invalid JSON in request body: {exc.msg}"}) from exc
    except UnicodeDecodeError as exc:
        raise BadRequest({"errors": "The request body is not UTF-8"}) from exc
    if not isinstance(data, dict) or not isinstance(data.get("query"), str) or not data["query"]:
        raise BadRequest(missing)
    variables = data.get("variables")
    if isinstance(variables, str):
        try:
            variables = json.loads(variables) if variables.strip() else None
        except ValueError as exc:
            raise BadRequest({"errors": "variables is not valid JSON"}) from exc
    if variables is not None and not isinstance(variables, dict):
        raise BadRequest({"errors": "variables must be a JSON object"})
    operation_name = data.get("operationName")
    return GraphQLRequest(data["query"], variables, operation_name or None)


class GraphQLEndpoint:
    """The endpoint's state: the shared SandboxState and the per-(app, shop) buckets."""

    def __init__(self, state: SandboxState) -> None:
        self.state = state
        self.buckets = throttle.BucketRegistry()

    def _throttled(
        self, requested: int, status: throttle.ThrottleStatus
    ) -> tuple[int, dict[str, Any]]:
        """THROTTLED on HTTP 200 (Shopify's usual answer), or on 429 when that fault is set."""
        body = {"errors": [THROTTLED_ERROR], "extensions": _cost(requested, None, status)}
        return (429 if self.state.faults.current.throttle_status == 429 else 200), body

    def handle(
        self, *, shop_domain: str, token: str | None, content_type: str, raw: bytes
    ) -> tuple[int, dict[str, Any]]:
        """Status and JSON body for one request already routed to a known API version."""
        with self.state.db.transaction() as conn:
            shop = get_shop(conn, shop_domain)
            if shop is None:
                return 404, {"errors": "Not Found"}
            owner = shop_for_access_token(conn, token) if token else None
            if owner != shop_domain:
                return 401, INVALID_TOKEN_BODY
            kind_row = conn.execute(
                "SELECT kind FROM access_tokens WHERE token = ?", (token,)
            ).fetchone()
        # The installed app has one bucket per shop; a merchant's custom app has its own.
        api_client = self.state.config.client_id if kind_row["kind"] == "offline" else "custom-app"
        try:
            request = parse_body(content_type, raw)
        except BadRequest as exc:
            return 400, exc.body
        schema = admin_schema(self.state.config.api_version)
        prepared = prepare(schema, request.query)
        if not prepared.ok or prepared.document is None:
            return 200, {"errors": prepared.errors}
        document = prepared.document
        operation = operation_of(document, request.operation_name)
        if operation is None:
            message = (
                f"No operation named '{request.operation_name}'"
                if request.operation_name
                else "An operation name is required when sending multiple operations."
            )
            return 200, {"errors": [{"message": message}]}
        variable_errors = _variable_errors(schema, operation, request.variables)
        if variable_errors:
            return 200, {"errors": variable_errors}

        too_large = input_size_errors(schema, document, request.variables, request.operation_name)
        if too_large:
            return 200, {"errors": too_large}
        requested = cost.requested_cost(schema, document, request.variables, request.operation_name)
        capacity, rate = PLAN_LIMITS.get(shop.plan_name, PLAN_LIMITS["Standard"])
        now = time.monotonic()
        bucket = self.buckets.bucket((api_client, shop_domain), capacity, rate, now)
        if requested > cost.MAX_QUERY_COST:
            return 200, {
                "errors": [max_cost_error(requested)],
                "extensions": _cost(requested, None, bucket.status(now)),
            }
        forced = self.state.faults.take_forced_throttle()
        if forced or not bucket.try_take(requested, now):
            return self._throttled(requested, bucket.status(now))
        try:
            body = run_prepared(
                self.state, schema, shop_domain, document, request.variables, request.operation_name
            )
        except BaseException:
            bucket.refund(requested, time.monotonic())
            raise
        actual = cost.actual_cost(
            schema, document, request.variables, request.operation_name, body.get("data")
        )
        now = time.monotonic()
        if requested > actual:
            bucket.refund(requested - actual, now)
        extensions = dict(body.get("extensions") or {})
        extensions.update(_cost(requested, actual, bucket.status(now)))
        body["extensions"] = extensions
        return 200, body


def retry_after(body: dict[str, Any]) -> int:
    """``Retry-After`` of a 429, in whole seconds: how long the bucket needs to refill the
    missing points, at least 1 (Shopify's REST Admin API sends seconds; pitfalls §27)."""
    cost_info = body["extensions"]["cost"]
    status = cost_info["throttleStatus"]
    missing = max(cost_info["requestedQueryCost"] - status["currentlyAvailable"], 0)
    return max(1, math.ceil(float(missing) / float(status["restoreRate"])))


def _variable_errors(
    schema: GraphQLSchema, operation: OperationDefinitionNode, variables: Mapping[str, Any] | None
) -> list[dict[str, Any]]:
    coerced = get_variable_values(
        schema, operation.variable_definitions or (), dict(variables or {})
    )
    if isinstance(coerced, list):
        return [format_error(e) for e in coerced]
    return []


def _cost(requested: int, actual: int | None, status: throttle.ThrottleStatus) -> dict[str, Any]:
    return {
        "cost": {
            "requestedQueryCost": requested,
            "actualQueryCost": actual,
            "throttleStatus": status.to_json(),
        }
    }


def make_handlers(state: SandboxState) -> tuple[Any, Any]:
    """The two Starlette handlers: the GraphQL endpoint and the bulk result files."""
    endpoint = GraphQLEndpoint(state)

    async def graphql(request: Request) -> Response:
        if request.method != "POST":
            return PlainTextResponse(
                "Method Not Allowed", status_code=405, headers={"Allow": "POST"}
            )
        version = request.path_params["version"]
        shop_domain = shop_domain_from_host(request.headers.get("host"))
        if shop_domain is None or version != state.config.api_version or not has_schema(version):
            return JSONResponse({"errors": "Not Found"}, status_code=404)
        raw = await request.body()
        status, body = await run_in_threadpool(
            endpoint.handle,
            shop_domain=shop_domain,
            token=request.headers.get("x-shopify-access-token"),
            content_type=request.headers.get("content-type", "application/json"),
            raw=raw,
        )
        headers = {"Retry-After": str(retry_after(body))} if status == 429 else None
        return JSONResponse(body, status_code=status, headers=headers)

    async def bulk_file(request: Request) -> Response:
        name = request.path_params["name"]
        directory = bulk.bulk_dir(state)
        path = directory / name
        if not _safe_name(name) or not path.is_file():
            return PlainTextResponse("Not Found", status_code=404)
        with state.db.transaction() as conn:
            row = bulk_store.by_file_name(conn, name)
        if row is not None and bulk_operation_status(row) == "EXPIRED":
            # Shopify's result URLs are signed storage URLs valid for seven days; past that the
            # storage answers 400 ExpiredToken (as Google Cloud Storage does; inferred).
            return Response(
                "<?xml version='1.0' encoding='UTF-8'?><Error><Code>ExpiredToken</Code>"
                "<Message>The provided token has expired.</Message></Error>",
                status_code=400,
                media_type="application/xml",
            )
        return FileResponse(path, media_type="application/jsonl")

    return graphql, bulk_file


def make_faults_handler(state: SandboxState) -> Any:
    """``/_sandbox/graphql/faults``: GET shows, POST sets (JSON body), DELETE clears the faults."""

    async def faults(request: Request) -> Response:
        if (refused := not_on_shop_host(request)) is not None:
            return refused
        if request.method == "POST":
            try:
                state.faults.set(parse_faults(await request.json()))
            except (ValueError, TypeError) as exc:
                return JSONResponse({"error": str(exc)}, status_code=400)
        elif request.method == "DELETE":
            state.faults.set(ApiFaults())
        return JSONResponse(state.faults.to_json())

    return faults


def _safe_name(name: str) -> bool:
    return (
        name.endswith(".jsonl")
        and Path(name).name == name
        and all(c.isalnum() or c in "-_." for c in name)
    )
