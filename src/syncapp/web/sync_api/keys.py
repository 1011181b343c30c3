"""Operator API keys of the Sync API: created by ``syncapp apikey create``, shown once, stored
as a SHA-256 digest, each with scopes and optionally bound to one shop.

A key reads ``sak_<id>_<secret>``: the id finds the row, the secret is compared in constant time
with the stored digest. The secret is 256 random bits, so a plain SHA-256 is enough (a slow
password hash protects low-entropy secrets; this one cannot be guessed). A key bound to a shop is
that shop's data (``ON DELETE CASCADE``: shop/redact removes it).
"""

from __future__ import annotations

import hashlib
import hmac
import secrets
from dataclasses import dataclass
from datetime import datetime

from sqlalchemy import DateTime, ForeignKey, String, select
from sqlalchemy.orm import Mapped, Session, mapped_column, sessionmaker

from syncapp.errors import SyncAppError
from syncapp.store.models import Base, BigId, Shop, utcnow

PREFIX = "sak_"
# What a key may do; a request needs the scope of its route.
SCOPES = {
    "sync:read": "read sync status, conflicts and dead letters",
    "sync:write": "change sync settings",
    "dlq:replay": "replay dead letters",
}


class ApiKey(Base):
    __tablename__ = "api_keys"

    id: Mapped[str] = mapped_column(String(16), primary_key=True)
    name: Mapped[str] = mapped_column(String(128))
    secret_sha256: Mapped[str] = mapped_column(String(64))
    scopes: Mapped[str] = mapped_column(String(255))  # space-separated
    shop_id: Mapped[int | None] = mapped_column(
        BigId, ForeignKey("shops.id", ondelete="CASCADE"), nullable=True
    )
    created_at: Mapped[datetime] = mapped_column(DateTime(timezone=True), default=utcnow)
    revoked_at: Mapped[datetime | None] = mapped_column(DateTime(timezone=True))


class ApiKeyError(SyncAppError):
    """A key cannot be created as asked (unknown scope or shop)."""


@dataclass(frozen=True, slots=True)
class Principal:
    """Who calls: a key's name, what it may do, and the one shop it is bound to (None: all)."""

    name: str
    scopes: frozenset[str]
    shop: str | None

    def may_touch(self, shop: str) -> bool:
        return self.shop is None or self.shop == shop


def _digest(secret: str) -> str:
    return hashlib.sha256(secret.encode()).hexdigest()


def create_key(
    sessions: sessionmaker[Session], *, name: str, scopes: list[str], shop: str | None = None
) -> str:
    """A new key; the returned string is the only time its secret exists outside the caller."""
    unknown = sorted(set(scopes) - SCOPES.keys())
    if unknown or not scopes:
        raise ApiKeyError(f"unknown scope(s) {unknown}; choose from {', '.join(SCOPES)}")
    key_id, secret = secrets.token_hex(8), secrets.token_urlsafe(32)
    with sessions.begin() as session:
        shop_id = None
        if shop is not None:
            shop_id = session.scalar(select(Shop.id).where(Shop.domain == shop))
            if shop_id is None:
                raise ApiKeyError(f"no shop {shop!r} has installed the app")
        session.add(
            ApiKey(
                id=key_id,
                name=name,
                secret_sha256=_digest(secret),
                scopes=" ".join(sorted(set(scopes))),
                shop_id=shop_id,
            )
        )
    return f"{PREFIX}{key_id}_{secret}"


def authenticate(sessions: sessionmaker[Session], presented: str) -> Principal | None:
    """The principal of a presented key, or None (unknown, malformed, wrong or revoked)."""
    if not presented.startswith(PREFIX):
        return None
    key_id, sep, secret = presented[len(PREFIX) :].partition("_")
    if not sep or not secret or len(key_id) != 16:
        return None
    with sessions() as session:
        row = session.execute(
            select(ApiKey, Shop.domain)
            .outerjoin(Shop, Shop.id == ApiKey.shop_id)
            .where(ApiKey.id == key_id)
        ).first()
    if row is None:
        # Compare anyway: a missing id costs what a wrong secret costs.
        hmac.compare_digest(_digest(secret), "0" * 64)
        return None
    key, domain = row
    if not hmac.compare_digest(_digest(secret), key.secret_sha256) or key.revoked_at is not None:
        return None
    return Principal(name=key.name, scopes=frozenset(key.scopes.split()), shop=domain)


def revoke_key(sessions: sessionmaker[Session], key_id: str) -> bool:
    with sessions.begin() as session:
        key = session.get(ApiKey, key_id)
        if key is None or key.revoked_at is not None:
            return False
        key.revoked_at = utcnow()
        return True


def list_keys(sessions: sessionmaker[Session]) -> list[tuple[ApiKey, str | None]]:
    with sessions() as session:
        return [
            (k, d)
            for k, d in session.execute(
                select(ApiKey, Shop.domain)
                .outerjoin(Shop, Shop.id == ApiKey.shop_id)
                .order_by(ApiKey.created_at)
            ).all()
        ]
