"""The sync engine's state: per-shop settings, links between synced pairs, recorded conflicts
and the resumable cursors of backfills and reconcile sweeps.

A **link** is one synced pair of one shop: a Shopify product (or variant) and the eManageCRM
product (or variant) it is kept equal to, with the last state both sides agreed on — its
fingerprint per side and the agreed fields themselves (the base of the three-way merge). Writing
one side records that side's new fingerprint in the same fenced transaction as the outcome, so
the write's own echo (the webhook or notification it causes) finds nothing new: loops cannot
happen by construction (DESIGN §4). ``last_operation`` is the origin marker the last write
carried, a second guard against echoes.

Every table hangs off ``shops`` with ``ON DELETE CASCADE``: ``shop/redact`` erases it all.
Created by revision 1400.
"""

from __future__ import annotations

from datetime import datetime

from sqlalchemy import (
    JSON,
    Boolean,
    DateTime,
    ForeignKey,
    Index,
    Integer,
    String,
    Text,
    UniqueConstraint,
)
from sqlalchemy.orm import Mapped, mapped_column

from syncapp.store.models import Base, BigId, utcnow

PRODUCT = "product"
VARIANT = "variant"


class SyncSettings(Base):
    """What a shop keeps synchronized (*Keep Products Synchronized*, default ON). A shop
    without a row has the defaults; turning products ON starts a backfill."""

    __tablename__ = "sync_settings"

    shop_id: Mapped[int] = mapped_column(
        ForeignKey("shops.id", ondelete="CASCADE"), primary_key=True
    )
    keep_products_synchronized: Mapped[bool] = mapped_column(
        Boolean, default=True, server_default="1"
    )
    updated_at: Mapped[datetime] = mapped_column(
        DateTime(timezone=True), default=utcnow, onupdate=utcnow
    )


class SyncLink(Base):
    """One synced pair. ``shopify_gid`` or ``emanage_id`` is empty only while the create on
    that side is in flight (its idempotency key is the other side's id, so a retried create
    finds or makes the same object). A variant's ``parent_id`` is its product's link."""

    __tablename__ = "sync_links"
    __table_args__ = (
        UniqueConstraint("shop_id", "kind", "shopify_gid"),
        UniqueConstraint("shop_id", "kind", "emanage_id"),
        Index("ix_sync_links_parent_id", "parent_id"),
    )

    id: Mapped[int] = mapped_column(BigId, primary_key=True, autoincrement=True)
    shop_id: Mapped[int] = mapped_column(ForeignKey("shops.id", ondelete="CASCADE"))
    kind: Mapped[str] = mapped_column(String(16))  # PRODUCT | VARIANT
    parent_id: Mapped[int | None] = mapped_column(ForeignKey("sync_links.id", ondelete="CASCADE"))
    shopify_gid: Mapped[str | None] = mapped_column(String(128))
    emanage_id: Mapped[str | None] = mapped_column(String(64))
    sku: Mapped[str | None] = mapped_column(String(255))
    # The last agreed state: its fingerprint as each side computes it, and the fields.
    shopify_fingerprint: Mapped[str | None] = mapped_column(String(64))
    emanage_fingerprint: Mapped[str | None] = mapped_column(String(64))
    agreed: Mapped[dict[str, object] | None] = mapped_column(JSON)
    # Each side's own clock for the agreed state: a notification older than these is stale.
    shopify_updated_at: Mapped[datetime | None] = mapped_column(DateTime(timezone=True))
    emanage_updated_at: Mapped[datetime | None] = mapped_column(DateTime(timezone=True))
    emanage_version: Mapped[int | None] = mapped_column(Integer)  # for If-Match
    archived: Mapped[bool] = mapped_column(Boolean, default=False, server_default="0")
    last_operation: Mapped[str | None] = mapped_column(String(64))
    created_at: Mapped[datetime] = mapped_column(DateTime(timezone=True), default=utcnow)
    updated_at: Mapped[datetime] = mapped_column(
        DateTime(timezone=True), default=utcnow, onupdate=utcnow
    )


class SyncConflict(Base):
    """A field both sides changed since the last agreed state, and how the policy settled it;
    or a pair the engine refused to link automatically (a SKU shared by two variants)."""

    __tablename__ = "sync_conflicts"
    __table_args__ = (Index("ix_sync_conflicts_shop_id_created_at", "shop_id", "created_at"),)

    id: Mapped[int] = mapped_column(BigId, primary_key=True, autoincrement=True)
    shop_id: Mapped[int] = mapped_column(ForeignKey("shops.id", ondelete="CASCADE"))
    link_id: Mapped[int | None] = mapped_column(ForeignKey("sync_links.id", ondelete="SET NULL"))
    kind: Mapped[str] = mapped_column(String(32))  # "field" | "shared_sku" | ...
    field: Mapped[str | None] = mapped_column(String(64))
    shopify_value: Mapped[object | None] = mapped_column(JSON)
    emanage_value: Mapped[object | None] = mapped_column(JSON)
    winner: Mapped[str | None] = mapped_column(String(16))  # "shopify" | "emanage" | None
    reason: Mapped[str] = mapped_column(Text)
    created_at: Mapped[datetime] = mapped_column(DateTime(timezone=True), default=utcnow)
    resolved_at: Mapped[datetime | None] = mapped_column(DateTime(timezone=True))


class SyncCursor(Base):
    """Where a backfill or a reconcile sweep of one shop stands, so that it resumes there
    after a restart: ``name`` such as ``backfill``, ``sweep.shopify``, ``sweep.emanage``;
    ``position`` is the side's own cursor (a bulk operation id and line, an ``updated_at``
    watermark with the last id seen at it)."""

    __tablename__ = "sync_cursors"

    shop_id: Mapped[int] = mapped_column(
        ForeignKey("shops.id", ondelete="CASCADE"), primary_key=True
    )
    name: Mapped[str] = mapped_column(String(32), primary_key=True)
    position: Mapped[dict[str, object]] = mapped_column(JSON, default=dict)
    done: Mapped[bool] = mapped_column(Boolean, default=False, server_default="0")
    updated_at: Mapped[datetime] = mapped_column(
        DateTime(timezone=True), default=utcnow, onupdate=utcnow
    )
