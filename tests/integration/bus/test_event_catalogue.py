"""Events are a documented contract: docs/asyncapi.yaml lists every type with its schema, and
every event the app relays or publishes validates against it."""

from __future__ import annotations

from pathlib import Path

import jsonschema
import orjson
import pytest
import yaml
from sqlalchemy import insert, select

from syncapp.bus.models import InboundEvent
from syncapp.bus.outbox import new_event, publish
from syncapp.bus.rabbitmq import message_for
from syncapp.config import APP_TOML, subscribed_topics
from syncapp.connectors.emanage.notifications import NOTIFICATION_TYPES
from syncapp.events import asyncapi, event_types, message_schema
from syncapp.onboarding.events import APP_EVENTS, SIGNUP_REQUESTED
from syncapp.store.db import make_engine, make_session_factory
from syncapp.store.migrate import upgrade
from syncapp.sync.events import RESYNC_REQUESTED, SYNC_EVENTS, request_resync
from tests.builders import product_payload

DOC = Path(__file__).resolve().parents[3] / "docs" / "asyncapi.yaml"
SHOP = "catalogue.myshopify.com"
COMPLIANCE = {"shop_id": 601, "shop_domain": SHOP}
CUSTOMER = {"id": 7, "email": "ada@example.com", "phone": None}
# What Shopify sends for each topic a domain parses (shapes from shopify.dev's examples).
PAYLOADS = {
    "app/uninstalled": {"id": 601, "myshopify_domain": SHOP, "domain": SHOP, "name": "Catalogue"},
    "app/scopes_update": {
        "current": ["read_products", "write_products"],
        "previous": ["read_products"],
        "updated_at": "2026-12-01T12:00:00Z",
    },
    "app_subscriptions/update": {
        "app_subscription": {
            "admin_graphql_api_id": "gid://shopify/AppSubscription/1",
            "status": "ACTIVE",
            "admin_graphql_api_shop_id": "gid://shopify/Shop/601",
        }
    },
    "shop/redact": COMPLIANCE,
    "customers/redact": {**COMPLIANCE, "customer": CUSTOMER, "orders_to_redact": [11]},
    "customers/data_request": {
        **COMPLIANCE,
        "customer": CUSTOMER,
        "orders_requested": [11],
        "data_request": {"id": 99},
    },
    "products/update": product_payload(),
}


@pytest.fixture(scope="module")
def document() -> dict:
    return yaml.safe_load(DOC.read_text(encoding="utf-8"))


def test_the_document_in_docs_is_the_catalogues(document: dict) -> None:
    """docs/asyncapi.yaml is `syncapp bus asyncapi`'s output (regenerate it after a change)."""
    assert document == yaml.safe_load(yaml.safe_dump(asyncapi(), sort_keys=False))


def test_every_subscribed_topic_and_app_event_is_listed(document: dict) -> None:
    """One message per Shopify topic of shopify.app.toml, per eManageCRM notification type and
    per app event type."""
    names = {m["name"] for m in document["components"]["messages"].values()}
    assert names == {t.name for t in event_types()}
    assert len(names) == (
        len(subscribed_topics(APP_TOML))
        + len(NOTIFICATION_TYPES)
        + len(APP_EVENTS)
        + len(SYNC_EVENTS)
    )


@pytest.mark.parametrize("topic", sorted(PAYLOADS))
def test_a_relayed_webhook_validates_against_its_schema(
    document: dict, topic: str, tmp_path: Path
) -> None:
    """The exact body the relay publishes for a stored webhook is valid for its type."""
    engine = make_engine(f"sqlite:///{tmp_path / 'c.db'}")
    upgrade(engine)
    with engine.begin() as conn:
        conn.execute(
            insert(InboundEvent).values(
                source="shopify",
                shop_domain=SHOP,
                topic=topic,
                delivery_id="d-1",
                payload=orjson.dumps(PAYLOADS[topic]).decode(),
                partition_key=f"{SHOP}/shop",
                api_version="2026-10",
            )
        )
    with make_session_factory(engine)() as session:
        row = session.scalars(select(InboundEvent)).one()
        body, _, _ = message_for(row)
    envelope = orjson.loads(body)
    jsonschema.validate(envelope, message_schema(document, envelope["type"]))
    engine.dispose()


@pytest.mark.parametrize("topic", sorted(NOTIFICATION_TYPES))
def test_a_relayed_emanage_notification_validates_against_its_schema(
    document: dict, topic: str, tmp_path: Path
) -> None:
    """A stored eManageCRM notification, as the relay publishes it, is valid for its type."""
    engine = make_engine(f"sqlite:///{tmp_path / 'c.db'}")
    upgrade(engine)
    event_id = "0b9f6d3e-6a2f-4a55-9c55-0d8d0b1f2a11"
    body = {
        "id": event_id,
        "type": topic,
        "occurredAt": "2026-12-07T12:00:00Z",
        "accountId": "5d7e2f0a-1b2c-4d3e-8f90-a1b2c3d4e5f6",
        "data": {"id": 917701, "externalRefs": {"shopifyProductId": 42}},
    }
    with engine.begin() as conn:
        conn.execute(
            insert(InboundEvent).values(
                source="emanage",
                shop_domain=SHOP,
                topic=topic,
                delivery_id=event_id,
                event_id=event_id,
                payload=orjson.dumps(body).decode(),
                partition_key=f"{SHOP}/Product/42",
            )
        )
    with make_session_factory(engine)() as session:
        row = session.scalars(select(InboundEvent)).one()
        raw, _, _ = message_for(row)
    envelope = orjson.loads(raw)
    assert envelope["type"] == f"com.emanagecrm.notification.{topic}.v1"
    assert envelope["data"] == body
    jsonschema.validate(envelope, message_schema(document, envelope["type"]))
    engine.dispose()


def test_a_schema_refuses_a_payload_of_another_topic(document: dict) -> None:
    """The schemas are not decoration: a product is not a customers/redact request."""
    schema = message_schema(document, "com.shopify.webhook.customers.redact.v1")
    event = {
        "specversion": "1.0",
        "id": "x",
        "source": f"https://{SHOP}",
        "type": "com.shopify.webhook.customers.redact.v1",
        "time": "2026-12-01T12:00:00Z",
        "datacontenttype": "application/json",
        "partitionkey": f"{SHOP}/shop",
        "data": product_payload(),
    }
    with pytest.raises(jsonschema.ValidationError):
        jsonschema.validate(event, schema)


def test_a_published_app_event_validates_against_its_schema(document: dict, tmp_path: Path) -> None:
    """An outbox event, as stored and relayed, is valid for its type."""
    engine = make_engine(f"sqlite:///{tmp_path / 'c.db'}")
    upgrade(engine)
    sessions = make_session_factory(engine)
    event = new_event(
        SIGNUP_REQUESTED,
        shop_domain=SHOP,
        obj="signup",
        data={"shop_id": 1, "shop_domain": SHOP, "reason": "install"},
    )
    with sessions.begin() as session:
        publish(session, event)
    with sessions() as session:
        row = session.scalars(select(InboundEvent)).one()
        body, _, _ = message_for(row)
    jsonschema.validate(orjson.loads(body), message_schema(document, SIGNUP_REQUESTED.name))
    engine.dispose()


SNAPSHOT = {
    "id": "gid://shopify/Product/42",
    "title": "Tee",
    "status": "ACTIVE",
    "updatedAt": "2026-12-01T12:00:00Z",
    "options": [{"name": "Title", "values": ["Default Title"]}],
    "variants": {"nodes": [{"id": "gid://shopify/ProductVariant/7", "sku": "T", "price": "5.00"}]},
}


@pytest.mark.parametrize(
    "ids",
    [
        {"shopify_gid": "gid://shopify/Product/42"},
        {"emanage_id": "P-1"},
        {"shopify_gid": "gid://shopify/Product/42", "emanage_id": "P-1", "snapshot": SNAPSHOT},
    ],
)
def test_a_published_resync_request_validates_against_its_schema(
    document: dict, tmp_path: Path, ids: dict
) -> None:
    """product.resync_requested as the backfill, the sweep or an operator publish it; an
    event naming neither product is refused by the schema."""
    engine = make_engine(f"sqlite:///{tmp_path / 'c.db'}")
    upgrade(engine)
    sessions = make_session_factory(engine)
    with sessions.begin() as session:
        request_resync(session, shop_domain=SHOP, reason="backfill", **ids)
    with sessions() as session:
        row = session.scalars(select(InboundEvent)).one()
        body, _, _ = message_for(row)
    schema = message_schema(document, RESYNC_REQUESTED.name)
    envelope = orjson.loads(body)
    jsonschema.validate(envelope, schema)
    expected = "Product/42" if "shopify_gid" in ids else "EmanageProduct/P-1"
    assert row.partition_key == f"{SHOP}/{expected}"
    envelope["data"] = {"reason": "backfill"}
    with pytest.raises(jsonschema.ValidationError):
        jsonschema.validate(envelope, schema)
    engine.dispose()
