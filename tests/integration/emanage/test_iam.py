"""IAM: the client-credentials grant for the Sync App's system identity, and its refusals."""

from __future__ import annotations

import httpx
import pytest

from tests.integration.emanage.conftest import (
    CLIENT_ID,
    CLIENT_SECRET,
    bearer,
    onboard,
    token,
)

pytestmark = pytest.mark.anyio


async def test_basic_client_credentials_get_a_short_lived_bearer_token(
    http: httpx.AsyncClient,
) -> None:
    """Basic credentials get a Bearer token that lives 15 minutes with the registered scopes."""
    response = await http.post(
        "/iam/oauth/token",
        data={"grant_type": "client_credentials"},
        auth=(CLIENT_ID, CLIENT_SECRET),
    )
    assert response.status_code == 200
    body = response.json()
    assert body["token_type"] == "Bearer"
    assert body["expires_in"] == 900
    assert "accounts:write" in body["scope"].split()
    assert response.headers["cache-control"] == "no-store"


async def test_form_client_credentials_are_accepted_too(http: httpx.AsyncClient) -> None:
    """Credentials in the form body (RFC 6749 §2.3.1) work like Basic."""
    response = await http.post(
        "/iam/oauth/token",
        data={
            "grant_type": "client_credentials",
            "client_id": CLIENT_ID,
            "client_secret": CLIENT_SECRET,
            "scope": "accounts:read",
        },
    )
    assert response.status_code == 200
    assert response.json()["scope"] == "accounts:read"


async def test_a_wrong_secret_is_refused_as_invalid_client(http: httpx.AsyncClient) -> None:
    """A wrong client secret gets 401 invalid_client and no token."""
    response = await http.post(
        "/iam/oauth/token", data={"grant_type": "client_credentials"}, auth=(CLIENT_ID, "wrong")
    )
    assert response.status_code == 401
    assert response.json()["error"] == "invalid_client"
    assert "access_token" not in response.json()


async def test_a_scope_the_client_is_not_registered_for_is_refused(
    http: httpx.AsyncClient,
) -> None:
    """Asking for a scope beyond the registration is 400 invalid_scope."""
    response = await http.post(
        "/iam/oauth/token",
        data={"grant_type": "client_credentials", "scope": "accounts:read orders:write"},
        auth=(CLIENT_ID, CLIENT_SECRET),
    )
    assert response.status_code == 400
    assert response.json()["error"] == "invalid_scope"


async def test_other_grant_types_are_unsupported(http: httpx.AsyncClient) -> None:
    """Only the client-credentials grant exists."""
    response = await http.post(
        "/iam/oauth/token", data={"grant_type": "password"}, auth=(CLIENT_ID, CLIENT_SECRET)
    )
    assert response.status_code == 400
    assert response.json()["error"] == "unsupported_grant_type"


async def test_an_api_call_without_a_token_is_refused(http: httpx.AsyncClient) -> None:
    """The admin API answers 401 invalid_token without a bearer token."""
    response = await http.get("/admin/v1/accounts/00000000-0000-4000-8000-000000000000")
    assert response.status_code == 401
    assert response.json()["code"] == "invalid_token"


async def test_an_expired_token_is_refused(http: httpx.AsyncClient) -> None:
    """After 15 minutes the token no longer opens the API."""
    onboarded = await onboard(http)
    assert (await http.post("/_sandbox/clock", json={"advanceSeconds": 901})).status_code == 200
    response = await http.get(
        f"/admin/v1/accounts/{onboarded.account_id}/users",
        headers=bearer(onboarded.account_token),
    )
    assert response.status_code == 401
    assert response.json()["code"] == "invalid_token"


async def test_a_token_without_the_operation_scope_is_forbidden(http: httpx.AsyncClient) -> None:
    """A token granted only accounts:read cannot create accounts."""
    narrow = await token(http, scope="accounts:read")
    response = await http.post(
        "/admin/v1/accounts",
        json={
            "shopDomain": "x.myshopify.com",
            "name": "X",
            "email": "x@x.example",
            "currency": "USD",
        },
        headers=bearer(narrow, "k-1"),
    )
    assert response.status_code == 403
    assert response.json()["code"] == "insufficient_scope"


async def test_an_account_token_cannot_be_had_for_another_clients_account(
    http: httpx.AsyncClient,
) -> None:
    """A client asking for a token for an account it does not own gets invalid_target."""
    from tests.integration.emanage.conftest import OTHER_CLIENT_ID, OTHER_CLIENT_SECRET

    theirs = await onboard(
        http, "theirs.myshopify.com", client_id=OTHER_CLIENT_ID, secret=OTHER_CLIENT_SECRET
    )
    response = await http.post(
        "/iam/oauth/token",
        data={"grant_type": "client_credentials", "account_id": theirs.account_id},
        auth=(CLIENT_ID, CLIENT_SECRET),
    )
    assert response.status_code == 400
    assert response.json()["error"] == "invalid_target"
