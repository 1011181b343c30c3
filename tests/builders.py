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


def order_payload(
    order_id: int = 5_501_234_567_890,
    *,
    email: str = "zelphine.quartermain@example.com",
    phone: str = "+16135550142",
    customer_id: int = 7_301_234_567,
) -> dict[str, Any]:
    """An ``orders/create`` body shaped like Shopify's (REST Order, trimmed of nothing that
    names the buyer: e-mail and phone appear where Shopify puts them)."""
    address = {
        "first_name": "Zelphine",
        "last_name": "Quartermain",
        "address1": "150 Elgin St",
        "city": "Ottawa",
        "province": "Ontario",
        "country": "Canada",
        "zip": "K2P 1L4",
        "phone": phone,
        "name": "Zelphine Quartermain",
        "country_code": "CA",
        "province_code": "ON",
    }
    return {
        "id": order_id,
        "admin_graphql_api_id": f"gid://shopify/Order/{order_id}",
        "name": "#1001",
        "order_number": 1001,
        "email": email,
        "contact_email": email,
        "phone": phone,
        "created_at": "2026-11-27T04:00:00-05:00",
        "currency": "USD",
        "financial_status": "paid",
        "total_price": "24.00",
        "browser_ip": "203.0.113.7",
        "billing_address": address,
        "shipping_address": address,
        "customer": {
            "id": customer_id,
            "admin_graphql_api_id": f"gid://shopify/Customer/{customer_id}",
            "email": email,
            "phone": phone,
            "first_name": "Zelphine",
            "last_name": "Quartermain",
            "default_address": {**address, "id": customer_id + 1, "customer_id": customer_id},
        },
        "line_items": [
            {
                "id": order_id + 1,
                "product_id": 7_001_234_567,
                "variant_id": 7_001_234_568,
                "title": "Blue Mug",
                "quantity": 2,
                "price": "12.00",
            }
        ],
    }
