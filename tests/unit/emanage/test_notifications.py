"""The notification contract's pure parts: the Stripe-style signature (what it accepts and
refuses, whatever the body, secret or clock), the body checks, and the partition keys; and the
sandbox signs exactly as the connector verifies."""

from __future__ import annotations

import uuid

from hypothesis import given
from hypothesis import strategies as st

from syncapp.connectors.emanage.notifications import (
    TOLERANCE_SECONDS,
    Notification,
    parse_notification,
    sign,
    verify_signature,
)
from syncapp.sandbox.emanage.delivery import signature as sandbox_signature
from syncapp.web.emanage_webhooks import notification_partition_key

secrets_ = st.text(st.characters(min_codepoint=33, max_codepoint=126), min_size=32, max_size=64)
bodies = st.binary(max_size=512)
times = st.integers(min_value=1_000_000_000, max_value=4_000_000_000)


@given(
    secret=secrets_, body=bodies, t=times, skew=st.integers(-TOLERANCE_SECONDS, TOLERANCE_SECONDS)
)
def test_a_signature_within_the_window_verifies(
    secret: str, body: bytes, t: int, skew: int
) -> None:
    header = sign(secret, t, body)
    assert header == sandbox_signature(secret, t, body)
    assert verify_signature(header, body, [b"x" * 32, secret.encode()], now=t + skew) is None


@given(secret=secrets_, body=bodies, t=times, skew=st.integers(TOLERANCE_SECONDS + 1, 10**6))
def test_a_signature_outside_the_window_is_stale(
    secret: str, body: bytes, t: int, skew: int
) -> None:
    header = sign(secret, t, body)
    for now in (t + skew, t - skew):
        assert verify_signature(header, body, [secret.encode()], now=now) == "stale"


@given(secret=secrets_, body=bodies, t=times, flip=st.integers(min_value=0))
def test_any_change_to_the_body_or_timestamp_breaks_the_signature(
    secret: str, body: bytes, t: int, flip: int
) -> None:
    header = sign(secret, t, body)
    changed = (
        body + b"!"
        if not body
        else bytes(b ^ (1 if i == flip % len(body) else 0) for i, b in enumerate(body))
    )
    assert verify_signature(header, changed, [secret.encode()], now=t) == "mismatch"
    moved = header.replace(f"t={t},", f"t={t + 1},")
    assert verify_signature(moved, body, [secret.encode()], now=t) == "mismatch"


@given(secret=secrets_, other=secrets_, body=bodies, t=times)
def test_another_secret_does_not_verify(secret: str, other: str, body: bytes, t: int) -> None:
    header = sign(other, t, body)
    expected = None if other == secret else "mismatch"
    assert verify_signature(header, body, [secret.encode()], now=t) == expected


@given(header=st.text(max_size=200))
def test_arbitrary_headers_never_verify(header: str) -> None:
    assert verify_signature(header, b"{}", [b"s" * 32], now=1_700_000_000) is not None


def test_header_shapes() -> None:
    good = sign("s" * 32, 1_700_000_000, b"{}")
    mac = good.split("v1=")[1]
    now = 1_700_000_000
    secret = [b"s" * 32]
    assert verify_signature("", b"{}", secret, now=now) == "missing"
    assert verify_signature("t=1700000000", b"{}", secret, now=now) == "malformed"
    assert verify_signature(f"v1={mac}", b"{}", secret, now=now) == "malformed"
    assert verify_signature(f"t=1700000000,v1={mac.upper()}", b"{}", secret, now=now) == "malformed"
    assert verify_signature(f"t=x,v1={mac}", b"{}", secret, now=now) == "malformed"
    assert verify_signature(good + ",t=1", b"{}", secret, now=now) == "malformed"
    # Several v1 (a sender mid-rotation) and unknown schemes: one match is enough.
    assert (
        verify_signature(f"t={now},v1={'0' * 64},v0=abc,v1={mac}", b"{}", secret, now=now) is None
    )


def _body(**over: object) -> dict[str, object]:
    event_id = str(uuid.uuid4())
    return {
        "id": event_id,
        "type": "product.updated",
        "occurredAt": "2026-12-07T12:00:00Z",
        "accountId": str(uuid.uuid4()),
        "data": {"id": 917701},
        **over,
    }


def test_parse_checks_every_field() -> None:
    body = _body()
    parsed = parse_notification(body, str(body["id"]).upper())
    assert isinstance(parsed, Notification)
    assert parsed.product_id == "917701"
    for bad in (
        _body(id="x"),
        _body(type="order.created"),
        _body(accountId=None),
        _body(occurredAt=""),
        _body(data=[1]),
    ):
        assert isinstance(parse_notification(bad, str(bad["id"])), str)
    assert isinstance(parse_notification(body, str(uuid.uuid4())), str)
    assert isinstance(parse_notification([body], str(body["id"])), str)


def _notification(data: dict[str, object]) -> Notification:
    body = _body(data=data)
    parsed = parse_notification(body, str(body["id"]))
    assert isinstance(parsed, Notification)
    return parsed


def test_partition_keys_follow_the_shopify_product_when_linked() -> None:
    shop = "keys.myshopify.com"
    for ref in (42, "42", "gid://shopify/Product/42"):
        linked = _notification({"id": 9, "externalRefs": {"shopifyProductId": ref}})
        assert notification_partition_key(shop, linked) == f"{shop}/Product/42"
    for ref in (None, True, 0, -3, "gid://shopify/Variant/42", "42a", {"id": 42}):
        unlinked = _notification({"id": 9, "externalRefs": {"shopifyProductId": ref}})
        assert notification_partition_key(shop, unlinked) == f"{shop}/EmanageProduct/9"
    assert notification_partition_key(shop, _notification({"name": "no id"})) == f"{shop}/shop"
