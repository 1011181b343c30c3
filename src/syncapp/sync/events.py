"""Events the sync domain publishes and consumes (the CloudEvents types in ``docs/events.md``).

``product.resync_requested`` asks the engine to reconcile one product pair now: the backfill
publishes it for every product of the bulk export (with the export's node as ``snapshot``, so
the engine need not read the product again), the reconcile sweep for every product changed
since its watermark, an operator for one product. The engine treats it like a notification:
it fetches what it needs and merges, so publishing it twice, late, or for an unchanged product
is harmless.

(The type is ``resync_requested``: the bus's type names allow ``_``, not ``-``.)
"""

from __future__ import annotations

from collections.abc import Mapping
from typing import Any

from sqlalchemy.orm import Session

from syncapp.bus.envelope import EventType
from syncapp.bus.outbox import new_event, publish

SHOPIFY_PRODUCT_GID = r"^gid://shopify/Product/[0-9]+$"

RESYNC_REQUESTED = EventType(
    "com.emanagecrm.syncapp.product.resync_requested.v1",
    "Reconcile one product pair now (backfill, reconcile sweep or an operator asked).",
    {
        "type": "object",
        "required": ["reason"],
        "properties": {
            "shopifyProductId": {"type": "string", "pattern": SHOPIFY_PRODUCT_GID},
            "emanageProductId": {"type": "string", "minLength": 1, "maxLength": 64},
            "snapshot": {
                "description": (
                    "The Shopify product as the bulk export gives it (a SyncProduct node with"
                    " its variants under variants.nodes); used instead of a read unless the"
                    " link already holds a newer Shopify state"
                ),
                "type": "object",
                "required": ["id", "title", "variants"],
                "properties": {
                    "id": {"type": "string", "pattern": SHOPIFY_PRODUCT_GID},
                    "title": {"type": "string"},
                    "updatedAt": {"type": ["string", "null"]},
                    "variants": {
                        "type": "object",
                        "required": ["nodes"],
                        "properties": {"nodes": {"type": "array", "items": {"type": "object"}}},
                    },
                },
            },
            "reason": {"type": "string", "enum": ["backfill", "reconcile", "operator", "retry"]},
        },
        "anyOf": [{"required": ["shopifyProductId"]}, {"required": ["emanageProductId"]}],
        "additionalProperties": False,
    },
)

SYNC_EVENTS = (RESYNC_REQUESTED,)


def product_object(*, shopify_gid: str | None = None, emanage_id: str | None = None) -> str:
    """The partition object of a product pair: ``Product/<id>`` (the key Shopify's product
    webhooks have) when the Shopify id is known, else ``EmanageProduct/<id>`` (the key of an
    unlinked eManageCRM product's notifications)."""
    if shopify_gid:
        return shopify_gid.removeprefix("gid://shopify/")
    if emanage_id:
        return f"EmanageProduct/{emanage_id}"
    raise ValueError("a product pair needs a Shopify or an eManageCRM id")


def request_resync(
    session: Session,
    *,
    shop_domain: str,
    reason: str,
    shopify_gid: str | None = None,
    emanage_id: str | None = None,
    snapshot: Mapping[str, Any] | None = None,
) -> None:
    """Publish ``product.resync_requested`` in ``session``'s transaction."""
    gid = shopify_gid or (str(snapshot["id"]) if snapshot else None)
    data: dict[str, Any] = {"reason": reason}
    if gid:
        data["shopifyProductId"] = gid
    if emanage_id:
        data["emanageProductId"] = emanage_id
    if snapshot is not None:
        data["snapshot"] = dict(snapshot)
    publish(
        session,
        new_event(
            RESYNC_REQUESTED,
            shop_domain=shop_domain,
            obj=product_object(shopify_gid=gid, emanage_id=emanage_id),
            data=data,
        ),
    )
