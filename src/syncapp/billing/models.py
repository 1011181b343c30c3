"""The shop's Shopify app subscriptions as the app knows them: one row per subscription it
asked Shopify for, keyed by Shopify's GID, with the plan it charges for and its last known
status. The shop's plan is that of its ACTIVE row (the free plan when there is none).

Registered on the shared ``Base.metadata`` (:mod:`syncapp.schema` imports this module)
and created by revision 0200. Rows go with the shop (``ON DELETE CASCADE``).
"""

from __future__ import annotations

from datetime import datetime

from sqlalchemy import Boolean, DateTime, ForeignKey, Index, String, UniqueConstraint
from sqlalchemy.orm import Mapped, mapped_column

from syncapp.store.models import Base, BigId, utcnow


class AppSubscription(Base):
    """One Billing API subscription of a shop.

    ``status`` is Shopify's (PENDING, ACTIVE, DECLINED, EXPIRED, FROZEN, CANCELLED, ACCEPTED).
    ``shopify_updated_at`` is the ``updated_at`` of the last webhook applied, so an older
    webhook delivered late never undoes a newer one.
    """

    __tablename__ = "app_subscriptions"
    __table_args__ = (
        UniqueConstraint("shop_id", "subscription_gid"),
        Index("ix_app_subscriptions_shop_status", "shop_id", "status"),
    )

    id: Mapped[int] = mapped_column(BigId, primary_key=True, autoincrement=True)
    shop_id: Mapped[int] = mapped_column(ForeignKey("shops.id", ondelete="CASCADE"))
    subscription_gid: Mapped[str] = mapped_column(String(128))
    plan: Mapped[str] = mapped_column(String(32))
    name: Mapped[str] = mapped_column(String(255))
    status: Mapped[str] = mapped_column(String(16))
    test: Mapped[bool] = mapped_column(Boolean, default=True)
    shopify_updated_at: Mapped[datetime | None] = mapped_column(DateTime(timezone=True))
    created_at: Mapped[datetime] = mapped_column(DateTime(timezone=True), default=utcnow)
    updated_at: Mapped[datetime] = mapped_column(
        DateTime(timezone=True), default=utcnow, onupdate=utcnow
    )
