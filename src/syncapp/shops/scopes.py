"""``app/scopes_update``: keep the shop's granted access scopes current.

Shopify sends it when the granted scopes of an installation change — typically after a release
asks for more and the merchant approves them on the next visit. The payload's ``current`` list
is the whole grant; it replaces the Shopify connection's ``scopes`` (which the token exchange
at install also writes). An event triggered before the shop's current installation is stale
and ignored, as for ``app/uninstalled``. Scope changes are rare and each carries the whole
grant, so the last event processed wins.
"""

from __future__ import annotations

import orjson
import structlog
from sqlalchemy import select
from sqlalchemy.orm import Session

from syncapp.shops.runtime import ShopsRuntime, utc
from syncapp.shops.tokens import PROVIDER
from syncapp.shops.uninstall import STALE_TOLERANCE, event_time
from syncapp.store.locking import lock_row
from syncapp.store.models import Connection, InboundEvent, Shop

log = structlog.get_logger("syncapp.shops.scopes")


class InvalidScopesUpdate(ValueError):
    """The payload has no ``current`` list of scope handles."""


def granted_scopes(payload: str) -> list[str]:
    """The ``current`` scopes of an ``app/scopes_update`` payload (raises InvalidScopesUpdate)."""
    try:
        data = orjson.loads(payload)
    except orjson.JSONDecodeError as exc:
        raise InvalidScopesUpdate("app/scopes_update payload is not JSON") from exc
    current = data.get("current") if isinstance(data, dict) else None
    if not isinstance(current, list) or not all(isinstance(s, str) and s for s in current):
        raise InvalidScopesUpdate(
            "app/scopes_update payload needs 'current': a list of scope handles"
        )
    return current


def handle_scopes_update(session: Session, runtime: ShopsRuntime, event: InboundEvent) -> str:
    """Apply one ``app/scopes_update`` event; returns what happened (for the log)."""
    scopes = granted_scopes(event.payload)
    shop = session.scalar(select(Shop).where(Shop.domain == event.shop_domain))
    if shop is None or shop.installed_at is None:
        log.info("scopes.unknown_shop", shop=event.shop_domain)
        return "unknown_shop"
    if event_time(event) < utc(shop.installed_at) - STALE_TOLERANCE:
        log.info("scopes.stale_event_ignored", shop=shop.domain)
        return "stale"
    connection = session.scalar(
        lock_row(
            select(Connection).where(Connection.shop_id == shop.id, Connection.provider == PROVIDER)
        )
    )
    if connection is None:
        return "no_connection"
    connection.scopes = ",".join(scopes)
    log.info("scopes.updated", shop=shop.domain, scopes=connection.scopes)
    return "updated"
