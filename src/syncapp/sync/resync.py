"""An operator's resync (``syncapp sync resync``, ``POST /api/v1/shops/{shop}/resync``): one
product — a Shopify product gid or numeric id, or an eManageCRM product id — gets a
``product.resync-requested`` event; no object means the whole shop: a new backfill run."""

from __future__ import annotations

import re
from dataclasses import dataclass

from sqlalchemy import select
from sqlalchemy.orm import Session, sessionmaker

from syncapp.store.locking import locked_transaction
from syncapp.store.models import Shop
from syncapp.sync.backfill import request_backfill
from syncapp.sync.events import request_resync as publish_resync
from syncapp.sync.state import UnknownShop

__all__ = ["OBJECT_PATTERN", "InvalidObject", "Resync", "parse_object", "request_resync"]

_GID_TEXT = r"gid://shopify/Product/[0-9]{1,20}"
_NUMERIC_TEXT = r"[0-9]{1,20}"
_EMANAGE_TEXT = r"[A-Za-z0-9][A-Za-z0-9_.:-]{0,63}"
OBJECT_PATTERN = f"^({_GID_TEXT}|{_NUMERIC_TEXT}|{_EMANAGE_TEXT})$"
"""Every object :func:`parse_object` takes (the Sync API's schema says so)."""
_GID = re.compile(f"^{_GID_TEXT}$")
_NUMERIC = re.compile(f"^{_NUMERIC_TEXT}$")
_EMANAGE = re.compile(f"^{_EMANAGE_TEXT}$")


class InvalidObject(ValueError):
    """Not a Shopify product gid or id, nor an eManageCRM product id."""


@dataclass(frozen=True, slots=True)
class Resync:
    shop: str
    scope: str  # "shop" | "shopify" | "emanage"
    shopify_gid: str | None = None
    emanage_id: str | None = None
    event_id: str | None = None
    run: str | None = None


def parse_object(obj: str) -> tuple[str | None, str | None]:
    """``(shopify_gid, emanage_id)`` of an object as an operator names it. A bare number is a
    Shopify product id (eManageCRM ids are not bare numbers: ``prod_…`` or a UUID)."""
    obj = obj.strip()
    if _GID.match(obj):
        return obj, None
    if _NUMERIC.match(obj):
        return f"gid://shopify/Product/{int(obj)}", None
    if obj.startswith("gid://"):
        raise InvalidObject(f"{obj!r} is not a Shopify product gid (gid://shopify/Product/<id>)")
    if _EMANAGE.match(obj):
        return None, obj
    raise InvalidObject(f"{obj!r} is neither a Shopify product id nor an eManageCRM product id")


def _shop_id(session: Session, shop: str) -> int:
    shop_id = session.scalar(select(Shop.id).where(Shop.domain == shop))
    if shop_id is None:
        raise UnknownShop(f"no shop {shop!r} has installed the app")
    return shop_id


def request_resync(sessions: sessionmaker[Session], shop: str, obj: str | None = None) -> Resync:
    """Publish the resync (raises :class:`InvalidObject`, or ``UnknownShop``)."""
    gid, emanage_id = parse_object(obj) if obj else (None, None)
    with locked_transaction(sessions) as session:
        shop_id = _shop_id(session, shop)
        if gid is None and emanage_id is None:
            run = request_backfill(session, shop_id=shop_id, shop=shop, reason="resync")
            return Resync(shop=shop, scope="shop", run=run)
        event_id = publish_resync(
            session, shop_domain=shop, reason="operator", shopify_gid=gid, emanage_id=emanage_id
        )
    return Resync(
        shop=shop,
        scope="shopify" if gid else "emanage",
        shopify_gid=gid,
        emanage_id=emanage_id,
        event_id=event_id,
    )
