"""Admin GraphQL calls, sent through shopifyapp's ``admin_graphql_request``.

Every call takes the shop's access token and an injected ``httpx.Client`` (from
:func:`~syncapp.connectors.shopify.transport.shopify_client`); this module never stores
anything. Failures raise one of:

    ConnectorError (connectors.errors)
    └── ShopifyAdminError           the request did not produce data; ``code`` is shopifyapp's
        ├── ShopifyUnauthorized     401: the token is revoked or invalid (e.g. app uninstalled)
        ├── ShopifyTransientError   429 after retries, 5xx, network errors, THROTTLED: retry later
        │                           (also a TransientConnectorError)
        └── ShopifyQueryError       GraphQL errors, 400 or 403: retrying the same call will not help
                                    (also a PermanentConnectorError)
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any

import httpx
import orjson
from shopify_app.graphql.admin_graphql import admin_graphql_request

from syncapp.connectors.errors import (
    ConnectorError,
    PermanentConnectorError,
    TransientConnectorError,
)
from syncapp.connectors.shopify.documents import load_document

__all__ = [
    "ShopInfo",
    "ShopifyAdminError",
    "ShopifyQueryError",
    "ShopifyTransientError",
    "ShopifyUnauthorized",
    "fetch_shop_info",
    "run_document",
]

_TRANSIENT_CODES = frozenset({"network_error", "rate_limit_exceeded", "server_error"})


class ShopifyAdminError(ConnectorError):
    """An Admin GraphQL request failed; ``code`` is shopifyapp's log code, ``status`` HTTP's."""

    system = "Shopify"

    code: str
    status: int

    def __init__(self, message: str, *, code: str, status: int) -> None:
        super().__init__(message, status=status, code=code)


class ShopifyUnauthorized(ShopifyAdminError):
    """Shopify answered 401: the access token is revoked, expired or not for this shop."""


class ShopifyTransientError(ShopifyAdminError, TransientConnectorError):
    """Rate limited, throttled, a 5xx or a network failure: the same call may work later."""


class ShopifyQueryError(ShopifyAdminError, PermanentConnectorError):
    """The query itself was refused (GraphQL errors, 400, 403)."""


@dataclass(frozen=True, slots=True)
class ShopInfo:
    """The shop as the ``ShopInfo`` query (graphql/shop.graphql) returns it."""

    gid: str
    name: str
    email: str | None
    currency_code: str
    plan_name: str
    myshopify_domain: str
    iana_timezone: str | None


def _throttled(body: str) -> bool:
    try:
        errors = orjson.loads(body).get("errors") or []
    except (orjson.JSONDecodeError, AttributeError):
        return False
    return any(
        isinstance(e, dict) and (e.get("extensions") or {}).get("code") == "THROTTLED"
        for e in errors
    )


def run_document(
    name: str,
    variables: dict[str, Any] | None = None,
    *,
    shop: str,
    access_token: str,
    api_version: str,
    http: httpx.Client,
) -> dict[str, Any]:
    """Send app document ``graphql/<name>.graphql`` to ``shop`` and return its ``data``.

    ``shop`` is the shop's name or domain (``demo`` or ``demo.myshopify.com``).
    """
    result = admin_graphql_request(
        load_document(name),
        shop=shop.removesuffix(".myshopify.com"),
        access_token=access_token,
        api_version=api_version,
        variables=variables,
        http_client=http,
    )
    if result.ok and result.data is not None:
        return result.data
    code, status = result.log.code, result.response.status
    message = f"Shopify Admin API {name} for {shop}: {code} (HTTP {status})"
    if code == "unauthorized" or status == 401:
        raise ShopifyUnauthorized(message, code=code, status=status)
    if code in _TRANSIENT_CODES or status >= 500 or _throttled(result.response.body):
        raise ShopifyTransientError(message, code=code, status=status)
    raise ShopifyQueryError(f"{message}: {result.response.body[:500]}", code=code, status=status)


def fetch_shop_info(
    *, shop: str, access_token: str, api_version: str, http: httpx.Client
) -> ShopInfo:
    """Read the shop's identity, contact, currency and plan (the ``ShopInfo`` query)."""
    data = run_document(
        "shop", shop=shop, access_token=access_token, api_version=api_version, http=http
    )
    node = data["shop"]
    plan = node.get("plan") or {}
    return ShopInfo(
        gid=str(node["id"]),
        name=str(node["name"]),
        email=node.get("email") or node.get("contactEmail"),
        currency_code=str(node["currencyCode"]),
        plan_name=str(plan.get("publicDisplayName") or ""),
        myshopify_domain=str(node["myshopifyDomain"]),
        iana_timezone=node.get("ianaTimezone"),
    )
