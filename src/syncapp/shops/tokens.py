"""The shop's Shopify offline token: stored encrypted, refreshed once at a time per shop.

An expiring offline token lives an hour and comes with a refresh token that Shopify rotates on
every refresh. :func:`get_admin_token` returns the stored token while more than the refresh
margin (5 minutes by default) is left. Otherwise it takes the refresh lease on the shop's Shopify
``connections`` row (a compare-and-set UPDATE of ``refresh_locked_by``/``refresh_locked_until``),
reads the pair again — the previous holder may have just refreshed it, and then its token is
used — asks Shopify for a new pair with no transaction open, stores it in a short transaction and
releases the lease. Callers that find the lease taken poll until the holder's pair is stored (or
the lease runs out: a holder that died). So any number of processes make one refresh per expiry,
and no database lock is held during the round trip to Shopify: on SQLite a lock held then would
stall every writer of every process, the webhook ingest included.

Refreshing uses shopifyapp's ``refresh_token_exchanged_access_token``. A refused refresh
(``invalid_grant``: revoked or rotated away; ``invalid_client``: uninstalled or wrong
credentials; an expired refresh token) marks the shop's Shopify connection
``needs_attention`` and raises :class:`ShopifyReauthorizationRequired`; the next App Home visit
exchanges a fresh ID token and clears it. A transient failure raises
:class:`ShopifyTokenUnavailable` unless the current token still has a little life left.
"""

from __future__ import annotations

import time
from dataclasses import dataclass
from datetime import UTC, datetime, timedelta

import structlog
from shopify_app import TokenExchangeAccessToken
from sqlalchemy import delete, select, update
from sqlalchemy.orm import Session

from syncapp.shops.errors import (
    ShopifyReauthorizationRequired,
    ShopifyTokenUnavailable,
    ShopNotInstalled,
)
from syncapp.shops.runtime import ShopsRuntime, shop_name, utc
from syncapp.store.locking import Lease, lease_owner, lock_row, locked_transaction
from syncapp.store.models import Connection, Credential, Shop
from syncapp.store.vault import Vault, put_secret

log = structlog.get_logger("syncapp.shops.tokens")

PROVIDER = "shopify"
ACCESS_TOKEN = "offline_access_token"  # noqa: S105 (a credential name, not a secret)
REFRESH_TOKEN = "offline_refresh_token"  # noqa: S105
ACTIVE = "active"
NEEDS_ATTENTION = "needs_attention"
UNINSTALLED = "uninstalled"
# shopifyapp log codes after which only a new token exchange (the merchant) can help.
REAUTHORIZE_CODES = frozenset({"invalid_grant", "invalid_client", "refresh_token_expired"})
# On a transient refresh failure, a token with at least this much life left is still handed out.
STILL_USABLE = timedelta(seconds=30)
# The refresh lease outlives the HTTP client's timeouts; a holder that dies leaves it to expire.
REFRESH_LEASE = Lease(
    Connection.refresh_locked_by, Connection.refresh_locked_until, timedelta(seconds=30)
)


@dataclass(frozen=True, slots=True)
class TokenPair:
    """The stored offline token of one shop (decrypted)."""

    access_token: str
    access_expires_at: datetime | None
    refresh_token: str | None
    refresh_expires_at: datetime | None

    def usable_for(self, margin: timedelta, now: datetime) -> bool:
        """True when the access token does not expire within ``margin`` of ``now``."""
        return self.access_expires_at is None or self.access_expires_at - now > margin


def _parse_expiry(value: str | None) -> datetime | None:
    if not value:
        return None
    return datetime.fromisoformat(value.replace("Z", "+00:00")).astimezone(UTC)


def read_pair(session: Session, vault: Vault, *, shop_id: int) -> TokenPair | None:
    """The shop's stored Shopify token pair, or None when there is no access token."""
    rows = {
        row.name: row
        for row in session.scalars(
            select(Credential).where(
                Credential.shop_id == shop_id,
                Credential.provider == PROVIDER,
                Credential.name.in_((ACCESS_TOKEN, REFRESH_TOKEN)),
            )
        )
    }
    access = rows.get(ACCESS_TOKEN)
    if access is None:
        return None
    refresh = rows.get(REFRESH_TOKEN)
    return TokenPair(
        access_token=vault.decrypt(access.ciphertext),
        access_expires_at=utc(access.expires_at) if access.expires_at else None,
        refresh_token=vault.decrypt(refresh.ciphertext) if refresh else None,
        refresh_expires_at=utc(refresh.expires_at) if refresh and refresh.expires_at else None,
    )


def store_pair(
    session: Session, vault: Vault, *, shop_id: int, token: TokenExchangeAccessToken
) -> None:
    """Replace the shop's stored pair with ``token`` (one row per secret). The caller commits."""
    put_secret(
        session,
        vault,
        shop_id=shop_id,
        provider=PROVIDER,
        name=ACCESS_TOKEN,
        value=token.token,
        expires_at=_parse_expiry(token.expires),
    )
    if token.refresh_token:
        put_secret(
            session,
            vault,
            shop_id=shop_id,
            provider=PROVIDER,
            name=REFRESH_TOKEN,
            value=token.refresh_token,
            expires_at=_parse_expiry(token.refresh_token_expires),
        )
    else:
        session.execute(
            delete(Credential).where(
                Credential.shop_id == shop_id,
                Credential.provider == PROVIDER,
                Credential.name == REFRESH_TOKEN,
            )
        )


def delete_shopify_credentials(session: Session, *, shop_id: int) -> int:
    """Forget every Shopify secret of the shop; returns how many rows went."""
    result = session.execute(
        delete(Credential).where(Credential.shop_id == shop_id, Credential.provider == PROVIDER)
    )
    return int(result.rowcount or 0)  # type: ignore[attr-defined]


def _installed(session: Session, domain: str, *, lock: bool = False) -> tuple[Shop, Connection]:
    """The installed shop and its Shopify connection (``lock``: its row ``FOR UPDATE``)."""
    shop = session.scalar(select(Shop).where(Shop.domain == domain))
    if shop is None or shop.uninstalled_at is not None or shop.installed_at is None:
        raise ShopNotInstalled(
            f"{domain} has not installed the app (or has uninstalled it): there is no Shopify"
            " token to use; the merchant installs it from the Shopify admin",
            shop=domain,
        )
    statement = select(Connection).where(
        Connection.shop_id == shop.id, Connection.provider == PROVIDER
    )
    connection = session.scalar(lock_row(statement) if lock else statement)
    if connection is None:
        raise ShopNotInstalled(f"{domain} has no Shopify connection recorded", shop=domain)
    return shop, connection


def _reauthorize(domain: str, detail: str) -> ShopifyReauthorizationRequired:
    return ShopifyReauthorizationRequired(
        f"Shopify refused the refresh token of {domain} ({detail}); the shop's Shopify"
        " connection needs attention: the merchant must open the app in the Shopify admin",
        shop=domain,
    )


def get_admin_token(runtime: ShopsRuntime, *, shop: str) -> str:
    """A valid Admin API access token for ``shop`` (``<name>.myshopify.com``).

    Raises :class:`ShopNotInstalled`, :class:`ShopifyReauthorizationRequired` or
    :class:`ShopifyTokenUnavailable` (see the module docstring).
    """
    margin = timedelta(seconds=runtime.refresh_margin_seconds)
    owner = lease_owner()
    deadline = time.monotonic() + REFRESH_LEASE.duration.total_seconds() * 2
    while True:
        with runtime.sessions() as session:
            shop_row, connection = _installed(session, shop)
            if connection.status == NEEDS_ATTENTION:
                raise _reauthorize(shop, connection.detail or "refused earlier")
            pair = read_pair(session, runtime.vault, shop_id=shop_row.id)
            if pair is None:
                raise ShopNotInstalled(f"{shop} has no stored Shopify token", shop=shop)
            if pair.usable_for(margin, _now()) or pair.refresh_token is None:
                # No refresh token: a non-expiring token (installed before expiring tokens).
                return pair.access_token
            shop_id, connection_id = shop_row.id, connection.id
        if REFRESH_LEASE.take(runtime.sessions, Connection.id == connection_id, owner):
            break
        if time.monotonic() > deadline:
            raise ShopifyTokenUnavailable(
                f"another process has been refreshing the Shopify token of {shop} for too"
                " long; retry later",
                shop=shop,
            )
        time.sleep(REFRESH_LEASE.poll_seconds)
    try:
        return _refresh_holding_lease(runtime, shop, shop_id, connection_id, margin)
    finally:
        REFRESH_LEASE.release(runtime.sessions, Connection.id == connection_id, owner)


def _refresh_holding_lease(
    runtime: ShopsRuntime, shop: str, shop_id: int, connection_id: int, margin: timedelta
) -> str:
    """Refresh with no transaction open during the call to Shopify; store the rotated pair."""
    with runtime.sessions() as session:
        # Whoever held the lease before us may have just stored a fresh pair.
        pair = read_pair(session, runtime.vault, shop_id=shop_id)
    now = _now()
    if pair is None:
        raise ShopNotInstalled(f"{shop} has no stored Shopify token", shop=shop)
    if pair.usable_for(margin, now) or pair.refresh_token is None:
        log.info("shopify.token.refreshed_elsewhere", shop=shop)
        return pair.access_token
    with runtime.http() as http:
        result = runtime.shopify.refresh_token_exchanged_access_token(
            {
                "shop": shop_name(shop),
                "refresh_token": pair.refresh_token,
                # We decide when to refresh (the margin above, wider than shopifyapp's 60 s);
                # without an expiry the library refreshes unconditionally.
                "expires": None,
                "refresh_token_expires": (
                    pair.refresh_expires_at.strftime("%Y-%m-%dT%H:%M:%SZ")
                    if pair.refresh_expires_at
                    else None
                ),
                "access_mode": "offline",
            },
            http_client=http,
        )
    if result.ok and result.access_token is not None and result.access_token.token:
        token = result.access_token
        with locked_transaction(runtime.sessions) as session:
            # An uninstall that landed during the call deleted the pair; do not bring it back.
            _installed(session, shop, lock=True)
            store_pair(session, runtime.vault, shop_id=shop_id, token=token)
        log.info("shopify.token.refreshed", shop=shop, expires=token.expires)
        return token.token
    code = result.log.code
    if code in REAUTHORIZE_CODES:
        with runtime.sessions.begin() as session:
            session.execute(
                update(Connection)
                .where(Connection.id == connection_id, Connection.status == ACTIVE)
                .values(status=NEEDS_ATTENTION, detail=f"token refresh refused: {code}")
                .execution_options(synchronize_session=False)
            )
        log.error("shopify.token.refresh_refused", shop=shop, code=code)
        raise _reauthorize(shop, code)
    if pair.access_expires_at is not None and pair.access_expires_at - now > STILL_USABLE:
        log.warning(
            "shopify.token.refresh_failed_using_current",
            shop=shop,
            code=code,
            seconds_left=int((pair.access_expires_at - now).total_seconds()),
        )
        return pair.access_token
    log.warning("shopify.token.refresh_failed", shop=shop, code=code)
    raise ShopifyTokenUnavailable(
        f"refreshing the Shopify token of {shop} failed ({code}); retry later", shop=shop
    )


def _now() -> datetime:
    return datetime.now(UTC)
