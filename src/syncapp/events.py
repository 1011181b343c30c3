"""The catalogue of every event type on the bus, with the JSON Schema of its ``data``, and the
AsyncAPI 3.0 document built from it (``docs/asyncapi.yaml``; ``docs/events.md`` explains).

It sits above the domains (like ``worker.py``): each domain's payload models give the schemas,
the bus itself knows none of them. A test checks that the document in ``docs/`` is this
catalogue's and that every event the app publishes or relays validates against it.
"""

from __future__ import annotations

from collections.abc import Mapping
from typing import Any

from pydantic import BaseModel

from syncapp.billing.payloads import SubscriptionUpdate
from syncapp.bus.envelope import APP_SOURCE, EventType, notification_type, webhook_type
from syncapp.config import APP_TOML, subscribed_topics
from syncapp.connectors.emanage.notifications import NOTIFICATION_TYPES
from syncapp.onboarding.events import APP_EVENTS
from syncapp.shops.payloads import (
    CustomersDataRequest,
    CustomersRedact,
    ScopesUpdate,
    ShopRedact,
    ShopResource,
)
from syncapp.sync.events import SYNC_EVENTS

# Topics whose payloads a domain parses; the others (products, orders, bulk operations) are
# Shopify's documented payloads, passed on as objects until the sync engine types them.
WEBHOOK_MODELS: Mapping[str, type[BaseModel]] = {
    "app/uninstalled": ShopResource,
    "app/scopes_update": ScopesUpdate,
    "app_subscriptions/update": SubscriptionUpdate,
    "shop/redact": ShopRedact,
    "customers/redact": CustomersRedact,
    "customers/data_request": CustomersDataRequest,
}


def inline_refs(schema: dict[str, Any]) -> dict[str, Any]:
    """Pydantic's schema with its ``$defs`` inlined (the models are not recursive), so the
    schema stands alone wherever the document places it."""
    defs = schema.pop("$defs", {})

    def walk(node: Any) -> Any:
        if isinstance(node, dict):
            ref = node.get("$ref")
            if isinstance(ref, str) and ref.startswith("#/$defs/"):
                return walk(dict(defs[ref.removeprefix("#/$defs/")]))
            return {k: walk(v) for k, v in node.items()}
        if isinstance(node, list):
            return [walk(v) for v in node]
        return node

    result: dict[str, Any] = walk(schema)
    return result


def webhook_types() -> list[EventType]:
    """One type per subscribed Shopify topic (``shopify.app.toml``)."""
    out = []
    for topic in sorted(subscribed_topics(APP_TOML)):
        model = WEBHOOK_MODELS.get(topic)
        schema = inline_refs(model.model_json_schema()) if model else {"type": "object"}
        out.append(
            EventType(
                webhook_type(topic), f"Shopify webhook {topic} (verified, as received).", schema
            )
        )
    return out


def notification_schema(topic: str) -> dict[str, Any]:
    """The body of an eManageCRM notification as received (docs/contracts/emanage.openapi.yaml,
    ``Notification``); ``data`` says what changed (a product's id, version and links)."""
    return {
        "type": "object",
        "required": ["id", "type", "occurredAt", "accountId", "data"],
        "properties": {
            "id": {"type": "string", "minLength": 1},
            "type": {"const": topic},
            "occurredAt": {"type": "string", "minLength": 1},
            "accountId": {"type": "string", "minLength": 1},
            "data": {"type": "object"},
        },
    }


def notification_types() -> list[EventType]:
    """One type per eManageCRM notification type (received at ``/webhooks/emanage``)."""
    return [
        EventType(
            notification_type(topic),
            f"eManageCRM notification {topic} (verified, as received).",
            notification_schema(topic),
        )
        for topic in sorted(NOTIFICATION_TYPES)
    ]


def event_types() -> list[EventType]:
    return [*webhook_types(), *notification_types(), *APP_EVENTS, *SYNC_EVENTS]


ENVELOPE: dict[str, Any] = {
    "type": "object",
    "required": ["specversion", "id", "source", "type", "time", "partitionkey", "datacontenttype"],
    "properties": {
        "specversion": {"const": "1.0"},
        "id": {"type": "string", "minLength": 1},
        "source": {"type": "string", "minLength": 1},
        "type": {"type": "string"},
        "subject": {"type": "string"},
        "time": {"type": "string", "format": "date-time"},
        "datacontenttype": {"const": "application/json"},
        "dataschema": {"type": "string", "format": "uri"},
        "partitionkey": {"type": "string", "pattern": "^[^/]+/.+$"},
    },
}


def _message_name(name: str) -> str:
    return name.replace(".", "_")


def asyncapi() -> dict[str, Any]:
    """The AsyncAPI 3.0 document of the bus."""
    messages: dict[str, Any] = {}
    for t in event_types():
        schema = {
            **ENVELOPE,
            "properties": {
                **ENVELOPE["properties"],
                "type": {"const": t.name},
                "data": dict(t.schema),
            },
            "required": [*ENVELOPE["required"], "data"],
        }
        messages[_message_name(t.name)] = {
            "name": t.name,
            "title": t.name,
            "summary": t.summary,
            "contentType": "application/cloudevents+json",
            "payload": schema,
        }
    return {
        "asyncapi": "3.0.0",
        "info": {
            "title": "Sync App service bus",
            "version": "1.0.0",
            "description": (
                "Every event of the Sync App's bus as a CloudEvents 1.0 envelope (structured "
                "mode). Generated by `syncapp bus asyncapi`; see docs/events.md."
            ),
        },
        "servers": {
            "rabbitmq": {
                "host": "127.0.0.1:5672",
                "protocol": "amqp",
                "description": "Topic exchange syncapp.events (docs/adr/0013).",
            }
        },
        "channels": {
            "events": {
                "address": "syncapp.events",
                "description": (
                    "Routing key p<n>.<source>.<topic>: n is the partition key hashed onto the "
                    f"partitions; source is shopify, emanage or syncapp ({APP_SOURCE})."
                ),
                "messages": {name: {"$ref": f"#/components/messages/{name}"} for name in messages},
            }
        },
        "operations": {
            "receiveEvents": {
                "action": "receive",
                "channel": {"$ref": "#/channels/events"},
            }
        },
        "components": {"messages": messages},
    }


def message_schema(document: Mapping[str, Any], event_type: str) -> dict[str, Any]:
    """The envelope schema the document gives ``event_type`` (KeyError: not listed)."""
    return dict(document["components"]["messages"][_message_name(event_type)]["payload"])
