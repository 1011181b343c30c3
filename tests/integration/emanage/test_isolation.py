"""Tenant isolation: a token reaches one account; nothing of another account's data leaks."""

from __future__ import annotations

import httpx
import pytest

from tests.integration.emanage.conftest import (
    OTHER_CLIENT_ID,
    OTHER_CLIENT_SECRET,
    bearer,
    onboard,
    token,
)

pytestmark = pytest.mark.anyio

DATA_PATHS = ("users", "payment-providers")


@pytest.mark.parametrize("resource", DATA_PATHS)
async def test_an_account_token_cannot_read_another_accounts_data(
    http: httpx.AsyncClient, resource: str
) -> None:
    """Account A's token on account B's users or providers is 403 account_mismatch."""
    a = await onboard(http, "a.myshopify.com")
    b = await onboard(http, "b.myshopify.com")
    response = await http.get(
        f"/admin/v1/accounts/{b.account_id}/{resource}", headers=bearer(a.account_token)
    )
    assert response.status_code == 403
    assert response.json()["code"] == "account_mismatch"
    assert b.user_id not in response.text


async def test_an_account_token_cannot_read_another_account(http: httpx.AsyncClient) -> None:
    """Account A's token on GET account B is refused."""
    a = await onboard(http, "a.myshopify.com")
    b = await onboard(http, "b.myshopify.com")
    response = await http.get(f"/admin/v1/accounts/{b.account_id}", headers=bearer(a.account_token))
    assert response.status_code == 403


async def test_an_account_token_cannot_create_sso_links_in_another_account(
    http: httpx.AsyncClient,
) -> None:
    """Account A's token cannot sign anyone into account B."""
    a = await onboard(http, "a.myshopify.com")
    b = await onboard(http, "b.myshopify.com")
    response = await http.post(
        f"/admin/v1/accounts/{b.account_id}/users/{b.user_id}/sso-links",
        headers=bearer(a.account_token, "s-1"),
    )
    assert response.status_code == 403


async def test_a_system_token_must_narrow_to_the_account_for_its_data(
    http: httpx.AsyncClient,
) -> None:
    """The system token on an account's users gets 403 account_token_required."""
    a = await onboard(http)
    system = await token(http)
    response = await http.get(f"/admin/v1/accounts/{a.account_id}/users", headers=bearer(system))
    assert response.status_code == 403
    assert response.json()["code"] == "account_token_required"


async def test_another_clients_account_does_not_exist_for_this_client(
    http: httpx.AsyncClient,
) -> None:
    """A system token reading an account another integration owns gets 404."""
    theirs = await onboard(
        http, "theirs.myshopify.com", client_id=OTHER_CLIENT_ID, secret=OTHER_CLIENT_SECRET
    )
    system = await token(http)
    response = await http.get(f"/admin/v1/accounts/{theirs.account_id}", headers=bearer(system))
    assert response.status_code == 404


async def test_a_conflict_does_not_reveal_another_clients_account_id(
    http: httpx.AsyncClient,
) -> None:
    """A 409 for a shop another integration onboarded carries no existingId."""
    await onboard(
        http, "theirs.myshopify.com", client_id=OTHER_CLIENT_ID, secret=OTHER_CLIENT_SECRET
    )
    system = await token(http)
    body = {
        "shopDomain": "theirs.myshopify.com",
        "name": "T",
        "email": "t@t.example",
        "currency": "USD",
    }
    response = await http.post("/admin/v1/accounts", json=body, headers=bearer(system, "k-1"))
    assert response.status_code == 409
    assert "existingId" not in response.json()


async def test_a_web_session_sees_only_its_own_accounts_providers(
    http: httpx.AsyncClient,
) -> None:
    """Signed in to A, the UI cannot toggle B's provider (404) and does not list it."""
    a = await onboard(http, "a.myshopify.com")
    b = await onboard(http, "b.myshopify.com")
    b_provider = (
        await http.post(
            f"/_sandbox/accounts/{b.account_id}/payment-providers", json={"name": "B gateway"}
        )
    ).json()
    link = await http.post(
        f"/admin/v1/accounts/{a.account_id}/users/{a.user_id}/sso-links",
        headers=bearer(a.account_token, "s-1"),
    )
    await http.get(link.json()["url"])
    page = await http.get("/crm/payment-providers")
    assert "B gateway" not in page.text
    from tests.integration.emanage.conftest import csrf_token

    response = await http.post(
        f"/crm/payment-providers/{b_provider['id']}/activate",
        data={"csrf_token": csrf_token(page.text)},
    )
    assert response.status_code == 404
    providers = await http.get(
        f"/admin/v1/accounts/{b.account_id}/payment-providers", headers=bearer(b.account_token)
    )
    assert providers.json()["items"][0]["isActive"] is False


async def test_a_suspended_account_gets_no_new_tokens(http: httpx.AsyncClient) -> None:
    """Once suspended, asking for the account's token is invalid_target."""
    a = await onboard(http)
    await http.post(f"/_sandbox/accounts/{a.account_id}/status", json={"status": "suspended"})
    response = await http.post(
        "/iam/oauth/token",
        data={"grant_type": "client_credentials", "account_id": a.account_id},
        auth=("shopify-sync-app", "emanage-system-secret-0123456789abcdef"),
    )
    assert response.status_code == 400
    assert response.json()["error"] == "invalid_target"
