"""The webhook signature the sandbox computes is the one Shopify's own client verifies, for any
body, and no other body passes with it."""

from __future__ import annotations

from hypothesis import given
from hypothesis import strategies as st
from shopify_app import ShopifyApp

from syncapp.sandbox.shopify.webhooks import sign

from .conftest import CLIENT_ID, CLIENT_SECRET

APP = ShopifyApp(client_id=CLIENT_ID, client_secret=CLIENT_SECRET)


def accepted(body: str, signature: str) -> bool:
    result = APP.verify_webhook_req(
        {
            "method": "POST",
            "headers": {
                "X-Shopify-Hmac-Sha256": signature,
                "X-Shopify-Shop-Domain": "demo.myshopify.com",
                "X-Shopify-Topic": "products/update",
            },
            "url": "https://syncapp.example.com/webhooks/shopify",
            "body": body,
        }
    )
    return result.ok


@given(st.text())
def test_any_signed_body_is_accepted_by_shopifyapp(body: str) -> None:
    """sign() over the UTF-8 body is what verify_webhook_req expects."""
    assert accepted(body, sign(body.encode("utf-8"), CLIENT_SECRET))


@given(st.text(), st.text())
def test_a_signature_does_not_fit_another_body(body: str, other: str) -> None:
    """A signature made for one body is refused for any different body."""
    signature = sign(body.encode("utf-8"), CLIENT_SECRET)

    assert accepted(other, signature) == (other == body)
