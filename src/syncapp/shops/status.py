"""What the App Home shows about one shop: identity, plan, connection and onboarding state."""

from __future__ import annotations

from dataclasses import asdict, dataclass
from datetime import datetime
from typing import Any

from sqlalchemy import select

from syncapp.onboarding.models import OnboardingJob
from syncapp.shops.errors import ShopNotInstalled
from syncapp.shops.runtime import ShopsRuntime, utc
from syncapp.shops.tokens import PROVIDER
from syncapp.store.models import Connection, Shop


@dataclass(frozen=True, slots=True)
class ShopStatus:
    """A read-only view of one installed shop."""

    domain: str
    name: str | None
    email: str | None
    currency_code: str | None
    plan_name: str | None
    installed_at: datetime | None
    shopify_connection: str | None
    onboarding: str | None

    def as_json(self) -> dict[str, Any]:
        data = asdict(self)
        data["installed_at"] = self.installed_at.isoformat() if self.installed_at else None
        return data


def shop_status(runtime: ShopsRuntime, *, shop: str) -> ShopStatus:
    """The status of ``shop``; raises :class:`ShopNotInstalled` when it has no row."""
    with runtime.sessions() as session:
        row = session.scalar(select(Shop).where(Shop.domain == shop))
        if row is None:
            raise ShopNotInstalled(f"{shop} is not installed", shop=shop)
        connection = session.scalar(
            select(Connection.status).where(
                Connection.shop_id == row.id, Connection.provider == PROVIDER
            )
        )
        onboarding = session.scalar(
            select(OnboardingJob.status)
            .where(OnboardingJob.shop_id == row.id)
            .order_by(OnboardingJob.id)
        )
        return ShopStatus(
            domain=row.domain,
            name=row.name,
            email=row.email,
            currency_code=row.currency_code,
            plan_name=row.plan_name,
            installed_at=utc(row.installed_at) if row.installed_at else None,
            shopify_connection=connection,
            onboarding=onboarding,
        )
