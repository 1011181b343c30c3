"""Billing through Shopify's Billing API: the plans (:mod:`.plans`, pure), the shop's
subscriptions (:mod:`.models`) and the plan changes, read-back and webhook handling
(:mod:`.service`)."""

from syncapp.billing.plans import (
    DEFAULT_PLANS,
    FREE,
    Catalog,
    Features,
    Plan,
    features_for,
    line_items,
    load_catalog,
)
from syncapp.billing.service import (
    AlreadyOnPlan,
    BillingError,
    ConfirmationNeeded,
    PlanState,
    charge_outcome,
    choose_plan,
    handle_subscription_update,
    plan_state,
    record_usage,
    refresh_from_shopify,
)

__all__ = [
    "DEFAULT_PLANS",
    "FREE",
    "AlreadyOnPlan",
    "BillingError",
    "Catalog",
    "ConfirmationNeeded",
    "Features",
    "Plan",
    "PlanState",
    "charge_outcome",
    "choose_plan",
    "features_for",
    "handle_subscription_update",
    "line_items",
    "load_catalog",
    "plan_state",
    "record_usage",
    "refresh_from_shopify",
]
