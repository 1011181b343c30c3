"""The merchant's first five minutes, in headless Chromium against ``syncapp run``.

From the Shopify sandbox admin: install the app, watch it sign the store up to eManageCRM and
CTRwow, sign into eManageCRM once through the app's one-time link (refused the second time),
add and activate a payment processor there, see it active in the app, choose a paid plan and
approve the charge, and see the plan active; then uninstall and install again and find every
connection back and usable (the same CTRwow account answering the shop's new token, the same
eManageCRM tenant opening signed in). Each screen is saved to
``test-artifacts/screenshots/<nn>-<name>.png``.
"""

from __future__ import annotations

import subprocess
import sys
import time
from collections.abc import Callable, Iterator
from pathlib import Path

import httpx
import playwright.sync_api as pw
import pytest

from tests.e2e.system import Running, syncapp_run

# Whole systems in child processes: two groups, so `make test` (pytest-xdist, --dist
# loadgroup) runs at most two of them at once on two cores; minutes each under that load.
pytestmark = [pytest.mark.e2e, pytest.mark.xdist_group("e2e-b"), pytest.mark.timeout(900)]

CHROMIUM = Path("/usr/bin/chromium")  # a missing browser fails the test (.ci/run installs it)
SHOTS = Path(__file__).resolve().parents[2] / "test-artifacts" / "screenshots"
SHOP = "demo.myshopify.com"


@pytest.fixture
def running(tmp_path: Path) -> Iterator[Running]:
    """``syncapp run`` on free ports with its own data directory."""
    with syncapp_run(tmp_path) as urls:
        yield urls


def accounts(base_url: str) -> list[dict[str, object]]:
    response = httpx.get(f"{base_url}/_sandbox/accounts", timeout=10)
    assert response.status_code == 200, response.text
    found: list[dict[str, object]] = response.json()["accounts"]
    return found


def ctrwow_tokens(running: Running, shop: str) -> str | None:
    """``syncapp onboarding ctrwow-token`` of the running system: the shop's CTRwow access
    token, or None when it has none (the operator's command, run as a separate process)."""
    done = subprocess.run(
        [sys.executable, "-m", "syncapp.cli", "onboarding", "ctrwow-token", shop],
        env=running.env,
        capture_output=True,
        text=True,
        timeout=60,
        check=False,
    )
    return done.stdout.strip() if done.returncode == 0 and done.stdout.strip() else None


def wait_until(predicate: Callable[[], object], message: str, timeout: float = 30) -> None:
    deadline = time.monotonic() + timeout
    while not predicate():
        assert time.monotonic() < deadline, message
        time.sleep(0.2)


class Screens:
    """Numbered screenshots of the whole admin window (``<prefix>-<nn>-<name>.png`` when the
    test has a prefix)."""

    def __init__(self, page: pw.Page, prefix: str = "") -> None:
        self.page = page
        self.number = 0
        self.prefix = f"{prefix}-" if prefix else ""
        SHOTS.mkdir(parents=True, exist_ok=True)

    def shot(self, name: str, page: pw.Page | None = None) -> None:
        self.number += 1
        path = SHOTS / f"{self.prefix}{self.number:02d}-{name}.png"
        (page or self.page).screenshot(path=str(path))


def browser_context(playwright: pw.Playwright, **options: object) -> pw.BrowserContext:
    browser = playwright.chromium.launch(
        executable_path=str(CHROMIUM), args=["--no-sandbox", "--disable-dev-shm-usage"]
    )
    context = browser.new_context(**{"viewport": {"width": 1280, "height": 1000}, **options})
    context.set_default_timeout(20_000)
    pw.expect.set_options(timeout=20_000)
    return context


def failed_responses(context: pw.BrowserContext) -> list[str]:
    """Every 4xx/5xx answer a page of ``context`` gets for a favicon (the list fills as the
    test runs)."""
    failed: list[str] = []

    def check(response: pw.Response) -> None:
        if "favicon" in response.url and response.status >= 400:
            failed.append(f"{response.status} {response.url}")

    context.on("response", check)
    return failed


def primaries_per_section(frame: pw.FrameLocator) -> dict[str, int]:
    """How many visible primary buttons each section of the app has (Polaris: at most one)."""
    counts: dict[str, int] = frame.locator("body").evaluate(
        """() => Object.fromEntries([...document.querySelectorAll("s-section")].map((section) =>
          [section.id || section.getAttribute("heading"),
           [...section.querySelectorAll('s-button[variant="primary"]')]
             .filter((b) => b.getBoundingClientRect().width > 0).length]))"""
    )
    return counts


def open_app(page: pw.Page, url: str) -> pw.FrameLocator:
    """The app in the admin frame, with its sections and the processors loaded."""
    page.goto(url)
    frame = page.frame_locator("#app-frame")
    # The first load installs the shop (a token exchange): slow on a loaded machine.
    pw.expect(frame.locator("#connections")).to_be_visible(timeout=60_000)
    pw.expect(frame.locator("#provider-slot s-spinner")).to_have_count(0)
    return frame


def signed_up(page: pw.Page, url: str) -> pw.FrameLocator:
    frame = open_app(page, url)
    # The sign-up finishes while the page is open: its sections update without a reload.
    pw.expect(frame.locator("#ctrwow-account")).to_be_visible(timeout=60_000)
    pw.expect(frame.locator("#onboarding")).to_have_count(0)
    return frame


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
        pw.expect(frame.locator("#ctrwow-account")).to_have_text(str(ctrwow["name"]))
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

        # 8. Uninstall from the admin, then install again: every connection the uninstall cut
        # comes back (the same CTRwow account with a new grant, the same eManageCRM tenant).
        with page.expect_navigation():
            page.get_by_role("button", name="Uninstall", exact=True).click()
        install = page.get_by_role("button", name="Install", exact=True)
        pw.expect(install).to_be_visible()
        wait_until(lambda: not ctrwow_tokens(running, SHOP), "the CTRwow tokens were not deleted")
        with page.expect_navigation():
            install.click()
        frame = page.frame_locator("#app-frame")
        pw.expect(frame.locator("#shopify-connection")).to_contain_text("Connected")
        pw.expect(frame.locator("#ctrwow-account")).to_have_text(
            str(ctrwow["name"]), timeout=60_000
        )
        pw.expect(frame.locator("#emanage-account")).to_have_text(str(emanage["cid"]))
        pw.expect(frame.locator("#connect-ctrwow")).to_have_count(0)
        pw.expect(frame.locator("#onboarding")).to_have_count(0)  # the sign-up has finished
        pw.expect(frame.locator("#provider-list")).to_contain_text("MID-E2E-0001")
        screens.shot("reinstalled-connected")
        assert [a["shopDomain"] for a in accounts(running.emanage_url)] == [SHOP]
        assert len(accounts(running.ctrwow_url)) == 1

        # ... and usable: CTRwow answers the shop's token, eManageCRM opens signed in.
        token = ctrwow_tokens(running, SHOP)
        me = httpx.get(
            f"{running.ctrwow_url}/v1/me", headers={"Authorization": f"Bearer {token}"}, timeout=10
        )
        assert me.status_code == 200, me.text
        assert me.json()["id"] == ctrwow["id"]
        with context.expect_page() as opened:
            frame.locator("#open-emanage").click()
        opened.value.wait_for_url(f"{running.emanage_url}/crm/**")
        screens.shot("reinstalled-emanage-signed-in", opened.value)
        browser.close()


def test_a_pro_merchant_links_their_own_subscription_declines_a_charge_and_downgrades(
    running: Running,
) -> None:
    """On Pro: link the merchant's own eManageCRM subscription through the App Home's form
    (the code generated on eManageCRM's Settings > Integrations page); choose Scale and
    decline it on Shopify's page: the app says so; "Downgrade to Free" asks first, then says
    it is done. The page fits 420 px, reports web vitals, and no favicon is a 404."""
    admin_app = f"{running.shopify_url}/store/demo/apps/sync-app"
    with pw.sync_playwright() as playwright:
        context = browser_context(playwright)
        favicons = failed_responses(context)
        page = context.new_page()
        screens = Screens(page, "plans")
        frame = signed_up(page, admin_app)
        cid = next(str(a["cid"]) for a in accounts(running.emanage_url) if a["shopDomain"] == SHOP)
        pw.expect(frame.locator("#emanage-account")).to_have_text(cid)
        pw.expect(frame.locator("#link-not-allowed")).to_be_visible()
        assert max(primaries_per_section(frame).values()) == 1, primaries_per_section(frame)
        # The plan cards' buttons line up (each card as tall as its row, button at the bottom).
        tops = {
            round(frame.locator(f".plan-card[data-plan={h}] .plan-action").bounding_box()["y"])  # type: ignore[index]
            for h in ("free", "pro", "scale")
        }
        assert len(tops) == 1, tops

        # Pro, approved.
        frame.locator("#choose-pro").click()
        page.wait_for_url("**/charges/*/confirm")
        page.get_by_role("button", name="Approve").click()
        page.wait_for_url("**/billing/return?**")
        pw.expect(frame.locator("#notice")).to_contain_text("The Pro plan is active")
        screens.shot("pro-active")

        # The merchant's own subscription: sign in to it, Settings > Integrations, a code.
        made = httpx.post(
            f"{running.emanage_url}/_sandbox/subscriptions", json={"name": "Demo CRM"}, timeout=10
        )
        assert made.status_code == 201, made.text
        # Their own eManageCRM, signed in as its owner (a browser session of its own).
        crm_context = context.browser.new_context()  # type: ignore[union-attr]
        crm = crm_context.new_page()
        crm.goto(str(made.json()["signInUrl"]))
        crm.get_by_role("link", name="Settings").click()
        pw.expect(crm.locator("#shopify-sync-app")).to_contain_text("Shopify Sync App")
        crm.get_by_role("button", name="Generate link code").click()
        subscription_id = crm.locator("#subscription-id").inner_text()
        code = crm.locator("#link-code").inner_text()
        screens.shot("emanage-link-code", crm)
        # A mistyped code first: refused in words, nothing linked.
        frame.get_by_label("Subscription id").fill(subscription_id)
        frame.get_by_label("Link code").fill("LNK-AAAA-AAAA")
        frame.locator("#link-emanage").click()
        pw.expect(frame.locator("#error-box")).to_be_visible()
        pw.expect(frame.locator("#error")).to_contain_text("link code is not valid")
        screens.shot("link-code-refused")
        # The next action clears the banner (here: opening eManageCRM in a new tab).
        with context.expect_page() as opened:
            frame.locator("#open-emanage").click()
        opened.value.close()
        pw.expect(frame.locator("#error-box")).to_be_hidden()
        frame.get_by_label("Link code").fill(code)
        screens.shot("link-form-filled")
        frame.locator("#link-emanage").click()
        pw.expect(frame.locator("#notice")).to_contain_text(
            "Your own eManageCRM subscription is connected"
        )
        pw.expect(frame.locator("#emanage-kind")).to_have_text("dedicated")
        dedicated = next(a for a in accounts(running.emanage_url) if a["kind"] == "dedicated")
        pw.expect(frame.locator("#emanage-account")).to_have_text(str(dedicated["cid"]))
        screens.shot("own-subscription-linked")
        crm.goto(f"{running.emanage_url}/crm/settings/integrations")
        pw.expect(crm.locator("#shopify-sync-app")).to_contain_text(f"connected to {SHOP}")
        crm_context.close()

        # Scale, declined on Shopify's page: back in the admin, the app says it.
        frame.locator("#choose-scale").click()
        page.wait_for_url("**/charges/*/confirm")
        page.get_by_role("button", name="Decline").click()
        page.wait_for_url(admin_app)
        pw.expect(frame.locator("#plan-declined")).to_contain_text("You declined the Scale plan")
        pw.expect(frame.locator("#plan-pending")).to_have_count(0)
        pw.expect(frame.locator("#current-plan")).to_have_text("Pro")
        screens.shot("charge-declined")

        # "Downgrade to Free" asks first; "Keep Pro" changes nothing; confirming cancels.
        frame.locator("#choose-free").click()
        pw.expect(frame.locator("#confirm-box")).to_be_visible()

        pw.expect(frame.locator("#confirm-text")).to_contain_text("cancels the Pro plan now")
        assert max(primaries_per_section(frame).values()) == 1, primaries_per_section(frame)
        screens.shot("downgrade-confirmation")
        frame.locator("#confirm-no").click()
        pw.expect(frame.locator("#confirm-box")).to_be_hidden()
        pw.expect(frame.locator("#current-plan")).to_have_text("Pro")
        frame.locator("#choose-free").click()
        frame.locator("#confirm-yes").click()
        pw.expect(frame.locator("#notice")).to_contain_text("this store is on the Free plan now")
        pw.expect(frame.locator("#current-plan")).to_have_text("Free")
        screens.shot("downgraded")

        # The page's interaction above made App Bridge report web vitals to the app.
        metrics = httpx.get(f"{running.app_url}/metrics", timeout=10).text
        assert 'syncapp_app_home_web_vital_seconds_count{metric="LCP"}' in metrics

        # 420 px wide (the admin on a phone): nothing wider than the frame.
        narrow = context.new_page()
        narrow.set_viewport_size({"width": 420, "height": 900})
        narrow_frame = open_app(narrow, admin_app)
        app_frame = narrow.frame(url=lambda url: url.startswith(running.app_url))
        assert app_frame is not None
        overflow = app_frame.evaluate(
            """() => {
              const width = document.documentElement.clientWidth;
              const wide = [];
              const walk = (root) => root.querySelectorAll("*").forEach((el) => {
                const box = el.getBoundingClientRect();
                const out = box.right > width + 1 || box.left < -1;
                if (box.width && out) wide.push(el.tagName + "#" + el.id);
                if (el.shadowRoot) walk(el.shadowRoot);
              });
              walk(document);
              return {scroll: document.documentElement.scrollWidth, width, wide};
            }"""
        )
        assert overflow["scroll"] <= overflow["width"], overflow
        assert overflow["wide"] == [], overflow
        pw.expect(narrow_frame.locator("#plan")).to_be_visible()
        narrow.screenshot(path=str(SHOTS / "plans-narrow-420px.png"), full_page=True)
        assert favicons == []
        context.browser.close()  # type: ignore[union-attr]


def test_a_merchant_cancels_the_ctrwow_sign_in_and_gets_back_into_the_admin(
    running: Running,
) -> None:
    """A store whose email already has a CTRwow account: "Connect your CTRwow account", then
    Cancel on CTRwow's sign-in page; the merchant lands back in the app in the Shopify admin,
    which says CTRwow is not connected and still offers to connect."""
    handle = "own-ctrwow"
    email = f"owner@{handle}.example"
    made = httpx.post(
        f"{running.shopify_url}/_sandbox/shops",
        json={"domain": handle, "email": email, "name": "Own CTRwow Store", "installed": False},
        timeout=10,
    )
    assert made.status_code in (200, 201), made.text
    account = httpx.post(
        f"{running.ctrwow_url}/_sandbox/accounts",
        json={"email": email, "name": "Own CTRwow", "password": "correct horse battery"},
        timeout=10,
    )
    assert account.status_code == 201, account.text
    admin_app = f"{running.shopify_url}/store/{handle}/apps/sync-app"
    with pw.sync_playwright() as playwright:
        context = browser_context(playwright)
        favicons = failed_responses(context)
        page = context.new_page()
        screens = Screens(page, "ctrwow")
        page.goto(admin_app)
        pw.expect(page.locator("#install-shop")).to_have_text("Own CTRwow Store")
        screens.shot("install-screen")
        with page.expect_navigation():
            page.get_by_role("button", name="Install", exact=True).click()
        frame = page.frame_locator("#app-frame")
        connect = frame.locator("#connect-ctrwow")
        pw.expect(connect).to_be_visible(timeout=60_000)
        screens.shot("ctrwow-needs-you")
        connect.click()
        page.wait_for_url(f"{running.ctrwow_url}/**")
        screens.shot("ctrwow-sign-in")
        page.get_by_role("button", name="Cancel").first.click()
        page.wait_for_url(f"{running.shopify_url}/store/{handle}/apps/*?ctrwow=cancelled")
        pw.expect(frame.locator("#notice")).to_contain_text("You cancelled the CTRwow sign-in")
        pw.expect(frame.locator("#connect-ctrwow")).to_be_visible()
        screens.shot("ctrwow-cancelled")

        # The app's address opened directly: a styled page that leads into the admin.
        page.goto(f"{running.app_url}/")
        pw.expect(page.locator("#title")).to_have_text("Open the Sync App from your Shopify admin")
        screens.shot("opened-directly")
        page.locator("#back").click()
        pw.expect(page.get_by_role("heading", name="Choose a store")).to_be_visible()
        assert favicons == []
        context.browser.close()  # type: ignore[union-attr]
