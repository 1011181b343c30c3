"""``app/scopes_update``: keep the shop's granted access scopes current.

Shopify sends it when the granted scopes of an installation change — typically after a release
asks for more and the merchant approves them on the next visit. The payload's ``current`` list
is the whole grant; it replaces the Shopify connection's ``scopes`` (which the token exchange
at install also writes). An event whose change (the payload's signed ``updated_at``, else the
``X-Shopify-Triggered-At`` header) happened before the shop's current installation is stale
and ignored, as for ``app/uninstalled``. The payload names no shop; a body of another topic is
refused by its shape (:class:`~syncapp.shops.payloads.ScopesUpdate`); and because the shop is
named only by the unsigned header, the worker first asks Shopify for the shop's grant
(:func:`confirm_scopes`, no transaction held) and refuses a payload that is not it — another
shop's body replayed under this shop's header. Scope changes are rare and each carries the
whole grant, so the last event processed wins.
"""

from __future__ import annotations

import structlog
from sqlalchemy import select
from sqlalchemy.orm import Session

from syncapp.bus.models import InboundEvent
from syncapp.connectors.shopify.admin import run_document
from syncapp.errors import RefusedEvent
from syncapp.shops.errors import ShopifyReauthorizationRequired, ShopNotInstalled
from syncapp.shops.payloads import ScopesUpdate, parse
from syncapp.shops.runtime import ShopsRuntime, utc
from syncapp.shops.tokens import PROVIDER, get_admin_token
from syncapp.shops.uninstall import STALE_TOLERANCE, event_time, parse_triggered_at
from syncapp.store.locking import lock_row
from syncapp.store.models import Connection, Shop

log = structlog.get_logger("syncapp.shops.scopes")


class InvalidScopesUpdate(RefusedEvent):
    """The payload has no ``current`` list of scope handles."""


def _parse(event: InboundEvent, payload: str) -> ScopesUpdate:
    try:
        return parse(ScopesUpdate, event, payload)
    except RefusedEvent as exc:
        raise InvalidScopesUpdate(
            f"app/scopes_update payload needs 'current': a list of scope handles ({exc})"
        ) from None


def granted_scopes(payload: str) -> list[str]:
    """The ``current`` scopes of an ``app/scopes_update`` payload (raises InvalidScopesUpdate)."""
    return list(_parse(InboundEvent(topic="app/scopes_update", payload=payload), payload).current)


def confirm_scopes(runtime: ShopsRuntime, event: InboundEvent) -> None:
    """Refuse ``event`` unless its ``current`` grant is the shop's grant in Shopify now.

    Runs before the handler with no transaction open; a shop without a usable token is left
    to the handler (which ignores unknown shops).
    """
    update = _parse(event, runtime.payload_of(event))
    try:
        token = get_admin_token(runtime, shop=event.shop_domain)
    except (ShopNotInstalled, ShopifyReauthorizationRequired):
        return
    with runtime.http() as http:
        data = run_document(
            "current_app_scopes",
            shop=event.shop_domain,
            access_token=token,
            api_version=runtime.api_version,
            http=http,
        )
    granted = {str(s["handle"]) for s in data["currentAppInstallation"]["accessScopes"]}
    if set(update.current) != granted:
        raise RefusedEvent(
            "app/scopes_update refused: its grant is not the shop's grant in Shopify"
            f" ({len(update.current)} scopes named, {len(granted)} granted)"
        )


def handle_scopes_update(session: Session, runtime: ShopsRuntime, event: InboundEvent) -> str:
    """Apply one ``app/scopes_update`` event; returns what happened (for the log)."""
    update = _parse(event, runtime.payload_of(event))
    shop = session.scalar(select(Shop).where(Shop.domain == event.shop_domain))
    if shop is None or shop.installed_at is None:
        log.info("scopes.unknown_shop", shop=event.shop_domain)
        return "unknown_shop"
    changed_at = parse_triggered_at(update.updated_at) or event_time(event)
    if changed_at < utc(shop.installed_at) - STALE_TOLERANCE:
        log.info("scopes.stale_event_ignored", shop=shop.domain)
        return "stale"
    connection = session.scalar(
        lock_row(
            select(Connection).where(Connection.shop_id == shop.id, Connection.provider == PROVIDER)
        )
    )
    if connection is None:
        return "no_connection"
    connection.scopes = ",".join(update.current)
    log.info("scopes.updated", shop=shop.domain, scopes=connection.scopes)
    return "updated"
