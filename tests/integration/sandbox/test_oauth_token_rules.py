"""Properties of the sandbox's offline-token lineage, on its real SQLite state: whatever mix of
token exchanges, refreshes (racing or not) and Admin calls an app makes, the shop is never
locked out, the newest exchange revokes everything before it, and using a replacement retires
the pair it replaced and its siblings."""

from __future__ import annotations

import sqlite3
from pathlib import Path

import pytest
from hypothesis import HealthCheck, settings
from hypothesis import strategies as st
from hypothesis.stateful import RuleBasedStateMachine, initialize, invariant, rule

from syncapp.sandbox.shopify import tokens
from syncapp.sandbox.shopify.db import SandboxDB
from syncapp.sandbox.shopify.shops import ensure_shop

SHOP = "demo.myshopify.com"
SCOPE = "read_products,write_products"


def can_refresh(conn: sqlite3.Connection, refresh_token: str) -> bool:
    """Whether a refresh would succeed, without keeping its effects."""
    conn.execute("SAVEPOINT probe")
    try:
        tokens.refresh_offline_token(conn, SHOP, refresh_token)
    except tokens.InvalidRefreshToken:
        return False
    finally:
        conn.execute("ROLLBACK TO probe")
        conn.execute("RELEASE probe")
    return True


def is_live(conn: sqlite3.Connection, access_token: str) -> bool:
    """Whether an access token is live, without counting the look-up as a use."""
    row = conn.execute(
        "SELECT revoked FROM access_tokens WHERE token = ?", (access_token,)
    ).fetchone()
    return row is not None and not row["revoked"]


class OfflineTokenLineage(RuleBasedStateMachine):
    """An app exchanging, refreshing and using offline tokens in any order."""

    def __init__(self) -> None:
        super().__init__()
        self.db = SandboxDB(":memory:")
        # (access, refresh, parent refresh) of every pair issued since the last exchange.
        self.pairs: list[tuple[str, str, str | None]] = []
        self.before_last_exchange: list[tuple[str, str]] = []

    def teardown(self) -> None:
        self.db.close()

    @initialize()
    def install(self) -> None:
        with self.db.transaction() as conn:
            ensure_shop(conn, SHOP)
        self.exchange()

    @rule()
    def exchange(self) -> None:
        self.before_last_exchange += [(a, r) for a, r, _ in self.pairs]
        with self.db.transaction() as conn:
            issued = tokens.issue_offline_token(conn, SHOP, SCOPE)
        assert issued.refresh_token is not None
        self.pairs = [(issued.access_token, issued.refresh_token, None)]

    @rule(data=st.data())
    def refresh(self, data: st.DataObject) -> None:
        _, refresh_token, _ = data.draw(st.sampled_from(self.pairs))
        with self.db.transaction() as conn:
            try:
                issued = tokens.refresh_offline_token(conn, SHOP, refresh_token)
            except tokens.InvalidRefreshToken:
                return
        assert issued.refresh_token is not None
        self.pairs.append((issued.access_token, issued.refresh_token, refresh_token))

    @rule(data=st.data())
    def use(self, data: st.DataObject) -> None:
        access, refresh_token, parent = data.draw(st.sampled_from(self.pairs))
        with self.db.transaction() as conn:
            if tokens.shop_for_access_token(conn, access) is None:
                return
            if parent is None:
                return
            siblings = [(a, r) for a, r, p in self.pairs if p == parent and r != refresh_token]
            parents = [(a, r) for a, r, _ in self.pairs if r == parent]
            for dead_access, dead_refresh in siblings + parents:
                assert not is_live(conn, dead_access)
                assert not can_refresh(conn, dead_refresh)

    @invariant()
    def never_locked_out(self) -> None:
        with self.db.transaction() as conn:
            assert any(can_refresh(conn, r) for _, r, _ in self.pairs)

    @invariant()
    def the_newest_exchange_revoked_everything_before_it(self) -> None:
        with self.db.transaction() as conn:
            for access, refresh_token in self.before_last_exchange:
                assert not is_live(conn, access)
                assert not can_refresh(conn, refresh_token)


TestOfflineTokenLineage = OfflineTokenLineage.TestCase
TestOfflineTokenLineage.settings = settings(
    max_examples=60,
    stateful_step_count=20,
    deadline=None,
    suppress_health_check=[HealthCheck.too_slow],
)


def test_the_lineage_rules_hold_on_a_file_database(tmp_path: Path) -> None:
    """On a WAL file database too, using a replacement retires the refresh token it replaced."""
    db = SandboxDB(tmp_path / "tokens.db")
    try:
        with db.transaction() as conn:
            ensure_shop(conn, SHOP)
            first = tokens.issue_offline_token(conn, SHOP, SCOPE)
            assert first.refresh_token is not None
            second = tokens.refresh_offline_token(conn, SHOP, first.refresh_token)
            assert tokens.shop_for_access_token(conn, second.access_token) == SHOP
            with pytest.raises(tokens.InvalidRefreshToken):
                tokens.refresh_offline_token(conn, SHOP, first.refresh_token)
    finally:
        db.close()
