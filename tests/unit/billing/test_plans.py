"""The plan catalog, feature gates and Billing API line items (pure)."""

from __future__ import annotations

from decimal import Decimal

import orjson
import pytest
from hypothesis import given
from hypothesis import strategies as st

from syncapp.billing.plans import DEFAULT_PLANS, features_for, line_items, load_catalog
from syncapp.errors import ConfigError


def test_the_free_plan_has_no_subscription() -> None:
    """Asking for the free plan's line items is an error: it never creates a charge."""
    with pytest.raises(ValueError, match="free"):
        line_items(DEFAULT_PLANS[0])


def test_pro_charges_49_every_30_days_plus_capped_usage() -> None:
    """Pro is one recurring line and one usage line capped at $100."""
    pro = load_catalog("").get("pro")
    assert pro is not None
    assert line_items(pro) == [
        {
            "plan": {
                "appRecurringPricingDetails": {
                    "price": {"amount": "49.00", "currencyCode": "USD"},
                    "interval": "EVERY_30_DAYS",
                }
            }
        },
        {
            "plan": {
                "appUsagePricingDetails": {
                    "cappedAmount": {"amount": "100.00", "currencyCode": "USD"},
                    "terms": "$0.10 per funnel order, at most $100 every 30 days",
                }
            }
        },
    ]


def test_only_paid_plans_unlock_a_dedicated_emanage_subscription_and_order_sync() -> None:
    """Free is gated: shared instance, no order sync, one funnel."""
    free, pro, scale = (features_for(p) for p in DEFAULT_PLANS)
    assert (free.dedicated_emanage, free.order_sync, free.max_funnels) == (False, False, 1)
    assert (pro.dedicated_emanage, pro.order_sync, pro.usage_billing) == (True, True, True)
    assert scale.max_funnels is None


@given(existing=st.integers(min_value=0, max_value=10_000))
def test_a_funnel_is_allowed_only_below_the_plans_limit(existing: int) -> None:
    """allows_funnel is exactly "fewer than max_funnels" (always, when unlimited)."""
    free, pro, scale = (features_for(p) for p in DEFAULT_PLANS)
    assert free.allows_funnel(existing) == (existing < 1)
    assert pro.allows_funnel(existing) == (existing < 10)
    assert scale.allows_funnel(existing)


def test_a_configured_catalog_replaces_the_built_in_one() -> None:
    """SYNCAPP_BILLING_PLANS defines the plans; subscription names map back to them."""
    raw = orjson.dumps(
        [
            {"handle": "starter", "name": "Starter"},
            {"handle": "team", "name": "Team", "price": "19.99", "order_sync": True},
        ]
    ).decode()
    catalog = load_catalog(raw)
    assert [p.handle for p in catalog.plans] == ["starter", "team"]
    team = catalog.by_subscription_name("Sync App Team")
    assert team is not None
    assert team.price == Decimal("19.99")


@pytest.mark.parametrize(
    ("raw", "message"),
    [
        ("[]", "non-empty"),
        ('[{"handle": "pro", "name": "Pro", "price": "5"}]', "first plan must be free"),
        ('[{"handle": "a", "name": "A"}, {"handle": "a", "name": "B"}]', "unique"),
        (
            '[{"handle": "a", "name": "A"}, {"handle": "b", "name": "B", "usage_cap": "5"}]',
            "together",
        ),
        ("not json", "SYNCAPP_BILLING_PLANS"),
    ],
)
def test_a_bad_catalog_is_refused_naming_the_variable(raw: str, message: str) -> None:
    """Configuration errors say what is wrong and where."""
    with pytest.raises(ConfigError, match=message):
        load_catalog(raw)
