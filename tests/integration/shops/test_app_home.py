"""App Home: every request verified by shopifyapp, the first one installs the shop."""

from __future__ import annotations

import sqlite3
from concurrent.futures import ThreadPoolExecutor
from urllib.parse import parse_qs, urlparse

import jwt
import pytest
import structlog
from shopify_app import IdTokenDetails
from sqlalchemy import select
from structlog.testing import capture_logs

from syncapp.onboarding.models import OnboardingJob
from syncapp.shops.install import ensure_installed
from syncapp.store.models import Connection, Credential, Shop
from tests.integration.shops.conftest import System, handle_for
from tests.probes import probing


def test_a_document_load_without_id_token_is_redirected_to_the_patch_page(
    sqlite_system: System,
) -> None:
    """No id_token on a document load: shopifyapp's 302 to /auth/patch-id-token with the reload."""
    response = sqlite_system.app.get("/", params={"shop": "x.myshopify.com", "embedded": "1"})
    assert response.status_code == 302
    location = urlparse(response.headers["location"])
    assert location.path == "/auth/patch-id-token"
    query = parse_qs(location.query)
    assert query["shop"] == ["x.myshopify.com"]
    assert query["shopify-reload"] == ["/?shop=x.myshopify.com&embedded=1"]


def test_the_patch_page_loads_app_bridge_framed_by_the_shop(sqlite_system: System) -> None:
    """The patch page is shopifyapp's: App Bridge (from the sandbox admin here) with our client
    id, CSP for the shop, Shopify's admin and the sandbox admin that frames the app."""
    response = sqlite_system.app.get(
        "/auth/patch-id-token", params={"shop": "x.myshopify.com", "shopify-reload": "/"}
    )
    assert response.status_code == 200
    assert f'src="{sqlite_system.sandbox_url}/shopifycloud/app-bridge.js"' in response.text
    assert sqlite_system.settings.shopify_client_id in response.text
    assert response.headers["content-security-policy"] == (
        f"frame-ancestors https://x.myshopify.com https://admin.shopify.com"
        f" {sqlite_system.sandbox_url};"
    )


def test_the_first_verified_request_installs_the_shop(
    system: System, request: pytest.FixtureRequest
) -> None:
    """Token exchange stores an encrypted token pair, the shop, an active connection and a
    pending onboarding job, and the page shows the shop read from the Admin API."""
    shop = system.create_shop(handle_for(request), name="Blue Mugs", plan_name="Advanced")
    response = system.open_app_home(shop)
    assert response.status_code == 200
    assert response.headers["content-security-policy"] == (
        f"frame-ancestors https://{shop} https://admin.shopify.com {system.sandbox_url};"
    )
    assert "app-bridge.js" in response.headers["link"]
    assert "Blue Mugs" in response.text
    assert "Advanced" in response.text
    with system.runtime.sessions() as session:
        row = session.scalar(select(Shop).where(Shop.domain == shop))
        assert row is not None
        assert row.installed_at is not None
        assert row.uninstalled_at is None
        assert (row.name, row.plan_name, row.currency_code) == ("Blue Mugs", "Advanced", "USD")
        assert row.shopify_gid is not None
        assert row.shopify_gid.startswith("gid://shopify/Shop/")
        creds = session.scalars(select(Credential).where(Credential.shop_id == row.id)).all()
        assert sorted(c.name for c in creds) == ["offline_access_token", "offline_refresh_token"]
        assert all(b"shpat_" not in c.ciphertext and b"shprt_" not in c.ciphertext for c in creds)
        assert all(c.expires_at is not None for c in creds)
        connection = session.scalar(select(Connection).where(Connection.shop_id == row.id))
        assert connection is not None
        assert connection.status == "active"
        assert connection.scopes is not None
        assert "write_products" in connection.scopes
        job = session.execute(
            select(OnboardingJob.kind, OnboardingJob.status).where(OnboardingJob.shop_id == row.id)
        ).one()
        assert tuple(job) == ("signup", "pending")


def test_later_requests_reuse_the_stored_token(
    sqlite_system: System, request: pytest.FixtureRequest
) -> None:
    """Only the first request exchanges a token: the sandbox issued one offline token."""
    shop = sqlite_system.create_shop(handle_for(request))
    for _ in range(3):
        assert sqlite_system.open_app_home(shop).status_code == 200
    assert sqlite_system.fetch(shop, "/app/api/shop").status_code == 200
    with sqlite_system.runtime.sessions() as session:
        assert len(session.scalars(select(Credential.id)).all()) == 2
    with sqlite3.connect(sqlite_system.settings.data_dir / "shopify-sandbox.db") as conn:
        (count,) = conn.execute(
            "SELECT count(*) FROM access_tokens WHERE shop_domain = ? AND kind = 'offline'",
            (shop,),
        ).fetchone()
    assert count == 1


def test_install_logs_each_step_with_the_shop_and_the_request_id(
    sqlite_system: System, request: pytest.FixtureRequest
) -> None:
    """Each install step is one structured line carrying shop and the request's X-Request-Id."""
    shop = sqlite_system.create_shop(handle_for(request))
    token = sqlite_system.id_token(shop)
    with capture_logs(processors=[structlog.contextvars.merge_contextvars]) as logs:
        response = sqlite_system.app.get(
            "/", params={"id_token": token, "shop": shop}, headers={"X-Request-Id": "req-inst-1"}
        )
    assert response.status_code == 200
    steps = [line for line in logs if line["event"].startswith("install.")]
    assert [s["event"] for s in steps] == [
        "install.token_exchange_started",
        "install.tokens_stored",
        "install.onboarding_queued",
        "install.completed",
        "install.shop_info_stored",
    ]
    assert all(s["shop"] == shop and s["request_id"] == "req-inst-1" for s in steps)


def sandbox_offline_tokens(system: System, shop: str) -> int:
    with sqlite3.connect(system.settings.data_dir / "shopify-sandbox.db") as conn:
        (count,) = conn.execute(
            "SELECT count(*) FROM access_tokens WHERE shop_domain = ? AND kind = 'offline'",
            (shop,),
        ).fetchone()
    return int(count)


def test_first_requests_at_once_make_one_token_exchange(
    system: System, request: pytest.FixtureRequest
) -> None:
    """Four first requests at the same moment: all answered, one exchange, one stored pair."""
    shop = system.create_shop(handle_for(request))
    tokens = [system.id_token(shop) for _ in range(4)]
    with ThreadPoolExecutor(max_workers=4) as pool:
        responses = list(pool.map(lambda token: system.open_app_home(shop, token), tokens))
    assert [r.status_code for r in responses] == [200] * 4
    assert sandbox_offline_tokens(system, shop) == 1
    with system.runtime.sessions() as session:
        assert len(session.scalars(select(Credential.id)).all()) == 2
        row = session.scalar(select(Shop).where(Shop.domain == shop))
        assert row is not None
        assert (row.install_locked_by, row.install_locked_until) == (None, None)


def test_no_database_lock_is_held_during_the_token_exchange(
    system: System, request: pytest.FixtureRequest
) -> None:
    """The exchange's round trip to Shopify holds no lock; on SQLite one would stall every
    writer of every process (webhook ingest included) for the length of the call."""
    shop = system.create_shop(handle_for(request))
    token = system.id_token(shop)
    runtime = probing(system.runtime, "/admin/oauth/access_token")
    claims = jwt.decode(token, options={"verify_signature": False})
    outcome = ensure_installed(
        runtime,
        shop=shop,
        id_token=IdTokenDetails(exchangeable=True, token=token, claims=claims),
        invalid_token_response=None,
    )
    assert (outcome.exchanged, outcome.response) == (True, None)
    assert runtime.probes == ["written"]
    assert sandbox_offline_tokens(system, shop) == 1


def test_opening_the_app_url_directly_explains_where_the_app_lives(sqlite_system: System) -> None:
    """The app's address typed into a browser (no shop, no token): after shopifyapp's redirect
    to the patch page, a styled page that says to open the app in the Shopify admin and links
    there, instead of a bare "Bad Request"."""
    response = sqlite_system.app.get("/", follow_redirects=True)
    assert response.url.path == "/auth/patch-id-token"
    assert response.text != "Bad Request"
    assert "<style>" in response.text
    assert "Open the Sync App from your Shopify admin" in response.text
    admin = sqlite_system.settings.shopify_admin_url.rstrip("/")
    assert f'id="back" href="{admin}"' in response.text
    assert response.headers["content-type"].startswith("text/html")
    assert "frame-ancestors 'none'" in response.headers["content-security-policy"]


def test_the_app_serves_its_favicon(sqlite_system: System) -> None:
    """A browser's /favicon.ico gets the app's icon, not a 404 (pages outside the admin)."""
    icon = sqlite_system.app.get("/favicon.ico")
    assert icon.status_code == 200
    assert icon.headers["content-type"] == "image/svg+xml"
    assert icon.content.startswith(b"<svg")
