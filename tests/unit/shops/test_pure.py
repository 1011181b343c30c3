"""Pure functions of the shops domain and the worker (property-based where it fits)."""

from __future__ import annotations

import json
from datetime import UTC, datetime
from typing import Any

from hypothesis import given
from hypothesis import strategies as st

from syncapp.shops.privacy import mentions_customer, redacted_payload, shop_hash
from syncapp.shops.uninstall import parse_triggered_at

CUSTOMER_ID = "7301"
EMAIL = "ada@example.com"

# JSON-like documents that never contain the customer's id, email or phone.
safe_text = st.text(max_size=12).filter(lambda t: t.strip().casefold() not in {EMAIL, "+1555"})
safe_scalars = st.one_of(st.none(), st.booleans(), st.integers(-5000, 5000), safe_text)
documents = st.recursive(
    safe_scalars,
    lambda inner: st.one_of(
        st.lists(inner, max_size=4),
        st.dictionaries(
            safe_text.filter(lambda k: k not in {"customer", "customer_id"}), inner, max_size=4
        ),
    ),
    max_leaves=20,
)


def _mentions(document: Any) -> bool:
    return mentions_customer(document, customer_id=CUSTOMER_ID, email=EMAIL, phone="+1555")


@given(documents)
def test_a_document_without_the_customers_identifiers_does_not_mention_them(doc: Any) -> None:
    """No customer object with the id, no customer_id, no email or phone: no match."""
    assert not _mentions(doc)


@given(documents, st.sampled_from(["customer", "email", "customer_id", "gid"]), st.data())
def test_the_customer_is_found_wherever_it_is_nested(
    doc: Any, how: str, data: st.DataObject
) -> None:
    """The customer object, customer_id, email or GID anywhere inside a document matches."""
    needle: dict[str, Any] = {
        "customer": {"customer": {"id": int(CUSTOMER_ID), "first_name": "Ada"}},
        "email": {"contact_email": "  ADA@example.com "},
        "customer_id": {"customer_id": CUSTOMER_ID},
        "gid": {"ref": f"gid://shopify/Customer/{CUSTOMER_ID}"},
    }[how]
    depth = data.draw(st.integers(0, 3))
    wrapped: Any = needle
    for level in range(depth):
        wrapped = [doc, wrapped] if level % 2 else {"outer": wrapped, "other": doc}
    assert _mentions(wrapped)


def test_another_customer_with_the_same_number_elsewhere_does_not_match() -> None:
    """An order id equal to the customer id is not the customer."""
    assert not _mentions({"id": int(CUSTOMER_ID), "customer": {"id": 1}, "total": CUSTOMER_ID})


def test_a_redacted_order_keeps_only_its_ids() -> None:
    """Orders keep id and GID (the sync engine re-reads them); everything else goes."""
    kept = json.loads(
        redacted_payload("orders/create", {"id": 5, "admin_graphql_api_id": "g", "email": EMAIL})
    )
    assert kept == {"redacted": True, "id": 5, "admin_graphql_api_id": "g"}


def test_a_redacted_compliance_payload_keeps_nothing() -> None:
    """A customers/* payload is the request itself: only the marker remains."""
    assert json.loads(redacted_payload("customers/redact", {"id": 5})) == {"redacted": True}


def test_the_shop_hash_does_not_contain_the_domain() -> None:
    """privacy_requests names shops by a SHA-256 that does not contain the domain."""
    digest = shop_hash("demo.myshopify.com")
    assert len(digest) == 64
    assert "demo" not in digest


def test_shopifys_nanosecond_trigger_time_is_parsed() -> None:
    """``2026-11-27T09:00:00.123456789Z`` keeps microseconds and is UTC."""
    assert parse_triggered_at("2026-11-27T09:00:00.123456789Z") == datetime(
        2026, 11, 27, 9, 0, 0, 123456, tzinfo=UTC
    )


def test_a_whole_second_or_offset_trigger_time_is_parsed() -> None:
    """Seconds precision and explicit offsets are accepted too."""
    assert parse_triggered_at("2026-11-27T04:00:00-05:00") == datetime(
        2026, 11, 27, 9, 0, tzinfo=UTC
    )


def test_an_unreadable_trigger_time_is_none() -> None:
    """Garbage or a missing header yields None (the received time is used instead)."""
    assert parse_triggered_at("yesterday") is None
    assert parse_triggered_at(None) is None
