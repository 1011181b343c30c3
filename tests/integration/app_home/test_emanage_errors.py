"""What the merchant sees when eManageCRM refuses the app: a token its clock has expired is
replaced without the merchant noticing, and any other refusal reads as plain words that say
what happened and what to do — never eManageCRM's raw answer (HTTP status, error code)."""

from __future__ import annotations

import re

import httpx
import pytest

from tests.integration.app_home.conftest import Home
from tests.integration.shops.conftest import handle_for

RAW = re.compile(r"HTTP \d{3}|answered|invalid_token|account_suspended|forbidden", re.IGNORECASE)


@pytest.fixture
def shop(home: Home, request: pytest.FixtureRequest) -> str:
    domain = home.system.create_shop(handle_for(request, "e"), name="Clock Shop")
    home.sign_up(domain)
    return domain


def _advance_emanage_clock(home: Home, seconds: int) -> None:
    moved = httpx.post(
        f"{home.emanage_url}/_sandbox/clock", json={"advanceSeconds": seconds}, timeout=10
    )
    assert moved.status_code == 200, moved.text


def test_open_emanage_works_after_emanage_expired_the_cached_token(home: Home, shop: str) -> None:
    """The app's cached token is refused (401 invalid_token) once eManageCRM's clock passed its
    expiry; the connector drops it and retries once, so the sign-in link still comes."""
    assert home.system.fetch(shop, "/app/api/payment-providers").json()["error"] is None
    _advance_emanage_clock(home, 3600)
    response = home.system.fetch(shop, "/app/api/emanage/sso", "POST")
    assert response.status_code == 200, response.text
    assert response.json()["url"].startswith(home.emanage_url)
    providers = home.system.fetch(shop, "/app/api/payment-providers").json()
    assert providers["error"] is None


def test_a_refusal_is_said_in_plain_words_with_what_to_do(home: Home, shop: str) -> None:
    """A suspended eManageCRM account: "Open eManageCRM" and the processors section say what
    happened and what to do, without eManageCRM's status line or code."""
    account = home.emanage_account(shop)
    suspended = httpx.post(
        f"{home.emanage_url}/_sandbox/accounts/{account['id']}/status",
        json={"status": "suspended"},
        timeout=10,
    )
    assert suspended.status_code == 200, suspended.text
    response = home.system.fetch(shop, "/app/api/emanage/sso", "POST")
    assert response.status_code == 502
    message = response.json()["error"]
    assert "could not open eManageCRM" in message
    assert "reactivate it" in message
    assert not RAW.search(message), message
    providers = home.system.fetch(shop, "/app/api/payment-providers").json()
    assert "could not read your payment processors" in providers["error"]
    assert not RAW.search(providers["error"]), providers["error"]
    # The page shows the processors section its JSON endpoint renders.
    assert "could not read your payment processors" in providers["html"]
    assert not RAW.search(providers["html"]), "raw eManageCRM text in the section"
    page = home.system.open_app_home(shop).text
    assert not RAW.search(page.split("<script>")[0]), "raw eManageCRM text on the page"
