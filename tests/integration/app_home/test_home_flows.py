"""The App Home's own routes over HTTP: the one-time eManageCRM link, payment-processor status
read live from eManageCRM, plan selection through Shopify's Billing API (pending charge,
approval, webhooks, downgrade), and tenancy."""

from __future__ import annotations

from typing import Any
from urllib.parse import parse_qs, urlparse

import httpx
import pytest
from sqlalchemy import select

from syncapp.billing.models import AppSubscription
from tests.integration.app_home.conftest import Home, wait_for
from tests.integration.shops.conftest import handle_for


@pytest.fixture
def shop(home: Home, request: pytest.FixtureRequest) -> str:
    """A shop that has installed the app and finished its sign-up."""
    domain = home.system.create_shop(handle_for(request), name="Blue Mugs")
    home.sign_up(domain)
    return domain


def choose(home: Home, shop: str, plan: str) -> httpx.Response:
    return home.system.fetch(shop, "/app/api/billing/plan", "POST", json={"plan": plan})


def test_the_sso_link_signs_in_once_and_is_refused_the_second_time(home: Home, shop: str) -> None:
    """The link from the App Home opens eManageCRM's UI once; reusing it gets 410."""
    response = home.system.fetch(shop, "/app/api/emanage/sso", "POST")
    assert response.status_code == 200, response.text
    url = response.json()["url"]
    assert url.startswith(home.emanage_url)
    with httpx.Client(follow_redirects=True, timeout=10) as browser:
        first = browser.get(url)
        assert first.status_code == 200
        assert urlparse(str(first.url)).path.startswith("/crm/")
    assert httpx.get(url, timeout=10).status_code == 410


def test_each_click_gets_a_new_link(home: Home, shop: str) -> None:
    """Two clicks give two different links (a new idempotency key per click)."""
    first = home.system.fetch(shop, "/app/api/emanage/sso", "POST").json()["url"]
    second = home.system.fetch(shop, "/app/api/emanage/sso", "POST").json()["url"]
    assert first != second


def providers(home: Home, shop: str, max_age: int = 2) -> dict[str, Any]:
    response = home.system.fetch(shop, f"/app/api/payment-providers?max_age={max_age}")
    assert response.status_code == 200, response.text
    return dict(response.json())


def test_an_active_processor_added_in_emanage_shows_as_active(home: Home, shop: str) -> None:
    """Before: no active processor and the section says so; after adding one: listed with its
    MID (once the 2-second floor of the cache has passed: polling never hammers eManageCRM)."""
    before = providers(home, shop)
    assert {k: before[k] for k in ("connected", "error", "has_active", "providers")} == {
        "connected": True,
        "error": None,
        "has_active": False,
        "providers": [],
    }
    assert "No active payment processor" in before["html"]
    account = home.emanage_account(shop)
    added = httpx.post(
        f"{home.emanage_url}/_sandbox/accounts/{account['id']}/payment-providers",
        json={"name": "Gateway One", "mid": "MID-777", "isActive": True},
        timeout=10,
    )
    assert added.status_code == 201, added.text
    after = wait_for(lambda: (found := providers(home, shop))["has_active"] and found)
    assert [(p["name"], p["active"], p["mids"]) for p in after["providers"]] == [
        ("Gateway One", True, ["MID-777"])
    ]
    assert "No active payment processor" not in after["html"]
    assert "MID-777" in after["html"]


def test_choosing_pro_creates_a_pending_test_charge_with_recurring_and_capped_usage(
    home: Home, shop: str
) -> None:
    """The confirmation page Shopify shows carries $49 every 30 days and the $100 usage cap."""
    response = choose(home, shop, "pro")
    assert response.status_code == 200, response.text
    confirmation = httpx.get(home.on_sandbox(response.json()["confirmation_url"]), timeout=10)
    assert confirmation.status_code == 200
    assert "49.00 USD" in confirmation.text
    assert "100.00 USD" in confirmation.text
    assert "$0.10 per funnel order" in confirmation.text
    with home.system.runtime.sessions() as session:
        [row] = session.scalars(select(AppSubscription)).all()
    assert (row.plan, row.status, row.test) == ("pro", "PENDING", True)
    assert home.system.fetch(shop, "/app/api/billing").json()["plan"] == "free"


def test_the_billing_return_records_the_approved_plan(home: Home, shop: str) -> None:
    """Approve on Shopify's page → returnUrl in the admin → the app page reads the plan back."""
    url = choose(home, shop, "pro").json()["confirmation_url"]
    return_url = home.approve(url)
    parts = urlparse(return_url)
    assert parts.path.endswith("/billing/return")
    charge_id = parse_qs(parts.query)["charge_id"][0]
    page = home.system.app.get(
        "/billing/return", params={"charge_id": charge_id, "embedded": "1", "shop": shop}
    )
    assert page.status_code == 302  # no id_token: App Bridge must supply one first
    token = home.system.id_token(shop)
    page = home.system.app.get(
        "/billing/return", params={"charge_id": charge_id, "shop": shop, "id_token": token}
    )
    assert page.status_code == 200
    assert "The Pro plan is active" in page.text
    state = home.system.fetch(shop, "/app/api/billing").json()
    assert (state["plan"], state["status"], state["features"]["order_sync"]) == (
        "pro",
        "ACTIVE",
        True,
    )


def test_webhooks_keep_the_plan_current(home: Home, shop: str) -> None:
    """Without the return visit, the app_subscriptions/update webhook alone activates Pro."""
    home.approve(choose(home, shop, "pro").json()["confirmation_url"])
    home.system.wait_for_event(shop, "app_subscriptions/update")
    home.system.drain()
    assert home.system.fetch(shop, "/app/api/billing").json()["plan"] == "pro"


def test_downgrading_to_free_cancels_the_subscription(home: Home, shop: str) -> None:
    """Choosing Free cancels the paid subscription in Shopify and the plan becomes Free."""
    home.approve(choose(home, shop, "scale").json()["confirmation_url"])
    home.system.wait_for_event(shop, "app_subscriptions/update")
    home.system.drain()
    assert home.system.fetch(shop, "/app/api/billing").json()["plan"] == "scale"
    response = home.system.fetch(
        shop, "/app/api/billing/plan", "POST", json={"plan": "free", "confirm": True}
    )
    assert response.status_code == 200, response.text
    assert response.json()["plan"] == "free"
    with home.system.runtime.sessions() as session:
        statuses = {r.plan: r.status for r in session.scalars(select(AppSubscription))}
    assert statuses == {"scale": "CANCELLED"}


def test_choosing_the_active_plan_again_is_a_conflict(home: Home, shop: str) -> None:
    """The plan the shop is on and that is active: 409 (the state conflicts), no new charge."""
    home.approve(choose(home, shop, "pro").json()["confirmation_url"])
    home.system.wait_for_event(shop, "app_subscriptions/update")
    home.system.drain()
    response = choose(home, shop, "pro")
    assert response.status_code == 409, response.text
    assert response.json()["reason"] == "current"
    assert "already on the Pro plan" in response.json()["error"]
    with home.system.runtime.sessions() as session:
        assert [r.plan for r in session.scalars(select(AppSubscription))] == ["pro"]


def test_an_unknown_plan_is_refused_with_the_choices(home: Home, shop: str) -> None:
    """A plan handle not in the catalog is a 422 naming the plans there are."""
    response = choose(home, shop, "platinum")
    assert response.status_code == 422
    assert "free, pro, scale" in response.json()["error"]


def test_another_shop_sees_only_its_own_plan_and_processors(home: Home, shop: str) -> None:
    """Shop B's token reads B's plan and no processors, whatever shop A has."""
    home.approve(choose(home, shop, "pro").json()["confirmation_url"])
    home.system.wait_for_event(shop, "app_subscriptions/update")
    home.system.drain()
    assert home.system.fetch(shop, "/app/api/billing").json()["plan"] == "pro"
    other = home.system.create_shop("other-" + shop.split(".")[0][-8:], name="Other")
    home.system.install(other)
    assert home.system.fetch(other, "/app/api/billing").json()["plan"] == "free"
    providers = home.system.fetch(other, "/app/api/payment-providers").json()
    assert providers["connected"] is False
    sso = home.system.fetch(other, "/app/api/emanage/sso", "POST")
    assert sso.status_code == 409


@pytest.mark.parametrize(
    ("method", "path"),
    [
        ("POST", "/app/api/emanage/sso"),
        ("GET", "/app/api/payment-providers"),
        ("GET", "/app/api/billing"),
        ("POST", "/app/api/billing/plan"),
    ],
)
def test_api_routes_refuse_a_bad_token(home: Home, method: str, path: str) -> None:
    """A forged bearer token gets shopifyapp's 401 with the retry header."""
    response = home.system.app.request(
        method, path, headers={"Authorization": "Bearer not.a.token"}
    )
    assert response.status_code == 401
    assert response.headers["x-shopify-retry-invalid-session-request"] == "1"
