"""The App Home renders from the app's own data and keeps itself current: eManageCRM is asked
only by the page's processors fetch (cached, so polling does not hammer it), the page polls
its sections as JSON, every billing return says what became of the charge, cancelling a paid
plan needs a confirmation, and answers carry Server-Timing and are compressed."""

from __future__ import annotations

import gzip
import re
from collections.abc import Iterator
from typing import Any
from urllib.parse import parse_qs, urlparse

import httpx
import pytest
from sqlalchemy import select

from syncapp.billing.models import AppSubscription
from tests.integration.app_home.conftest import Home, wait_for
from tests.integration.shops.conftest import handle_for

_VERSION = re.compile(r'id="part-(\w+)" data-version="([0-9a-f]+)"')


@pytest.fixture
def shop(home: Home, request: pytest.FixtureRequest) -> str:
    domain = home.system.create_shop(handle_for(request), name="Live Mugs")
    home.sign_up(domain)
    return domain


@pytest.fixture
def emanage_down(home: Home) -> Iterator[None]:
    """eManageCRM answers 503 to everything while the test runs."""
    set_fault = httpx.post(f"{home.emanage_url}/_sandbox/faults", json={"downForSeconds": 600})
    assert set_fault.status_code == 200, set_fault.text
    yield
    httpx.delete(f"{home.emanage_url}/_sandbox/faults")


def timing(response: httpx.Response) -> dict[str, str]:
    """The Server-Timing header as {name: dur or desc}."""
    out = {}
    for part in response.headers["server-timing"].split(","):
        name, _, rest = part.strip().partition(";")
        out[name] = rest
    return out


def choose(home: Home, shop: str, plan: str, **extra: Any) -> httpx.Response:
    return home.system.fetch(shop, "/app/api/billing/plan", "POST", json={"plan": plan, **extra})


def charge_id(confirmation_url: str) -> str:
    return urlparse(confirmation_url).path.split("/")[-2]


def billing_return(home: Home, shop: str, charge: str) -> httpx.Response:
    token = home.system.id_token(shop)
    return home.system.app.get(
        "/billing/return", params={"charge_id": charge, "shop": shop, "id_token": token}
    )


def test_the_page_renders_from_local_data_while_emanage_is_down(
    home: Home, shop: str, emanage_down: None
) -> None:
    """No eManageCRM call before the page answers: it shows the processors placeholder (its
    space reserved), its Server-Timing names the database and the render, not eManageCRM."""
    page = home.system.open_app_home(shop)
    assert page.status_code == 200
    assert 'id="provider-slot"' in page.text
    assert "Checking eManageCRM for your payment processors" in page.text
    assert "eManageCRM is not answering" not in page.text
    parts = timing(page)
    assert set(parts) == {"db", "render"}
    assert re.fullmatch(r"dur=\d+\.\d", parts["db"])
    # The processors arrive through their JSON endpoint, which says eManageCRM is down.
    answer = home.system.fetch(shop, "/app/api/payment-providers")
    body = answer.json()
    assert body["retry"] is True
    assert "not answering" in body["html"]
    assert "emanage" in timing(answer)


def test_processors_are_cached_between_polls(home: Home, shop: str) -> None:
    """A poll within max_age is answered from the cache; max_age never goes below 2 s."""
    first = home.system.fetch(shop, "/app/api/payment-providers?max_age=15")
    assert first.status_code == 200
    assert timing(first)["emanage"].startswith("dur=")
    again = home.system.fetch(shop, "/app/api/payment-providers?max_age=15")
    assert timing(again)["emanage"] == 'desc="cached"'
    floor = home.system.fetch(shop, "/app/api/payment-providers?max_age=0")
    assert timing(floor)["emanage"] == 'desc="cached"'
    assert again.json()["html"] == first.json()["html"]
    # "Open eManageCRM" comes with the section, so it appears once the sign-up made the owner
    # even on a page loaded before that.
    assert 'id="open-emanage"' in first.json()["html"]


def test_the_status_poll_returns_the_sections_with_the_versions_the_page_has(
    home: Home, shop: str
) -> None:
    """/app/api/home: the same sections as the page, same versions; a change (a charge
    waiting for approval) changes the plan section's version and only that."""
    page = home.system.open_app_home(shop).text
    versions = dict(_VERSION.findall(page))
    assert set(versions) == {"connections", "onboarding", "sync", "plan"}
    status = home.system.fetch(shop, "/app/api/home")
    assert status.status_code == 200
    body = status.json()
    assert {name: s["version"] for name, s in body["sections"].items()} == versions
    assert 'id="connections"' in body["sections"]["connections"]["html"]
    assert body["poll_after_ms"] == 10_000
    assert set(timing(status)) >= {"db", "render"}
    choose(home, shop, "pro")
    changed = home.system.fetch(shop, "/app/api/home").json()
    assert changed["sections"]["plan"]["version"] != versions["plan"]
    assert "waiting for your approval" in changed["sections"]["plan"]["html"]
    assert changed["sections"]["connections"]["version"] == versions["connections"]
    assert changed["poll_after_ms"] == 2000


def test_a_declined_charge_is_said_on_the_return_and_by_the_status_poll(
    home: Home, shop: str
) -> None:
    """Decline on Shopify's page (which goes back to the app without a return): the status
    poll asks Shopify again while a charge is pending and the plan section says it was
    declined, never "waiting for your approval"; the billing return of that charge says so."""
    url = choose(home, shop, "pro").json()["confirmation_url"]
    home.approve(url, "decline")

    def declined() -> str | None:
        html = home.system.fetch(shop, "/app/api/home").json()["sections"]["plan"]["html"]
        return html if "You declined the Pro plan" in html else None

    html = wait_for(declined)
    assert "waiting for your approval" not in html
    page = billing_return(home, shop, charge_id(url))
    assert page.status_code == 200
    assert "You declined the Pro plan, so nothing is charged" in page.text
    assert "waiting for your approval" not in page.text


def test_the_return_of_a_charge_not_yet_approved_says_it_is_pending(home: Home, shop: str) -> None:
    url = choose(home, shop, "pro").json()["confirmation_url"]
    page = billing_return(home, shop, charge_id(url))
    assert "Shopify has not confirmed the Pro plan yet" in page.text
    other = billing_return(home, shop, "999999")
    assert "No new plan was approved; this store stays on Free" in other.text


def test_cancelling_a_paid_plan_needs_a_confirmation(home: Home, shop: str) -> None:
    """ "Downgrade to Free" from Pro: a 409 that says what ends, and nothing cancelled; the
    same choice with "confirm": true cancels the subscription."""
    return_url = home.approve(choose(home, shop, "pro").json()["confirmation_url"])
    charge = parse_qs(urlparse(return_url).query)["charge_id"][0]
    assert "The Pro plan is active" in billing_return(home, shop, charge).text
    asked = choose(home, shop, "free")
    assert asked.status_code == 409
    assert asked.json()["reason"] == "confirm"
    assert "cancels the Pro plan now" in asked.json()["confirm"]
    with home.system.runtime.sessions() as session:
        assert [r.status for r in session.scalars(select(AppSubscription))] == ["ACTIVE"]
    done = choose(home, shop, "free", confirm=True)
    assert done.status_code == 200, done.text
    assert done.json()["plan"] == "free"
    page = home.system.app.get(
        "/",
        params={"shop": shop, "id_token": home.system.id_token(shop), "notice": "downgraded"},
    )
    assert "this store is on the Free plan now" in page.text


def test_html_is_compressed_and_the_webhook_is_not_touched(home: Home, shop: str) -> None:
    page = home.system.app.get(
        "/",
        params={"shop": shop, "id_token": home.system.id_token(shop)},
        headers={"Accept-Encoding": "gzip"},
    )
    assert page.headers["content-encoding"] == "gzip"
    assert "Sync App" in page.text  # httpx decoded it
    raw = httpx.get(
        f"{home.system.app_url}/",
        params={"shop": shop, "id_token": home.system.id_token(shop)},
        headers={"Accept-Encoding": "gzip"},
    )
    assert len(gzip.compress(raw.content)) < len(raw.content)
    hook = home.system.app.post(
        "/webhooks/shopify", content=b"{}", headers={"Accept-Encoding": "gzip"}
    )
    assert "content-encoding" not in hook.headers


def test_web_vitals_reports_are_recorded_and_bad_ones_refused(home: Home, shop: str) -> None:
    report = {
        "appId": "sync-app",
        "metrics": [
            {"id": "v1", "name": "LCP", "value": 640.5},
            {"id": "v2", "name": "CLS", "value": 0.01},
            {"id": "v3", "name": "INP", "value": 48},
        ],
    }
    sent = home.system.fetch(shop, "/app/api/web-vitals", "POST", json=report)
    assert sent.status_code == 204, sent.text
    metrics = home.system.app.get("/metrics").text
    assert 'syncapp_app_home_web_vital_seconds_count{metric="LCP"}' in metrics
    assert "syncapp_app_home_cls_count" in metrics
    bad = home.system.fetch(
        shop, "/app/api/web-vitals", "POST", json={"name": "LCP", "value": "slow"}
    )
    assert bad.status_code == 400
    forged = home.system.app.post(
        "/app/api/web-vitals", json=report, headers={"Authorization": "Bearer not.a.token"}
    )
    assert forged.status_code == 401


def test_connections_are_named_as_each_service_shows_them(home: Home, shop: str) -> None:
    """eManageCRM by the CID its own UI shows, CTRwow by the account's name: no internal ids."""
    page = home.system.open_app_home(shop).text
    account = home.emanage_account(shop)
    assert f'CID <code id="emanage-account">{account["cid"]}</code>' in page
    assert str(account["id"]) not in page
    [ctrwow] = httpx.get(f"{home.ctrwow_url}/_sandbox/accounts", timeout=10).json()["accounts"]
    assert f'<span id="ctrwow-account">{ctrwow["name"]}</span>' in page
    assert ctrwow["id"] not in page


def test_the_sync_section_shows_the_sync_status_and_follows_a_catalog_import(
    home: Home, shop: str
) -> None:
    """The page's Product sync section shows the setting, last change, lag, pending, dead
    letters and conflicts; turning Keep Products Synchronized on starts a catalog import the
    poll shows (faster polling meanwhile), changing only that section."""
    from syncapp.sync import state

    page = home.system.open_app_home(shop).text
    versions = dict(_VERSION.findall(page))
    for part in ("sync-setting", "sync-last", "sync-lag", "sync-pending", "sync-dead"):
        assert f'id="{part}"' in page, part
    assert 'id="sync-conflicts"' in page
    assert "none: nothing is waiting" in page
    state.set_keep_products_synchronized(home.system.runtime.sessions, shop, False)
    state.set_keep_products_synchronized(home.system.runtime.sessions, shop, True)
    body = home.system.fetch(shop, "/app/api/home").json()
    html = body["sections"]["sync"]["html"]
    assert 'id="sync-backfill" data-state="requested"' in html
    assert "Importing…" in html
    assert "changes waiting since" in html  # the import's own event waits for the worker
    assert body["sections"]["sync"]["version"] != versions["sync"]
    assert body["sections"]["plan"]["version"] == versions["plan"]
    assert body["poll_after_ms"] == 2000
