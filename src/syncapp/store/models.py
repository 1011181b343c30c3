"""The declarative ``Base`` every table is registered on, and the tables shared across
domains: shops, their connections and credentials, and the privacy-request log.

Domains and the bus declare their own tables on ``Base`` in their own ``models`` modules
(``syncapp.bus.models``, ``syncapp.onboarding.models``, ``syncapp.billing.models``);
:mod:`syncapp.schema` imports them all for the migrations. Nothing here imports a domain.
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
    text,
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
    """A Shopify shop that has installed the app (or did, until it is redacted).

    ``install_locked_*`` is the lease of the token exchange at install, so two first requests
    make one exchange without a lock held during the call to Shopify. ``install_failures``,
    ``install_retry_at`` and ``install_error`` are the backoff after failed exchanges: no
    exchange is tried before ``install_retry_at``.
    """

    __tablename__ = "shops"

    id: Mapped[int] = mapped_column(BigId, primary_key=True, autoincrement=True)
    domain: Mapped[str] = mapped_column(String(255), unique=True)
    name: Mapped[str | None] = mapped_column(String(255))
    email: Mapped[str | None] = mapped_column(String(320))
    currency_code: Mapped[str | None] = mapped_column(String(3))
    plan_name: Mapped[str | None] = mapped_column(String(64))
    # gid://shopify/Shop/<id>, read from the Admin API at install (compliance payloads carry it).
    shopify_gid: Mapped[str | None] = mapped_column(String(64))
    installed_at: Mapped[datetime | None] = mapped_column(DateTime(timezone=True))
    uninstalled_at: Mapped[datetime | None] = mapped_column(DateTime(timezone=True))
    install_locked_by: Mapped[str | None] = mapped_column(String(64))
    install_locked_until: Mapped[datetime | None] = mapped_column(DateTime(timezone=True))
    install_failures: Mapped[int] = mapped_column(Integer, default=0, server_default="0")
    install_retry_at: Mapped[datetime | None] = mapped_column(DateTime(timezone=True))
    install_error: Mapped[str | None] = mapped_column(String(32))
    created_at: Mapped[datetime] = mapped_column(DateTime(timezone=True), default=utcnow)
    updated_at: Mapped[datetime] = mapped_column(
        DateTime(timezone=True), default=utcnow, onupdate=utcnow
    )


class Credential(Base):
    """One secret (token, refresh token, API key) of a shop or of the app itself, encrypted.

    ``shop_id`` is NULL for the app's own (system) credentials. ``ciphertext`` is a Fernet
    token produced by the vault; the plaintext never reaches the database.

    The unique constraint cannot hold system rows: both databases treat NULLs as distinct, so
    a partial unique index keeps one system row per (provider, name).
    """

    __tablename__ = "credentials"
    __table_args__ = (
        UniqueConstraint("shop_id", "provider", "name"),
        Index(
            "uq_credentials_system_provider_name",
            "provider",
            "name",
            unique=True,
            sqlite_where=text("shop_id IS NULL"),
            postgresql_where=text("shop_id IS NULL"),
        ),
    )

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


class Connection(Base):
    """The state of a shop's link to one provider (shopify | emanage | ctrwow).

    ``status`` is ``active``, ``needs_attention`` (a refresh was refused: the merchant must open
    the app again, or reconnect the provider; ``detail`` says why) or ``uninstalled``. The
    ``refresh_locked_*`` pair is the lease a token refresh takes (compare-and-set), so one
    refresh runs per shop and provider across processes without a lock held during the call.
    """

    __tablename__ = "connections"
    __table_args__ = (UniqueConstraint("shop_id", "provider"),)

    id: Mapped[int] = mapped_column(BigId, primary_key=True, autoincrement=True)
    shop_id: Mapped[int] = mapped_column(ForeignKey("shops.id", ondelete="CASCADE"))
    provider: Mapped[str] = mapped_column(String(32))
    status: Mapped[str] = mapped_column(String(24), default="active")
    detail: Mapped[str | None] = mapped_column(Text)
    scopes: Mapped[str | None] = mapped_column(Text)
    refresh_locked_by: Mapped[str | None] = mapped_column(String(64))
    refresh_locked_until: Mapped[datetime | None] = mapped_column(DateTime(timezone=True))
    created_at: Mapped[datetime] = mapped_column(DateTime(timezone=True), default=utcnow)
    updated_at: Mapped[datetime] = mapped_column(
        DateTime(timezone=True), default=utcnow, onupdate=utcnow
    )


class PrivacyRequest(Base):
    """One completed Shopify compliance request (no personal data, and no shop domain).

    ``shop_hash`` is the SHA-256 of the shop domain: an operator can answer "was shop X
    redacted, and when?" by hashing X, while nothing in the database names a redacted shop.
    ``request_ref`` is the ``data_request.id`` of a customer data request, ``export_path`` the
    export written for it (relative to the data directory; cleared when the data is erased).
    ``summary`` is a small JSON object of counts (rows erased, events matched).
    """

    __tablename__ = "privacy_requests"

    id: Mapped[int] = mapped_column(BigId, primary_key=True, autoincrement=True)
    topic: Mapped[str] = mapped_column(String(64))
    shop_hash: Mapped[str] = mapped_column(String(64), index=True)
    request_ref: Mapped[str | None] = mapped_column(String(64))
    received_at: Mapped[datetime] = mapped_column(DateTime(timezone=True))
    completed_at: Mapped[datetime] = mapped_column(DateTime(timezone=True), default=utcnow)
    export_path: Mapped[str | None] = mapped_column(String(512))
    summary: Mapped[str | None] = mapped_column(Text)
