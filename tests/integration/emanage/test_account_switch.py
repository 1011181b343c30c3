"""Switching a shop from its shared tenant to a dedicated subscription: ``replacesAccountId``
on ``POST /admin/v1/account-links`` links and closes in one step, for the caller's own shop only."""

from __future__ import annotations

import re
from typing import Any

import httpx
import pytest

from tests.integration.emanage.conftest import (
    CLIENT_ID,
    CLIENT_SECRET,
    bearer,
    csrf_token,
    onboard,
    token,
)

pytestmark = pytest.mark.anyio


async def _subscription(http: httpx.AsyncClient) -> dict[str, Any]:
    response = await http.post("/_sandbox/subscriptions", json={"name": "Acme CRM"})
    assert response.status_code == 201, response.text
    return dict(response.json())


def _link_body(sub: dict[str, Any], shop: str, replaces: str | None) -> dict[str, str]:
    body = {
        "shopDomain": shop,
        "subscriptionId": sub["subscriptionId"],
        "linkCode": sub["linkCode"],
    }
    if replaces is not None:
        body["replacesAccountId"] = replaces
    return body


async def test_replacing_the_shared_account_links_and_closes_it(http: httpx.AsyncClient) -> None:
    """The dedicated account becomes the shop's and the shared tenant is closed, kept readable."""
    shared = await onboard(http)
    sub = await _subscription(http)
    system = await token(http)
    body = _link_body(sub, "demo.myshopify.com", shared.account_id)
    linked = await http.post("/admin/v1/account-links", json=body, headers=bearer(system, "k-1"))
    assert linked.status_code == 201, linked.text
    assert linked.json()["kind"] == "dedicated"
    assert linked.json()["shopDomain"] == "demo.myshopify.com"
    old = await http.get(f"/admin/v1/accounts/{shared.account_id}", headers=bearer(system))
    assert old.json()["status"] == "closed"
    assert old.json()["shopDomain"] == "demo.myshopify.com"


async def test_a_closed_account_gets_no_more_tokens(http: httpx.AsyncClient) -> None:
    """After the switch the shared tenant's data is out of reach: no account token for it."""
    shared = await onboard(http)
    sub = await _subscription(http)
    system = await token(http)
    body = _link_body(sub, "demo.myshopify.com", shared.account_id)
    await http.post("/admin/v1/account-links", json=body, headers=bearer(system, "k-1"))
    form = {"grant_type": "client_credentials", "account_id": shared.account_id}
    response = await http.post("/iam/oauth/token", data=form, auth=(CLIENT_ID, CLIENT_SECRET))
    assert response.status_code == 400
    assert response.json()["error"] == "invalid_target"


async def test_without_replaces_a_shop_with_an_account_still_conflicts(
    http: httpx.AsyncClient,
) -> None:
    """The old behaviour stands: no replacesAccountId, 409 account_exists, nothing closed."""
    shared = await onboard(http)
    sub = await _subscription(http)
    system = await token(http)
    body = _link_body(sub, "demo.myshopify.com", None)
    response = await http.post("/admin/v1/account-links", json=body, headers=bearer(system, "k"))
    assert response.status_code == 409
    assert response.json()["code"] == "account_exists"
    old = await http.get(f"/admin/v1/accounts/{shared.account_id}", headers=bearer(system))
    assert old.json()["status"] == "active"


async def test_another_shops_account_id_cannot_be_replaced(http: httpx.AsyncClient) -> None:
    """Shop A naming shop B's shared account is 409 replaced_account_mismatch; B stays active."""
    await onboard(http, "shop-a.myshopify.com")
    shop_b = await onboard(http, "shop-b.myshopify.com")
    sub = await _subscription(http)
    system = await token(http)
    body = _link_body(sub, "shop-a.myshopify.com", shop_b.account_id)
    response = await http.post("/admin/v1/account-links", json=body, headers=bearer(system, "k"))
    assert response.status_code == 409
    assert response.json()["code"] == "replaced_account_mismatch"
    other = await http.get(f"/admin/v1/accounts/{shop_b.account_id}", headers=bearer(system))
    assert other.json()["status"] == "active"
    # The refused attempt did not spend the code: the right account id still links.
    accounts = (await http.get("/_sandbox/accounts")).json()["accounts"]
    shop_a = next(a for a in accounts if a["shopDomain"] == "shop-a.myshopify.com")
    retry = _link_body(sub, "shop-a.myshopify.com", shop_a["id"])
    ok = await http.post("/admin/v1/account-links", json=retry, headers=bearer(system, "k2"))
    assert ok.status_code == 201, ok.text


async def test_a_bad_code_with_replaces_changes_nothing(http: httpx.AsyncClient) -> None:
    """A wrong code is 422 link_code_invalid and the shared tenant stays the shop's account."""
    shared = await onboard(http)
    sub = await _subscription(http)
    system = await token(http)
    body = {**_link_body(sub, "demo.myshopify.com", shared.account_id), "linkCode": "LNK-NOPE"}
    response = await http.post("/admin/v1/account-links", json=body, headers=bearer(system, "k"))
    assert response.status_code == 422
    assert response.json()["code"] == "link_code_invalid"
    old = await http.get(f"/admin/v1/accounts/{shared.account_id}", headers=bearer(system))
    assert old.json()["status"] == "active"


async def test_a_replayed_switch_returns_the_same_answer(http: httpx.AsyncClient) -> None:
    """The same Idempotency-Key and body replay the 201 instead of failing on the spent code."""
    shared = await onboard(http)
    sub = await _subscription(http)
    system = await token(http)
    body = _link_body(sub, "demo.myshopify.com", shared.account_id)
    first = await http.post("/admin/v1/account-links", json=body, headers=bearer(system, "k-1"))
    again = await http.post("/admin/v1/account-links", json=body, headers=bearer(system, "k-1"))
    assert again.status_code == 201
    assert again.json() == first.json()
    assert again.headers["idempotent-replayed"] == "true"


async def test_the_owner_generates_a_link_code_on_settings_integrations(
    http: httpx.AsyncClient,
) -> None:
    """Where the app's instructions send the merchant: the subscription's owner signs in, opens
    Settings > Integrations > Shopify Sync App, sees the subscription id and generates a code
    that links the subscription (once)."""
    shared = await onboard(http)
    sub = await _subscription(http)
    signed_in = await http.get(sub["signInUrl"])
    assert signed_in.status_code == 303
    page = await http.get(signed_in.headers["location"])
    assert page.status_code == 200
    assert "Settings \u203a Integrations" in page.text
    assert "Shopify Sync App" in page.text
    assert sub["subscriptionId"] in page.text
    dashboard = await http.get("/crm/")
    assert 'href="/crm/settings/integrations"' in dashboard.text
    made = await http.post("/crm/settings/integrations", data={"csrf_token": csrf_token(page.text)})
    assert made.status_code == 200, made.text
    match = re.search(r'id="link-code">(LNK-[A-Z0-9]{4}-[A-Z0-9]{4})<', made.text)
    assert match is not None, made.text
    system = await token(http)
    body = _link_body({**sub, "linkCode": match.group(1)}, "demo.myshopify.com", shared.account_id)
    linked = await http.post("/admin/v1/account-links", json=body, headers=bearer(system, "k-9"))
    assert linked.status_code == 201, linked.text
    after = await http.get("/crm/settings/integrations")
    assert "connected to <strong>demo.myshopify.com</strong>" in after.text
    assert "Generate link code" not in after.text


async def test_integrations_refuses_a_post_without_the_form_token(http: httpx.AsyncClient) -> None:
    sub = await _subscription(http)
    await http.get(sub["signInUrl"])
    refused = await http.post("/crm/settings/integrations", data={})
    assert refused.status_code == 403
    assert "LNK-" not in refused.text
