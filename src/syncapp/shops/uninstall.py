"""``app/uninstalled``: forget the shop's Shopify tokens and stop its work. Idempotent.

Shopify has already revoked the tokens when this arrives, and may send it more than once or
long after the fact, so the handler needs no token and never calls Shopify. It:

* deletes every Shopify credential of the shop;
* sets ``shops.uninstalled_at`` (the first time only) and the Shopify connection to
  ``uninstalled`` — :func:`~syncapp.shops.tokens.get_admin_token` then refuses the shop, so
  nothing more is sent to Shopify for it;
* cancels the shop's pending or running onboarding jobs;
* runs the uninstall hooks (the extension point: later issues add, e.g., revoking the shop's
  CTRwow tokens — a callable ``hook(session, shop)`` passed to the worker, run in the same
  transaction so that the whole uninstall commits or retries as one).

The payload (the REST ``Shop``) must name the shop of the header (``myshopify_domain``, else
``domain``; and its ``id`` when the install recorded one): a signed body of another topic or
shop replayed as ``app/uninstalled`` is refused (:mod:`syncapp.shops.payloads`).

Nothing in a delivery proves *when* it was sent (``X-Shopify-Triggered-At`` is not signed, and
the payload is the shop, which looks the same at every uninstall), so an old delivery replayed
under a new webhook id after a reinstall would otherwise undo it. Before the handler runs, the
worker asks Shopify (:func:`confirm_uninstalled`, no transaction held): while the shop's access
token still works the app is installed, and the event is refused. Shopify revokes the tokens
before it sends ``app/uninstalled``.

An event triggered before the shop's current installation (a late or redelivered one after a
reinstall) is stale and ignored, so it cannot undo the reinstall. ``X-Shopify-Triggered-At``
may have whole-second precision and comes from Shopify's clock, so "before" means more than
:data:`STALE_TOLERANCE` before; an uninstall applied wrongly within that window costs only a
fresh token exchange at the merchant's next visit.
"""

from __future__ import annotations

from collections.abc import Callable, Sequence
from datetime import UTC, datetime, timedelta

import structlog
from sqlalchemy import select, update
from sqlalchemy.orm import Session

from syncapp.bus.models import InboundEvent
from syncapp.connectors.shopify.admin import ShopifyUnauthorized, fetch_shop_info
from syncapp.errors import RefusedEvent
from syncapp.onboarding.models import OnboardingJob
from syncapp.shops.errors import ShopifyReauthorizationRequired, ShopNotInstalled
from syncapp.shops.payloads import ShopResource, check_shop, parse
from syncapp.shops.runtime import ShopsRuntime, utc
from syncapp.shops.tokens import (
    PROVIDER,
    UNINSTALLED,
    delete_shopify_credentials,
    get_admin_token,
)
from syncapp.store.locking import lock_row
from syncapp.store.models import Connection, Shop

log = structlog.get_logger("syncapp.shops.uninstall")

UninstallHook = Callable[[Session, Shop], None]
STALE_TOLERANCE = timedelta(seconds=5)


def parse_triggered_at(value: str | None) -> datetime | None:
    """``X-Shopify-Triggered-At`` (RFC 3339, up to nanoseconds) as a UTC datetime, or None."""
    if not value:
        return None
    text = value.strip().replace("Z", "+00:00")
    main, dot, rest = text.partition(".")
    if dot:
        digits = "".join(c for c in rest if c.isdigit())
        zone = rest[len(digits) :]
        text = f"{main}.{digits[:6].ljust(6, '0')}{zone}"
    try:
        parsed = datetime.fromisoformat(text)
    except ValueError:
        return None
    return utc(parsed)


def event_time(event: InboundEvent) -> datetime:
    """When Shopify triggered ``event`` (its header), else when we received it."""
    return parse_triggered_at(event.triggered_at) or utc(event.received_at)


def shopify_accepts_token(runtime: ShopsRuntime, domain: str) -> bool:
    """True while Shopify still accepts the shop's access token: the app is installed there.

    False when the shop has no usable grant here (not installed, its refresh token refused)
    or Shopify answers 401. A network failure or a throttled call raises (retry later).
    No transaction is held during the call.
    """
    try:
        token = get_admin_token(runtime, shop=domain)
    except (ShopNotInstalled, ShopifyReauthorizationRequired):
        return False
    with runtime.http() as http:
        try:
            fetch_shop_info(
                shop=domain, access_token=token, api_version=runtime.api_version, http=http
            )
        except ShopifyUnauthorized:
            return False
    return True


def confirm_uninstalled(runtime: ShopsRuntime, event: InboundEvent) -> None:
    """The worker's precheck: refuse ``event`` while Shopify still accepts the shop's token."""
    if shopify_accepts_token(runtime, event.shop_domain):
        raise RefusedEvent(
            "app/uninstalled refused: Shopify still accepts the shop's access token, so the"
            " app is installed (a delivery replayed or sent before a reinstall)"
        )


def handle_app_uninstalled(
    session: Session,
    runtime: ShopsRuntime,
    event: InboundEvent,
    *,
    hooks: Sequence[UninstallHook] = (),
) -> str:
    """Apply one ``app/uninstalled`` event; returns what happened (for the log)."""
    domain = event.shop_domain
    payload = parse(ShopResource, event, runtime.payload_of(event))
    shop = session.scalar(lock_row(select(Shop).where(Shop.domain == domain)))
    check_shop(event, named_domain=payload.named_domain, named_id=payload.id, shop=shop)
    if shop is None:
        log.info("uninstall.unknown_shop", shop=domain)
        return "unknown_shop"
    if shop.installed_at is not None and (
        event_time(event) < utc(shop.installed_at) - STALE_TOLERANCE
    ):
        log.info("uninstall.stale_event_ignored", shop=domain, installed_at=str(shop.installed_at))
        return "stale"
    removed = delete_shopify_credentials(session, shop_id=shop.id)
    if shop.uninstalled_at is None:
        shop.uninstalled_at = datetime.now(UTC)
    session.execute(
        update(Connection)
        .where(Connection.shop_id == shop.id, Connection.provider == PROVIDER)
        .values(status=UNINSTALLED, detail="app uninstalled from the Shopify admin")
    )
    cancelled = session.execute(
        update(OnboardingJob)
        .where(OnboardingJob.shop_id == shop.id, OnboardingJob.status.in_(("pending", "running")))
        .values(status="cancelled")
    ).rowcount  # type: ignore[attr-defined]
    for hook in hooks:
        hook(session, shop)
    log.info(
        "uninstall.completed",
        shop=domain,
        credentials_deleted=removed,
        onboarding_cancelled=cancelled,
    )
    return "uninstalled"
