"""The bus's pure parts: the retry policy, envelopes and partition keys."""

from __future__ import annotations

from datetime import UTC, datetime

import pytest
from hypothesis import given
from hypothesis import strategies as st

from syncapp.bus.envelope import (
    CloudEvent,
    EventType,
    InvalidEvent,
    webhook_partition_key,
    webhook_type,
)
from syncapp.bus.retry import RetryPolicy, backoff_delay


@given(
    st.integers(1, 200),
    st.floats(0.001, 100),
    st.floats(0.001, 10_000),
    st.floats(0, 1, exclude_max=True),
)
def test_the_delay_lies_between_half_and_all_of_the_capped_exponential(
    attempt: int, base: float, cap: float, jitter: float
) -> None:
    """Equal jitter: the delay is within [d/2, d] for d = min(cap, base * 2**(attempt-1))."""
    policy = RetryPolicy(base_seconds=base, cap_seconds=max(cap, base))
    nominal = min(policy.cap_seconds, base * 2.0 ** min(attempt - 1, 63))
    delay = backoff_delay(attempt, policy=policy, jitter=jitter)
    assert nominal / 2 - 1e-9 <= delay <= nominal + 1e-9


@given(st.integers(1, 30), st.floats(0.001, 10), st.floats(0, 3600))
def test_retry_after_is_a_floor(attempt: int, base: float, retry_after: float) -> None:
    """A server's Retry-After is never undercut."""
    policy = RetryPolicy(base_seconds=base, cap_seconds=900)
    assert backoff_delay(attempt, policy=policy, jitter=0.0, retry_after=retry_after) >= retry_after


def test_the_budget_of_attempts_is_exhausted_at_max_attempts() -> None:
    """The max_attempts-th failure makes a dead letter, not the one before."""
    policy = RetryPolicy(max_attempts=3)
    assert [policy.exhausted(n) for n in (1, 2, 3)] == [False, False, True]


def test_an_envelope_round_trips_through_structured_json() -> None:
    """to_dict/from_dict keep every attribute and extension."""
    event = CloudEvent(
        id="1",
        source="urn:emanagecrm:syncapp",
        type="com.emanagecrm.syncapp.product.changed.v1",
        subject="Product/1",
        time=datetime(2026, 12, 1, tzinfo=UTC),
        partitionkey="a.myshopify.com/Product/1",
        data={"x": 1},
        extensions={"shopifytopic": "products/update"},
    )
    assert CloudEvent.from_dict(event.to_dict()) == event
    assert event.to_dict()["specversion"] == "1.0"


def test_an_unversioned_event_type_is_refused() -> None:
    """Types end in .v<N>: a breaking change is a new version."""
    with pytest.raises(InvalidEvent, match="version"):
        EventType("com.emanagecrm.syncapp.product.changed", "x", {})


@pytest.mark.parametrize(
    ("topic", "body", "key"),
    [
        ("app/uninstalled", b'{"id": 5}', "s.myshopify.com/shop"),
        ("customers/redact", b'{"customer": {"id": 5}}', "s.myshopify.com/shop"),
        (
            "products/update",
            b'{"id": 7, "admin_graphql_api_id": "gid://shopify/Product/7"}',
            "s.myshopify.com/Product/7",
        ),
        ("orders/create", b'{"id": 9}', "s.myshopify.com/orders/9"),
        ("products/update", b"not json", "s.myshopify.com/shop"),
    ],
)
def test_a_webhooks_partition_key_is_its_shop_and_object(topic: str, body: bytes, key: str) -> None:
    """Shop-wide topics key on the shop; object topics on the object the payload names."""
    assert webhook_partition_key("s.myshopify.com", topic, body) == key


def test_a_webhook_topic_becomes_a_versioned_cloudevents_type() -> None:
    assert webhook_type("app/scopes_update") == "com.shopify.webhook.app.scopes_update.v1"
