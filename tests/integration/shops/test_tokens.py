"""get_admin_token: stored tokens reused, refreshed once per shop across processes, refused
refreshes marked ``needs_attention`` — against the served sandbox, on SQLite and PostgreSQL."""

from __future__ import annotations

import json
import sqlite3
import subprocess
import sys
import time
from datetime import UTC, datetime, timedelta
from pathlib import Path

import pytest
from sqlalchemy import select, update

from syncapp.connectors.shopify.admin import fetch_shop_info
from syncapp.shops.errors import ShopifyReauthorizationRequired, ShopNotInstalled
from syncapp.shops.tokens import ACCESS_TOKEN, REFRESH_TOKEN, get_admin_token, read_pair
from syncapp.store.models import Connection, Credential, Shop
from syncapp.store.vault import put_secret
from tests.integration.shops.conftest import System, handle_for
from tests.probes import probing
from tests.subprocesses import child_env

REPO = Path(__file__).resolve().parents[3]


def sandbox_db(system: System) -> sqlite3.Connection:
    return sqlite3.connect(system.settings.data_dir / "shopify-sandbox.db")


def shop_id(system: System, shop: str) -> int:
    with system.runtime.sessions() as session:
        found = session.scalar(select(Shop.id).where(Shop.domain == shop))
    assert found is not None
    return found


def expire_soon(system: System, shop: str, seconds: int = 60) -> None:
    """Make the stored access token look like it has ``seconds`` left."""
    with system.runtime.sessions.begin() as session:
        session.execute(
            update(Credential)
            .where(Credential.shop_id == shop_id(system, shop), Credential.name == ACCESS_TOKEN)
            .values(expires_at=datetime.now(UTC) + timedelta(seconds=seconds))
        )


def stored_pair(system: System, shop: str) -> tuple[str, str | None]:
    with system.runtime.sessions() as session:
        pair = read_pair(session, system.runtime.vault, shop_id=shop_id(system, shop))
    assert pair is not None
    return pair.access_token, pair.refresh_token


def works(system: System, shop: str, token: str) -> bool:
    with system.runtime.http() as http:
        info = fetch_shop_info(
            shop=shop, access_token=token, api_version=system.runtime.api_version, http=http
        )
    return info.myshopify_domain == shop


def test_a_token_with_time_left_is_returned_without_a_refresh(
    system: System, request: pytest.FixtureRequest
) -> None:
    """More than five minutes left: the stored token, and Shopify is not asked."""
    shop = system.create_shop(handle_for(request))
    system.install(shop)
    access, _ = stored_pair(system, shop)
    assert get_admin_token(system.runtime, shop=shop) == access
    with sandbox_db(system) as conn:
        (refreshes,) = conn.execute(
            "SELECT count(*) FROM refresh_tokens WHERE shop_domain = ? AND parent IS NOT NULL",
            (shop,),
        ).fetchone()
    assert refreshes == 0


def test_a_token_near_expiry_is_refreshed_and_the_new_pair_stored(
    system: System, request: pytest.FixtureRequest
) -> None:
    """Under five minutes left: a refresh, the rotated pair stored, the new token works."""
    shop = system.create_shop(handle_for(request))
    system.install(shop)
    old_access, old_refresh = stored_pair(system, shop)
    expire_soon(system, shop)
    token = get_admin_token(system.runtime, shop=shop)
    new_access, new_refresh = stored_pair(system, shop)
    assert token == new_access != old_access
    assert new_refresh != old_refresh
    assert works(system, shop, token)


def test_two_processes_refreshing_at_once_make_exactly_one_refresh(
    system: System, request: pytest.FixtureRequest
) -> None:
    """Two processes due to refresh at the same instant: one refresh, one live pair, both
    callers get that token and an Admin API call with it succeeds."""
    shop = system.create_shop(handle_for(request))
    system.install(shop)
    _, original_refresh = stored_pair(system, shop)
    expire_soon(system, shop)
    settings = system.settings
    assert settings.secret_key is not None
    assert settings.shopify_client_secret is not None
    env = child_env(
        {
            "SYNCAPP_ENV": "test",
            "SYNCAPP_DATA_DIR": str(settings.data_dir),
            "SYNCAPP_DATABASE_URL": settings.database_url,
            "SYNCAPP_SECRET_KEY": settings.secret_key.get_secret_value(),
            "SYNCAPP_SHOPIFY_CLIENT_ID": settings.shopify_client_id,
            "SYNCAPP_SHOPIFY_CLIENT_SECRET": settings.shopify_client_secret.get_secret_value(),
            "SYNCAPP_SHOPIFY_BASE_URL": settings.shopify_base_url,
        }
    )
    start_at = str(time.time() + 2.5)
    children = [
        subprocess.Popen(
            [sys.executable, "-m", "tests.integration.shops.refresh_child", shop, start_at],
            env=env,
            cwd=REPO,
            stdout=subprocess.PIPE,
            stderr=subprocess.PIPE,
            text=True,
        )
        for _ in range(2)
    ]
    results = []
    for child in children:
        out, err = child.communicate(timeout=60)
        assert child.returncode == 0, err
        results.append(json.loads(out.strip().splitlines()[-1]))
    assert results[0]["token"] == results[1]["token"]
    assert all(r["shop"] == shop for r in results)
    stored_access, _ = stored_pair(system, shop)
    assert stored_access == results[0]["token"]
    with sandbox_db(system) as conn:
        (children_of_original,) = conn.execute(
            "SELECT count(*) FROM refresh_tokens WHERE parent = ?", (original_refresh,)
        ).fetchone()
        (live_access,) = conn.execute(
            "SELECT count(*) FROM access_tokens WHERE shop_domain = ? AND kind = 'offline'"
            " AND revoked = 0 AND expires_at > ?",
            (shop, time.time()),
        ).fetchone()
        (live_refresh,) = conn.execute(
            "SELECT count(*) FROM refresh_tokens WHERE shop_domain = ? AND revoked = 0", (shop,)
        ).fetchone()
    assert children_of_original == 1
    assert (live_access, live_refresh) == (1, 1)


def test_no_database_lock_is_held_while_shopify_is_asked(
    system: System, request: pytest.FixtureRequest
) -> None:
    """The refresh's round trip to Shopify holds no lock: on SQLite one would stall every
    writer of every process (webhook ingest included) for the length of the call."""
    shop = system.create_shop(handle_for(request))
    system.install(shop)
    expire_soon(system, shop)
    runtime = probing(system.runtime, "/admin/oauth/access_token")
    token = get_admin_token(runtime, shop=shop)
    assert runtime.probes == ["written"]
    assert works(system, shop, token)
    with system.runtime.sessions() as session:
        connection = session.scalar(select(Connection).where(Connection.provider == "shopify"))
        assert connection is not None
        assert (connection.refresh_locked_by, connection.refresh_locked_until) == (None, None)


def test_a_lease_left_by_a_dead_process_runs_out(
    sqlite_system: System, request: pytest.FixtureRequest
) -> None:
    """A lease whose holder died is taken over once it has expired: the refresh happens."""
    system = sqlite_system
    shop = system.create_shop(handle_for(request))
    system.install(shop)
    _, old_refresh = stored_pair(system, shop)
    expire_soon(system, shop)
    with system.runtime.sessions.begin() as session:
        session.execute(
            update(Connection)
            .where(Connection.provider == "shopify")
            .values(
                refresh_locked_by="4242-dead",
                refresh_locked_until=datetime.now(UTC) + timedelta(seconds=0.5),
            )
        )
    token = get_admin_token(system.runtime, shop=shop)
    new_access, new_refresh = stored_pair(system, shop)
    assert token == new_access
    assert new_refresh != old_refresh


def test_a_refused_refresh_marks_the_connection_and_the_next_visit_restores_it(
    sqlite_system: System, request: pytest.FixtureRequest
) -> None:
    """invalid_grant: needs_attention and an explicit error; opening the app fixes it."""
    system = sqlite_system
    shop = system.create_shop(handle_for(request))
    system.install(shop)
    with system.runtime.sessions.begin() as session:
        put_secret(
            session,
            system.runtime.vault,
            shop_id=shop_id(system, shop),
            provider="shopify",
            name=REFRESH_TOKEN,
            value="shprt_revoked_long_ago",
        )
    expire_soon(system, shop)
    with pytest.raises(ShopifyReauthorizationRequired, match="open the app"):
        get_admin_token(system.runtime, shop=shop)
    with system.runtime.sessions() as session:
        connection = session.scalar(select(Connection).where(Connection.provider == "shopify"))
        assert connection is not None
        assert (connection.status, connection.detail) == (
            "needs_attention",
            "token refresh refused: invalid_grant",
        )
    with pytest.raises(ShopifyReauthorizationRequired):
        get_admin_token(system.runtime, shop=shop)

    assert system.open_app_home(shop).status_code == 200
    assert works(system, shop, get_admin_token(system.runtime, shop=shop))


def test_a_shop_that_never_installed_has_no_token(sqlite_system: System) -> None:
    """Asking for an unknown shop's token is an explicit ShopNotInstalled."""
    with pytest.raises(ShopNotInstalled, match="has not installed"):
        get_admin_token(sqlite_system.runtime, shop="nobody.myshopify.com")
