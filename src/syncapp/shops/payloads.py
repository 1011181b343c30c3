"""Typed payloads of the webhook topics ``shops/`` handles, and the checks that tie a payload
to the shop its routing header names.

Shopify signs only the body: ``X-Shopify-Topic``, ``X-Shopify-Shop-Domain`` and
``X-Shopify-Webhook-Id`` are not signed, so anyone holding one captured delivery can replay its
body, validly signed, under another topic, another shop or a new webhook id. Every handler
therefore

* parses its payload with the topic's model (:func:`parse`): a body of another topic lacks the
  fields the model requires (a product has no ``myshopify_domain``, a redaction request no
  ``data_request``), and
* checks the shop the payload names against the header (:func:`check_shop`): the domain
  (``app/uninstalled``: ``myshopify_domain``, else ``domain``; compliance topics:
  ``shop_domain``) and, when the shop's ``gid://shopify/Shop/<id>`` is known from the install,
  its numeric id (``id``, ``shop_id``, ``admin_graphql_api_shop_id``).

Both raise :class:`~syncapp.errors.RefusedEvent`: the worker dead-letters the event with the
reason and its transaction rolls back, so nothing is changed. These are pure functions of the
payload and the shop row; the handlers own the database.
"""

from __future__ import annotations

from typing import Annotated, TypeVar

import orjson
from pydantic import BaseModel, ConfigDict, Field, StringConstraints, ValidationError

from syncapp.bus.models import InboundEvent
from syncapp.errors import RefusedEvent
from syncapp.store.models import Shop

ShopifyId = Annotated[int, Field(ge=1, strict=True)]
ScopeHandle = Annotated[str, StringConstraints(min_length=1, max_length=128)]


class Payload(BaseModel):
    """Base of every webhook payload model: fields the app does not use are ignored."""

    model_config = ConfigDict(extra="ignore", frozen=True)


class ShopResource(Payload):
    """``app/uninstalled``: the REST ``Shop`` resource."""

    id: ShopifyId | None = None
    myshopify_domain: str | None = None
    domain: str | None = None

    @property
    def named_domain(self) -> str | None:
        return self.myshopify_domain or self.domain


class ScopesUpdate(Payload):
    """``app/scopes_update``: the whole grant after the change (``current``)."""

    current: list[ScopeHandle]
    previous: list[ScopeHandle] = []
    # Signed, unlike X-Shopify-Triggered-At: what decides whether the change is stale.
    updated_at: str | None = None


class ComplianceRequest(Payload):
    """What every compliance topic carries: the shop, by id and domain."""

    shop_id: ShopifyId
    shop_domain: str


class ShopRedact(ComplianceRequest):
    """``shop/redact``: erase everything of the shop (48 h after uninstall)."""


class Customer(Payload):
    id: ShopifyId
    email: str | None = None
    phone: str | None = None


class CustomersRedact(ComplianceRequest):
    """``customers/redact``: erase one customer (and the listed orders)."""

    customer: Customer
    orders_to_redact: list[ShopifyId]


class DataRequest(Payload):
    id: ShopifyId


class CustomersDataRequest(ComplianceRequest):
    """``customers/data_request``: export what the app holds about one customer."""

    customer: Customer
    orders_requested: list[ShopifyId]
    data_request: DataRequest


P = TypeVar("P", bound=Payload)


def parse(model: type[P], event: InboundEvent, payload: str | None = None) -> P:
    """``event``'s payload (or ``payload``, its decrypted text) as ``model``; RefusedEvent
    naming what is wrong when it is not that topic's shape."""
    text = event.payload if payload is None else payload
    try:
        return model.model_validate(orjson.loads(text))
    except orjson.JSONDecodeError:
        raise RefusedEvent(f"{event.topic}: the payload is not JSON") from None
    except ValidationError as exc:
        problems = "; ".join(
            f"{'.'.join(str(p) for p in err['loc']) or 'payload'}: {err['msg']}"
            for err in exc.errors()[:5]
        )
        raise RefusedEvent(f"{event.topic}: not a {event.topic} payload ({problems})") from None


def shop_gid_id(gid: str | None) -> int | None:
    """The numeric id of ``gid://shopify/Shop/<id>``, or None."""
    prefix = "gid://shopify/Shop/"
    if gid and gid.startswith(prefix) and gid[len(prefix) :].isdigit():
        return int(gid[len(prefix) :])
    return None


def check_shop(
    event: InboundEvent,
    *,
    named_domain: str | None,
    named_id: int | None,
    shop: Shop | None,
) -> None:
    """Refuse ``event`` when its payload names another shop than its header.

    ``named_domain`` must equal the header's domain; ``named_id`` (when the payload has one)
    must equal the shop's id as read from the Admin API at install (when known).
    """
    header = event.shop_domain
    if named_domain is None or named_domain.strip().lower() != header:
        raise RefusedEvent(
            f"{event.topic}: the payload names shop {named_domain!r}, the header {header!r}"
        )
    known = shop_gid_id(shop.shopify_gid) if shop is not None else None
    if named_id is not None and known is not None and named_id != known:
        raise RefusedEvent(
            f"{event.topic}: the payload names shop id {named_id}, {header} is {known}"
        )
