"""The shop's Shopify offline token: stored encrypted, refreshed once at a time per shop.

An expiring offline token lives an hour and comes with a refresh token that Shopify rotates on
every refresh. :func:`get_admin_token` returns the stored token while more than the refresh
margin (5 minutes by default) is left; otherwise it takes the shop's lock (see
:mod:`syncapp.shops.locking`: the ``connections`` row ``FOR UPDATE`` on PostgreSQL,
``BEGIN IMMEDIATE`` on SQLite), reads the pair again — another process may have refreshed it
meanwhile, and then its token is used — and only then asks Shopify for a new pair, which it
stores in the same transaction. So any number of processes make one refresh per expiry.
The call to Shopify is made while the lock is held: on SQLite that holds every other writer
for one round trip (once per shop per hour); on PostgreSQL only that shop's refreshers wait.

Refreshing uses shopifyapp's ``refresh_token_exchanged_access_token``. A refused refresh
(``invalid_grant``: revoked or rotated away; ``invalid_client``: uninstalled or wrong
credentials; an expired refresh token) marks the shop's Shopify connection
``needs_attention`` and raises :class:`ShopifyReauthorizationRequired`; the next App Home visit
exchanges a fresh ID token and clears it. A transient failure raises
:class:`ShopifyTokenUnavailable` unless the current token still has a little life left.
"""

from __future__ import annotations

from dataclasses import dataclass
from datetime import UTC, datetime, timedelta

import structlog
from shopify_app import TokenExchangeAccessToken
from sqlalchemy import delete, select
from sqlalchemy.orm import Session

from syncapp.shops.errors import (
    ShopifyReauthorizationRequired,
    ShopifyTokenUnavailable,
    ShopNotInstalled,
)
from syncapp.shops.locking import lock_row, locked_transaction
from syncapp.shops.runtime import ShopsRuntime, shop_name, utc
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


def _installed(session: Session, domain: str) -> tuple[Shop, Connection]:
    shop = session.scalar(select(Shop).where(Shop.domain == domain))
    if shop is None or shop.uninstalled_at is not None or shop.installed_at is None:
        raise ShopNotInstalled(
            f"{domain} has not installed the app (or has uninstalled it): there is no Shopify"
            " token to use; the merchant installs it from the Shopify admin",
            shop=domain,
        )
    connection = session.scalar(
        lock_row(
            select(Connection).where(Connection.shop_id == shop.id, Connection.provider == PROVIDER)
        )
    )
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
    with runtime.sessions() as session:
        shop_row = session.scalar(select(Shop).where(Shop.domain == shop))
        if shop_row is not None and shop_row.uninstalled_at is None:
            pair = read_pair(session, runtime.vault, shop_id=shop_row.id)
            status = session.scalar(
                select(Connection.status).where(
                    Connection.shop_id == shop_row.id, Connection.provider == PROVIDER
                )
            )
            if pair is not None and status == ACTIVE and pair.usable_for(margin, _now()):
                return pair.access_token

    refused: str | None = None
    transient: str | None = None
    with locked_transaction(runtime.sessions) as session:
        shop_row, connection = _installed(session, shop)
        if connection.status == NEEDS_ATTENTION:
            raise _reauthorize(shop, connection.detail or "refused earlier")
        pair = read_pair(session, runtime.vault, shop_id=shop_row.id)
        if pair is None:
            raise ShopNotInstalled(f"{shop} has no stored Shopify token", shop=shop)
        now = _now()
        if pair.usable_for(margin, now):
            log.info("shopify.token.refreshed_elsewhere", shop=shop)
            return pair.access_token
        if pair.refresh_token is None:
            # A non-expiring token (a shop installed before expiring tokens): nothing to refresh.
            return pair.access_token
        with runtime.http() as http:
            result = runtime.shopify.refresh_token_exchanged_access_token(
                {
                    "shop": shop_name(shop),
                    "refresh_token": pair.refresh_token,
                    # We decide when to refresh (the margin above, wider than shopifyapp's
                    # 60 s); without an expiry the library refreshes unconditionally.
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
            store_pair(session, runtime.vault, shop_id=shop_row.id, token=result.access_token)
            log.info("shopify.token.refreshed", shop=shop, expires=result.access_token.expires)
            return result.access_token.token
        if result.log.code in REAUTHORIZE_CODES:
            connection.status = NEEDS_ATTENTION
            connection.detail = f"token refresh refused: {result.log.code}"
            refused = result.log.code
        elif pair.access_expires_at is not None and pair.access_expires_at - now > STILL_USABLE:
            log.warning(
                "shopify.token.refresh_failed_using_current",
                shop=shop,
                code=result.log.code,
                seconds_left=int((pair.access_expires_at - now).total_seconds()),
            )
            return pair.access_token
        else:
            transient = result.log.code
    # Out of the transaction: the needs_attention mark above is committed before we raise.
    if refused is not None:
        log.error("shopify.token.refresh_refused", shop=shop, code=refused)
        raise _reauthorize(shop, refused)
    log.warning("shopify.token.refresh_failed", shop=shop, code=transient)
    raise ShopifyTokenUnavailable(
        f"refreshing the Shopify token of {shop} failed ({transient}); retry later", shop=shop
    )


def _now() -> datetime:
    return datetime.now(UTC)
