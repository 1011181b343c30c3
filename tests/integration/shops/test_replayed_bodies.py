"""Issue 7 item 1: a signed body replayed under another topic, shop or webhook id changes no
shop's data.

Shopify signs only the body. Two shops are installed from the sandbox; genuine deliveries of
every handled topic (and of products/orders) for shop A are processed; then each of those
signed bodies is replayed under every handled topic, for shop A and for shop B, each time with
a new webhook id, and the worker runs. Every table (shops, tokens, connections, onboarding,
subscriptions, privacy records, the earlier events) and the export files must be exactly as
before; each replay ends dead-lettered with a reason or done without effect.
"""

from __future__ import annotations

import json
from datetime import UTC, datetime
from pathlib import Path
from typing import Any

import pytest
from sqlalchemy import func, inspect, select, text

from syncapp.billing.models import AppSubscription
from syncapp.bus.models import InboundEvent
from syncapp.sandbox.shopify.oauth import load_access_scopes
from syncapp.shops.payloads import shop_gid_id
from syncapp.store.models import Shop
from syncapp.worker import default_handlers
from tests.builders import product_payload, signed_delivery
from tests.integration.sandbox.conftest import APP_TOML, CLIENT_SECRET
from tests.integration.shops.conftest import System, handle_for

HANDLED = sorted(default_handlers())
CUSTOMER = {"id": 7_301, "email": "zelphine@example.com", "phone": "+15550001111"}


def _post(system: System, topic: str, shop: str, body: bytes) -> None:
    _, headers = signed_delivery(CLIENT_SECRET, topic=topic, shop=shop, body=body)
    assert system.app.post("/webhooks/shopify", content=body, headers=headers).status_code == 200


def _captured(shop: str, shop_id: int) -> dict[str, bytes]:
    """Bodies of genuine deliveries to shop A, as Shopify would sign them (in the order
    Shopify would send them: a data request before the redaction)."""
    now = datetime.now(UTC).isoformat()
    order = {
        "id": 1001,
        "admin_graphql_api_id": "gid://shopify/Order/1001",
        "email": CUSTOMER["email"],
        "phone": CUSTOMER["phone"],
        "customer": {"first_name": "Zelphine", **CUSTOMER},
    }
    bodies: dict[str, Any] = {
        "products/update": product_payload(),
        "orders/create": order,
        "app/uninstalled": {
            "id": shop_id,
            "name": "A",
            "domain": shop,
            "myshopify_domain": shop,
            "email": "owner@example.com",
        },
        "app/scopes_update": {
            "id": 1,
            "previous": ["read_products"],
            "current": load_access_scopes(APP_TOML).split(","),
            "updated_at": now,
        },
        "shop/redact": {"shop_id": shop_id, "shop_domain": shop},
        "customers/data_request": {
            "shop_id": shop_id,
            "shop_domain": shop,
            "customer": CUSTOMER,
            "orders_requested": [1001],
            "data_request": {"id": 55},
        },
        "customers/redact": {
            "shop_id": shop_id,
            "shop_domain": shop,
            "customer": CUSTOMER,
            "orders_to_redact": [1001],
        },
        "app_subscriptions/update": {
            "app_subscription": {
                "admin_graphql_api_id": "gid://shopify/AppSubscription/900",
                "name": "Growth",
                "status": "CANCELLED",
                "admin_graphql_api_shop_id": f"gid://shopify/Shop/{shop_id}",
                "updated_at": now,
            }
        },
    }
    return {topic: json.dumps(body).encode() for topic, body in bodies.items()}


def _snapshot(system: System, before_id: int) -> dict[str, Any]:
    """Every row of every table (events: those stored before ``before_id``) and every file."""
    engine = system.runtime.engine
    tables: dict[str, Any] = {}
    with engine.connect() as conn:
        for table in sorted(inspect(engine).get_table_names()):
            where = f" WHERE id < {before_id}" if table == "inbound_events" else ""
            rows = conn.execute(text(f'SELECT * FROM "{table}"{where}')).all()  # noqa: S608
            tables[table] = sorted(tuple(str(v) for v in row) for row in rows)
    exports: Path = system.settings.exports_dir
    files = {
        str(p.relative_to(exports)): p.read_bytes()
        for p in sorted(exports.rglob("*"))
        if p.is_file()
    }
    return {"tables": tables, "files": files}


@pytest.mark.parametrize("captured_topic", sorted(_captured("a.myshopify.com", 1)))
def test_a_replayed_body_changes_no_shops_data(
    system: System, request: pytest.FixtureRequest, captured_topic: str
) -> None:
    shop_a = system.create_shop(handle_for(request, "a"))
    shop_b = system.create_shop(handle_for(request, "b"))
    system.install(shop_a)
    system.install(shop_b)
    with system.runtime.sessions.begin() as session:
        shops = {s.domain: s for s in session.scalars(select(Shop))}
        for number, domain in ((900, shop_a), (901, shop_b)):
            session.add(
                AppSubscription(
                    shop_id=shops[domain].id,
                    subscription_gid=f"gid://shopify/AppSubscription/{number}",
                    plan="growth",
                    name="Growth",
                    status="ACTIVE",
                )
            )
    shop_id = shop_gid_id(shops[shop_a].shopify_gid)
    assert shop_id is not None
    bodies = _captured(shop_a, shop_id)
    # The genuine deliveries first (an order of each shop naming the customer, then all).
    _post(system, "orders/create", shop_b, bodies["orders/create"])
    for topic, body in bodies.items():
        _post(system, topic, shop_a, body)
    system.drain()

    with system.runtime.sessions() as session:
        first_replay = int(session.scalar(select(func.max(InboundEvent.id))) or 0) + 1
    before = _snapshot(system, first_replay)
    body = bodies[captured_topic]
    for topic in HANDLED:
        for shop in (shop_a, shop_b):
            _post(system, topic, shop, body)
    system.drain()

    after = _snapshot(system, first_replay)
    for table, rows in before["tables"].items():
        assert after["tables"][table] == rows, table
    assert after == before
    with system.runtime.sessions() as session:
        replays = session.scalars(select(InboundEvent).where(InboundEvent.id >= first_replay)).all()
    assert len(replays) == 2 * len(HANDLED)
    for replay in replays:
        assert replay.status in ("dead", "done"), (replay.topic, replay.shop_domain)
        if replay.status == "dead":
            assert (replay.last_error or "").startswith("refused: ")
