"""The sandboxes against a web page's requests: control routes refuse foreign origins and
simple cross-site bodies, pages escape what they echo, every response carries a CSP. Each
sandbox served over HTTP as ``make run`` serves it."""

from __future__ import annotations

from collections.abc import Iterator
from pathlib import Path

import httpx
import pytest

from syncapp.sandbox.ctrwow import create_app as create_ctrwow
from syncapp.sandbox.emanage import create_app as create_emanage
from tests.integration.ctrwow.conftest import make_config as ctrwow_config
from tests.integration.emanage.conftest import sandbox_config as emanage_config
from tests.integration.emanage.conftest import serve as serve_built
from tests.integration.sandbox.conftest import RunningSandbox

EVIL = "https://evil.example"
# What a page on another site can send with fetch(mode: "no-cors") or a <form>, per route.
CROSS_SITE = [
    pytest.param({"Origin": EVIL, "Content-Type": "text/plain"}, id="foreign-origin-text"),
    pytest.param({"Origin": "null", "Content-Type": "text/plain"}, id="null-origin"),
    pytest.param(
        {"Origin": EVIL, "Content-Type": "application/x-www-form-urlencoded"}, id="foreign-form"
    ),
    pytest.param({"Content-Type": "text/plain"}, id="text-without-origin"),
    pytest.param({"Content-Type": "application/x-www-form-urlencoded"}, id="form-without-origin"),
    pytest.param({"Content-Type": "multipart/form-data; boundary=x"}, id="multipart"),
    pytest.param(
        {"Sec-Fetch-Site": "cross-site", "Content-Type": "application/json"}, id="fetch-site"
    ),
    pytest.param(
        {"Origin": "http://attacker.test:8100", "Host": "attacker.test:8100"}, id="rebinding"
    ),
]


@pytest.fixture
def emanage_url(tmp_path: Path) -> Iterator[str]:
    with serve_built(lambda url: create_emanage(emanage_config(tmp_path, public_url=url))) as url:
        yield url


@pytest.fixture
def ctrwow_url(tmp_path: Path) -> Iterator[str]:
    with serve_built(lambda url: create_ctrwow(ctrwow_config(tmp_path, public_url=url))) as url:
        yield url


@pytest.mark.parametrize("headers", CROSS_SITE)
def test_shopify_control_routes_refuse_cross_site_requests(
    shared_sandbox: RunningSandbox, shop: str, headers: dict[str, str]
) -> None:
    """A page cannot uninstall the app, fire shop/redact or create shops from the browser."""
    body = '{"domain": "evil-created"}'
    for path in (
        f"/_sandbox/shops/{shop}/uninstall",
        f"/_sandbox/shops/{shop}/compliance/shop_redact",
        "/_sandbox/shops",
        "/_sandbox/webhooks/faults",
    ):
        response = shared_sandbox.control.post(path, content=body, headers=headers)
        assert response.status_code == 403, (path, response.text)
        assert response.headers["content-type"] == "application/json"
    with shared_sandbox.state.db.transaction() as conn:
        row = conn.execute("SELECT app_installed FROM shops WHERE domain = ?", (shop,)).fetchone()
        assert row["app_installed"] == 1
        created = conn.execute(
            "SELECT 1 FROM shops WHERE domain = 'evil-created.myshopify.com'"
        ).fetchone()
        assert created is None


def test_shopify_control_routes_serve_scripts_and_same_origin_pages(
    shared_sandbox: RunningSandbox, shop: str
) -> None:
    """JSON (the tests' and scripts' way) and same-origin browser requests still work."""
    origin = shared_sandbox.base_url
    assert shared_sandbox.control.post(f"/_sandbox/shops/{shop}/id_token", json={}).is_success
    same_origin = shared_sandbox.control.post(
        f"/_sandbox/shops/{shop}/id_token",
        content="{}",
        headers={"Origin": origin, "Sec-Fetch-Site": "same-origin", "Content-Type": "text/plain"},
    )
    assert same_origin.status_code == 200, same_origin.text
    # A form on a "Referrer-Policy: no-referrer" page: Chromium sends "Origin: null".
    opaque = shared_sandbox.control.post(
        f"/_sandbox/shops/{shop}/id_token",
        content="{}",
        headers={"Origin": "null", "Sec-Fetch-Site": "same-origin", "Content-Type": "text/plain"},
    )
    assert opaque.status_code == 200, opaque.text
    assert shared_sandbox.control.post(f"/_sandbox/shops/{shop}/uninstall").status_code == 200


@pytest.mark.parametrize("headers", CROSS_SITE)
def test_emanage_and_ctrwow_control_routes_refuse_cross_site_requests(
    emanage_url: str, ctrwow_url: str, headers: dict[str, str]
) -> None:
    body = '{"email": "x@example.com", "name": "X"}'
    for url in (
        f"{emanage_url}/_sandbox/subscriptions",
        f"{emanage_url}/_sandbox/faults",
        f"{emanage_url}/_sandbox/clock",
        f"{ctrwow_url}/_sandbox/accounts",
        f"{ctrwow_url}/_sandbox/faults",
        f"{ctrwow_url}/_sandbox/clock",
    ):
        response = httpx.post(url, content=body, headers=headers, timeout=10)
        assert response.status_code == 403, (url, response.text)
    assert httpx.get(f"{ctrwow_url}/_sandbox/accounts", timeout=10).json()["accounts"] == []


def test_pages_refuse_posts_from_a_foreign_origin(
    shared_sandbox: RunningSandbox, shop: str, emanage_url: str, ctrwow_url: str
) -> None:
    """The admin, CRM and sign-in forms: a foreign Origin is refused before the form."""
    handle = shop.removesuffix(".myshopify.com")
    form = {"Origin": EVIL, "Content-Type": "application/x-www-form-urlencoded"}
    for url in (
        f"{shared_sandbox.base_url}/store/{handle}/products",
        f"{shared_sandbox.base_url}/store/{handle}/apps/sync-app/uninstall",
        f"{emanage_url}/crm/payment-providers",
        f"{ctrwow_url}/oauth/authorize",
    ):
        response = httpx.post(url, content="a=b", headers=form, timeout=10)
        assert response.status_code == 403, (url, response.text)


def test_pages_escape_what_they_echo_and_send_a_csp(
    shared_sandbox: RunningSandbox, emanage_url: str, ctrwow_url: str
) -> None:
    payload = "<svg onload=alert(1)>"
    for path in (f"/store/{payload}/products", f"/store/{payload}/apps/sync-app"):
        response = shared_sandbox.control.get(path)
        assert response.status_code == 404
        assert "<svg" not in response.text
        assert "&lt;svg" in response.text
        assert "default-src" in response.headers["content-security-policy"]
        assert response.headers["x-content-type-options"] == "nosniff"
    for url in (
        f"{shared_sandbox.base_url}/healthz",
        f"{emanage_url}/crm/",
        f"{emanage_url}/sso/{payload}",
        f"{ctrwow_url}/oauth/authorize?client_id={payload}",
        f"{ctrwow_url}/templates/{payload}/preview",
    ):
        response = httpx.get(url, timeout=10)
        assert "<svg" not in response.text, url
        assert "content-security-policy" in response.headers, url
