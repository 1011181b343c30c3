"""The event contract: CloudEvents 1.0 envelopes, versioned types, partition keys (pure).

Every event on the bus — a verified Shopify webhook in the inbox, an event the app publishes
through the outbox — is, on the wire, a CloudEvents 1.0 envelope in structured JSON mode. Its
``partitionkey`` (the CloudEvents partitioning extension) names the shop and the object the
event is about: consumers never process two events of one key at once, and process them in
order. ``docs/events.md`` and ``docs/asyncapi.yaml`` list every type with its data schema.
"""

from __future__ import annotations

import re
from collections.abc import Mapping
from dataclasses import dataclass, field
from datetime import UTC, datetime
from typing import Any

import orjson

SPECVERSION = "1.0"
APP_SOURCE = "urn:emanagecrm:syncapp"
"""The ``source`` of the events the app itself publishes."""

_TYPE = re.compile(r"^[a-z][a-z0-9]*(\.[a-z][a-z0-9_]*)+\.v[1-9][0-9]*$")


class InvalidEvent(ValueError):
    """An envelope or event type breaks the contract (the message says which rule)."""


@dataclass(frozen=True, slots=True)
class EventType:
    """A published event type: ``com.emanagecrm.syncapp.<noun>.<verb>.v<N>`` and the JSON
    Schema of its ``data``. A breaking change to the data is a new version, never an edit."""

    name: str
    summary: str
    schema: Mapping[str, Any]

    def __post_init__(self) -> None:
        if not _TYPE.match(self.name):
            raise InvalidEvent(
                f"event type {self.name!r} must look like com.example.noun.verb.v1 "
                "(lower case, dotted, ending in a version)"
            )

    @property
    def version(self) -> int:
        return int(self.name.rsplit(".v", 1)[1])

    @property
    def dataschema(self) -> str:
        return f"https://emanagecrm.com/schemas/syncapp/{self.name}.json"


@dataclass(frozen=True, slots=True)
class CloudEvent:
    """One CloudEvents 1.0 envelope (the attributes the bus uses)."""

    id: str
    source: str
    type: str
    subject: str | None
    time: datetime
    partitionkey: str
    data: Any = None
    dataschema: str | None = None
    extensions: Mapping[str, str] = field(default_factory=dict)

    def __post_init__(self) -> None:
        for name in ("id", "source", "type", "partitionkey"):
            if not getattr(self, name):
                raise InvalidEvent(f"CloudEvent attribute {name!r} must be a non-empty string")
        if self.time.tzinfo is None:
            raise InvalidEvent("CloudEvent 'time' must carry a time zone (RFC 3339)")

    def to_dict(self) -> dict[str, Any]:
        """Structured mode: the JSON object of the envelope."""
        out: dict[str, Any] = {
            "specversion": SPECVERSION,
            "id": self.id,
            "source": self.source,
            "type": self.type,
            "time": self.time.astimezone(UTC).isoformat().replace("+00:00", "Z"),
            "datacontenttype": "application/json",
            "partitionkey": self.partitionkey,
        }
        if self.subject is not None:
            out["subject"] = self.subject
        if self.dataschema is not None:
            out["dataschema"] = self.dataschema
        out.update(self.extensions)
        out["data"] = self.data
        return out

    def to_json(self) -> bytes:
        return orjson.dumps(self.to_dict())

    @classmethod
    def from_dict(cls, raw: Mapping[str, Any]) -> CloudEvent:
        if raw.get("specversion") != SPECVERSION:
            version = raw.get("specversion")
            raise InvalidEvent(f"not a CloudEvents {SPECVERSION} envelope: {version!r}")
        try:
            time = datetime.fromisoformat(str(raw["time"]).replace("Z", "+00:00"))
            known = {
                "specversion", "id", "source", "type", "time", "datacontenttype",
                "partitionkey", "subject", "dataschema", "data",
            }  # fmt: skip
            return cls(
                id=str(raw["id"]),
                source=str(raw["source"]),
                type=str(raw["type"]),
                subject=raw.get("subject"),
                time=time,
                partitionkey=str(raw["partitionkey"]),
                data=raw.get("data"),
                dataschema=raw.get("dataschema"),
                extensions={k: str(v) for k, v in raw.items() if k not in known},
            )
        except (KeyError, ValueError) as exc:
            raise InvalidEvent(f"malformed CloudEvent: {exc}") from exc


def partition_key(shop_domain: str, obj: str = "shop") -> str:
    """``<shop>/<object>``: what may not be processed twice at once (``shop`` = the whole shop)."""
    return f"{shop_domain}/{obj}"


# Topics about the shop as a whole (installation, grants, billing, privacy requests): one key per
# shop, so an uninstall and a later scopes update can never be handled out of order.
_SHOP_WIDE = ("app/", "app_subscriptions/", "shop/", "customers/data_request", "customers/redact")


def webhook_partition_key(shop_domain: str, topic: str, payload: bytes | str) -> str:
    """The partition key of a Shopify webhook: the shop, and the object its payload names
    (``admin_graphql_api_id`` tail such as ``Product/42``, else ``<resource>/<id>``)."""
    if topic.startswith(_SHOP_WIDE):
        return partition_key(shop_domain)
    try:
        body = orjson.loads(payload)
    except orjson.JSONDecodeError:
        return partition_key(shop_domain)
    return partition_key_of_body(shop_domain, topic, body)


def partition_key_of_body(shop_domain: str, topic: str, body: Any) -> str:
    """:func:`webhook_partition_key` of an already parsed body."""
    if topic.startswith(_SHOP_WIDE):
        return partition_key(shop_domain)
    if isinstance(body, dict):
        gid = body.get("admin_graphql_api_id")
        if isinstance(gid, str) and gid.startswith("gid://shopify/"):
            return partition_key(shop_domain, gid.removeprefix("gid://shopify/"))
        ident = body.get("id")
        if isinstance(ident, int | str) and not isinstance(ident, bool) and str(ident):
            return partition_key(shop_domain, f"{topic.split('/', 1)[0]}/{ident}")
    return partition_key(shop_domain)


def webhook_type(topic: str) -> str:
    """The CloudEvents type of a Shopify webhook topic: ``app/uninstalled`` →
    ``com.shopify.webhook.app.uninstalled.v1`` (the payload is Shopify's, versioned by the
    ``shopifyapiversion`` extension)."""
    return "com.shopify.webhook." + topic.replace("/", ".").lower() + ".v1"


def webhook_source(shop_domain: str) -> str:
    return f"https://{shop_domain}"


def notification_type(topic: str) -> str:
    """The CloudEvents type of an eManageCRM notification: ``product.updated`` →
    ``com.emanagecrm.notification.product.updated.v1`` (the payload is eManageCRM's)."""
    return "com.emanagecrm.notification." + topic.lower() + ".v1"


def notification_source(shop_domain: str) -> str:
    """The ``source`` of an eManageCRM notification: the shop's eManageCRM account."""
    return f"urn:emanagecrm:crm:{shop_domain}"
