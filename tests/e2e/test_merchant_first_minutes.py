"""The merchant's first five minutes, in headless Chromium against ``syncapp run``.

From the Shopify sandbox admin: install the app, watch it sign the store up to eManageCRM and
CTRwow, sign into eManageCRM once through the app's one-time link (refused the second time),
add and activate a payment processor there, see it active in the app, choose a paid plan and
approve the charge, and see the plan active. Each screen is saved to
``test-artifacts/screenshots/<nn>-<name>.png``.
"""

from __future__ import annotations

import os
import signal
import socket
import subprocess
import sys
import time
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path

import httpx
import playwright.sync_api as pw
import pytest

pytestmark = pytest.mark.e2e

CHROMIUM = Path("/usr/bin/chromium")  # a missing browser fails the test (.ci/run installs it)
SHOTS = Path(__file__).resolve().parents[2] / "test-artifacts" / "screenshots"
SHOP = "demo.myshopify.com"


def free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return int(s.getsockname()[1])


@dataclass
class Running:
    app_url: str
    shopify_url: str
    emanage_url: str
    ctrwow_url: str


@pytest.fixture
def running(tmp_path: Path) -> Iterator[Running]:
    """``syncapp run`` on free ports with its own data directory."""
    ports = {name: free_port() for name in ("app", "shopify", "emanage", "ctrwow")}
    env = {
        **{k: v for k, v in os.environ.items() if not k.startswith("SYNCAPP_")},
        "SYNCAPP_DATA_DIR": str(tmp_path),
        "SYNCAPP_PORT": str(ports["app"]),
        "SYNCAPP_SANDBOX_SHOPIFY_PORT": str(ports["shopify"]),
        "SYNCAPP_SANDBOX_EMANAGE_PORT": str(ports["emanage"]),
        "SYNCAPP_SANDBOX_CTRWOW_PORT": str(ports["ctrwow"]),
        "SYNCAPP_WEB_WORKERS": "1",
        "SYNCAPP_LOG_LEVEL": "warning",
    }
    urls = Running(
        *(f"http://127.0.0.1:{ports[n]}" for n in ("app", "shopify", "emanage", "ctrwow"))
    )
    log_path = tmp_path / "run.log"
    with log_path.open("ab") as log:
        process = subprocess.Popen(
            [sys.executable, "-m", "syncapp.cli", "run"], env=env, stdout=log, stderr=log
        )
    try:
        deadline = time.monotonic() + 60
        while True:
            assert process.poll() is None, log_path.read_text()
            try:
                if all(
                    httpx.get(f"{u}/healthz", timeout=1).status_code == 200
                    for u in (urls.app_url, urls.shopify_url, urls.emanage_url, urls.ctrwow_url)
                ):
                    break
            except httpx.HTTPError:
                pass
            assert time.monotonic() < deadline, "not healthy in 60 s:\n" + log_path.read_text()
            time.sleep(0.25)
        yield urls
    finally:
        process.send_signal(signal.SIGINT)
        try:
            process.wait(timeout=20)
        except subprocess.TimeoutExpired:
            process.kill()
            process.wait()


def accounts(base_url: str) -> list[dict[str, object]]:
    response = httpx.get(f"{base_url}/_sandbox/accounts", timeout=10)
    assert response.status_code == 200, response.text
    found: list[dict[str, object]] = response.json()["accounts"]
    return found


class Screens:
    """Numbered screenshots of the whole admin window."""

    def __init__(self, page: pw.Page) -> None:
        self.page = page
        self.number = 0
        SHOTS.mkdir(parents=True, exist_ok=True)

    def shot(self, name: str, page: pw.Page | None = None) -> None:
        self.number += 1
        (page or self.page).screenshot(path=str(SHOTS / f"{self.number:02d}-{name}.png"))


def test_a_merchant_installs_connects_sets_up_payments_and_subscribes(running: Running) -> None:
    """Install → sign-up → one-time eManageCRM sign-in → payment processor → paid plan active."""
    admin_app = f"{running.shopify_url}/store/demo/apps/sync-app"
    with pw.sync_playwright() as playwright:
        browser = playwright.chromium.launch(
            executable_path=str(CHROMIUM), args=["--no-sandbox", "--disable-dev-shm-usage"]
        )
        context = browser.new_context(viewport={"width": 1280, "height": 1000})
        context.set_default_timeout(20_000)
        pw.expect.set_options(timeout=20_000)
        page = context.new_page()
        screens = Screens(page)

        # 1. Shopify's managed installation screen (`syncapp run` seeds the demo store with the
        # app installed: remove it first, as for a merchant who has not installed it yet).
        removed = httpx.post(f"{running.shopify_url}/_sandbox/shops/{SHOP}/uninstall", timeout=10)
        assert removed.status_code == 200, removed.text
        page.goto(admin_app)
        install = page.get_by_role("button", name="Install", exact=True)
        pw.expect(install).to_be_visible()
        screens.shot("install-screen")
        with page.expect_navigation():
            install.click()

        # 2. The app loads in the admin's frame, installs itself and signs the store up.
        frame = page.frame_locator("#app-frame")
        pw.expect(frame.locator("#connections")).to_be_visible()
        pw.expect(frame.locator("#shopify-connection")).to_contain_text("Connected")
        screens.shot("app-installed")
        pw.expect(frame.locator("#ctrwow-account")).to_be_visible(timeout=60_000)
        pw.expect(frame.locator("#emanage-account")).to_be_visible()
        screens.shot("accounts-connected")
        [emanage] = [a for a in accounts(running.emanage_url) if a["shopDomain"] == SHOP]
        assert len(accounts(running.emanage_url)) == 1
        [ctrwow] = accounts(running.ctrwow_url)
        pw.expect(frame.locator("#emanage-account")).to_have_text(str(emanage["cid"]))
        pw.expect(frame.locator("#ctrwow-account")).to_have_text(str(ctrwow["id"]))
        pw.expect(frame.locator("#no-processor")).to_be_visible()

        # 3. "Open eManageCRM": a new tab signed in by a one-time link.
        with (
            page.expect_response(lambda r: r.url.endswith("/app/api/emanage/sso")) as answer,
            context.expect_page() as opened,
        ):
            frame.locator("#open-emanage").click()
        sso_url = str(answer.value.json()["url"])
        crm = opened.value
        crm.wait_for_url(f"{running.emanage_url}/crm/**")
        screens.shot("emanage-signed-in", crm)
        stranger = browser.new_context()
        again = stranger.new_page().goto(sso_url)
        assert again is not None
        assert again.status == 410
        screens.shot("emanage-link-refused", stranger.pages[0])
        stranger.close()

        # 4. Add a test payment processor in eManageCRM's own UI and activate it.
        crm.goto(f"{running.emanage_url}/crm/payment-providers")
        crm.fill("#name", "Sandbox Gateway")
        crm.fill("#mid", "MID-E2E-0001")
        crm.get_by_role("button", name="Add provider").click()
        crm.get_by_role("button", name="Activate").click()
        pw.expect(crm.get_by_role("button", name="Deactivate")).to_be_visible()
        screens.shot("emanage-provider-active", crm)
        crm.close()

        # 5. Back in the app: the processor shows as active, with its MID.
        page.goto(admin_app)
        provider = frame.locator("#provider-list")
        pw.expect(provider).to_contain_text("Sandbox Gateway")
        pw.expect(provider).to_contain_text("Active")
        pw.expect(provider).to_contain_text("MID-E2E-0001")
        pw.expect(frame.locator("#no-processor")).to_have_count(0)
        screens.shot("app-provider-active")

        # 6. Choose Pro; Shopify's confirmation page takes the whole window; approve.
        frame.locator("#choose-pro").click()
        page.wait_for_url("**/charges/*/confirm")
        pw.expect(page.get_by_text("49")).not_to_have_count(0)
        screens.shot("charge-confirmation")
        page.get_by_role("button", name="Approve").click()

        # 7. Back in the app through the billing return: the plan is active.
        page.wait_for_url("**/billing/return?**")
        pw.expect(frame.locator("#notice")).to_be_visible()
        pw.expect(frame.locator("#current-plan")).to_have_text("Pro")
        pw.expect(frame.locator("#plan")).to_contain_text("Active")
        screens.shot("plan-active")
        browser.close()
