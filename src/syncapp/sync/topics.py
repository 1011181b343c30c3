"""The sync domain's topic table for the bus: Shopify's product webhooks, eManageCRM's product
notifications and the app's own ``product.resync_requested``, each reconciled by the engine.

A handler only extracts *which* product the event is about (and checks the payload is about a
product at all: a signed body replayed under another topic names no Product GID and changes
nothing); :func:`syncapp.sync.engine.reconcile` fetches the truth, so what else the payload
says is never applied (pitfalls 2, 4, 8).
"""

from __future__ import annotations

from collections.abc import Mapping
from typing import Any

from syncapp.bus.interface import APP, DeadLetter, Delivery, Handler, Outcome, TopicTable
from syncapp.sync.context import SyncContext
from syncapp.sync.engine import Request, Trigger, reconcile
from syncapp.sync.events import RESYNC_REQUESTED
from syncapp.sync.links import PRODUCT_GID as _PRODUCT_GID
from syncapp.sync.links import shopify_product_gid

SHOPIFY_TOPICS = ("products/create", "products/update", "products/delete")
EMANAGE_TOPICS = ("product.created", "product.updated", "product.archived")


def _notification_data(body: object) -> Mapping[str, Any] | None:
    if not isinstance(body, Mapping):
        return None
    data = body.get("data")
    return data if isinstance(data, Mapping) else body


def shopify_handler(context: SyncContext) -> Handler:
    async def handle(delivery: Delivery) -> Outcome:
        gid = shopify_product_gid(delivery.data())
        if gid is None:
            return DeadLetter(f"refused: a {delivery.topic} payload that names no product")
        return await reconcile(
            context,
            Request(
                shop=delivery.shop_domain,
                trigger=Trigger.SHOPIFY,
                correlation_id=delivery.delivery_id,
                shopify_gid=gid,
                deleted=delivery.topic == "products/delete",
            ),
        )

    return handle


def emanage_handler(context: SyncContext) -> Handler:
    async def handle(delivery: Delivery) -> Outcome:
        # The stored body is eManageCRM's notification: ``data`` is the product resource
        # after the change (its ``productId`` or ``id``, ``version``, ``externalRefs``).
        data = _notification_data(delivery.data())
        product_id = None if data is None else data.get("productId", data.get("id"))
        if data is None or not isinstance(product_id, str | int) or isinstance(product_id, bool):
            return DeadLetter(f"refused: a {delivery.topic} notification that names no product")
        version = data.get("version")
        refs = data.get("externalRefs")
        ref = refs.get("shopifyProductId") if isinstance(refs, Mapping) else None
        # The reference may be the GID, a number or its digits.
        gid = shopify_product_gid(
            {"admin_graphql_api_id": ref}
            if isinstance(ref, str) and ref.startswith("gid://")
            else {"id": ref}
        )
        return await reconcile(
            context,
            Request(
                shop=delivery.shop_domain,
                trigger=Trigger.EMANAGE,
                correlation_id=delivery.delivery_id,
                emanage_id=str(product_id),
                emanage_version=version if isinstance(version, int) else None,
                shopify_gid=gid,
                # Naming no Shopify product, it was stored under EmanageProduct/<id>.
                unlinked_key=gid is None,
            ),
        )

    return handle


def resync_handler(context: SyncContext) -> Handler:
    async def handle(delivery: Delivery) -> Outcome:
        data = delivery.data()
        if not isinstance(data, Mapping):
            return DeadLetter("refused: a resync request without data")
        gid = data.get("shopifyProductId")
        eid = data.get("emanageProductId")
        snapshot = data.get("snapshot")
        if not (isinstance(gid, str) and gid.startswith(_PRODUCT_GID)):
            gid = None
        if not isinstance(eid, str) or not eid:
            eid = None
        if gid is None and eid is None:
            return DeadLetter("refused: a resync request that names no product")
        if not isinstance(snapshot, Mapping) or snapshot.get("id") != gid:
            snapshot = None  # a snapshot of another product is never used for this one
        return await reconcile(
            context,
            Request(
                shop=delivery.shop_domain,
                trigger=Trigger.RESYNC,
                correlation_id=delivery.delivery_id,
                shopify_gid=gid,
                emanage_id=eid,
                snapshot=snapshot,
            ),
        )

    return handle


def topics(context: SyncContext) -> TopicTable:
    """The sync's handlers by (source, topic)."""
    table: TopicTable = {}
    on_shopify, on_emanage = shopify_handler(context), emanage_handler(context)
    for topic in SHOPIFY_TOPICS:
        table[("shopify", topic)] = on_shopify
    for topic in EMANAGE_TOPICS:
        table[("emanage", topic)] = on_emanage
    table[(APP, RESYNC_REQUESTED.name)] = resync_handler(context)
    return table
