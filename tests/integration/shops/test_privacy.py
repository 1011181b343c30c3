"""Privacy webhooks from the sandbox, processed by the worker: after shop/redact nothing of
the shop remains in any table; customer redaction and data requests touch only that customer."""

from __future__ import annotations

import json
import time
from datetime import UTC, datetime, timedelta
from typing import Any

import pytest
from sqlalchemy import String, Text, func, inspect, select, text, update

from syncapp.bus.models import InboundEvent
from syncapp.store.models import PrivacyRequest, Shop
from tests.builders import signed_delivery
from tests.integration.sandbox.conftest import CLIENT_SECRET
from tests.integration.shops.conftest import System, handle_for

# The name has letters outside hex on purpose: SQLite's LIKE is case-insensitive, and a
# short name like "Ada" turns up inside random UUIDs (webhook and event ids).
CUSTOMER = {
    "id": 7_301,
    "email": "ada@example.com",
    "phone": "+15550001111",
    "first_name": "Zelphine",
}


def deliver(system: System, topic: str, shop: str, payload: dict[str, Any]) -> None:
    body, headers = signed_delivery(CLIENT_SECRET, topic=topic, shop=shop, payload=payload)
    assert system.app.post("/webhooks/shopify", content=body, headers=headers).status_code == 200


def order(order_id: int, customer: dict[str, Any]) -> dict[str, Any]:
    return {
        "id": order_id,
        "admin_graphql_api_id": f"gid://shopify/Order/{order_id}",
        "email": customer["email"],
        "customer": {"first_name": "Someone", **customer},
        "line_items": [{"id": order_id * 10, "title": "Blue Mug", "quantity": 1}],
    }


def rows_mentioning(system: System, needles: list[str], shop_ids: list[int]) -> list[str]:
    """Every (table, column) holding one of ``needles`` or a ``shop_id`` in ``shop_ids``."""
    found = []
    engine = system.runtime.engine
    inspector = inspect(engine)
    with engine.connect() as conn:
        for table in inspector.get_table_names():
            if table == "alembic_version":
                continue
            for column in inspector.get_columns(table):
                name = column["name"]
                if isinstance(column["type"], (String, Text)):
                    for needle in needles:
                        hit = conn.execute(
                            text(f'SELECT count(*) FROM "{table}" WHERE "{name}" LIKE :n'),  # noqa: S608
                            {"n": f"%{needle}%"},
                        ).scalar_one()
                        if hit:
                            found.append(f"{table}.{name} ~ {needle}")
                if name == "shop_id":
                    for shop_id in shop_ids:
                        hit = conn.execute(
                            text(f'SELECT count(*) FROM "{table}" WHERE shop_id = :i'),  # noqa: S608
                            {"i": shop_id},
                        ).scalar_one()
                        if hit:
                            found.append(f"{table}.shop_id = {shop_id}")
    return found


def test_after_uninstall_and_shop_redact_nothing_of_the_shop_remains(
    system: System, request: pytest.FixtureRequest
) -> None:
    """Install, receive webhooks, request an export, uninstall, shop/redact: a scan of every
    table finds neither the domain, the shop's Shopify id nor its row id; the redaction is
    recorded without naming the shop, and its export files are gone."""
    shop = system.create_shop(handle_for(request))
    other = system.create_shop(handle_for(request, "o"))
    system.install(shop)
    system.install(other)
    with system.runtime.sessions() as session:
        gid = session.scalar(text("SELECT shopify_gid FROM shops WHERE domain = :d"), {"d": shop})
        row_id = session.scalar(text("SELECT id FROM shops WHERE domain = :d"), {"d": shop})
    deliver(system, "orders/create", shop, order(1001, CUSTOMER))
    deliver(system, "orders/create", other, order(2001, CUSTOMER))
    system.control.post(
        f"/_sandbox/shops/{shop}/compliance/customers-data_request",
        json={"customer": CUSTOMER, "data_request_id": 99},
    )
    system.wait_for_event(shop, "customers/data_request")
    system.drain()
    assert (system.settings.exports_dir / shop / "99.json").is_file()

    system.control.post(f"/_sandbox/shops/{shop}/uninstall")
    system.wait_for_event(shop, "app/uninstalled")
    system.drain()
    # Shopify sends shop/redact 48 hours after the uninstall; earlier ones are refused.
    with system.runtime.sessions.begin() as session:
        session.execute(
            update(Shop)
            .where(Shop.domain == shop)
            .values(uninstalled_at=datetime.now(UTC) - timedelta(hours=49))
        )
    system.control.post(f"/_sandbox/shops/{shop}/compliance/shop-redact")
    system.wait_for_event(shop, "shop/redact")
    system.drain()

    handle = shop.removesuffix(".myshopify.com")
    assert rows_mentioning(system, [handle, str(gid)], [int(row_id)]) == []
    assert not (system.settings.exports_dir / shop).exists()
    with system.runtime.sessions() as session:
        records = session.scalars(select(PrivacyRequest).order_by(PrivacyRequest.id)).all()
        assert [r.topic for r in records] == ["customers/data_request", "shop/redact"]
        assert all(r.completed_at is not None and r.export_path is None for r in records)
        # The other shop is untouched.
        remaining = session.scalars(
            select(InboundEvent.shop_domain).where(InboundEvent.source == "shopify")
        ).all()
        assert remaining == [other]


def test_customers_redact_erases_only_that_customers_data(
    sqlite_system: System, request: pytest.FixtureRequest
) -> None:
    """Payloads naming the customer are redacted (keeping the order id), others untouched."""
    system = sqlite_system
    shop = system.create_shop(handle_for(request))
    system.install(shop)
    someone_else = {"id": 8_888, "email": "bob@example.com", "phone": None}
    deliver(system, "orders/create", shop, order(1001, CUSTOMER))
    deliver(system, "orders/create", shop, order(1002, someone_else))
    system.control.post(
        f"/_sandbox/shops/{shop}/compliance/customers-redact",
        json={"customer": CUSTOMER, "orders": [1001]},
    )
    system.wait_for_event(shop, "customers/redact")
    system.drain()
    assert rows_mentioning(system, [CUSTOMER["email"], CUSTOMER["phone"], "Zelphine"], []) == []
    with system.runtime.sessions() as session:
        documents = [
            (e.topic, json.loads(system.runtime.payload_of(e)))
            for e in session.scalars(select(InboundEvent))
        ]
        payloads = {topic + str(doc.get("id")): doc for topic, doc in documents}
        assert payloads["orders/create1001"] == {
            "redacted": True,
            "id": 1001,
            "admin_graphql_api_id": "gid://shopify/Order/1001",
        }
        assert payloads["orders/create1002"]["customer"]["email"] == "bob@example.com"
        record = session.scalar(select(PrivacyRequest))
        assert record is not None
        assert record.topic == "customers/redact"
        assert json.loads(record.summary or "{}")["events_redacted"] == 2


def test_a_customer_data_request_exports_what_is_held_about_the_customer(
    sqlite_system: System, request: pytest.FixtureRequest
) -> None:
    """The export holds every payload naming the customer and nothing about anyone else."""
    system = sqlite_system
    shop = system.create_shop(handle_for(request))
    system.install(shop)
    deliver(system, "orders/create", shop, order(1001, CUSTOMER))
    deliver(system, "orders/create", shop, order(1002, {"id": 5, "email": "x@example.com"}))
    system.control.post(
        f"/_sandbox/shops/{shop}/compliance/customers-data_request",
        json={"customer": CUSTOMER, "orders": [1001], "data_request_id": 4242},
    )
    system.wait_for_event(shop, "customers/data_request")
    system.drain()
    export = json.loads((system.settings.exports_dir / shop / "4242.json").read_text())
    assert export["customer"]["id"] == str(CUSTOMER["id"])
    assert [e["payload"]["id"] for e in export["inbound_events"]] == [1001]
    assert "x@example.com" not in json.dumps(export)
    with system.runtime.sessions() as session:
        record = session.scalar(select(PrivacyRequest))
        assert record is not None
        assert (record.request_ref, record.export_path) == ("4242", f"{shop}/4242.json")


def test_shop_redact_is_refused_while_installed_and_within_48_hours_of_the_uninstall(
    sqlite_system: System, request: pytest.FixtureRequest
) -> None:
    """Installed (Shopify still accepts its token): refused. Uninstalled an hour ago: refused.
    Both dead-lettered with the reason; the shop, its tokens and its events stay."""
    system = sqlite_system
    shop = system.create_shop(handle_for(request))
    system.install(shop)
    deliver(system, "orders/create", shop, order(1001, CUSTOMER))
    system.control.post(f"/_sandbox/shops/{shop}/compliance/shop-redact")
    system.wait_for_event(shop, "shop/redact")
    system.drain()
    system.control.post(f"/_sandbox/shops/{shop}/uninstall")
    system.wait_for_event(shop, "app/uninstalled")
    system.drain()
    with system.runtime.sessions.begin() as session:
        session.execute(
            update(Shop)
            .where(Shop.domain == shop)
            .values(uninstalled_at=datetime.now(UTC) - timedelta(hours=1))
        )
    system.control.post(f"/_sandbox/shops/{shop}/compliance/shop-redact")
    deadline = time.monotonic() + 10
    while True:
        with system.runtime.sessions() as session:
            count = session.scalar(select(func.count()).where(InboundEvent.topic == "shop/redact"))
        if count == 2:
            break
        assert time.monotonic() < deadline, "the second shop/redact did not arrive"
        time.sleep(0.05)
    system.drain()
    with system.runtime.sessions() as session:
        redacts = session.scalars(
            select(InboundEvent)
            .where(InboundEvent.topic == "shop/redact")
            .order_by(InboundEvent.id)
        ).all()
        assert [(r.status, (r.last_error or "").split(":")[1].strip()) for r in redacts] == [
            ("dead", "shop/redact refused"),
            ("dead", "shop/redact refused"),
        ]
        assert "installed" in (redacts[0].last_error or "")
        assert "uninstalled 1.0 h ago" in (redacts[1].last_error or "")
        assert session.scalar(select(Shop.id).where(Shop.domain == shop)) is not None
        assert (
            session.scalar(select(InboundEvent.id).where(InboundEvent.topic == "orders/create"))
            is not None
        )
        assert session.scalars(select(PrivacyRequest)).all() == []
