"""Connecting the merchant's own CTRwow account from the App Home over real HTTP: the sign-up
ends ``needs_merchant`` (the email has a CTRwow account), the page offers the button, the
merchant consents on the served CTRwow sandbox, and the callback finishes the sign-up."""

from __future__ import annotations

import asyncio
from datetime import UTC, datetime, timedelta
from urllib.parse import parse_qs, urlencode, urlsplit

import httpx
import pytest
from sqlalchemy import select, update

from syncapp.onboarding import RetryPolicy, open_onboarding
from syncapp.onboarding.models import CtrwowAccount, CtrwowAuthorization
from syncapp.onboarding.uninstall import revoke_ctrwow_on_uninstall
from syncapp.store.models import Connection, Credential
from syncapp.store.vault import get_secret
from syncapp.worker import Worker, WorkerOptions, default_handlers
from tests.integration.app_home.conftest import REDIRECT, Home
from tests.integration.ctrwow.conftest import hidden_fields
from tests.integration.onboarding.conftest import signup_pass
from tests.integration.shops.conftest import handle_for

PASSWORD = "correct horse battery"


def _needs_merchant(home: Home, request: pytest.FixtureRequest) -> str:
    """A shop whose email already has a CTRwow account, its sign-up stopped at CTRwow."""
    handle = handle_for(request, "c")
    email = f"owner@{handle}.example"
    shop = home.system.create_shop(handle, email=email)
    made = httpx.post(
        f"{home.ctrwow_url}/_sandbox/accounts",
        json={"email": email, "name": "Own CTRwow", "password": PASSWORD},
        timeout=10,
    )
    assert made.status_code == 201, made.text
    home.system.install(shop)

    async def run() -> None:
        fast = RetryPolicy(base_seconds=0.05, cap_seconds=0.3, max_attempts=30)
        engine = home.system.runtime.engine
        async with open_onboarding(home.system.settings, engine, policy=fast) as rt:
            # Until a deadline, not a count of passes: on a loaded machine (`make test`'s
            # workers) a pass can find the job's next step not yet due, or its call slow.
            deadline = asyncio.get_running_loop().time() + 60
            while asyncio.get_running_loop().time() < deadline:
                await signup_pass(rt, engine)
                status = home.system.fetch(shop, "/app/api/shop").json()["onboarding"]
                if status == "needs_merchant":
                    return
                await asyncio.sleep(0.05)
        raise AssertionError(f"the sign-up of {shop} did not stop at needs_merchant")

    asyncio.run(run())
    return shop


def _start(home: Home, shop: str) -> str:
    response = home.system.fetch(shop, "/app/api/ctrwow/connect", method="POST", json={})
    assert response.status_code == 200, response.text
    url = str(response.json()["url"])
    return url


def _consent(home: Home, shop: str, url: str) -> dict[str, str]:
    """Sign in on CTRwow's consent page as the merchant; the redirect's query parameters."""
    email = f"owner@{shop.removesuffix('.myshopify.com')}.example"
    with httpx.Client(timeout=10) as browser:
        page = browser.get(url)
        assert page.status_code == 200, page.text
        assert "Sign in and allow" in page.text
        form = hidden_fields(page.text)
        form.update({"decision": "allow", "email": email, "password": PASSWORD})
        done = browser.post(
            url.split("?")[0],
            content=urlencode(form),
            headers={"Content-Type": "application/x-www-form-urlencoded"},
        )
    assert done.status_code == 303, done.text
    location = done.headers["location"]
    assert location.startswith(REDIRECT + "?")
    return {k: v[0] for k, v in parse_qs(urlsplit(location).query).items()}


def _callback(home: Home, params: dict[str, str]) -> httpx.Response:
    return home.system.app.get("/ctrwow/callback", params=params)


def test_the_app_home_offers_to_connect_ctrwow_when_the_email_has_an_account(
    home: Home, request: pytest.FixtureRequest
) -> None:
    """A needs_merchant CTRwow step shows the "Connect your CTRwow account" button."""
    shop = _needs_merchant(home, request)
    page = home.system.open_app_home(shop)
    assert page.status_code == 200
    assert 'id="connect-ctrwow"' in page.text
    assert "Connect your CTRwow account" in page.text


def test_connecting_through_ctrwow_finishes_the_sign_up_with_working_tokens(
    home: Home, request: pytest.FixtureRequest
) -> None:
    """Consent on CTRwow and the callback: step and job done, one CTRwow account, tokens that
    CTRwow accepts, and the merchant sent back to the app in the admin."""
    shop = _needs_merchant(home, request)
    url = _start(home, shop)
    assert url.startswith(home.ctrwow_url + "/oauth/authorize?")
    assert "code_verifier" not in url
    response = _callback(home, _consent(home, shop, url))
    assert response.status_code == 303, response.text
    settings = home.system.settings
    handle = shop.removesuffix(".myshopify.com")
    assert response.headers["location"] == (
        f"{settings.shopify_admin_url.rstrip('/')}/store/{handle}/apps/{settings.shopify_client_id}"
    )
    assert home.system.fetch(shop, "/app/api/shop").json()["onboarding"] == "done"
    accounts = httpx.get(f"{home.ctrwow_url}/_sandbox/accounts", timeout=10).json()["accounts"]
    assert len(accounts) == 1
    runtime = home.system.runtime
    with runtime.sessions() as session:
        account = session.scalar(select(CtrwowAccount))
        assert account is not None
        assert account.account_id == accounts[0]["id"]
        token = get_secret(
            session, runtime.vault, shop_id=account.shop_id, provider="ctrwow", name="access_token"
        )
        status = session.scalar(select(Connection.status).where(Connection.provider == "ctrwow"))
        pending = session.scalars(select(CtrwowAuthorization)).all()
    assert status == "active"
    assert pending == []
    assert token is not None
    me = httpx.get(
        f"{home.ctrwow_url}/v1/me", headers={"Authorization": f"Bearer {token}"}, timeout=10
    )
    assert me.status_code == 200
    assert me.json()["id"] == accounts[0]["id"]
    page = home.system.open_app_home(shop)
    assert 'id="connect-ctrwow"' not in page.text
    # Named as CTRwow names the merchant's account, not by its internal id.
    assert '<span id="ctrwow-account">Own CTRwow</span>' in page.text
    assert accounts[0]["id"] not in page.text


def test_a_reused_state_is_refused(home: Home, request: pytest.FixtureRequest) -> None:
    """The callback's state works once; the same redirect again gets 400 and changes nothing."""
    shop = _needs_merchant(home, request)
    params = _consent(home, shop, _start(home, shop))
    assert _callback(home, params).status_code == 303
    again = _callback(home, params)
    assert again.status_code == 400
    assert "already used" in again.text


def test_an_unknown_state_is_refused(home: Home, request: pytest.FixtureRequest) -> None:
    """A state the app never issued gets 400 and a page saying so."""
    response = _callback(home, {"code": "ctw_code_x", "state": "forged-state"})
    assert response.status_code == 400
    assert "unknown" in response.text


def test_an_expired_state_is_refused_and_the_step_still_needs_the_merchant(
    home: Home, request: pytest.FixtureRequest
) -> None:
    """A state older than 10 minutes gets 400; the sign-up stays needs_merchant."""
    shop = _needs_merchant(home, request)
    params = _consent(home, shop, _start(home, shop))
    with home.system.runtime.sessions() as session, session.begin():
        session.execute(
            update(CtrwowAuthorization).values(expires_at=datetime.now(UTC) - timedelta(seconds=1))
        )
    response = _callback(home, params)
    assert response.status_code == 400
    assert "expired" in response.text
    assert home.system.fetch(shop, "/app/api/shop").json()["onboarding"] == "needs_merchant"


def test_cancelling_the_ctrwow_sign_in_leads_back_into_the_admin(
    home: Home, request: pytest.FixtureRequest
) -> None:
    """The merchant cancels on CTRwow (access_denied, with the state): the callback sends them
    back to the app in the Shopify admin, which says CTRwow is not connected; the state is
    spent and nothing is stored."""
    shop = _needs_merchant(home, request)
    state = parse_qs(urlsplit(_start(home, shop)).query)["state"][0]
    response = _callback(
        home,
        {"error": "access_denied", "error_description": "The user did not allow", "state": state},
    )
    assert response.status_code == 303, response.text
    settings = home.system.settings
    handle = shop.removesuffix(".myshopify.com")
    assert response.headers["location"] == (
        f"{settings.shopify_admin_url.rstrip('/')}/store/{handle}/apps/"
        f"{settings.shopify_client_id}?ctrwow=cancelled"
    )
    with home.system.runtime.sessions() as session:
        assert session.scalars(select(CtrwowAuthorization)).all() == []
        assert (
            session.scalars(select(Credential).where(Credential.provider == "ctrwow")).all() == []
        )
    # The admin loads the app with the query it was sent to: the page says what happened.
    token = home.system.id_token(shop)
    page = home.system.app.get(
        "/", params={"embedded": "1", "shop": shop, "id_token": token, "ctrwow": "cancelled"}
    )
    assert page.status_code == 200
    assert 'id="notice"' in page.text
    assert "You cancelled the CTRwow sign-in" in page.text
    assert 'id="connect-ctrwow"' in page.text
    # The parameter picks a fixed text; anything else shows none.
    other = home.system.app.get(
        "/", params={"embedded": "1", "shop": shop, "id_token": token, "ctrwow": "<b>x</b>"}
    )
    assert 'id="notice"' not in other.text


def test_a_ctrwow_error_without_a_known_state_gets_a_styled_page(
    home: Home, request: pytest.FixtureRequest
) -> None:
    """An error redirect whose state is unknown: a styled page that says nothing changed and
    links into the Shopify admin, never CTRwow's raw error text; nothing is stored."""
    shop = _needs_merchant(home, request)
    _start(home, shop)
    response = _callback(
        home,
        {"error": "access_denied", "error_description": "<script>x</script>", "state": "s"},
    )
    assert response.status_code == 400
    assert "<style>" in response.text
    assert "CTRwow is not connected" in response.text
    assert f'href="{home.system.settings.shopify_admin_url.rstrip("/")}"' in response.text
    assert "<script>x</script>" not in response.text
    with home.system.runtime.sessions() as session:
        assert (
            session.scalars(select(Credential).where(Credential.provider == "ctrwow")).all() == []
        )


def test_a_callback_for_another_shop_is_refused(home: Home, request: pytest.FixtureRequest) -> None:
    """A callback whose shop parameter names another store than the state's is refused."""
    shop = _needs_merchant(home, request)
    params = _consent(home, shop, _start(home, shop))
    response = _callback(home, {**params, "shop": "other-store.myshopify.com"})
    assert response.status_code == 400
    assert "other-store.myshopify.com" in response.text
    assert home.system.fetch(shop, "/app/api/shop").json()["onboarding"] == "needs_merchant"


def test_connect_is_refused_when_ctrwow_needs_nothing(
    home: Home, request: pytest.FixtureRequest
) -> None:
    """A shop whose sign-up connected CTRwow by itself gets 409, not an authorization URL."""
    shop = home.system.create_shop(handle_for(request, "n"))
    home.sign_up(shop)
    response = home.system.fetch(shop, "/app/api/ctrwow/connect", method="POST", json={})
    assert response.status_code == 409
    assert "needs nothing" in response.json()["error"]


def test_an_uninstall_between_consent_and_callback_voids_the_state(
    home: Home, request: pytest.FixtureRequest
) -> None:
    """app/uninstalled drops the shop's pending authorization, so its callback is refused."""
    shop = _needs_merchant(home, request)
    params = _consent(home, shop, _start(home, shop))
    settings = home.system.settings
    # Uninstalled in Shopify (which revokes the tokens and sends app/uninstalled).
    assert home.system.control.post(f"/_sandbox/shops/{shop}/uninstall").status_code == 200
    home.system.wait_for_event(shop, "app/uninstalled")
    worker = Worker(
        home.system.runtime,
        options=WorkerOptions(),
        handlers=default_handlers(uninstall_hooks=(revoke_ctrwow_on_uninstall(settings),)),
    )
    assert worker.run_once() == 1
    response = _callback(home, params)
    assert response.status_code == 400
    with home.system.runtime.sessions() as session:
        assert (
            session.scalars(select(Credential).where(Credential.provider == "ctrwow")).all() == []
        )
