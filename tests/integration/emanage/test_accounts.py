"""Accounts and users: creation under Idempotency-Key (replay, mismatch), one account per shop,
linking a dedicated subscription with its one-time link code."""

from __future__ import annotations

from pathlib import Path

import httpx
import pytest

from syncapp.sandbox.emanage import create_app
from tests.integration.emanage.conftest import (
    BASE_URL,
    bearer,
    onboard,
    sandbox_config,
    shop_body,
    token,
)
from tests.integration.emanage.contract import ContractCheckingTransport

pytestmark = pytest.mark.anyio


async def test_a_replay_with_the_same_key_returns_the_original_answer(
    http: httpx.AsyncClient,
) -> None:
    """Same key and body: the same 201 and account, marked as a replay, and one account only."""
    system = await token(http)
    first = await http.post("/admin/v1/accounts", json=shop_body(), headers=bearer(system, "k-1"))
    again = await http.post("/admin/v1/accounts", json=shop_body(), headers=bearer(system, "k-1"))
    assert first.status_code == again.status_code == 201
    assert again.json() == first.json()
    assert again.headers["idempotent-replayed"] == "true"
    accounts = (await http.get("/_sandbox/accounts")).json()["accounts"]
    assert len(accounts) == 1


async def test_the_same_key_with_a_different_body_is_refused(http: httpx.AsyncClient) -> None:
    """Reusing a key for another request is 422 idempotency_key_reused."""
    system = await token(http)
    await http.post("/admin/v1/accounts", json=shop_body(), headers=bearer(system, "k-1"))
    other = shop_body("other.myshopify.com")
    response = await http.post("/admin/v1/accounts", json=other, headers=bearer(system, "k-1"))
    assert response.status_code == 422
    assert response.json()["code"] == "idempotency_key_reused"


async def test_a_write_without_an_idempotency_key_is_refused(http: httpx.AsyncClient) -> None:
    """Every write needs an Idempotency-Key: 400 without one, nothing created."""
    system = await token(http)
    response = await http.post("/admin/v1/accounts", json=shop_body(), headers=bearer(system))
    assert response.status_code == 400
    assert response.json()["code"] == "idempotency_key_required"
    assert (await http.get("/_sandbox/accounts")).json()["accounts"] == []


async def test_a_second_account_for_a_shop_is_a_conflict_naming_the_first(
    http: httpx.AsyncClient,
) -> None:
    """A new key for the same shop gets 409 with the existing account's id."""
    system = await token(http)
    first = await http.post("/admin/v1/accounts", json=shop_body(), headers=bearer(system, "k-1"))
    second = await http.post("/admin/v1/accounts", json=shop_body(), headers=bearer(system, "k-2"))
    assert second.status_code == 409
    assert second.json()["code"] == "account_exists"
    assert second.json()["existingId"] == first.json()["id"]


async def test_an_invalid_account_body_lists_each_bad_field(http: httpx.AsyncClient) -> None:
    """Validation errors come back as 422 with ASP.NET-style modelState per field."""
    system = await token(http)
    body = {"shopDomain": "not a shop", "name": "", "email": "nope", "currency": "usd"}
    response = await http.post("/admin/v1/accounts", json=body, headers=bearer(system, "k-1"))
    assert response.status_code == 422
    assert set(response.json()["modelState"]) == {"shopDomain", "name", "email", "currency"}


async def test_a_refused_body_does_not_burn_its_key(http: httpx.AsyncClient) -> None:
    """After a 422 for a bad body, the same key works with the corrected body."""
    system = await token(http)
    bad = {**shop_body(), "currency": "dollars"}
    assert (
        await http.post("/admin/v1/accounts", json=bad, headers=bearer(system, "k-1"))
    ).status_code == 422
    fixed = await http.post("/admin/v1/accounts", json=shop_body(), headers=bearer(system, "k-1"))
    assert fixed.status_code == 201


async def test_the_owner_reads_its_account_with_the_system_token(http: httpx.AsyncClient) -> None:
    """GET account returns what creation returned: shared, active, a CID and a Web Sales URL."""
    system = await token(http)
    created = await http.post("/admin/v1/accounts", json=shop_body(), headers=bearer(system, "k-1"))
    response = await http.get(created.headers["location"], headers=bearer(system))
    assert response.status_code == 200
    assert response.json() == created.json()
    assert response.json()["kind"] == "shared"
    assert response.json()["websalesApiUrl"].endswith("/api")


async def test_a_dedicated_subscription_links_with_its_link_code(http: httpx.AsyncClient) -> None:
    """A subscription id and its link code link the subscription as the shop's dedicated account."""
    sub = (await http.post("/_sandbox/subscriptions", json={"name": "Acme CRM"})).json()
    system = await token(http)
    body = {
        "shopDomain": "acme.myshopify.com",
        "subscriptionId": sub["subscriptionId"],
        "linkCode": sub["linkCode"],
    }
    response = await http.post("/admin/v1/account-links", json=body, headers=bearer(system, "l-1"))
    assert response.status_code == 201
    assert response.json()["kind"] == "dedicated"
    assert response.json()["id"] == sub["accountId"]
    assert response.json()["subscriptionId"] == sub["subscriptionId"]
    assert response.json()["shopDomain"] == "acme.myshopify.com"


async def test_a_link_code_works_once(http: httpx.AsyncClient) -> None:
    """Reusing a link code (with a new key, for another shop) is 422 link_code_invalid."""
    sub = (await http.post("/_sandbox/subscriptions", json={})).json()
    system = await token(http)
    body = {
        "shopDomain": "acme.myshopify.com",
        "subscriptionId": sub["subscriptionId"],
        "linkCode": sub["linkCode"],
    }
    await http.post("/admin/v1/account-links", json=body, headers=bearer(system, "l-1"))
    again = {**body, "shopDomain": "other.myshopify.com"}
    response = await http.post("/admin/v1/account-links", json=again, headers=bearer(system, "l-2"))
    assert response.status_code == 422
    assert response.json()["code"] == "link_code_invalid"


async def test_a_wrong_or_expired_link_code_is_refused(http: httpx.AsyncClient) -> None:
    """A code that is wrong, or older than 30 minutes, does not link anything."""
    sub = (await http.post("/_sandbox/subscriptions", json={})).json()
    system = await token(http)
    body = {
        "shopDomain": "acme.myshopify.com",
        "subscriptionId": sub["subscriptionId"],
        "linkCode": "LNK-AAAA-BBBB",
    }
    wrong = await http.post("/admin/v1/account-links", json=body, headers=bearer(system, "l-1"))
    await http.post("/_sandbox/clock", json={"advanceSeconds": 1801})
    system = await token(http)
    expired = await http.post(
        "/admin/v1/account-links",
        json={**body, "linkCode": sub["linkCode"]},
        headers=bearer(system, "l-2"),
    )
    assert (wrong.status_code, expired.status_code) == (422, 422)
    assert expired.json()["code"] == "link_code_invalid"


async def test_linking_a_shop_that_has_an_account_is_a_conflict(http: httpx.AsyncClient) -> None:
    """A shop with a shared account cannot also link a subscription: 409 with the first id."""
    onboarded = await onboard(http)
    sub = (await http.post("/_sandbox/subscriptions", json={})).json()
    system = await token(http)
    body = {
        "shopDomain": "demo.myshopify.com",
        "subscriptionId": sub["subscriptionId"],
        "linkCode": sub["linkCode"],
    }
    response = await http.post("/admin/v1/account-links", json=body, headers=bearer(system, "l-1"))
    assert response.status_code == 409
    assert response.json()["existingId"] == onboarded.account_id


async def test_users_are_created_once_and_listed(http: httpx.AsyncClient) -> None:
    """The owner user is listed; the same email again (new key) is 409 with the user's id."""
    onboarded = await onboard(http)
    path = f"/admin/v1/accounts/{onboarded.account_id}/users"
    listed = await http.get(path, headers=bearer(onboarded.account_token))
    assert [u["role"] for u in listed.json()["items"]] == ["owner"]
    again = await http.post(
        path,
        json={"email": "MERCHANT@demo.example", "name": "Merchant"},
        headers=bearer(onboarded.account_token, "u-2"),
    )
    assert again.status_code == 409
    assert again.json()["existingId"] == onboarded.user_id


async def test_a_user_creation_replay_returns_the_same_user(http: httpx.AsyncClient) -> None:
    """Replaying user creation with its key gives the same user, not a second one."""
    onboarded = await onboard(http)
    path = f"/admin/v1/accounts/{onboarded.account_id}/users"
    body = {"email": "staff@demo.example", "name": "Staff", "role": "member"}
    first = await http.post(path, json=body, headers=bearer(onboarded.account_token, "u-9"))
    again = await http.post(path, json=body, headers=bearer(onboarded.account_token, "u-9"))
    assert again.json()["id"] == first.json()["id"]
    listed = await http.get(path, headers=bearer(onboarded.account_token))
    assert len(listed.json()["items"]) == 2


async def test_state_survives_a_sandbox_restart(tmp_path: Path) -> None:
    """A new sandbox on the same database still has the account, and replays its key."""
    first_app = create_app(sandbox_config(tmp_path))
    transport = ContractCheckingTransport(httpx.ASGITransport(app=first_app))
    async with httpx.AsyncClient(transport=transport, base_url=BASE_URL) as http:
        system = await token(http)
        created = await http.post(
            "/admin/v1/accounts", json=shop_body(), headers=bearer(system, "k-1")
        )
    restarted = create_app(sandbox_config(tmp_path))
    transport = ContractCheckingTransport(httpx.ASGITransport(app=restarted))
    async with httpx.AsyncClient(transport=transport, base_url=BASE_URL) as http:
        replay = await http.post(
            "/admin/v1/accounts", json=shop_body(), headers=bearer(system, "k-1")
        )
        read = await http.get(f"/admin/v1/accounts/{created.json()['id']}", headers=bearer(system))
    assert replay.json() == created.json()
    assert read.status_code == 200
