"""SSO links (one time, five minutes) and the web UI they open: payment providers added and
activated through CSRF-protected forms, then visible through the API."""

from __future__ import annotations

import httpx
import pytest

from tests.integration.emanage.conftest import BASE_URL, Onboarded, bearer, csrf_token, onboard

pytestmark = pytest.mark.anyio


async def sso_link(http: httpx.AsyncClient, who: Onboarded, key: str = "s-1", **body: str) -> str:
    response = await http.post(
        f"/admin/v1/accounts/{who.account_id}/users/{who.user_id}/sso-links",
        json=body or None,
        headers=bearer(who.account_token, key),
    )
    assert response.status_code == 201, response.text
    url = str(response.json()["url"])
    assert url.startswith(BASE_URL + "/sso/")
    return url


async def test_an_sso_link_signs_the_user_in_and_opens_the_dashboard(
    http: httpx.AsyncClient,
) -> None:
    """The first visit sets an HttpOnly session cookie and redirects to the dashboard."""
    who = await onboard(http)
    response = await http.get(await sso_link(http, who))
    assert response.status_code == 303
    assert response.headers["location"] == "/crm/"
    assert "httponly" in response.headers["set-cookie"].lower()
    dashboard = await http.get("/crm/")
    assert dashboard.status_code == 200
    assert "Demo Store" in dashboard.text
    assert "No active payment provider" in dashboard.text


async def test_an_sso_link_works_only_once(http: httpx.AsyncClient) -> None:
    """A second visit of the same link is refused with 410 and says what to do."""
    who = await onboard(http)
    url = await sso_link(http, who)
    await http.get(url)
    http.cookies.clear()
    again = await http.get(url)
    assert again.status_code == 410
    assert "already used" in again.text
    assert "emanage_session" not in again.headers.get("set-cookie", "")


async def test_an_expired_sso_link_is_refused(http: httpx.AsyncClient) -> None:
    """A link opened more than five minutes after it was made is refused with 410."""
    who = await onboard(http)
    url = await sso_link(http, who)
    await http.post("/_sandbox/clock", json={"advanceSeconds": 301})
    response = await http.get(url)
    assert response.status_code == 410
    assert "expired" in response.text


async def test_an_unknown_sso_link_is_not_found(http: httpx.AsyncClient) -> None:
    """A made-up token is 404."""
    response = await http.get("/sso/not-a-real-token")
    assert response.status_code == 404


async def test_an_sso_link_can_open_a_given_page(http: httpx.AsyncClient) -> None:
    """redirectPath sends the user straight to the payment providers page."""
    who = await onboard(http)
    url = await sso_link(http, who, redirectPath="/crm/payment-providers")
    response = await http.get(url)
    assert response.headers["location"] == "/crm/payment-providers"


async def test_an_sso_link_cannot_redirect_off_the_web_ui(http: httpx.AsyncClient) -> None:
    """A redirectPath outside /crm/ is refused (no open redirect)."""
    who = await onboard(http)
    response = await http.post(
        f"/admin/v1/accounts/{who.account_id}/users/{who.user_id}/sso-links",
        json={"redirectPath": "//evil.example/crm/"},
        headers=bearer(who.account_token, "s-1"),
    )
    assert response.status_code == 422


async def test_the_web_ui_needs_a_session(http: httpx.AsyncClient) -> None:
    """Without a session the pages answer 401 and point to the Sync App."""
    response = await http.get("/crm/payment-providers")
    assert response.status_code == 401
    assert "Sync App" in response.text


async def test_a_provider_added_and_activated_in_the_ui_is_active_in_the_api(
    http: httpx.AsyncClient,
) -> None:
    """Add a Test Gateway with its MID through the form, activate it, read it via the API."""
    who = await onboard(http)
    await http.get(await sso_link(http, who, redirectPath="/crm/payment-providers"))
    page = await http.get("/crm/payment-providers")
    form = {
        "csrf_token": csrf_token(page.text),
        "name": "Main card gateway",
        "type": "Test Gateway",
        "mid": "TEST-MID-42",
        "currency": "USD",
        "descriptor": "DEMO*STORE",
    }
    added = await http.post("/crm/payment-providers", data=form)
    assert added.status_code == 303
    api = f"/admin/v1/accounts/{who.account_id}/payment-providers"
    (provider,) = (await http.get(api, headers=bearer(who.account_token))).json()["items"]
    assert provider["isActive"] is False
    page = await http.get("/crm/payment-providers")
    activated = await http.post(
        f"/crm/payment-providers/{provider['id']}/activate",
        data={"csrf_token": csrf_token(page.text)},
    )
    assert activated.status_code == 303
    (provider,) = (await http.get(api, headers=bearer(who.account_token))).json()["items"]
    assert provider["isActive"] is True
    assert provider["type"] == "Test Gateway"
    assert provider["mids"][0]["mid"] == "TEST-MID-42"
    assert provider["mids"][0]["descriptor"] == "DEMO*STORE"


async def test_a_provider_can_be_deactivated_in_the_ui(http: httpx.AsyncClient) -> None:
    """Deactivate turns the provider's API flag off."""
    who = await onboard(http)
    await http.post(
        f"/_sandbox/accounts/{who.account_id}/payment-providers", json={"isActive": True}
    )
    await http.get(await sso_link(http, who))
    page = await http.get("/crm/payment-providers")
    api = f"/admin/v1/accounts/{who.account_id}/payment-providers"
    (provider,) = (await http.get(api, headers=bearer(who.account_token))).json()["items"]
    await http.post(
        f"/crm/payment-providers/{provider['id']}/deactivate",
        data={"csrf_token": csrf_token(page.text)},
    )
    (provider,) = (await http.get(api, headers=bearer(who.account_token))).json()["items"]
    assert provider["isActive"] is False


async def test_a_form_post_without_the_csrf_token_is_refused(http: httpx.AsyncClient) -> None:
    """A signed-in browser posting without the form's token gets 403 and nothing is added."""
    who = await onboard(http)
    await http.get(await sso_link(http, who))
    form = {"name": "Forged", "type": "Test Gateway", "mid": "M-1", "currency": "USD"}
    response = await http.post("/crm/payment-providers", data=form)
    assert response.status_code == 403
    api = f"/admin/v1/accounts/{who.account_id}/payment-providers"
    assert (await http.get(api, headers=bearer(who.account_token))).json()["items"] == []


async def test_a_cross_site_form_post_is_refused(http: httpx.AsyncClient) -> None:
    """A post from another origin is refused even with a valid token."""
    who = await onboard(http)
    await http.get(await sso_link(http, who))
    page = await http.get("/crm/payment-providers")
    form = {
        "csrf_token": csrf_token(page.text),
        "name": "X",
        "type": "Test Gateway",
        "mid": "M-1",
        "currency": "USD",
    }
    response = await http.post(
        "/crm/payment-providers", data=form, headers={"Origin": "https://evil.example"}
    )
    assert response.status_code == 403


async def test_an_invalid_provider_form_is_shown_again_with_field_errors(
    http: httpx.AsyncClient,
) -> None:
    """A bad MID re-renders the form (422) with the message next to the field, escaped."""
    who = await onboard(http)
    await http.get(await sso_link(http, who))
    page = await http.get("/crm/payment-providers")
    form = {
        "csrf_token": csrf_token(page.text),
        "name": "<script>alert(1)</script>",
        "type": "Test Gateway",
        "mid": "bad mid with spaces",
        "currency": "USD",
    }
    response = await http.post("/crm/payment-providers", data=form)
    assert response.status_code == 422
    assert "The MID is 1 to 64" in response.text
    assert "<script>alert(1)</script>" not in response.text
    assert "&lt;script&gt;" in response.text
