"""Builders for test payloads and signed Shopify deliveries (no test logic here)."""

from __future__ import annotations

import base64
import hashlib
import hmac
import json
import uuid
from typing import Any


def shopify_hmac(body: bytes, secret: str) -> str:
    """X-Shopify-Hmac-Sha256 of ``body`` as Shopify computes it."""
    return base64.b64encode(hmac.new(secret.encode(), body, hashlib.sha256).digest()).decode()


def product_payload(product_id: int = 7_001_234_567, title: str = "Blue Mug") -> dict[str, Any]:
    return {
        "id": product_id,
        "title": title,
        "handle": title.lower().replace(" ", "-"),
        "status": "active",
        "admin_graphql_api_id": f"gid://shopify/Product/{product_id}",
        "updated_at": "2026-11-27T04:00:00-05:00",
        "variants": [{"id": product_id + 1, "product_id": product_id, "price": "12.00"}],
    }


def signed_delivery(
    secret: str,
    *,
    topic: str = "products/update",
    shop: str = "demo.myshopify.com",
    payload: dict[str, Any] | None = None,
    body: bytes | None = None,
    webhook_id: str | None = None,
    event_id: str | None = None,
) -> tuple[bytes, dict[str, str]]:
    """A delivery as Shopify sends it: body bytes and headers, validly signed."""
    raw = body if body is not None else json.dumps(payload or product_payload()).encode()
    headers = {
        "Content-Type": "application/json",
        "X-Shopify-Topic": topic,
        "X-Shopify-Hmac-Sha256": shopify_hmac(raw, secret),
        "X-Shopify-Shop-Domain": shop,
        "X-Shopify-API-Version": "2026-10",
        "X-Shopify-Webhook-Id": webhook_id or str(uuid.uuid4()),
        "X-Shopify-Event-Id": event_id or str(uuid.uuid4()),
        "X-Shopify-Triggered-At": "2026-11-27T09:00:00.000000000Z",
    }
    return raw, headers
