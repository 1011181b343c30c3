"""ID tokens and the unauthenticated patch-ID-token page: incomplete tokens refused, a failed
token exchange answered 401 with a per-shop backoff (Shopify not called on every request),
the patch page's ``shop`` validated and its URLs built on the configured public URL."""

from __future__ import annotations

import time
import uuid
from datetime import UTC, datetime, timedelta
from typing import Any

import jwt
import pytest
from shopify_app import IdTokenDetails
from sqlalchemy import select, update

from syncapp.shops.install import ensure_installed
from syncapp.store.models import Shop
from tests.integration.sandbox.conftest import CLIENT_ID, CLIENT_SECRET
from tests.integration.shops.conftest import System, handle_for
from tests.probes import probing


def _claims(shop: str, **overrides: Any) -> dict[str, Any]:
    now = int(time.time())
    claims: dict[str, Any] = {
        "iss": f"https://{shop}/admin",
        "dest": f"https://{shop}",
        "aud": CLIENT_ID,
        "sub": "1",
        "exp": now + 60,
        "nbf": now,
        "iat": now,
        "jti": str(uuid.uuid4()),
        "sid": "s",
    }
    claims.update(overrides)
    return {k: v for k, v in claims.items() if v is not None}


@pytest.fixture
def shop(sqlite_system: System, request: pytest.FixtureRequest) -> str:
    domain = sqlite_system.create_shop(handle_for(request), name="Blue Mugs")
    sqlite_system.install(domain)
    return domain


@pytest.mark.parametrize(
    "overrides",
    [
        {"exp": None},
        {"nbf": None},
        {"iat": None},
        {"sub": None},
        {"sub": ""},
        {"iss": None},
        {"iss": "https://other-shop.myshopify.com/admin"},
        {"iss": "http://{shop}/admin"},
        {"dest": "https://evil.example"},
    ],
    ids=lambda o: ",".join(f"{k}={v}" for k, v in o.items()),
)
def test_an_incomplete_id_token_is_refused(
    sqlite_system: System, shop: str, overrides: dict[str, Any]
) -> None:
    """Signed with our secret, but not what Shopify issues: 401 on a fetch, the patch page
    on a document load, and no data either way."""
    values = {k: v.format(shop=shop) if isinstance(v, str) else v for k, v in overrides.items()}
    token = jwt.encode(_claims(shop, **values), CLIENT_SECRET, "HS256")
    fetched = sqlite_system.fetch(shop, "/app/api/shop", token=token)
    assert fetched.status_code == 401
    assert "Blue Mugs" not in fetched.text
    loaded = sqlite_system.open_app_home(shop, token=token)
    assert loaded.status_code == 302
    assert "/auth/patch-id-token" in loaded.headers["location"]


def test_a_complete_id_token_is_accepted(sqlite_system: System, shop: str) -> None:
    token = jwt.encode(_claims(shop), CLIENT_SECRET, "HS256")
    assert sqlite_system.fetch(shop, "/app/api/shop", token=token).status_code == 200


def test_a_failed_exchange_is_a_401_and_backs_off(
    sqlite_system: System, request: pytest.FixtureRequest
) -> None:
    """A shop that uninstalled the app on Shopify: its token exchange is refused. The App
    Home answers 401 (JSON on the API), records a backoff, and until it ends does not ask
    Shopify again, even after a reinstall; after it, the exchange succeeds."""
    shop = sqlite_system.create_shop(handle_for(request))
    assert sqlite_system.control.post(f"/_sandbox/shops/{shop}/uninstall").status_code == 200

    fetched = sqlite_system.fetch(shop, "/app/api/shop")
    assert fetched.status_code == 401, fetched.text
    assert "error" in fetched.json()
    assert int(fetched.headers["retry-after"]) >= 1
    loaded = sqlite_system.open_app_home(shop)
    assert loaded.status_code == 401

    runtime = probing(sqlite_system.runtime, "/admin/oauth/access_token")
    token = sqlite_system.id_token(shop)
    details = IdTokenDetails(
        exchangeable=True,
        token=token,
        claims=jwt.decode(token, options={"verify_signature": False}),
    )
    assert sqlite_system.control.post(f"/_sandbox/shops/{shop}/install").status_code == 200
    for _ in range(3):
        outcome = ensure_installed(
            runtime, shop=shop, id_token=details, invalid_token_response=None
        )
        assert outcome.response is not None
        assert outcome.response.status == 401
    assert runtime.probes == []  # Shopify was not called during the backoff
    with sqlite_system.runtime.sessions() as session:
        row = session.scalar(select(Shop).where(Shop.domain == shop))
        assert row is not None
        assert row.install_failures == 1
        assert row.install_error == "refused"

    with sqlite_system.runtime.sessions.begin() as session:
        session.execute(
            update(Shop)
            .where(Shop.domain == shop)
            .values(install_retry_at=datetime.now(UTC) - timedelta(seconds=1))
        )
    assert sqlite_system.fetch(shop, "/app/api/shop").status_code == 200
    with sqlite_system.runtime.sessions() as session:
        row = session.scalar(select(Shop).where(Shop.domain == shop))
        assert row is not None
        assert (row.install_failures, row.install_retry_at, row.install_error) == (0, None, None)


@pytest.mark.parametrize(
    "bad_shop",
    ["*", "evil.example", "x.myshopify.com\r\nSet-Cookie: a=b", "x.myshopify.com https://*", ""],
)
def test_the_patch_page_refuses_a_shop_that_is_not_a_myshopify_domain(
    sqlite_system: System, bad_shop: str
) -> None:
    response = sqlite_system.app.get(
        "/auth/patch-id-token", params={"shop": bad_shop, "shopify-reload": "/"}
    )
    assert response.status_code == 400
    assert (
        "content-security-policy" not in response.headers
        or "*" not in (response.headers["content-security-policy"])
    )


@pytest.mark.parametrize("reload_path", ["//evil.example/", "https://evil.example/", "/\\evil"])
def test_the_patch_page_refuses_a_reload_off_the_app(
    sqlite_system: System, reload_path: str
) -> None:
    response = sqlite_system.app.get(
        "/auth/patch-id-token", params={"shop": "x.myshopify.com", "shopify-reload": reload_path}
    )
    assert response.status_code == 400


def test_redirects_follow_the_public_url_not_the_host_header(sqlite_system: System) -> None:
    response = sqlite_system.app.get(
        "/", params={"shop": "x.myshopify.com", "embedded": "1"}, headers={"Host": "evil.example"}
    )
    assert response.status_code == 302
    assert response.headers["location"].startswith(
        f"{sqlite_system.settings.public_url}/auth/patch-id-token?"
    )
