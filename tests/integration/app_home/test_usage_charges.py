"""Usage charges (``billing.record_usage``) through the served Shopify sandbox's Billing API: on
an approved Pro subscription, billed once per idempotency key, added to the line's balance,
refused past the cap and on a plan without usage charges."""

from __future__ import annotations

from decimal import Decimal

import pytest

from syncapp.billing import BillingError, load_catalog, record_usage
from syncapp.connectors.shopify.admin import run_document
from syncapp.shops.tokens import get_admin_token
from tests.integration.app_home.conftest import Home
from tests.integration.app_home.test_home_flows import choose
from tests.integration.shops.conftest import handle_for

CATALOG = load_catalog("")


def balance_used(home: Home, shop: str) -> Decimal:
    """The usage line's ``balanceUsed`` as Shopify reports it."""
    runtime = home.system.runtime
    with runtime.http() as http:
        data = run_document(
            "current_app_installation",
            {},
            shop=shop,
            access_token=get_admin_token(runtime, shop=shop),
            api_version=runtime.api_version,
            http=http,
        )
    [subscription] = data["currentAppInstallation"]["activeSubscriptions"]
    [used] = [
        item["plan"]["pricingDetails"]["balanceUsed"]["amount"]
        for item in subscription["lineItems"]
        if item["plan"]["pricingDetails"]["__typename"] == "AppUsagePricing"
    ]
    return Decimal(str(used))


@pytest.fixture
def pro_shop(home: Home, request: pytest.FixtureRequest) -> str:
    """A signed-up shop on the approved Pro plan ($0.10 a unit, capped at $100)."""
    shop = home.system.create_shop(handle_for(request))
    home.sign_up(shop)
    home.approve(choose(home, shop, "pro").json()["confirmation_url"])
    home.system.wait_for_event(shop, "app_subscriptions/update")
    home.system.drain()
    return shop


def test_usage_is_billed_once_per_idempotency_key(home: Home, pro_shop: str) -> None:
    """Three funnel orders cost $0.30; the same key again returns the same record, unbilled."""
    runtime = home.system.runtime

    def bill(key: str, quantity: int) -> str:
        return record_usage(
            runtime,
            shop=pro_shop,
            catalog=CATALOG,
            description="Funnel orders",
            idempotency_key=key,
            quantity=quantity,
        )

    first = bill("orders-1", 3)
    assert first.startswith("gid://shopify/AppUsageRecord/")
    assert bill("orders-1", 3) == first
    assert balance_used(home, pro_shop) == Decimal("0.30")
    second = bill("orders-2", 1)
    assert second != first
    assert balance_used(home, pro_shop) == Decimal("0.40")


def test_usage_past_the_cap_is_refused_and_not_billed(home: Home, pro_shop: str) -> None:
    """1001 units ($100.10) pass the $100 cap: Shopify's userError, as a BillingError."""
    with pytest.raises(BillingError, match="Shopify refused to record the usage charge"):
        record_usage(
            home.system.runtime,
            shop=pro_shop,
            catalog=CATALOG,
            description="Funnel orders",
            idempotency_key="too-many",
            quantity=1001,
        )
    assert balance_used(home, pro_shop) == Decimal("0")


def test_a_plan_without_usage_charges_bills_nothing(
    home: Home, request: pytest.FixtureRequest
) -> None:
    """On the free plan there is no usage line: a BillingError saying so; quantity 0 is a
    ValueError before anything is sent."""
    shop = home.system.create_shop(handle_for(request))
    home.sign_up(shop)
    runtime = home.system.runtime
    with pytest.raises(BillingError, match="no usage charges"):
        record_usage(runtime, shop=shop, catalog=CATALOG, description="x", idempotency_key="k")
    with pytest.raises(ValueError, match="at least 1"):
        record_usage(
            runtime, shop=shop, catalog=CATALOG, description="x", idempotency_key="k", quantity=0
        )
