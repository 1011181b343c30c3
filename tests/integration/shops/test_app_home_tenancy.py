"""Tenancy: the shop comes from the verified ID token only; bad tokens are refused exactly as
shopifyapp says (401 + retry header for fetches, 302 to the patch page for documents)."""

from __future__ import annotations

import time
import uuid
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import jwt
import pytest
from sqlalchemy import select, update

from syncapp.sandbox.shopify.oauth import mint_id_token
from syncapp.store.models import Shop
from tests.integration.sandbox.conftest import CLIENT_ID, CLIENT_SECRET, make_config
from tests.integration.shops.conftest import System, handle_for, running_system


@dataclass
class TwoShops:
    system: System
    a: str
    b: str


@pytest.fixture(scope="module")
def two_shops(tmp_path_factory: pytest.TempPathFactory) -> Iterator[TwoShops]:
    """Shops A and B, both installed in one app (SQLite), shared by this module's tests."""
    tmp_path = tmp_path_factory.mktemp("tenancy")
    with running_system(tmp_path, f"sqlite:///{tmp_path / 'app.db'}") as system:
        a = system.create_shop("tenant-a", name="Shop A")
        b = system.create_shop("tenant-b", name="Shop B")
        system.install(a)
        system.install(b)
        yield TwoShops(system, a, b)


def claims(shop: str, **overrides: Any) -> dict[str, Any]:
    now = int(time.time())
    base = {
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
    base.update(overrides)
    return base


def shop_row(system: System, domain: str) -> Shop:
    with system.runtime.sessions() as session:
        row = session.scalar(select(Shop).where(Shop.domain == domain))
    assert row is not None
    return row


def test_shop_b_reading_with_shop_a_in_the_query_gets_shop_b(two_shops: TwoShops) -> None:
    """A ``shop`` query parameter naming A does not change whose data B's token reads."""
    response = two_shops.system.fetch(two_shops.b, "/app/api/shop", params={"shop": two_shops.a})
    assert response.status_code == 200
    assert response.json()["domain"] == two_shops.b
    assert response.json()["name"] == "Shop B"


def test_shop_b_refreshing_with_shop_a_in_the_body_changes_only_shop_b(
    two_shops: TwoShops,
) -> None:
    """A write with B's token and A named in the body and query touches B's row only."""
    system = two_shops.system
    with system.runtime.sessions.begin() as session:
        session.execute(update(Shop).values(name=None))
    response = system.fetch(
        two_shops.b,
        "/app/api/shop/refresh",
        method="POST",
        params={"shop": two_shops.a},
        json={"shop": two_shops.a, "domain": two_shops.a},
    )
    assert response.status_code == 200
    assert response.json()["domain"] == two_shops.b
    assert shop_row(system, two_shops.b).name == "Shop B"
    assert shop_row(system, two_shops.a).name is None


def test_a_document_load_shows_the_token_shop_not_the_query_shop(two_shops: TwoShops) -> None:
    """``GET /?shop=A`` with B's id_token renders B, framed by B only."""
    token = two_shops.system.id_token(two_shops.b)
    response = two_shops.system.app.get("/", params={"shop": two_shops.a, "id_token": token})
    assert response.status_code == 200
    assert "Shop B" in response.text
    assert "Shop A" not in response.text
    assert two_shops.a not in response.headers["content-security-policy"]


@pytest.mark.parametrize(
    ("name", "make"),
    [
        ("forged", lambda shop: jwt.encode(claims(shop), "not-the-secret-" * 3, "HS256")),
        (
            "expired",
            lambda shop: jwt.encode(
                claims(shop, exp=int(time.time()) - 120, nbf=int(time.time()) - 180),
                CLIENT_SECRET,
                "HS256",
            ),
        ),
        (
            "wrong_audience",
            lambda shop: jwt.encode(claims(shop, aud="other-app"), CLIENT_SECRET, "HS256"),
        ),
        ("not_a_jwt", lambda shop: "not.a.token"),
        ("unsigned", lambda shop: jwt.encode(claims(shop), None, algorithm="none")),
    ],
)
def test_a_bad_token_on_a_fetch_is_refused_with_the_retry_header(
    two_shops: TwoShops, name: str, make: Any
) -> None:
    """Forged, expired, wrong-audience, malformed and unsigned tokens get 401 and no data."""
    response = two_shops.system.fetch(two_shops.a, "/app/api/shop", token=make(two_shops.a))
    assert response.status_code == 401, name
    assert two_shops.a not in response.text
    if name != "wrong_audience":  # shopifyapp adds the header for aud failures on fetch too
        assert response.headers["x-shopify-retry-invalid-session-request"] == "1"


def test_a_wrong_audience_fetch_also_asks_app_bridge_to_retry(two_shops: TwoShops) -> None:
    """For a fetch, shopifyapp's invalid_aud response carries the retry header as well."""
    token = jwt.encode(claims(two_shops.a, aud="other-app"), CLIENT_SECRET, "HS256")
    response = two_shops.system.fetch(two_shops.a, "/app/api/shop", token=token)
    assert response.headers["x-shopify-retry-invalid-session-request"] == "1"


def test_a_forged_token_on_a_document_load_is_redirected_to_the_patch_page(
    two_shops: TwoShops,
) -> None:
    """A document load with an invalid id_token is sent to get a fresh one, nothing rendered."""
    forged = jwt.encode(claims(two_shops.a), "x" * 40, "HS256")
    response = two_shops.system.open_app_home(two_shops.a, token=forged)
    assert response.status_code == 302
    assert response.headers["location"].startswith(
        f"{two_shops.system.app_url}/auth/patch-id-token?"
    )
    assert "id_token" not in response.headers["location"]


def test_an_expired_sandbox_token_is_refused(two_shops: TwoShops, tmp_path: Path) -> None:
    """A real Shopify-shaped token minted two minutes ago (lifetime 60 s) is refused."""
    config = make_config(tmp_path, "http://127.0.0.1:9")
    token = mint_id_token(config, two_shops.a, now=time.time() - 120)
    response = two_shops.system.fetch(two_shops.a, "/app/api/shop", token=token)
    assert response.status_code == 401


def test_a_token_signed_with_the_old_secret_is_accepted_during_rotation(
    tmp_path: Path, request: pytest.FixtureRequest
) -> None:
    """After rotating, the app accepts ID tokens signed with the old and with the new secret."""
    db = f"sqlite:///{tmp_path / 'app.db'}"
    with running_system(tmp_path / "before", db) as system:
        shop = system.create_shop(handle_for(request))
        system.install(shop)
        vault_key = system.settings.secret_key
    new_secret = "shpss_" + "9" * 32
    with running_system(
        tmp_path / "after",
        db,
        shopify_client_secret=new_secret,
        shopify_old_client_secret=CLIENT_SECRET,
        secret_key=vault_key,
    ) as rotated:
        rotated.create_shop(shop)
        old_signed = jwt.encode(claims(shop), CLIENT_SECRET, "HS256")
        new_signed = jwt.encode(claims(shop), new_secret, "HS256")
        assert rotated.fetch(shop, "/app/api/shop", token=old_signed).status_code == 200
        assert rotated.fetch(shop, "/app/api/shop", token=new_signed).status_code == 200
        other = jwt.encode(claims(shop), "shpss_" + "1" * 32, "HS256")
        assert rotated.fetch(shop, "/app/api/shop", token=other).status_code == 401
