"""The plans the merchant can choose, what each one unlocks, and the Billing API line items
that charge for it. Pure: no I/O, no settings reads (the caller passes the catalog).

The built-in catalog (:data:`DEFAULT_PLANS`) is replaced by ``SYNCAPP_BILLING_PLANS`` (a JSON
list of plan objects, :func:`load_catalog`). A plan without a price is free: it never creates a
subscription, and choosing it cancels the paid one.
"""

from __future__ import annotations

from dataclasses import dataclass
from decimal import Decimal
from typing import Any

import orjson
from pydantic import BaseModel, ConfigDict, Field, ValidationError

from syncapp.errors import ConfigError

__all__ = [
    "DEFAULT_PLANS",
    "FREE",
    "Catalog",
    "Features",
    "Plan",
    "features_for",
    "line_items",
    "load_catalog",
]

FREE = "free"


class Plan(BaseModel):
    """One plan: its handle, what Shopify shows the merchant, and what it costs."""

    model_config = ConfigDict(frozen=True, extra="forbid")

    handle: str = Field(pattern=r"^[a-z][a-z0-9_-]{0,31}$")
    name: str = Field(min_length=1, max_length=255)
    summary: str = ""
    price: Decimal | None = Field(default=None, gt=0)
    currency: str = "USD"
    interval: str = Field(default="EVERY_30_DAYS", pattern=r"^(EVERY_30_DAYS|ANNUAL)$")
    usage_price: Decimal | None = Field(default=None, gt=0)
    usage_cap: Decimal | None = Field(default=None, gt=0)
    usage_terms: str = ""
    dedicated_emanage: bool = False
    order_sync: bool = False
    max_funnels: int | None = Field(default=1, ge=0)

    @property
    def is_free(self) -> bool:
        return self.price is None and self.usage_cap is None

    @property
    def subscription_name(self) -> str:
        """The name the subscription carries in Shopify (and in its webhooks)."""
        return f"Sync App {self.name}"


DEFAULT_PLANS: tuple[Plan, ...] = (
    Plan(
        handle=FREE,
        name="Free",
        summary="Your store signed up to a shared eManageCRM instance and to CTRwow, for you.",
        max_funnels=1,
    ),
    Plan(
        handle="pro",
        name="Pro",
        summary="Your own eManageCRM subscription instead of the shared instance.",
        price=Decimal("49.00"),
        usage_price=Decimal("0.10"),
        usage_cap=Decimal("100.00"),
        usage_terms="$0.10 per funnel order, at most $100 every 30 days",
        dedicated_emanage=True,
        order_sync=True,
        max_funnels=10,
    ),
    Plan(
        handle="scale",
        name="Scale",
        summary="Your own eManageCRM subscription, and no per-order charge.",
        price=Decimal("199.00"),
        dedicated_emanage=True,
        order_sync=True,
        max_funnels=None,
    ),
)


@dataclass(frozen=True, slots=True)
class Catalog:
    """The plans on offer, in the order the App Home shows them; the first is free."""

    plans: tuple[Plan, ...]

    def get(self, handle: str) -> Plan | None:
        return next((p for p in self.plans if p.handle == handle), None)

    @property
    def free(self) -> Plan:
        return self.plans[0]

    def by_subscription_name(self, name: str) -> Plan | None:
        """The paid plan whose subscription is called ``name`` (webhooks carry only the name)."""
        return next((p for p in self.plans if not p.is_free and p.subscription_name == name), None)


def load_catalog(raw: str) -> Catalog:
    """The catalog from ``SYNCAPP_BILLING_PLANS`` (JSON list), or the built-in one if empty."""
    if not raw.strip():
        return Catalog(DEFAULT_PLANS)
    try:
        entries: Any = orjson.loads(raw)
        if not isinstance(entries, list) or not entries:
            raise ValueError("must be a non-empty JSON list of plans")
        plans = tuple(Plan.model_validate(e) for e in entries)
    except (orjson.JSONDecodeError, ValidationError, ValueError) as exc:
        raise ConfigError(f"SYNCAPP_BILLING_PLANS: {exc}") from None
    if not plans[0].is_free:
        raise ConfigError("SYNCAPP_BILLING_PLANS: the first plan must be free (no price)")
    handles = [p.handle for p in plans]
    if len(set(handles)) != len(handles):
        raise ConfigError("SYNCAPP_BILLING_PLANS: plan handles must be unique")
    for plan in plans:
        if (plan.usage_cap is None) != (plan.usage_price is None) or (
            plan.usage_cap is not None and not plan.usage_terms
        ):
            raise ConfigError(
                f"SYNCAPP_BILLING_PLANS: plan {plan.handle!r} needs usage_price, usage_cap and"
                " usage_terms together"
            )
    return Catalog(plans)


@dataclass(frozen=True, slots=True)
class Features:
    """What the app lets a shop do on its plan."""

    dedicated_emanage: bool
    order_sync: bool
    max_funnels: int | None  # None: unlimited
    usage_billing: bool

    def allows_funnel(self, existing: int) -> bool:
        """Whether a shop with ``existing`` funnels may create one more."""
        return self.max_funnels is None or existing < self.max_funnels


def features_for(plan: Plan) -> Features:
    """The features ``plan`` unlocks."""
    return Features(
        dedicated_emanage=plan.dedicated_emanage,
        order_sync=plan.order_sync,
        max_funnels=plan.max_funnels,
        usage_billing=plan.usage_cap is not None,
    )


def _money(amount: Decimal, currency: str) -> dict[str, Any]:
    return {"amount": str(amount), "currencyCode": currency}


def line_items(plan: Plan) -> list[dict[str, Any]]:
    """``appSubscriptionCreate``'s ``lineItems`` for ``plan``: recurring and/or capped usage."""
    if plan.is_free:
        raise ValueError(f"the {plan.name} plan is free; it has no subscription")
    items: list[dict[str, Any]] = []
    if plan.price is not None:
        items.append(
            {
                "plan": {
                    "appRecurringPricingDetails": {
                        "price": _money(plan.price, plan.currency),
                        "interval": plan.interval,
                    }
                }
            }
        )
    if plan.usage_cap is not None:
        items.append(
            {
                "plan": {
                    "appUsagePricingDetails": {
                        "cappedAmount": _money(plan.usage_cap, plan.currency),
                        "terms": plan.usage_terms,
                    }
                }
            }
        )
    return items
