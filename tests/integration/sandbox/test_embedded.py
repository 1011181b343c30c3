"""The admin frame around the embedded app, over real HTTP: the iframe gets the query Shopify
adds to an App Home load (signed, with a verifiable ID token), managed installation shows the
install screen first, uninstalling fires ``app/uninstalled``, the frame's token endpoint is
CSRF-protected, and the App Bridge and Polaris stand-ins are served as JavaScript."""

from __future__ import annotations

import base64
import hashlib
import hmac
import html
import re
from collections.abc import Iterator
from pathlib import Path
from urllib.parse import parse_qsl, urlparse

import httpx
import jwt
import pytest

from syncapp.sandbox.shopify.embedded import describe_scopes
from syncapp.sandbox.shopify.oauth import load_access_scopes

from .conftest import (
    APP_TOML,
    CLIENT_ID,
    CLIENT_SECRET,
    RunningSandbox,
    make_config,
    running_sandbox,
)

APP_URL = "http://127.0.0.1:8000"


@pytest.fixture(scope="module")
def admin(tmp_path_factory: pytest.TempPathFactory) -> Iterator[RunningSandbox]:
    """A sandbox serving the admin for an app at ``APP_URL`` (no webhook delivery)."""
    config = make_config(
        tmp_path_factory.mktemp("embedded"),
        APP_URL,
        deliver_webhooks=False,
        extra={"scopes": load_access_scopes(APP_TOML), "app_toml": str(APP_TOML)},
    )
    with running_sandbox(config) as running:
        yield running


def new_shop(admin: RunningSandbox, name: str, *, installed: bool = True) -> str:
    return str(admin.create_shop(name, installed=installed)["domain"])


def iframe_src(page: httpx.Response) -> str:
    match = re.search(r'<iframe id="app-frame"[^>]*\ssrc="([^"]+)"', page.text)
    assert match, f"no app iframe on the page: {page.text[:500]}"
    return html.unescape(match.group(1))


def frame_query(admin: RunningSandbox, shop: str, suffix: str = "") -> dict[str, str]:
    page = admin.control.get(f"/store/{shop.removesuffix('.myshopify.com')}/apps/sync-app{suffix}")
    assert page.status_code == 200, page.text
    return dict(parse_qsl(urlparse(iframe_src(page)).query))


def csrf_token(page: httpx.Response) -> str:
    match = re.search(r'name="csrf_token" value="([0-9a-f]+)"', page.text)
    assert match, "the page has no CSRF token field"
    return match.group(1)


def outbox_topics(admin: RunningSandbox, shop: str) -> list[str]:
    with admin.state.db.transaction() as conn:
        rows = conn.execute(
            "SELECT topic FROM webhook_outbox WHERE shop_domain = ? ORDER BY id", (shop,)
        ).fetchall()
    return [r["topic"] for r in rows]


def is_installed(admin: RunningSandbox, shop: str) -> bool:
    with admin.state.db.transaction() as conn:
        row = conn.execute("SELECT app_installed FROM shops WHERE domain = ?", (shop,)).fetchone()
    return bool(row["app_installed"])


def test_the_frame_loads_the_app_url_with_the_admin_path_below_the_app(
    admin: RunningSandbox,
) -> None:
    """The iframe points at app_url plus the path after /apps/<handle>."""
    shop = new_shop(admin, "frame-path")
    page = admin.control.get("/store/frame-path/apps/sync-app/funnels/new")
    src = urlparse(iframe_src(page))
    assert f"{src.scheme}://{src.netloc}" == APP_URL
    assert src.path == "/funnels/new"
    assert shop in page.text


def test_the_frame_query_has_the_parameters_of_an_app_home_load(admin: RunningSandbox) -> None:
    """embedded, hmac, host, id_token, locale, session, shop and timestamp are all there."""
    shop = new_shop(admin, "frame-params")
    query = frame_query(admin, shop)
    assert set(query) == {
        "embedded",
        "hmac",
        "host",
        "id_token",
        "locale",
        "session",
        "shop",
        "timestamp",
    }
    assert query["embedded"] == "1"
    assert query["locale"] == "en"
    assert query["shop"] == shop
    padded = query["host"] + "=" * (-len(query["host"]) % 4)
    assert base64.urlsafe_b64decode(padded).decode() == "admin.shopify.com/store/frame-params"


def test_the_frame_query_hmac_verifies_with_the_client_secret(admin: RunningSandbox) -> None:
    """hmac is hex HMAC-SHA256 of the other parameters, sorted and joined as k=v&…."""
    query = frame_query(admin, new_shop(admin, "frame-hmac"))
    message = "&".join(f"{k}={v}" for k, v in sorted(query.items()) if k != "hmac")
    expected = hmac.new(CLIENT_SECRET.encode(), message.encode(), hashlib.sha256).hexdigest()
    assert hmac.compare_digest(query["hmac"], expected)


def test_the_frame_query_id_token_verifies_for_the_app_and_shop(admin: RunningSandbox) -> None:
    """The id_token is an HS256 JWT for the app (aud) and the shop (dest), as Shopify's."""
    shop = new_shop(admin, "frame-jwt")
    token = frame_query(admin, shop)["id_token"]
    claims = jwt.decode(token, CLIENT_SECRET, algorithms=["HS256"], audience=CLIENT_ID)
    assert claims["dest"] == f"https://{shop}"
    assert claims["iss"] == f"https://{shop}/admin"


def test_other_query_parameters_pass_through_signed(admin: RunningSandbox) -> None:
    """A parameter of the admin URL (charge_id) reaches the app and is covered by the hmac."""
    query = frame_query(admin, new_shop(admin, "frame-pass"), "?charge_id=42&shop=evil")
    assert query["charge_id"] == "42"
    assert query["shop"] == "frame-pass.myshopify.com"
    message = "&".join(f"{k}={v}" for k, v in sorted(query.items()) if k != "hmac")
    assert query["hmac"] == hmac.new(CLIENT_SECRET.encode(), message.encode(), "sha256").hexdigest()


def test_the_app_can_be_opened_by_its_client_id(admin: RunningSandbox) -> None:
    """/apps/<client id> shows the same app as /apps/<handle>."""
    new_shop(admin, "frame-key")
    page = admin.control.get(f"/store/frame-key/apps/{CLIENT_ID}")
    assert page.status_code == 200
    assert iframe_src(page).startswith(APP_URL + "/?")


def test_an_unknown_app_handle_is_not_found(admin: RunningSandbox) -> None:
    """Another app's handle gets a 404 page, not a frame."""
    new_shop(admin, "frame-other")
    page = admin.control.get("/store/frame-other/apps/someone-else")
    assert page.status_code == 404
    assert "app-frame" not in page.text


def test_a_shop_without_the_app_sees_the_install_screen_with_scopes(
    admin: RunningSandbox,
) -> None:
    """With app_installed=0 the page lists the scopes and offers Install, no iframe."""
    name = admin.create_shop("install-screen", installed=False)["name"]
    page = admin.control.get("/store/install-screen/apps/sync-app")
    assert page.status_code == 200
    assert "Install Sync App" in page.text
    assert "app-frame" not in page.text
    # The shop by name and the scopes in words, as Shopify's install screen has them.
    assert f'<strong id="install-shop">{name}</strong>' in page.text
    assert "<li>View and edit products</li>" in page.text
    assert "write_products" not in page.text


def test_scopes_are_described_in_words() -> None:
    assert describe_scopes(
        ["read_products", "write_products", "read_orders", "write_assigned_fulfillment_orders"]
    ) == [
        "View and edit products",
        "View orders",
        "View and edit fulfillment orders assigned to the app's locations",
    ]


def test_an_unknown_shop_is_created_without_the_app(admin: RunningSandbox) -> None:
    """Opening the app on a shop the sandbox never saw creates it, not installed."""
    page = admin.control.get("/store/brand-new-shop/apps/sync-app")
    assert "Install Sync App" in page.text
    assert is_installed(admin, "brand-new-shop.myshopify.com") is False


def test_installing_marks_the_app_installed_and_returns_to_the_frame(
    admin: RunningSandbox,
) -> None:
    """Install (POST with the page's CSRF token) installs and redirects to the app frame."""
    shop = new_shop(admin, "install-me", installed=False)
    page = admin.control.get("/store/install-me/apps/sync-app/settings")
    response = admin.control.post(
        "/store/install-me/apps/sync-app/install",
        data={"csrf_token": csrf_token(page), "return_path": "settings"},
    )
    assert response.status_code == 303
    assert response.headers["location"] == "/store/install-me/apps/sync-app/settings"
    assert is_installed(admin, shop)
    assert urlparse(iframe_src(admin.control.get(response.headers["location"]))).path == (
        "/settings"
    )


def test_installing_hands_out_no_access_token(admin: RunningSandbox) -> None:
    """Managed installation issues no token: the app must exchange the ID token itself."""
    shop = new_shop(admin, "install-notoken", installed=False)
    page = admin.control.get("/store/install-notoken/apps/sync-app")
    admin.control.post(
        "/store/install-notoken/apps/sync-app/install", data={"csrf_token": csrf_token(page)}
    )
    with admin.state.db.transaction() as conn:
        count = conn.execute(
            "SELECT COUNT(*) FROM access_tokens WHERE shop_domain = ?", (shop,)
        ).fetchone()[0]
    assert count == 0


def test_installing_without_the_csrf_token_is_refused(admin: RunningSandbox) -> None:
    """A forged Install post changes nothing."""
    shop = new_shop(admin, "install-forged", installed=False)
    response = admin.control.post(
        "/store/install-forged/apps/sync-app/install", data={"csrf_token": "0" * 64}
    )
    assert response.status_code == 403
    assert not is_installed(admin, shop)


def test_uninstall_from_the_frame_fires_app_uninstalled(admin: RunningSandbox) -> None:
    """The chrome's Uninstall action uninstalls and records app/uninstalled."""
    shop = new_shop(admin, "uninstall-me")
    page = admin.control.get("/store/uninstall-me/apps/sync-app")
    response = admin.control.post(
        "/store/uninstall-me/apps/sync-app/uninstall", data={"csrf_token": csrf_token(page)}
    )
    assert response.status_code == 303
    assert not is_installed(admin, shop)
    assert outbox_topics(admin, shop) == ["app/uninstalled"]


def test_the_token_endpoint_mints_a_token_for_the_frame_page(admin: RunningSandbox) -> None:
    """With the frame page's CSRF token, the endpoint returns a fresh, valid ID token."""
    shop = new_shop(admin, "token-ok")
    page = admin.control.get("/store/token-ok/apps/sync-app")
    response = admin.control.post(
        "/store/token-ok/apps/sync-app/id_token", headers={"X-CSRF-Token": csrf_token(page)}
    )
    assert response.status_code == 200
    claims = jwt.decode(
        response.json()["id_token"], CLIENT_SECRET, algorithms=["HS256"], audience=CLIENT_ID
    )
    assert claims["dest"] == f"https://{shop}"


def test_the_token_endpoint_refuses_requests_without_the_csrf_token(
    admin: RunningSandbox,
) -> None:
    """Another page cannot get ID tokens: no CSRF header, no token."""
    new_shop(admin, "token-forged")
    response = admin.control.post("/store/token-forged/apps/sync-app/id_token")
    assert response.status_code == 403
    assert "id_token" not in response.text


def test_the_token_endpoint_refuses_cross_site_origins(admin: RunningSandbox) -> None:
    """A request from another origin is refused even with a valid token."""
    new_shop(admin, "token-origin")
    page = admin.control.get("/store/token-origin/apps/sync-app")
    response = admin.control.post(
        "/store/token-origin/apps/sync-app/id_token",
        headers={"X-CSRF-Token": csrf_token(page), "Origin": "http://evil.example"},
    )
    assert response.status_code == 403


def test_the_frame_page_cannot_itself_be_framed(admin: RunningSandbox) -> None:
    """The admin page forbids framing and only frames the app's origin."""
    new_shop(admin, "frame-csp")
    page = admin.control.get("/store/frame-csp/apps/sync-app")
    assert page.headers["x-frame-options"] == "DENY"
    assert f"frame-src {APP_URL}" in page.headers["content-security-policy"]


@pytest.mark.parametrize(
    ("path", "marker"),
    [
        ("/shopifycloud/app-bridge.js", "window.shopify ="),
        ("/shopifycloud/polaris.js", "customElements.define"),
        ("/shopifycloud/sandbox-admin.js", "id_token_request"),
    ],
)
def test_the_stand_in_scripts_are_served_as_javascript(
    admin: RunningSandbox, path: str, marker: str
) -> None:
    """Each stand-in script is served with a JavaScript content type."""
    response = admin.control.get(path)
    assert response.status_code == 200
    assert response.headers["content-type"].startswith("text/javascript")
    assert marker in response.text


def test_the_frame_page_loads_the_admin_side_script(admin: RunningSandbox) -> None:
    """The frame page includes the postMessage counterpart, told the app's origin."""
    new_shop(admin, "frame-script")
    page = admin.control.get("/store/frame-script/apps/sync-app")
    assert '<script src="/shopifycloud/sandbox-admin.js">' in page.text
    assert f'data-app-origin="{APP_URL}"' in page.text


def test_the_app_identity_comes_from_shopify_app_toml(tmp_path: Path) -> None:
    """Without app_toml the sandbox reads the toml it is pointed at; its name shows."""
    toml = tmp_path / "shopify.app.toml"
    toml.write_text('name = "Other App"\nhandle = "other-app"\n', encoding="utf-8")
    config = make_config(
        tmp_path,
        APP_URL,
        deliver_webhooks=False,
        extra={"scopes": "read_products", "app_toml": str(toml)},
    )
    with running_sandbox(config) as running:
        running.create_shop("ident")
        page = running.control.get("/store/ident/apps/other-app")
    assert page.status_code == 200
    assert "Other App" in page.text
