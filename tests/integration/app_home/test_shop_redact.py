"""shop/redact on shops that have everything — eManageCRM account, CTRwow account and tokens, a
pending CTRwow authorization, an approved subscription, connections, onboarding steps, webhooks
— on SQLite and PostgreSQL, checked against every table of the models: a table that holds a
shop's data (it references ``shops`` directly or through another such table, or names the shop
by ``shop_domain``) has none of the redacted shops' rows afterwards, and a table that does not
must say why in :data:`SHOP_FREE`. So a new table is either erased by shop/redact or fails here.
"""

from __future__ import annotations

from collections.abc import Iterator
from datetime import UTC, datetime, timedelta
from pathlib import Path
from typing import Any

import pytest
from sqlalchemy import ColumnElement, Table, delete, func, or_, select, update
from sqlalchemy.engine import Connection

import syncapp.schema  # noqa: F401 - registers every model on Base.metadata
from syncapp.onboarding.uninstall import revoke_ctrwow_on_uninstall
from syncapp.store.models import Base, PrivacyRequest
from syncapp.sync.models import PRODUCT, VARIANT, SyncConflict, SyncCursor, SyncLink, SyncSettings
from syncapp.web.sync_api.keys import create_key
from syncapp.worker import Worker, WorkerOptions, default_handlers
from tests.builders import signed_delivery
from tests.integration.app_home.conftest import Home, running_home
from tests.integration.app_home.test_ctrwow_connect import _needs_merchant, _start
from tests.integration.app_home.test_home_flows import choose
from tests.integration.sandbox.conftest import CLIENT_SECRET
from tests.integration.shops.conftest import handle_for

# Tables that hold nothing of a shop, and why.
SHOP_FREE = {
    "privacy_requests": "the record of each privacy request; names a shop only by a SHA-256",
    "bus_receipts": "ids of events a broker consumer settled (source and delivery id) only",
}
DOMAIN_COLUMNS = frozenset({"shop_domain"})


def shop_condition(
    table: Table, ids: list[int], domains: list[str], seen: frozenset[str] = frozenset()
) -> ColumnElement[bool] | None:
    """Rows of ``table`` belonging to the shops (``ids``, ``domains``); None: no link to shops."""
    if table.name == "shops":
        return table.c.id.in_(ids)
    conditions: list[ColumnElement[bool]] = [
        column.in_(domains) for column in table.columns if column.name in DOMAIN_COLUMNS
    ]
    for fk in table.foreign_keys:
        parent = fk.column.table
        if parent.name in seen or parent is table:
            continue
        inner = shop_condition(parent, ids, domains, seen | {table.name})
        if inner is not None:
            conditions.append(fk.parent.in_(select(fk.column).where(inner)))
    return or_(*conditions) if conditions else None


def rows_per_table(conn: Connection, ids: list[int], domains: list[str]) -> dict[str, int]:
    """For every table holding shops' data, how many rows it has of these shops."""
    counts = {}
    for table in Base.metadata.sorted_tables:
        condition = shop_condition(table, ids, domains)
        if condition is None:
            assert table.name in SHOP_FREE, (
                f"{table.name} has no link to a shop: reference shops.id (ON DELETE CASCADE) if "
                "it holds a shop's data, or add it to SHOP_FREE saying why it holds none"
            )
            continue
        counts[table.name] = conn.execute(
            select(func.count()).select_from(table).where(condition)
        ).scalar_one()
    return counts


@pytest.fixture
def home_db(tmp_path: Path, database_url: str) -> Iterator[Home]:
    with running_home(tmp_path, database_url) as home:
        yield home


def deliver_order(home: Home, shop: str, order_id: int) -> None:
    body, headers = signed_delivery(
        CLIENT_SECRET,
        topic="orders/create",
        shop=shop,
        payload={"id": order_id, "email": f"buyer{order_id}@example.com"},
    )
    response = home.system.app.post("/webhooks/shopify", content=body, headers=headers)
    assert response.status_code == 200, response.text


def subscribe(home: Home, shop: str, plan: str) -> None:
    """Choose ``plan``, approve the charge, let the worker record the subscription."""
    home.approve(choose(home, shop, plan).json()["confirmation_url"])
    home.system.wait_for_event(shop, "app_subscriptions/update")
    home.system.drain()


def sync_state(home: Home, shop: str) -> None:
    """A linked product and variant, a conflict, a cursor and settings of ``shop``: written
    directly until the sync engine writes them through a real sync (issue 10)."""
    with home.system.runtime.sessions.begin() as session:
        (shop_id,) = shop_ids(home, shop)
        product = SyncLink(shop_id=shop_id, kind=PRODUCT, shopify_gid="gid://shopify/Product/1")
        session.add(product)
        session.flush()
        variant = SyncLink(shop_id=shop_id, kind=VARIANT, parent_id=product.id, sku="MUG-1")
        session.add(variant)
        session.flush()
        session.add(SyncConflict(shop_id=shop_id, link_id=variant.id, kind="field", reason="t"))
        session.add(SyncCursor(shop_id=shop_id, name="backfill", position={"line": 1}))
        session.add(SyncSettings(shop_id=shop_id))
    create_key(home.system.runtime.sessions, name="ops", scopes=["sync:read"], shop=shop)


def shop_ids(home: Home, *domains: str) -> list[int]:
    with home.system.runtime.engine.connect() as conn:
        shops = Base.metadata.tables["shops"]
        return list(conn.execute(select(shops.c.id).where(shops.c.domain.in_(domains))).scalars())


def redact(home: Home, shop: str, worker: Worker) -> None:
    response = home.system.control.post(f"/_sandbox/shops/{shop}/compliance/shop-redact")
    assert response.status_code == 200, response.text
    home.system.wait_for_event(shop, "shop/redact")
    while worker.run_once():
        pass


def test_shop_redact_erases_every_table_of_fully_signed_up_shops(
    home_db: Home, request: pytest.FixtureRequest
) -> None:
    """Two shops with rows in every shop table between them are redacted — one the way
    Shopify does it (uninstalled 48 h before), one whose app/uninstalled was lost: afterwards
    no table holds a row of either, and a third shop keeps every row it had."""
    home, system = home_db, home_db.system
    full = system.create_shop(handle_for(request, "f"))
    home.sign_up(full)
    subscribe(home, full, "pro")
    pending = _needs_merchant(home, request)  # eManageCRM done, CTRwow waits for the merchant
    _start(home, pending)  # a pending CTRwow authorization
    kept = system.create_shop(handle_for(request, "k"))
    home.sign_up(kept)
    subscribe(home, kept, "pro")
    for number, shop in enumerate((full, pending, kept)):
        deliver_order(home, shop, 1000 + number)
        sync_state(home, shop)

    engine = system.runtime.engine
    redacted_ids, kept_ids = shop_ids(home, full, pending), shop_ids(home, kept)
    with engine.connect() as conn:
        before = rows_per_table(conn, redacted_ids, [full, pending])
        kept_before = rows_per_table(conn, kept_ids, [kept])
    empty = sorted(name for name, count in before.items() if count == 0)
    assert empty == [], f"extend this test: the redacted shops have no rows in {empty}"

    worker = Worker(
        system.runtime,
        options=WorkerOptions(backoff_base_seconds=0.0, max_attempts=1),
        handlers=default_handlers(uninstall_hooks=(revoke_ctrwow_on_uninstall(system.settings),)),
    )
    system.control.post(f"/_sandbox/shops/{full}/uninstall")
    system.wait_for_event(full, "app/uninstalled")
    while worker.run_once():
        pass
    # Shopify sends shop/redact 48 hours after the uninstall (earlier ones are refused).
    with engine.begin() as conn:
        shops = Base.metadata.tables["shops"]
        conn.execute(
            update(shops)
            .where(shops.c.domain == full)
            .values(uninstalled_at=datetime.now(UTC) - timedelta(hours=49))
        )
    # The other was uninstalled at Shopify (its tokens revoked) but its app/uninstalled was
    # lost: shop/redact asks Shopify, which refuses the token, so the redaction goes ahead.
    system.control.post(f"/_sandbox/shops/{pending}/uninstall")
    lost = system.wait_for_event(pending, "app/uninstalled")
    with engine.begin() as conn:
        events = Base.metadata.tables["inbound_events"]
        conn.execute(delete(events).where(events.c.id == lost.id))
    redact(home, full, worker)
    redact(home, pending, worker)

    with engine.connect() as conn:
        after = rows_per_table(conn, redacted_ids, [full, pending])
        kept_after = rows_per_table(conn, kept_ids, [kept])
        requests: list[Any] = list(
            conn.execute(select(PrivacyRequest.topic, PrivacyRequest.summary)).all()
        )
    assert {name: count for name, count in after.items() if count} == {}
    assert kept_after == kept_before
    assert [topic for topic, _ in requests] == ["shop/redact", "shop/redact"]
    assert all(full not in str(summary) and pending not in str(summary) for _, summary in requests)
