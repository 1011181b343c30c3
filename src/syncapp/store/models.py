"""Tables shared across domains: shops, encrypted credentials and inbound events.

Inbound events are the durable hand-off between the web tier and the workers: a verified
webhook (or, later, a CRM notification) is a row here before it is acknowledged, and the
workers take it from here. Two unique constraints make redelivery harmless: the delivery id
(``X-Shopify-Webhook-Id``) and the underlying event id per topic (``X-Shopify-Event-Id``).
"""

from __future__ import annotations

from datetime import UTC, datetime

from sqlalchemy import (
    BigInteger,
    DateTime,
    ForeignKey,
    Index,
    Integer,
    LargeBinary,
    MetaData,
    String,
    Text,
    UniqueConstraint,
)
from sqlalchemy.orm import DeclarativeBase, Mapped, mapped_column

# SQLite only auto-increments an INTEGER PRIMARY KEY; PostgreSQL gets a BIGINT identity.
BigId = BigInteger().with_variant(Integer(), "sqlite")

NAMING = {
    "ix": "ix_%(table_name)s_%(column_0_N_name)s",
    "uq": "uq_%(table_name)s_%(column_0_N_name)s",
    "ck": "ck_%(table_name)s_%(constraint_name)s",
    "fk": "fk_%(table_name)s_%(column_0_name)s_%(referred_table_name)s",
    "pk": "pk_%(table_name)s",
}


def utcnow() -> datetime:
    return datetime.now(UTC)


class Base(DeclarativeBase):
    metadata = MetaData(naming_convention=NAMING)


class Shop(Base):
    """A Shopify shop that has installed the app (or did, until it is redacted)."""

    __tablename__ = "shops"

    id: Mapped[int] = mapped_column(BigId, primary_key=True, autoincrement=True)
    domain: Mapped[str] = mapped_column(String(255), unique=True)
    name: Mapped[str | None] = mapped_column(String(255))
    email: Mapped[str | None] = mapped_column(String(320))
    currency_code: Mapped[str | None] = mapped_column(String(3))
    plan_name: Mapped[str | None] = mapped_column(String(64))
    installed_at: Mapped[datetime | None] = mapped_column(DateTime(timezone=True))
    uninstalled_at: Mapped[datetime | None] = mapped_column(DateTime(timezone=True))
    created_at: Mapped[datetime] = mapped_column(DateTime(timezone=True), default=utcnow)
    updated_at: Mapped[datetime] = mapped_column(
        DateTime(timezone=True), default=utcnow, onupdate=utcnow
    )


class Credential(Base):
    """One secret (token, refresh token, API key) of a shop or of the app itself, encrypted.

    ``shop_id`` is NULL for the app's own (system) credentials. ``ciphertext`` is a Fernet
    token produced by the vault; the plaintext never reaches the database.
    """

    __tablename__ = "credentials"
    __table_args__ = (UniqueConstraint("shop_id", "provider", "name"),)

    id: Mapped[int] = mapped_column(BigId, primary_key=True, autoincrement=True)
    shop_id: Mapped[int | None] = mapped_column(ForeignKey("shops.id", ondelete="CASCADE"))
    provider: Mapped[str] = mapped_column(String(32))  # shopify | emanage | ctrwow
    name: Mapped[str] = mapped_column(String(64))  # offline_token, refresh_token, ...
    ciphertext: Mapped[bytes] = mapped_column(LargeBinary)
    expires_at: Mapped[datetime | None] = mapped_column(DateTime(timezone=True))
    created_at: Mapped[datetime] = mapped_column(DateTime(timezone=True), default=utcnow)
    updated_at: Mapped[datetime] = mapped_column(
        DateTime(timezone=True), default=utcnow, onupdate=utcnow
    )


class InboundEvent(Base):
    """A verified notification from an external system, stored before it is acknowledged."""

    __tablename__ = "inbound_events"
    __table_args__ = (
        UniqueConstraint("source", "delivery_id"),
        UniqueConstraint("source", "shop_domain", "topic", "event_id"),
        Index("ix_inbound_events_status_id", "status", "id"),
    )

    id: Mapped[int] = mapped_column(BigId, primary_key=True, autoincrement=True)
    source: Mapped[str] = mapped_column(String(32))  # shopify | emanage
    shop_domain: Mapped[str] = mapped_column(String(255))
    topic: Mapped[str] = mapped_column(String(128))
    delivery_id: Mapped[str] = mapped_column(String(128))  # X-Shopify-Webhook-Id
    event_id: Mapped[str | None] = mapped_column(String(128))  # X-Shopify-Event-Id
    api_version: Mapped[str | None] = mapped_column(String(16))
    triggered_at: Mapped[str | None] = mapped_column(String(64))
    received_at: Mapped[datetime] = mapped_column(DateTime(timezone=True), default=utcnow)
    payload: Mapped[str] = mapped_column(Text)
    # pending → done | dead; workers (later issues) claim pending rows in id order.
    status: Mapped[str] = mapped_column(String(16), default="pending")
    attempts: Mapped[int] = mapped_column(Integer, default=0)
    last_error: Mapped[str | None] = mapped_column(Text)
