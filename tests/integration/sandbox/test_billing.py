"""The Billing API over real HTTP, as the app uses it: create a subscription over Admin
GraphQL, the merchant approves or declines it on the confirmation page, usage is charged up
to the cap with idempotency, a new subscription replaces the old one, cancelling and
uninstalling end it, and each status change records ``app_subscriptions/update``."""

from __future__ import annotations

import json
import re
from collections.abc import Iterator
from typing import Any
from urllib.parse import parse_qs, urlparse

import httpx
import pytest

from syncapp.sandbox.shopify.oauth import load_access_scopes

from .conftest import APP_TOML, RunningSandbox, make_config, running_sandbox

API = "https://{shop}/admin/api/2026-10/graphql.json"
RETURN_URL = "http://127.0.0.1:8000/billing/return?plan=pro"

CREATE = """
mutation Create($name: String!, $returnUrl: URL!, $lineItems: [AppSubscriptionLineItemInput!]!,
                $test: Boolean, $trialDays: Int,
                $replacementBehavior: AppSubscriptionReplacementBehavior) {
  appSubscriptionCreate(name: $name, returnUrl: $returnUrl, lineItems: $lineItems, test: $test,
                        trialDays: $trialDays, replacementBehavior: $replacementBehavior) {
    appSubscription {
      id name status test trialDays
      lineItems { id plan { pricingDetails { __typename
        ... on AppRecurringPricing { interval price { amount currencyCode } }
        ... on AppUsagePricing { terms cappedAmount { amount currencyCode } balanceUsed { amount } }
      } } }
    }
    confirmationUrl
    userErrors { field message }
  }
}
"""

INSTALLATION = """
{ currentAppInstallation { id app { handle apiKey }
    activeSubscriptions { id name status test currentPeriodEnd trialDays } } }
"""
NODE = "query($id: ID!) { node(id: $id) { ... on AppSubscription { id name status } } }"
CANCEL = """
mutation($id: ID!) { appSubscriptionCancel(id: $id, prorate: true) {
  appSubscription { id status } userErrors { field message } } }
"""
USAGE = """
mutation($id: ID!, $amount: Decimal!, $key: String) {
  appUsageRecordCreate(subscriptionLineItemId: $id, description: "Funnel orders",
                       price: {amount: $amount, currencyCode: USD}, idempotencyKey: $key) {
    appUsageRecord { id price { amount } idempotencyKey }
    userErrors { field message }
  }
}
"""
BALANCE = """
query($id: ID!) { node(id: $id) { ... on AppSubscription { lineItems {
  plan { pricingDetails { ... on AppUsagePricing { balanceUsed { amount } } } }
  usageRecords(first: 10) { nodes { id } } } } } }
"""

RECURRING = {
    "plan": {
        "appRecurringPricingDetails": {
            "price": {"amount": "29.00", "currencyCode": "USD"},
            "interval": "EVERY_30_DAYS",
        }
    }
}
USAGE_ITEM = {
    "plan": {
        "appUsagePricingDetails": {
            "cappedAmount": {"amount": "100.00", "currencyCode": "USD"},
            "terms": "$0.50 per funnel order",
        }
    }
}


@pytest.fixture(scope="module")
def served(tmp_path_factory: pytest.TempPathFactory) -> Iterator[RunningSandbox]:
    config = make_config(
        tmp_path_factory.mktemp("billing"),
        "http://127.0.0.1:8000",
        deliver_webhooks=False,
        extra={"scopes": load_access_scopes(APP_TOML), "app_toml": str(APP_TOML)},
    )
    with running_sandbox(config) as running:
        yield running


class Merchant:
    """One shop with the app installed, reached as the app reaches Shopify."""

    def __init__(self, sandbox: RunningSandbox, handle: str) -> None:
        self.sandbox = sandbox
        self.shop = str(sandbox.create_shop(handle)["domain"])
        token = sandbox.control.post(f"/_sandbox/shops/{self.shop}/custom_token", json={})
        self.token = str(token.json()["access_token"])
        self.client = sandbox.shop_client()

    def gql(self, query: str, variables: dict[str, Any] | None = None) -> dict[str, Any]:
        response = self.client.post(
            API.format(shop=self.shop),
            json={"query": query, "variables": variables or {}},
            headers={"X-Shopify-Access-Token": self.token},
        )
        assert response.status_code == 200, response.text
        body: dict[str, Any] = response.json()
        assert "errors" not in body, body["errors"]
        data: dict[str, Any] = body["data"]
        return data

    def create(self, *items: dict[str, Any], **args: Any) -> dict[str, Any]:
        variables = {
            "name": "Pro",
            "returnUrl": RETURN_URL,
            "lineItems": list(items) or [RECURRING],
            "test": True,
            **args,
        }
        payload: dict[str, Any] = self.gql(CREATE, variables)["appSubscriptionCreate"]
        return payload

    def confirm_page(self, confirmation_url: str) -> httpx.Response:
        path = urlparse(confirmation_url).path
        page = self.sandbox.control.get(path)
        assert page.status_code == 200, page.text
        return page

    def decide(self, confirmation_url: str, decision: str) -> httpx.Response:
        page = self.confirm_page(confirmation_url)
        token = re.search(r'name="csrf_token" value="([0-9a-f]+)"', page.text)
        assert token
        path = urlparse(confirmation_url).path.removesuffix("/confirm")
        return self.sandbox.control.post(f"{path}/{decision}", data={"csrf_token": token[1]})

    def subscribe(self, *items: dict[str, Any], **args: Any) -> dict[str, Any]:
        created = self.create(*items, **args)
        assert created["userErrors"] == []
        assert self.decide(created["confirmationUrl"], "approve").status_code == 303
        subscription: dict[str, Any] = created["appSubscription"]
        return subscription

    def status(self, subscription_id: str) -> str:
        return str(self.gql(NODE, {"id": subscription_id})["node"]["status"])

    def webhooks(self, topic: str = "app_subscriptions/update") -> list[dict[str, Any]]:
        with self.sandbox.state.db.transaction() as conn:
            rows = conn.execute(
                "SELECT payload FROM webhook_outbox WHERE shop_domain = ? AND topic = ?"
                " ORDER BY id",
                (self.shop, topic),
            ).fetchall()
        return [json.loads(r["payload"])["app_subscription"] for r in rows]


@pytest.fixture
def merchant(served: RunningSandbox, request: pytest.FixtureRequest) -> Iterator[Merchant]:
    handle = "b-" + re.sub(r"[^a-z0-9]+", "-", request.node.name.lower())[:40].strip("-")
    m = Merchant(served, handle)
    yield m
    m.client.close()


def usage_line_item(subscription: dict[str, Any]) -> str:
    return next(
        str(item["id"])
        for item in subscription["lineItems"]
        if item["plan"]["pricingDetails"]["__typename"] == "AppUsagePricing"
    )


def test_a_new_subscription_is_pending_with_a_confirmation_url(merchant: Merchant) -> None:
    """appSubscriptionCreate answers PENDING and the sandbox's confirmation page for it."""
    created = merchant.create(RECURRING, USAGE_ITEM, trialDays=7)
    subscription = created["appSubscription"]
    assert created["userErrors"] == []
    assert subscription["status"] == "PENDING"
    assert subscription["test"] is True
    assert subscription["trialDays"] == 7
    number = subscription["id"].rsplit("/", 1)[1]
    handle = merchant.shop.removesuffix(".myshopify.com")
    assert created["confirmationUrl"] == (
        f"http://127.0.0.1:8100/store/{handle}/charges/{number}/confirm"
    )
    kinds = [i["plan"]["pricingDetails"]["__typename"] for i in subscription["lineItems"]]
    assert kinds == ["AppRecurringPricing", "AppUsagePricing"]


def test_the_confirmation_page_shows_the_charge(merchant: Merchant) -> None:
    """Name, price, interval, the usage cap and terms and 'Test charge' are on the page."""
    created = merchant.create(RECURRING, USAGE_ITEM)
    page = merchant.confirm_page(created["confirmationUrl"]).text
    for text in ("Pro", "29.00 USD", "every 30 days", "100.00 USD", "per funnel order"):
        assert text in page
    assert "Test charge" in page


def test_approving_activates_and_redirects_to_the_return_url_with_charge_id(
    merchant: Merchant,
) -> None:
    """Approve → ACTIVE, and the browser goes to returnUrl with charge_id added."""
    created = merchant.create(RECURRING)
    response = merchant.decide(created["confirmationUrl"], "approve")
    assert response.status_code == 303
    target = urlparse(response.headers["location"])
    number = created["appSubscription"]["id"].rsplit("/", 1)[1]
    assert f"{target.scheme}://{target.netloc}{target.path}" == RETURN_URL.split("?")[0]
    assert parse_qs(target.query) == {"plan": ["pro"], "charge_id": [number]}
    assert merchant.status(created["appSubscription"]["id"]) == "ACTIVE"


def test_approving_records_the_app_subscriptions_update_webhook(merchant: Merchant) -> None:
    """The ACTIVE change is an outbox row with Shopify's REST payload."""
    subscription = merchant.subscribe(RECURRING, USAGE_ITEM)
    [payload] = merchant.webhooks()
    assert payload["admin_graphql_api_id"] == subscription["id"]
    assert payload["status"] == "ACTIVE"
    assert payload["name"] == "Pro"
    assert payload["currency"] == "USD"
    assert payload["capped_amount"] == "100.0"
    assert payload["admin_graphql_api_shop_id"].startswith("gid://shopify/Shop/")
    assert {"created_at", "updated_at"} <= set(payload)


def test_the_active_subscription_is_listed_on_the_current_installation(
    merchant: Merchant,
) -> None:
    """currentAppInstallation.activeSubscriptions has the approved subscription."""
    subscription = merchant.subscribe(RECURRING, trialDays=3)
    installation = merchant.gql(INSTALLATION)["currentAppInstallation"]
    assert installation["app"]["handle"] == "sync-app"
    [active] = installation["activeSubscriptions"]
    assert active["id"] == subscription["id"]
    assert active["currentPeriodEnd"] is not None
    assert active["trialDays"] == 3


def test_declining_leaves_it_declined_and_returns_to_the_app(merchant: Merchant) -> None:
    """Decline → DECLINED, a webhook, back to the app in the admin, nothing active."""
    created = merchant.create(RECURRING)
    response = merchant.decide(created["confirmationUrl"], "decline")
    handle = merchant.shop.removesuffix(".myshopify.com")
    assert response.headers["location"] == f"/store/{handle}/apps/sync-app"
    assert merchant.status(created["appSubscription"]["id"]) == "DECLINED"
    assert [p["status"] for p in merchant.webhooks()] == ["DECLINED"]
    assert merchant.gql(INSTALLATION)["currentAppInstallation"]["activeSubscriptions"] == []


def test_a_decided_charge_shows_its_status_in_a_matching_box(merchant: Merchant) -> None:
    """The confirmation page of an approved charge says it is active in a success box, not in
    the red error box; a declined one in a neutral box."""
    approved = merchant.create(RECURRING)
    assert merchant.decide(approved["confirmationUrl"], "approve").status_code == 303
    page = merchant.confirm_page(approved["confirmationUrl"]).text
    assert '<p class="banner ok" role="status" id="charge-status">' in page
    assert "approved and active" in page
    declined = merchant.create(RECURRING)
    merchant.decide(declined["confirmationUrl"], "decline")
    page = merchant.confirm_page(declined["confirmationUrl"]).text
    assert '<p class="banner info" role="status" id="charge-status">' in page
    assert "declined" in page


def test_a_decided_charge_cannot_be_approved_again(merchant: Merchant) -> None:
    """Approving a declined charge is refused and changes nothing."""
    created = merchant.create(RECURRING)
    token = re.search(
        r'value="([0-9a-f]{64})"', merchant.confirm_page(created["confirmationUrl"]).text
    )
    assert token
    merchant.decide(created["confirmationUrl"], "decline")
    path = urlparse(created["confirmationUrl"]).path.removesuffix("/confirm")
    response = merchant.sandbox.control.post(f"{path}/approve", data={"csrf_token": token[1]})
    assert response.status_code == 409
    assert merchant.status(created["appSubscription"]["id"]) == "DECLINED"


def test_approving_without_the_csrf_token_is_refused(merchant: Merchant) -> None:
    """A forged Approve post leaves the charge pending."""
    created = merchant.create(RECURRING)
    path = urlparse(created["confirmationUrl"]).path.removesuffix("/confirm")
    response = merchant.sandbox.control.post(f"{path}/approve", data={"csrf_token": "0" * 64})
    assert response.status_code == 403
    assert merchant.status(created["appSubscription"]["id"]) == "PENDING"


def test_a_new_approved_subscription_cancels_the_previous_one(merchant: Merchant) -> None:
    """Replacement (APPLY_IMMEDIATELY): the old subscription becomes CANCELLED."""
    old = merchant.subscribe(RECURRING)
    new = merchant.subscribe(RECURRING, name="Plus", replacementBehavior="APPLY_IMMEDIATELY")
    assert merchant.status(old["id"]) == "CANCELLED"
    active = merchant.gql(INSTALLATION)["currentAppInstallation"]["activeSubscriptions"]
    assert [a["id"] for a in active] == [new["id"]]
    assert [(p["name"], p["status"]) for p in merchant.webhooks()] == [
        ("Pro", "ACTIVE"),
        ("Pro", "CANCELLED"),
        ("Plus", "ACTIVE"),
    ]


def test_the_default_replacement_replaces_a_monthly_plan_at_once(merchant: Merchant) -> None:
    """STANDARD (the default) replaces a monthly subscription immediately."""
    old = merchant.subscribe(RECURRING)
    merchant.subscribe(RECURRING, name="Plus")
    assert merchant.status(old["id"]) == "CANCELLED"


def test_cancelling_ends_the_subscription(merchant: Merchant) -> None:
    """appSubscriptionCancel → CANCELLED with a webhook; nothing active remains."""
    subscription = merchant.subscribe(RECURRING)
    payload = merchant.gql(CANCEL, {"id": subscription["id"]})["appSubscriptionCancel"]
    assert payload["userErrors"] == []
    assert payload["appSubscription"]["status"] == "CANCELLED"
    assert [p["status"] for p in merchant.webhooks()] == ["ACTIVE", "CANCELLED"]


def test_cancelling_twice_is_a_user_error(merchant: Merchant) -> None:
    """A cancelled subscription cannot be cancelled again."""
    subscription = merchant.subscribe(RECURRING)
    merchant.gql(CANCEL, {"id": subscription["id"]})
    payload = merchant.gql(CANCEL, {"id": subscription["id"]})["appSubscriptionCancel"]
    assert payload["userErrors"][0]["field"] == ["id"]


def test_uninstalling_cancels_the_active_subscription(merchant: Merchant) -> None:
    """Uninstall cancels subscriptions before app/uninstalled."""
    subscription = merchant.subscribe(RECURRING)
    merchant.sandbox.control.post(f"/_sandbox/shops/{merchant.shop}/uninstall")
    with merchant.sandbox.state.db.transaction() as conn:
        row = conn.execute(
            "SELECT status FROM sb_app_subscriptions WHERE id = ?",
            (int(subscription["id"].rsplit("/", 1)[1]),),
        ).fetchone()
    assert row["status"] == "CANCELLED"
    assert merchant.webhooks()[-1]["status"] == "CANCELLED"


def test_usage_is_charged_up_to_the_cap(merchant: Merchant) -> None:
    """Usage records add to balanceUsed; one that would pass the cap is a userError."""
    subscription = merchant.subscribe(RECURRING, USAGE_ITEM)
    line_item = usage_line_item(subscription)
    first = merchant.gql(USAGE, {"id": line_item, "amount": "60"})["appUsageRecordCreate"]
    assert first["userErrors"] == []
    over = merchant.gql(USAGE, {"id": line_item, "amount": "40.01"})["appUsageRecordCreate"]
    assert over["appUsageRecord"] is None
    assert over["userErrors"] == [
        {"field": ["price"], "message": "Total price exceeds balance remaining"}
    ]
    exact = merchant.gql(USAGE, {"id": line_item, "amount": "40"})["appUsageRecordCreate"]
    assert exact["userErrors"] == []
    items = merchant.gql(BALANCE, {"id": subscription["id"]})["node"]["lineItems"]
    assert items[1]["plan"]["pricingDetails"]["balanceUsed"]["amount"] == "100.0"
    assert len(items[1]["usageRecords"]["nodes"]) == 2


def test_a_repeated_idempotency_key_charges_once(merchant: Merchant) -> None:
    """The same idempotencyKey returns the first record and adds nothing to the balance."""
    subscription = merchant.subscribe(RECURRING, USAGE_ITEM)
    line_item = usage_line_item(subscription)
    variables = {"id": line_item, "amount": "10", "key": "order-1001"}
    first = merchant.gql(USAGE, variables)["appUsageRecordCreate"]["appUsageRecord"]
    again = merchant.gql(USAGE, variables)["appUsageRecordCreate"]["appUsageRecord"]
    assert again["id"] == first["id"]
    items = merchant.gql(BALANCE, {"id": subscription["id"]})["node"]["lineItems"]
    assert items[1]["plan"]["pricingDetails"]["balanceUsed"]["amount"] == "10.0"


def test_usage_on_a_pending_subscription_is_refused(merchant: Merchant) -> None:
    """Usage can only be charged once the merchant approved the subscription."""
    created = merchant.create(RECURRING, USAGE_ITEM)
    line_item = usage_line_item(created["appSubscription"])
    payload = merchant.gql(USAGE, {"id": line_item, "amount": "1"})["appUsageRecordCreate"]
    assert payload["appUsageRecord"] is None
    assert "pending" in payload["userErrors"][0]["message"]


def test_reaching_ninety_percent_of_the_cap_records_the_approaching_webhook(
    merchant: Merchant,
) -> None:
    """Crossing 90 % of the cap records app_subscriptions/approaching_capped_amount once."""
    subscription = merchant.subscribe(RECURRING, USAGE_ITEM)
    line_item = usage_line_item(subscription)
    for amount in ("50", "40", "5"):
        merchant.gql(USAGE, {"id": line_item, "amount": amount})
    [payload] = merchant.webhooks("app_subscriptions/approaching_capped_amount")
    assert payload["balance_used"] == 90.0
    assert payload["capped_amount"] == "100.0"


@pytest.mark.parametrize(
    ("items", "field"),
    [
        ([], ["lineItems"]),
        ([RECURRING, RECURRING], ["lineItems"]),
        (
            [
                {
                    "plan": {
                        "appUsagePricingDetails": {
                            **USAGE_ITEM["plan"]["appUsagePricingDetails"],
                            "terms": " ",
                        }
                    }
                }
            ],  # type: ignore[dict-item]
            ["lineItems", "0", "plan", "appUsagePricingDetails", "terms"],
        ),
        (
            [
                {
                    "plan": {
                        "appRecurringPricingDetails": {
                            "price": {"amount": "0", "currencyCode": "USD"}
                        }
                    }
                }
            ],
            ["lineItems", "0", "plan", "appRecurringPricingDetails", "price"],
        ),
    ],
)
def test_invalid_line_items_are_user_errors(
    merchant: Merchant, items: list[dict[str, Any]], field: list[str]
) -> None:
    """Bad line items are refused with a userError naming the field; nothing is created."""
    variables = {"name": "Pro", "returnUrl": RETURN_URL, "lineItems": items}
    payload = merchant.gql(CREATE, variables)["appSubscriptionCreate"]
    assert payload["appSubscription"] is None
    assert payload["confirmationUrl"] is None
    assert payload["userErrors"][0]["field"] == field


def test_another_shops_subscription_is_invisible(served: RunningSandbox) -> None:
    """node(id:) of another shop's subscription is null, and it cannot be cancelled."""
    owner, other = Merchant(served, "b-owner"), Merchant(served, "b-intruder")
    try:
        subscription = owner.subscribe(RECURRING)
        assert other.gql(NODE, {"id": subscription["id"]})["node"] is None
        refused = other.gql(CANCEL, {"id": subscription["id"]})["appSubscriptionCancel"]
        assert refused["userErrors"][0]["message"] == "Subscription not found"
        assert owner.status(subscription["id"]) == "ACTIVE"
    finally:
        owner.client.close()
        other.client.close()
