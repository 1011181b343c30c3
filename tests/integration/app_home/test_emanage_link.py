"""Moving a signed-up shop from its shared eManageCRM tenant to the merchant's own subscription
from the App Home, over real HTTP against the served Shopify and eManageCRM sandboxes."""

from __future__ import annotations

from typing import Any
from urllib.parse import parse_qs, urlparse

import httpx
import pytest
from sqlalchemy import select

from syncapp.onboarding.models import EmanageAccount
from syncapp.store.models import Shop
from tests.integration.app_home.conftest import Home
from tests.integration.shops.conftest import handle_for


def _signed_up(home: Home, request: pytest.FixtureRequest, prefix: str = "l") -> str:
    domain = home.system.create_shop(handle_for(request, prefix), name="Blue Mugs")
    home.sign_up(domain)
    return domain


def _on_pro(home: Home, shop: str) -> None:
    """Choose Pro, approve it on Shopify's page and let the app read it back."""
    chosen = home.system.fetch(shop, "/app/api/billing/plan", "POST", json={"plan": "pro"})
    return_url = home.approve(chosen.json()["confirmation_url"])
    charge_id = parse_qs(urlparse(return_url).query)["charge_id"][0]
    token = home.system.id_token(shop)
    page = home.system.app.get(
        "/billing/return", params={"charge_id": charge_id, "shop": shop, "id_token": token}
    )
    assert "The Pro plan is active" in page.text


@pytest.fixture
def pro_shop(home: Home, request: pytest.FixtureRequest) -> str:
    """A shop on the Pro plan whose sign-up made a shared eManageCRM tenant."""
    shop = _signed_up(home, request)
    _on_pro(home, shop)
    return shop


def _subscription(home: Home) -> dict[str, Any]:
    made = httpx.post(f"{home.emanage_url}/_sandbox/subscriptions", json={}, timeout=10)
    assert made.status_code == 201, made.text
    return dict(made.json())


def _link(home: Home, shop: str, subscription_id: str, code: str) -> httpx.Response:
    body = {"subscription_id": subscription_id, "link_code": code}
    return home.system.fetch(shop, "/app/api/emanage/link", "POST", json=body)


def _row(home: Home, shop: str) -> EmanageAccount:
    with home.system.runtime.sessions() as session:
        row = session.scalar(
            select(EmanageAccount)
            .join(Shop, Shop.id == EmanageAccount.shop_id)
            .where(Shop.domain == shop)
        )
        assert row is not None
        session.expunge(row)
        return row


def _sandbox_account(home: Home, account_id: str) -> dict[str, Any]:
    accounts = httpx.get(f"{home.emanage_url}/_sandbox/accounts", timeout=10).json()["accounts"]
    return dict(next(a for a in accounts if a["id"] == account_id))


def test_linking_moves_the_shop_to_the_dedicated_account_and_closes_the_shared_one(
    home: Home, pro_shop: str
) -> None:
    """The row becomes the subscription's account (dedicated) and the shared tenant is closed."""
    shared = _row(home, pro_shop)
    sub = _subscription(home)
    response = _link(home, pro_shop, sub["subscriptionId"], sub["linkCode"])
    assert response.status_code == 200, response.text
    assert response.json() == {"queued": False, "account_id": sub["accountId"], "kind": "dedicated"}
    row = _row(home, pro_shop)
    dedicated = _sandbox_account(home, sub["accountId"])
    assert (row.account_id, row.kind, row.subscription_id) == (
        sub["accountId"],
        "dedicated",
        sub["subscriptionId"],
    )
    assert (row.cid, row.websales_api_url) == (dedicated["cid"], dedicated["websalesApiUrl"])
    assert row.owner_user_id not in (None, shared.owner_user_id)
    assert _sandbox_account(home, shared.account_id)["status"] == "closed"
    page = home.system.open_app_home(pro_shop).text
    assert '<s-badge id="emanage-kind" tone="info">dedicated</s-badge>' in page
    assert 'id="link-emanage"' not in page


def test_after_the_switch_providers_and_sso_use_the_dedicated_account(
    home: Home, pro_shop: str
) -> None:
    """Payment processors are read from the new account and the SSO link signs into it."""
    sub = _subscription(home)
    assert _link(home, pro_shop, sub["subscriptionId"], sub["linkCode"]).status_code == 200
    added = httpx.post(
        f"{home.emanage_url}/_sandbox/accounts/{sub['accountId']}/payment-providers",
        json={"name": "Own Gateway", "mid": "MID-DED-1", "isActive": True},
        timeout=10,
    )
    assert added.status_code == 201, added.text
    providers = home.system.fetch(pro_shop, "/app/api/payment-providers").json()
    assert [p["mids"] for p in providers["providers"]] == [["MID-DED-1"]]
    sso = home.system.fetch(pro_shop, "/app/api/emanage/sso", "POST")
    assert sso.status_code == 200, sso.text
    with httpx.Client(follow_redirects=True, timeout=10) as browser:
        page = browser.get(sso.json()["url"])
    assert page.status_code == 200
    assert urlparse(str(page.url)).path.startswith("/crm/")


def test_a_bad_code_tells_the_merchant_what_to_do_and_changes_nothing(
    home: Home, pro_shop: str
) -> None:
    """A wrong code: 422 with the way to a new code; the shop stays on its shared tenant."""
    before = _row(home, pro_shop)
    assert 'id="link-emanage"' in home.system.open_app_home(pro_shop).text
    sub = _subscription(home)
    response = _link(home, pro_shop, sub["subscriptionId"], "LNK-WRNG-CODE")
    assert response.status_code == 422
    assert response.json()["error"].startswith("That link code is not valid any more")
    assert "Settings > Integrations > Shopify Sync App" in response.json()["error"]
    after = _row(home, pro_shop)
    assert (after.account_id, after.kind) == (before.account_id, "shared")
    assert _sandbox_account(home, before.account_id)["status"] == "active"


def test_the_free_plan_is_refused_with_the_reason(
    home: Home, request: pytest.FixtureRequest
) -> None:
    """On Free: 403 naming the plans that include it; the page shows the reason, not the form."""
    shop = _signed_up(home, request, "f")
    sub = _subscription(home)
    response = _link(home, shop, sub["subscriptionId"], sub["linkCode"])
    assert response.status_code == 403
    assert response.json()["reason"] == "plan"
    assert "Pro and Scale" in response.json()["error"]
    assert _row(home, shop).kind == "shared"
    page = home.system.open_app_home(shop).text
    assert 'id="link-not-allowed"' in page
    assert 'id="link-emanage"' not in page


def test_another_subscriptions_code_cannot_take_it_over(home: Home, pro_shop: str) -> None:
    """A code is tied to its subscription: someone else's id with our code is refused."""
    mine = _subscription(home)
    theirs = _subscription(home)
    response = _link(home, pro_shop, theirs["subscriptionId"], mine["linkCode"])
    assert response.status_code == 422
    assert response.json()["reason"] == "link_code"
    assert _row(home, pro_shop).kind == "shared"
    assert _sandbox_account(home, theirs["accountId"])["shopDomain"] is None


def test_a_subscription_linked_to_another_shop_cannot_be_linked_again(
    home: Home, pro_shop: str, request: pytest.FixtureRequest
) -> None:
    """Shop B's subscription, even with a fresh code for it, stays B's: 409 for shop A."""
    sub = _subscription(home)
    assert _link(home, pro_shop, sub["subscriptionId"], sub["linkCode"]).status_code == 200
    other = _signed_up(home, request, "o")
    _on_pro(home, other)
    fresh = httpx.post(
        f"{home.emanage_url}/_sandbox/subscriptions/{sub['subscriptionId']}/link-codes",
        json={},
        timeout=10,
    ).json()
    response = _link(home, other, sub["subscriptionId"], fresh["linkCode"])
    assert response.status_code == 409
    assert response.json()["reason"] == "already_linked"
    assert _row(home, other).kind == "shared"
    assert _row(home, pro_shop).account_id == sub["accountId"]


def test_before_the_sign_up_made_an_account_the_link_goes_to_the_sign_up(
    home: Home, request: pytest.FixtureRequest
) -> None:
    """No account yet: the request is queued and the sign-up links the subscription itself."""
    shop = home.system.create_shop(handle_for(request, "q"), name="Blue Mugs")
    home.system.install(shop)
    _on_pro(home, shop)
    sub = _subscription(home)
    response = _link(home, shop, sub["subscriptionId"], sub["linkCode"])
    assert response.status_code == 200, response.text
    assert response.json()["queued"] is True
    home.sign_up(shop)
    row = _row(home, shop)
    assert (row.account_id, row.kind) == (sub["accountId"], "dedicated")


def test_a_body_without_the_fields_is_refused(home: Home, pro_shop: str) -> None:
    """Missing fields: 400 saying what to send; the shop keeps its shared account."""
    response = home.system.fetch(pro_shop, "/app/api/emanage/link", "POST", json=["x"])
    assert response.status_code == 400
    assert "subscription_id" in response.json()["error"]
    assert _row(home, pro_shop).kind == "shared"
