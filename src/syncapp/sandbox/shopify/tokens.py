"""Admin API access tokens and refresh tokens the sandbox has issued, and the lookup every
Admin request makes.

Three kinds of access token, as on Shopify:

* ``offline`` tokens of the installed app, obtained by token exchange. Expiring ones last an
  hour and come with a rotating refresh token (90 days); only one expiring offline token
  lineage is live per app and shop — a new token exchange revokes the previous pair.
* ``online`` tokens of the installed app for one staff user (token exchange with
  ``online-access-token``), expiring after a day, without refresh token.
* ``custom`` tokens of a merchant-created custom app (``syncapp sandbox shopify token``),
  which do not expire and do not displace the app's token.

Refresh follows Shopify's resilience rule of 2026-08-28: refreshing with ``R`` issues a new
pair ``(A', R')`` but keeps ``R`` (and its access token) usable until the app first uses a
replacement — ``A'`` on an Admin request or ``R'`` for the next refresh. At that first use the
parent pair and every sibling issued from ``R`` in the meantime are revoked, so two racing
refreshes never lock a shop out and one lineage survives. After ``R`` was first used it stays
usable for at most 30 days and never beyond its own 90-day life.
"""

from __future__ import annotations

import secrets
import sqlite3
import time
from dataclasses import dataclass

from syncapp.sandbox.shopify.db import register_schema

ACCESS_TOKEN_LIFETIME = 3600
ONLINE_TOKEN_LIFETIME = 86400
REFRESH_TOKEN_LIFETIME = 90 * 86400
# How long a used refresh token keeps working while none of its replacements is used.
REFRESH_RECOVERY_WINDOW = 30 * 86400

register_schema(
    """
    CREATE TABLE IF NOT EXISTS access_tokens (
        token TEXT PRIMARY KEY,
        shop_domain TEXT NOT NULL,
        kind TEXT NOT NULL,                  -- offline | online | custom
        scope TEXT NOT NULL,
        expires_at REAL,                     -- unix time; NULL = never
        revoked INTEGER NOT NULL DEFAULT 0,
        created_at REAL NOT NULL,
        user_id INTEGER,                     -- online tokens: the staff user
        refresh_token TEXT,                  -- issued together with this token, if any
        first_used_at REAL                   -- first Admin request made with it
    );
    CREATE INDEX IF NOT EXISTS access_tokens_shop ON access_tokens (shop_domain, kind);
    CREATE TABLE IF NOT EXISTS refresh_tokens (
        token TEXT PRIMARY KEY,
        shop_domain TEXT NOT NULL,
        access_token TEXT NOT NULL,          -- the access token issued with it
        parent TEXT,                         -- the refresh token it replaced
        scope TEXT NOT NULL,
        expires_at REAL NOT NULL,
        used_at REAL,                        -- first refresh made with it
        revoked INTEGER NOT NULL DEFAULT 0,
        created_at REAL NOT NULL
    );
    CREATE INDEX IF NOT EXISTS refresh_tokens_parent ON refresh_tokens (parent);
    CREATE INDEX IF NOT EXISTS refresh_tokens_shop ON refresh_tokens (shop_domain);
    """
)


@dataclass(frozen=True)
class IssuedToken:
    """What the token endpoint returns for one grant."""

    access_token: str
    scope: str
    expires_in: int | None
    refresh_token: str | None = None
    refresh_token_expires_in: int | None = None


class InvalidRefreshToken(Exception):
    """The refresh token is unknown, revoked, expired or for another shop (``invalid_grant``)."""


def _new_token(prefix: str) -> str:
    return f"{prefix}_{secrets.token_hex(16)}"


def _clock(now: float | None) -> float:
    return time.time() if now is None else now


def _insert_access_token(
    conn: sqlite3.Connection,
    *,
    shop_domain: str,
    kind: str,
    scope: str,
    expires_at: float | None,
    now: float,
    prefix: str = "shpat",
    user_id: int | None = None,
    refresh_token: str | None = None,
) -> str:
    token = _new_token(prefix)
    conn.execute(
        "INSERT INTO access_tokens (token, shop_domain, kind, scope, expires_at, created_at,"
        " user_id, refresh_token) VALUES (?, ?, ?, ?, ?, ?, ?, ?)",
        (token, shop_domain, kind, scope, expires_at, now, user_id, refresh_token),
    )
    return token


def _issue_offline_pair(
    conn: sqlite3.Connection, *, shop_domain: str, scope: str, parent: str | None, now: float
) -> IssuedToken:
    refresh = _new_token("shprt")
    access = _insert_access_token(
        conn,
        shop_domain=shop_domain,
        kind="offline",
        scope=scope,
        expires_at=now + ACCESS_TOKEN_LIFETIME,
        now=now,
        refresh_token=refresh,
    )
    conn.execute(
        "INSERT INTO refresh_tokens (token, shop_domain, access_token, parent, scope,"
        " expires_at, created_at) VALUES (?, ?, ?, ?, ?, ?, ?)",
        (refresh, shop_domain, access, parent, scope, now + REFRESH_TOKEN_LIFETIME, now),
    )
    return IssuedToken(
        access_token=access,
        scope=scope,
        expires_in=ACCESS_TOKEN_LIFETIME,
        refresh_token=refresh,
        refresh_token_expires_in=REFRESH_TOKEN_LIFETIME,
    )


def issue_offline_token(
    conn: sqlite3.Connection,
    shop_domain: str,
    scope: str,
    *,
    expiring: bool = True,
    now: float | None = None,
) -> IssuedToken:
    """Token exchange for an offline token: revokes the app's previous offline tokens first."""
    current = _clock(now)
    revoke_app_tokens(conn, shop_domain, kinds=("offline",))
    if expiring:
        return _issue_offline_pair(
            conn, shop_domain=shop_domain, scope=scope, parent=None, now=current
        )
    access = _insert_access_token(
        conn, shop_domain=shop_domain, kind="offline", scope=scope, expires_at=None, now=current
    )
    return IssuedToken(access_token=access, scope=scope, expires_in=None)


def issue_online_token(
    conn: sqlite3.Connection,
    shop_domain: str,
    scope: str,
    *,
    user_id: int,
    now: float | None = None,
) -> IssuedToken:
    """Token exchange for an online (per-user) token; other users' tokens stay live."""
    current = _clock(now)
    access = _insert_access_token(
        conn,
        shop_domain=shop_domain,
        kind="online",
        scope=scope,
        expires_at=current + ONLINE_TOKEN_LIFETIME,
        now=current,
        prefix="shpua",
        user_id=user_id,
    )
    return IssuedToken(access_token=access, scope=scope, expires_in=ONLINE_TOKEN_LIFETIME)


def issue_custom_token(conn: sqlite3.Connection, shop_domain: str, scope: str) -> str:
    """A merchant custom-app token: never expires, leaves the app's offline token alone."""
    return _insert_access_token(
        conn, shop_domain=shop_domain, kind="custom", scope=scope, expires_at=None, now=time.time()
    )


def _retire_parent(conn: sqlite3.Connection, refresh_row: sqlite3.Row) -> None:
    """A replacement issued from ``parent`` was used: revoke the parent pair and siblings."""
    parent = refresh_row["parent"]
    if parent is None:
        return
    parent_row = conn.execute(
        "SELECT token, access_token, revoked FROM refresh_tokens WHERE token = ?", (parent,)
    ).fetchone()
    if parent_row is None or parent_row["revoked"]:
        return
    siblings = conn.execute(
        "SELECT token, access_token FROM refresh_tokens WHERE parent = ? AND token != ?",
        (parent, refresh_row["token"]),
    ).fetchall()
    doomed_refresh = [parent_row["token"], *(s["token"] for s in siblings)]
    doomed_access = [parent_row["access_token"], *(s["access_token"] for s in siblings)]
    conn.executemany(
        "UPDATE refresh_tokens SET revoked = 1 WHERE token = ?", [(t,) for t in doomed_refresh]
    )
    conn.executemany(
        "UPDATE access_tokens SET revoked = 1 WHERE token = ?", [(t,) for t in doomed_access]
    )


def refresh_offline_token(
    conn: sqlite3.Connection, shop_domain: str, refresh_token: str, *, now: float | None = None
) -> IssuedToken:
    """Rotate an expiring offline token; raises :class:`InvalidRefreshToken` when refused."""
    current = _clock(now)
    row = conn.execute("SELECT * FROM refresh_tokens WHERE token = ?", (refresh_token,)).fetchone()
    if row is None or row["shop_domain"] != shop_domain:
        raise InvalidRefreshToken("The refresh token is not valid for this shop.")
    if row["revoked"]:
        raise InvalidRefreshToken("The refresh token has been revoked or replaced.")
    if row["expires_at"] <= current:
        raise InvalidRefreshToken("The refresh token has expired.")
    if row["used_at"] is not None and row["used_at"] + REFRESH_RECOVERY_WINDOW <= current:
        raise InvalidRefreshToken("The refresh token was already used and its window closed.")
    if row["used_at"] is None:
        conn.execute(
            "UPDATE refresh_tokens SET used_at = ? WHERE token = ?", (current, refresh_token)
        )
        # Using R' for the first time is a use of the replacement of its parent.
        _retire_parent(conn, row)
    return _issue_offline_pair(
        conn, shop_domain=shop_domain, scope=row["scope"], parent=refresh_token, now=current
    )


def revoke_app_tokens(
    conn: sqlite3.Connection,
    shop_domain: str,
    *,
    kinds: tuple[str, ...] = ("offline", "online"),
) -> int:
    """Revoke the app's tokens of ``kinds`` (and their refresh tokens); returns how many."""
    marks = ",".join("?" for _ in kinds)
    cursor = conn.execute(
        f"UPDATE access_tokens SET revoked = 1 WHERE shop_domain = ? AND kind IN ({marks})"  # noqa: S608
        " AND revoked = 0",
        (shop_domain, *kinds),
    )
    if "offline" in kinds:
        conn.execute(
            "UPDATE refresh_tokens SET revoked = 1 WHERE shop_domain = ? AND revoked = 0",
            (shop_domain,),
        )
    return cursor.rowcount


def shop_for_access_token(
    conn: sqlite3.Connection, token: str, *, now: float | None = None
) -> str | None:
    """The shop a live (issued, unrevoked, unexpired) access token is for, else None.

    The first successful lookup of a refreshed token counts as its first use: it retires the
    refresh token it replaced (see the module docstring). That is a write, so call it inside
    :meth:`SandboxDB.transaction` like every other state change.
    """
    row = conn.execute(
        "SELECT shop_domain, expires_at, revoked, refresh_token, first_used_at"
        " FROM access_tokens WHERE token = ?",
        (token,),
    ).fetchone()
    if row is None or row["revoked"]:
        return None
    current = _clock(now)
    if row["expires_at"] is not None and row["expires_at"] <= current:
        return None
    if row["first_used_at"] is None:
        conn.execute("UPDATE access_tokens SET first_used_at = ? WHERE token = ?", (current, token))
        if row["refresh_token"] is not None:
            refresh_row = conn.execute(
                "SELECT token, parent FROM refresh_tokens WHERE token = ?",
                (row["refresh_token"],),
            ).fetchone()
            if refresh_row is not None:
                _retire_parent(conn, refresh_row)
    return str(row["shop_domain"])


def scope_for_access_token(conn: sqlite3.Connection, token: str) -> str | None:
    """The scopes granted to an access token (comma-separated), None if it is unknown."""
    row = conn.execute("SELECT scope FROM access_tokens WHERE token = ?", (token,)).fetchone()
    return None if row is None else str(row["scope"])
