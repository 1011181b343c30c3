"""Events the sync domain publishes (CloudEvents types listed in ``docs/events.md``).

- ``product.resync-requested``: one product should be brought to agreement (the engine
  applies it like a notification: fetch, merge, write, link). Published by the backfill (with
  the product's snapshot from the bulk export), the reconcile sweep and operators' resyncs.
  Partition key ``<shop>/Product/<numeric id>`` (or ``<shop>/EmanageProduct/<id>``), so it
  is never processed beside a webhook about the same product.
- ``backfill.requested`` / ``reconcile.requested``: a shop's backfill or reconcile sweep is
  due; the sync's own consumer runs it (key ``<shop>/backfill``, ``<shop>/reconcile``: one at
  a time per shop).
"""

from __future__ import annotations

from typing import Any

from sqlalchemy.orm import Session

from syncapp.bus.envelope import EventType
from syncapp.bus.outbox import new_event, publish

__all__ = [
    "BACKFILL_REQUESTED",
    "RECONCILE_REQUESTED",
    "RESYNC_REQUESTED",
    "SYNC_EVENTS",
    "product_key",
    "publish_resync",
]

_SHOP = {"type": "string", "pattern": r"^[a-z0-9][a-z0-9-]*\.myshopify\.com$"}
_GID = {"type": "string", "pattern": r"^gid://shopify/Product/[0-9]+$"}

RESYNC_REQUESTED = EventType(
    "com.emanagecrm.syncapp.product.resync-requested.v1",
    "Bring one product to agreement on both sides (backfill, reconcile sweep, operator resync).",
    {
        "type": "object",
        "required": ["reason"],
        "properties": {
            "shopifyProductId": _GID,
            "emanageProductId": {"type": "string", "minLength": 1, "maxLength": 64},
            "snapshot": {
                "type": ["object", "null"],
                "description": "The Shopify product as the SyncProduct read or the bulk export "
                "gives it (variants under variants.nodes); absent: the engine reads it.",
            },
            "reason": {"enum": ["backfill", "reconcile", "resync"]},
        },
        "anyOf": [{"required": ["shopifyProductId"]}, {"required": ["emanageProductId"]}],
        "additionalProperties": False,
    },
)

BACKFILL_REQUESTED = EventType(
    "com.emanagecrm.syncapp.backfill.requested.v1",
    "Export the shop's catalog and request a resync of every product (Keep Products "
    "Synchronized turned on, a new shop, an operator's resync of the whole shop).",
    {
        "type": "object",
        "required": ["shop_domain", "run"],
        "properties": {
            "shop_domain": _SHOP,
            "run": {"type": "string", "pattern": "^[0-9a-f]{12}$"},
            "reason": {"type": "string"},
        },
        "additionalProperties": False,
    },
)

RECONCILE_REQUESTED = EventType(
    "com.emanagecrm.syncapp.reconcile.requested.v1",
    "Sweep both sides for products changed since the last sweep (catches lost notifications).",
    {
        "type": "object",
        "required": ["shop_domain"],
        "properties": {"shop_domain": _SHOP, "slot": {"type": "integer"}},
        "additionalProperties": False,
    },
)

SYNC_EVENTS = (RESYNC_REQUESTED, BACKFILL_REQUESTED, RECONCILE_REQUESTED)


def product_key(*, shopify_gid: str | None = None, emanage_id: str | None = None) -> str:
    """The object part of a resync's partition key."""
    if shopify_gid is not None:
        return "Product/" + shopify_gid.rsplit("/", 1)[-1]
    if emanage_id is not None:
        return f"EmanageProduct/{emanage_id}"
    raise ValueError("a resync names a Shopify or an eManageCRM product")


def publish_resync(
    session: Session,
    *,
    shop: str,
    reason: str,
    shopify_gid: str | None = None,
    emanage_id: str | None = None,
    snapshot: dict[str, Any] | None = None,
    event_id: str | None = None,
) -> str:
    """Put a resync-requested event in the outbox in ``session``'s transaction; returns its id.
    A deterministic ``event_id`` makes a second publish of the same request fail the flush."""
    data: dict[str, Any] = {"reason": reason}
    if shopify_gid is not None:
        data["shopifyProductId"] = shopify_gid
    if emanage_id is not None:
        data["emanageProductId"] = emanage_id
    if snapshot is not None:
        data["snapshot"] = snapshot
    event = new_event(
        RESYNC_REQUESTED,
        shop_domain=shop,
        obj=product_key(shopify_gid=shopify_gid, emanage_id=emanage_id),
        data=data,
        event_id=event_id,
    )
    publish(session, event)
    return event.id
