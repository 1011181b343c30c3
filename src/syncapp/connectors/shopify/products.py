"""The Shopify products client of the sync engine: paced Admin GraphQL calls for reading,
writing and archiving products, sent through shopifyapp's ``admin_graphql_request``.

Every call is paced by the shop's :class:`~syncapp.connectors.shopify.budget.CostBudget`
(waiting until the bucket holds the call's estimated cost, then learning the bucket from the
answer), so calls are not THROTTLED. If Shopify throttles anyway (HTTP 200 with a THROTTLED
error, or HTTP 429), the call is waited out with the one retry policy's delay
(:func:`syncapp.bus.retry.backoff_delay`) floored by the bucket's refill time or
``Retry-After`` in seconds (never milliseconds, pitfall 27), up to ``in_process_attempts``; past
that :class:`ShopifyThrottled` (a :class:`ShopifyTransientError` with ``retry_after``) hands
the retry to the bus. shopifyapp's own 429 retry is switched off (``max_retries=0``): it sleeps
without jitter and drops ``Retry-After``.

Errors extend the tree of :mod:`syncapp.connectors.shopify.admin`:

    ShopifyAdminError
    ├── ShopifyTransientError
    │   └── ShopifyThrottled        still throttled after the in-process waits; ``retry_after``
    └── ShopifyQueryError
        └── ShopifyUserErrors       the mutation answered ``userErrors``; ``user_errors`` lists them
"""

from __future__ import annotations

import random
import threading
import time
from collections.abc import Callable, Iterator, Mapping, Sequence
from dataclasses import dataclass, field
from typing import Any

import httpx
import orjson
import structlog
from shopify_app.graphql.admin_graphql import admin_graphql_request

from syncapp.bus.retry import RetryPolicy, backoff_delay
from syncapp.connectors.errors import parse_retry_after
from syncapp.connectors.shopify.admin import (
    ShopifyQueryError,
    ShopifyTransientError,
    ShopifyUnauthorized,
)
from syncapp.connectors.shopify.budget import (
    MAX_VARIANTS_PER_PRODUCT,
    CostBudget,
    chunked,
    parse_cost,
    variants_bulk_cost,
)
from syncapp.connectors.shopify.documents import load_document

__all__ = [
    "VARIANT_PAGE",
    "ProductsClient",
    "ShopifyThrottled",
    "ShopifyUserErrors",
    "sku_search",
]

log = structlog.get_logger(__name__)

VARIANT_PAGE = 190
"""Variants a page: 5 points each by Shopify's documented pricing, so a page stays under the
1,000-point single-query limit (production charges less; the sandbox charges as documented)."""
FIRST_VARIANT_PAGE = 25
"""Variants in the first read of a product: most products have fewer, and the bucket must hold
a call's whole requested cost before it is sent (5 points a variant requested): 137 points
instead of 962 lets some 14 reads run at once in a 2,000-point bucket instead of 2. A bigger
product pays one more call per VARIANT_PAGE variants."""
PRODUCTS_PAGE = 250
# Requested costs of the documents by the documented rule (2 + first x item cost + objects).
_READ_COST = 2 + FIRST_VARIANT_PAGE * 5 + 10
_PAGE_COST = 2 + VARIANT_PAGE * 5 + 1
_CHANGED_COST = 2 + PRODUCTS_PAGE
_FIND_COST = 2
_PRODUCT_SET_COST = 110  # the payload reads up to 100 variant ids
_ARCHIVE_COST = 10
SKUS_PER_QUERY = 25
"""SKUs one lookup asks for (``sku:"A" OR sku:"B" ...``): one query for most products."""


class ShopifyThrottled(ShopifyTransientError):
    """Shopify still throttled the call after the in-process waits; retry in ``retry_after`` s."""

    def __init__(self, message: str, *, status: int, retry_after: float) -> None:
        super().__init__(message, code="throttled", status=status)
        self.retry_after: float = retry_after


class ShopifyUserErrors(ShopifyQueryError):
    """A mutation ran and refused its input; ``user_errors`` are Shopify's ``userErrors``."""

    def __init__(self, message: str, *, user_errors: Sequence[Mapping[str, Any]]) -> None:
        super().__init__(message, code="user_errors", status=200)
        self.user_errors = [dict(e) for e in user_errors]


@dataclass
class ProductsClient:
    """One shop's products calls. Keep one per shop and process: the budget lives in it."""

    shop: str
    access_token: str
    api_version: str
    http: httpx.Client
    policy: RetryPolicy = field(default_factory=lambda: RetryPolicy(5, 0.5, 30.0))
    in_process_attempts: int = 5
    sleep: Callable[[float], None] = time.sleep
    clock: Callable[[], float] = time.monotonic
    jitter: Callable[[], float] = random.random
    budget: CostBudget = field(default_factory=CostBudget)
    throttled: int = 0
    """How many answers were THROTTLED (HTTP 200 or 429): zero when pacing works."""
    _lock: threading.Lock = field(default_factory=threading.Lock, repr=False)

    # ------------------------------------------------------------------ transport

    def call(self, name: str, variables: Mapping[str, Any], *, estimate: float) -> dict[str, Any]:
        """Send ``graphql/<name>.graphql`` paced by the budget; returns ``data``."""
        for attempt in range(1, self.in_process_attempts + 1):
            self._wait_for(estimate)
            result = admin_graphql_request(
                load_document(name),
                shop=self.shop.removesuffix(".myshopify.com"),
                access_token=self.access_token,
                api_version=self.api_version,
                variables=dict(variables),
                http_client=self.http,
                max_retries=0,
            )
            raw = result.http_logs[-1].res if result.http_logs else result.response
            body = _json(raw.body) if raw is not None else {}
            self._observe(body, estimate)
            if result.ok and result.data is not None:
                return result.data
            status = raw.status if raw is not None else result.response.status
            if status == 429 or _is_throttled(body):
                self.throttled += 1
                floor = self._throttle_floor(estimate, raw.headers if raw is not None else {})
                delay = backoff_delay(
                    attempt, policy=self.policy, jitter=self.jitter(), retry_after=floor
                )
                log.warning("shopify.throttled", shop=self.shop, document=name, wait=delay)
                if attempt == self.in_process_attempts:
                    raise ShopifyThrottled(
                        f"Shopify throttled {name} for {self.shop} {attempt} times; retry later",
                        status=status,
                        retry_after=delay,
                    )
                self.sleep(delay)
                continue
            message = f"Shopify Admin API {name} for {self.shop}: {result.log.code} (HTTP {status})"
            if status == 401:
                raise ShopifyUnauthorized(message, code=result.log.code, status=status)
            if status >= 500 or result.log.code in ("network_error", "server_error"):
                raise ShopifyTransientError(message, code=result.log.code, status=status)
            raise ShopifyQueryError(
                f"{message}: {result.response.body[:500]}", code=result.log.code, status=status
            )
        raise AssertionError("unreachable")  # pragma: no cover

    def _wait_for(self, estimate: float) -> None:
        # Check and reserve in one step: callers that waited side by side must not all find
        # the same refilled points after their sleep and overdraw the bucket together.
        while True:
            with self._lock:
                now = self.clock()
                wait = self.budget.wait_for(estimate, now)
                if wait <= 0:
                    self.budget = self.budget.reserve(estimate, now)
                    return
            self.sleep(wait)

    def _observe(self, body: Mapping[str, Any], estimate: float) -> None:
        cost = parse_cost(body)
        with self._lock:
            now = self.clock()
            self.budget = (
                self.budget.release(estimate, now)
                if cost is None
                else self.budget.observe(cost, now, reserved=estimate)
            )

    def _throttle_floor(self, estimate: float, headers: Mapping[str, str]) -> float:
        retry_after = parse_retry_after(
            next((v for k, v in headers.items() if k.lower() == "retry-after"), None)
        )
        with self._lock:
            refill = self.budget.wait_for(min(estimate, self.budget.maximum), self.clock())
        return max(refill, retry_after or 0.0)

    # ------------------------------------------------------------------ products

    def read_product(self, gid: str) -> tuple[dict[str, Any], list[dict[str, Any]]] | None:
        """The product node and all its variants (paged, up to 2,048), or None if deleted."""
        data = self.call(
            "sync_product", {"id": gid, "variantsFirst": FIRST_VARIANT_PAGE}, estimate=_READ_COST
        )
        product = data.get("product")
        if product is None:
            return None
        variants = list(product["variants"]["nodes"])
        page = product["variants"]["pageInfo"]
        while page["hasNextPage"] and len(variants) < MAX_VARIANTS_PER_PRODUCT:
            more = self.call(
                "sync_product_variants",
                {"id": gid, "first": VARIANT_PAGE, "after": page["endCursor"]},
                estimate=_PAGE_COST,
            )["product"]
            if more is None:  # deleted between pages
                return None
            variants += more["variants"]["nodes"]
            page = more["variants"]["pageInfo"]
        return product, variants

    def find_by_custom_id(self, namespace: str, key: str, value: str) -> str | None:
        """The GID of the product whose ``namespace.key`` metafield is ``value`` (the customId
        a productSet create was keyed by), or None."""
        data = self.call(
            "product_by_custom_id",
            {"identifier": {"customId": {"namespace": namespace, "key": key, "value": value}}},
            estimate=_FIND_COST,
        )
        found = data.get("productByIdentifier")
        return str(found["id"]) if found else None

    def update_variants(
        self, product_gid: str, variants: Sequence[Mapping[str, Any]]
    ) -> list[dict[str, Any]]:
        """``productVariantsBulkUpdate`` in chunks of 250; returns the updated variants. Only
        the fields in each input change: other variants, metafields and collections stay."""
        updated: list[dict[str, Any]] = []
        for chunk in chunked(list(variants)):
            payload = self.call(
                "variants_bulk_update",
                {"productId": product_gid, "variants": [dict(v) for v in chunk]},
                estimate=variants_bulk_cost(len(chunk)),
            )["productVariantsBulkUpdate"]
            _raise_user_errors("productVariantsBulkUpdate", payload)
            updated += payload["productVariants"]
        return updated

    def set_product(
        self, product_input: Mapping[str, Any], *, identifier: Mapping[str, Any] | None = None
    ) -> dict[str, Any]:
        """``productSet`` (synchronous): a create, or a full replacement keyed by ``{"id"}``
        (never by handle, which a merchant can rename). Returns the payload's product."""
        payload = self.call(
            "product_set",
            {"input": dict(product_input), "identifier": dict(identifier) if identifier else None},
            estimate=_PRODUCT_SET_COST,
        )["productSet"]
        _raise_user_errors("productSet", payload)
        return dict(payload["product"])

    def archive_product(self, gid: str) -> dict[str, Any]:
        """Set the product's status to ARCHIVED and nothing else."""
        payload = self.call("product_archive", {"id": gid}, estimate=_ARCHIVE_COST)["productUpdate"]
        _raise_user_errors("productUpdate", payload)
        return dict(payload["product"])

    def variants_by_skus(self, skus: Sequence[str]) -> list[dict[str, Any]]:
        """The variants whose SKU is exactly one of ``skus``, each ``{id, sku, product: {id,
        emanageId}}`` (sync_variants_by_sku.graphql): one query per :data:`SKUS_PER_QUERY`
        SKUs, asking for two variants a SKU (one is a match, two a shared SKU), paged on when
        a SKU is shared more widely."""
        found: list[dict[str, Any]] = []
        for start in range(0, len(skus), SKUS_PER_QUERY):
            chunk = list(skus[start : start + SKUS_PER_QUERY])
            wanted = set(chunk)
            first = min(PRODUCTS_PAGE, 2 * len(chunk))
            after: str | None = None
            while True:
                page = self.call(
                    "sync_variants_by_sku",
                    {
                        "query": " OR ".join(sku_search(sku) for sku in chunk),
                        "first": first,
                        "after": after,
                    },
                    estimate=2 + first * 3,
                )["productVariants"]
                found += [dict(n) for n in page["nodes"] if n.get("sku") in wanted]
                if not page["pageInfo"]["hasNextPage"]:
                    break
                after = page["pageInfo"]["endCursor"]
        return found

    def changed_since(self, watermark: str) -> Iterator[dict[str, Any]]:
        """``{id, updatedAt}`` of each product updated at or after ``watermark`` (ISO-8601),
        oldest first, page by page (inclusive: the caller dedupes by fingerprint)."""
        after: str | None = None
        while True:
            page = self.call(
                "sync_products_changed",
                {"first": PRODUCTS_PAGE, "after": after, "query": f"updated_at:>='{watermark}'"},
                estimate=_CHANGED_COST,
            )["products"]
            yield from page["nodes"]
            if not page["pageInfo"]["hasNextPage"]:
                return
            after = page["pageInfo"]["endCursor"]

    def start_catalog_export(self) -> dict[str, Any]:
        """Start the backfill's bulk query (bulk_catalog_inner.graphql); returns the operation."""
        payload = self.call(
            "bulk_products", {"query": load_document("bulk_catalog_inner")}, estimate=10
        )["bulkOperationRunQuery"]
        _raise_user_errors("bulkOperationRunQuery", payload)
        return dict(payload["bulkOperation"])


def sku_search(sku: str) -> str:
    """Shopify's search query for the variants with SKU ``sku``: quoted, so that spaces, colons
    and quotes in a SKU do not change the query."""
    escaped = sku.replace("\\", "\\\\").replace('"', '\\"')
    return f'sku:"{escaped}"'


def _json(text: str) -> dict[str, Any]:
    try:
        parsed = orjson.loads(text)
    except orjson.JSONDecodeError:
        return {}
    return parsed if isinstance(parsed, dict) else {}


def _is_throttled(body: Mapping[str, Any]) -> bool:
    errors = body.get("errors")
    return isinstance(errors, list) and any(
        isinstance(e, dict) and (e.get("extensions") or {}).get("code") == "THROTTLED"
        for e in errors
    )


def _raise_user_errors(mutation: str, payload: Mapping[str, Any]) -> None:
    errors = payload.get("userErrors") or []
    if errors:
        summary = "; ".join(f"{e.get('field')}: {e.get('message')}" for e in errors)
        raise ShopifyUserErrors(f"{mutation} refused the input: {summary}", user_errors=errors)
