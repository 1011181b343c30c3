"""The sandbox's Admin GraphQL API: the real 2026-10 schema over the sandbox's own state.

Modules:
  schema      loads Shopify's introspection result (cached per process)
  store       products, options, variants, metafields as SQLite tables
  search      the ``query:`` search syntax → SQL
  pagination  keyset cursor pagination (Relay connections)
  nodes       rows → GraphQL values; resolvers: lazily loaded fields and the query root
  mutations   product, variant, option and metafield mutations with userErrors and webhooks;
              payloads: REST webhook bodies
  inventory   locations, inventory levels, inventorySetQuantities / inventoryAdjustQuantities
  operations  asynchronous productSet and productOperation
  bulk        bulk query operations (bulk_store: their rows)
  billing     Billing API: app subscriptions, usage records (billing_store: rows, approve/decline)
  execution   parse/validate/execute with the "not implemented" default resolver
  endpoint    the HTTP endpoint: auth, cost, throttle (and the /_sandbox/graphql/faults switch)
"""

from __future__ import annotations

from typing import Any

from starlette.routing import BaseRoute, Route

from syncapp.sandbox.shopify.graphql_api import bulk
from syncapp.sandbox.shopify.graphql_api.endpoint import make_faults_handler, make_handlers
from syncapp.sandbox.shopify.graphql_api.execution import run_source
from syncapp.sandbox.shopify.graphql_api.schema import admin_schema
from syncapp.sandbox.shopify.state import SandboxState

__all__ = ["execute_internal", "routes"]


def routes(state: SandboxState) -> list[BaseRoute]:
    """The Admin GraphQL endpoint and the bulk result files, for ``create_app``.

    Building them also settles bulk operations a previous process left running.
    """
    bulk.recover_interrupted(state)
    graphql, bulk_file = make_handlers(state)
    return [
        Route(
            "/admin/api/{version}/graphql.json",
            graphql,
            methods=["GET", "POST", "PUT", "PATCH", "DELETE"],
        ),
        Route("/_sandbox/bulk/{name}", bulk_file, methods=["GET"]),
        Route(
            "/_sandbox/graphql/faults",
            make_faults_handler(state),
            methods=["GET", "POST", "DELETE"],
        ),
    ]


def execute_internal(
    state: SandboxState, shop_domain: str, document: str, variables: dict[str, Any] | None = None
) -> dict[str, Any]:
    """Run ``document`` for the shop with no auth, cost or throttle; Shopify-shaped result.

    Mutations fire their webhooks as over HTTP. A shop that does not exist raises LookupError.
    """
    return run_source(
        state, admin_schema(state.config.api_version), shop_domain, document, variables
    )
