"""Authorization codes, grants and the tokens issued under them.

A *grant* is one consent (or one partner provisioning) for one client and account; every
access and refresh token descends from it, so revoking the grant revokes the whole family.

Rules (the contract's ``/oauth/token`` description, RFC 6749, RFC 7636, RFC 7009 and the OAuth
2.0 Security BCP, RFC 9700 §4.14):

* A code is single-use, lives ``code_ttl`` seconds, is bound to the client, the exact
  ``redirect_uri`` and an S256 ``code_challenge``. A second redemption is refused and revokes
  the grant the first one started.
* Refresh rotates: each refresh token works once; its use issues a new access and refresh
  token in the same grant. The old access token stays valid until it expires.
* A replaced refresh token presented again within ``refresh_grace_seconds`` while its
  replacement has not been used yet is a lost race between two refreshes of the same client:
  the same replacement pair is returned. Any other reuse is treated as theft: the grant is
  revoked and the caller gets ``invalid_grant``.
* Tokens are opaque and stored only as SHA-256 digests — except the replacement pair kept for
  the grace window, which is dropped once the window closes or the replacement is used.
"""

from __future__ import annotations

import hashlib
import json
import re
import secrets
import sqlite3
from dataclasses import dataclass
from typing import Any

from authlib.oauth2.rfc7636 import create_s256_code_challenge

from syncapp.sandbox.ctrwow.db import register_schema

CODE_VERIFIER_PATTERN = re.compile(r"^[A-Za-z0-9\-._~]{43,128}$")
CODE_CHALLENGE_PATTERN = re.compile(r"^[A-Za-z0-9\-_]{43}$")

register_schema(
    """
    CREATE TABLE IF NOT EXISTS grants (
        id TEXT PRIMARY KEY,                   -- grt_<hex>
        client_id TEXT NOT NULL,
        account_id TEXT NOT NULL,
        scope TEXT NOT NULL,
        origin TEXT NOT NULL,                  -- authorization_code | partner
        created_at REAL NOT NULL,
        revoked_at REAL,
        revoked_reason TEXT
    );
    CREATE TABLE IF NOT EXISTS auth_codes (
        code_hash TEXT PRIMARY KEY,
        client_id TEXT NOT NULL,
        account_id TEXT NOT NULL,
        redirect_uri TEXT NOT NULL,
        scope TEXT NOT NULL,
        code_challenge TEXT NOT NULL,
        expires_at REAL NOT NULL,
        used_at REAL,
        grant_id TEXT                          -- the grant its redemption started
    );
    CREATE TABLE IF NOT EXISTS access_tokens (
        token_hash TEXT PRIMARY KEY,
        grant_id TEXT,                         -- NULL: a partner's client_credentials token
        client_id TEXT NOT NULL,
        account_id TEXT,
        scope TEXT NOT NULL,
        expires_at REAL NOT NULL,
        revoked_at REAL,
        created_at REAL NOT NULL
    );
    CREATE INDEX IF NOT EXISTS access_tokens_grant ON access_tokens (grant_id);
    CREATE TABLE IF NOT EXISTS refresh_tokens (
        token_hash TEXT PRIMARY KEY,
        grant_id TEXT NOT NULL,
        scope TEXT NOT NULL,
        expires_at REAL NOT NULL,
        created_at REAL NOT NULL,
        rotated_at REAL,                       -- when it was used (and replaced)
        successor_hash TEXT,
        successor_body TEXT,                   -- the replacement response, for the grace window
        revoked_at REAL
    );
    CREATE INDEX IF NOT EXISTS refresh_tokens_grant ON refresh_tokens (grant_id);
    """
)


@dataclass(frozen=True)
class TokenRules:
    """The lifetimes and windows that govern issuance (from the sandbox config)."""

    access_ttl: int
    refresh_ttl: int
    grace_seconds: int
    code_ttl: int


class GrantRefused(Exception):
    """The code, refresh token or verifier is not acceptable (``invalid_grant``)."""


class ScopeRefused(Exception):
    """The requested scope is unknown or wider than allowed (``invalid_scope``)."""


@dataclass(frozen=True)
class AccessInfo:
    """What a valid access token stands for."""

    client_id: str
    account_id: str | None
    scopes: frozenset[str]
    grant_id: str | None


def digest(token: str) -> str:
    return hashlib.sha256(token.encode()).hexdigest()


def _new(prefix: str) -> str:
    return f"{prefix}_{secrets.token_urlsafe(32)}"


def parse_scope(raw: str | None) -> list[str]:
    """Space-separated scopes in first-seen order, without duplicates."""
    seen: list[str] = []
    for item in (raw or "").split():
        if item not in seen:
            seen.append(item)
    return seen


def narrow_scope(requested: str | None, allowed: list[str]) -> str:
    """The scope to grant: ``requested`` (must be within ``allowed``) or all of ``allowed``."""
    wanted = parse_scope(requested)
    if not wanted:
        return " ".join(allowed)
    extra = [s for s in wanted if s not in allowed]
    if extra:
        raise ScopeRefused(f"not allowed: {' '.join(extra)}")
    return " ".join(wanted)


def pkce_matches(code_verifier: str, code_challenge: str) -> bool:
    """RFC 7636 S256: BASE64URL(SHA256(verifier)) == challenge, verifier well-formed."""
    if not CODE_VERIFIER_PATTERN.match(code_verifier):
        return False
    # Authlib's (stub-untyped) RFC 7636 helper: the same function its own server uses.
    expected: str = create_s256_code_challenge(code_verifier)  # type: ignore[no-untyped-call]
    return secrets.compare_digest(expected, code_challenge)


# --- issuing -------------------------------------------------------------------------------


def _issue_access(
    conn: sqlite3.Connection,
    *,
    grant_id: str | None,
    client_id: str,
    account_id: str | None,
    scope: str,
    now: float,
    ttl: int,
) -> str:
    token = _new("ctw_at")
    conn.execute(
        "INSERT INTO access_tokens (token_hash, grant_id, client_id, account_id, scope,"
        " expires_at, created_at) VALUES (?, ?, ?, ?, ?, ?, ?)",
        (digest(token), grant_id, client_id, account_id, scope, now + ttl, now),
    )
    return token


def _issue_pair(
    conn: sqlite3.Connection,
    *,
    grant_id: str,
    client_id: str,
    account_id: str,
    scope: str,
    now: float,
    rules: TokenRules,
) -> dict[str, Any]:
    access = _issue_access(
        conn,
        grant_id=grant_id,
        client_id=client_id,
        account_id=account_id,
        scope=scope,
        now=now,
        ttl=rules.access_ttl,
    )
    refresh = _new("ctw_rt")
    conn.execute(
        "INSERT INTO refresh_tokens (token_hash, grant_id, scope, expires_at, created_at)"
        " VALUES (?, ?, ?, ?, ?)",
        (digest(refresh), grant_id, scope, now + rules.refresh_ttl, now),
    )
    return {
        "access_token": access,
        "token_type": "Bearer",
        "expires_in": rules.access_ttl,
        "refresh_token": refresh,
        "refresh_token_expires_in": rules.refresh_ttl,
        "scope": scope,
        "account_id": account_id,
        # Not sent: when the pair was made, so a replay in the grace window reports time left.
        "_issued_at": now,
    }


def public_body(body: dict[str, Any], now: float) -> dict[str, Any]:
    """A stored token response as sent at ``now``: lifetimes count down from issuance."""
    issued = float(body.get("_issued_at", now))
    out = {k: v for k, v in body.items() if not k.startswith("_")}
    elapsed = max(0, int(now - issued))
    out["expires_in"] = max(1, int(body["expires_in"]) - elapsed)
    if "refresh_token_expires_in" in out:
        out["refresh_token_expires_in"] = max(1, int(body["refresh_token_expires_in"]) - elapsed)
    return out


def start_grant(
    conn: sqlite3.Connection,
    *,
    client_id: str,
    account_id: str,
    scope: str,
    origin: str,
    now: float,
    rules: TokenRules,
) -> dict[str, Any]:
    """A new grant and its first token pair (a stored-form token response)."""
    grant_id = f"grt_{secrets.token_hex(12)}"
    conn.execute(
        "INSERT INTO grants (id, client_id, account_id, scope, origin, created_at)"
        " VALUES (?, ?, ?, ?, ?, ?)",
        (grant_id, client_id, account_id, scope, origin, now),
    )
    return _issue_pair(
        conn,
        grant_id=grant_id,
        client_id=client_id,
        account_id=account_id,
        scope=scope,
        now=now,
        rules=rules,
    )


def revoke_grant(conn: sqlite3.Connection, grant_id: str, *, reason: str, now: float) -> None:
    """Revoke a grant and every token in its family."""
    conn.execute(
        "UPDATE grants SET revoked_at = ?, revoked_reason = ? WHERE id = ? AND revoked_at IS NULL",
        (now, reason, grant_id),
    )
    conn.execute(
        "UPDATE access_tokens SET revoked_at = ? WHERE grant_id = ? AND revoked_at IS NULL",
        (now, grant_id),
    )
    conn.execute(
        "UPDATE refresh_tokens SET revoked_at = ?, successor_body = NULL"
        " WHERE grant_id = ? AND revoked_at IS NULL",
        (now, grant_id),
    )


def revoke_client_grants(
    conn: sqlite3.Connection, *, client_id: str, account_id: str, reason: str, now: float
) -> None:
    """Revoke every live grant ``client_id`` holds for ``account_id``."""
    rows = conn.execute(
        "SELECT id FROM grants WHERE client_id = ? AND account_id = ? AND revoked_at IS NULL",
        (client_id, account_id),
    ).fetchall()
    for row in rows:
        revoke_grant(conn, row["id"], reason=reason, now=now)


def issue_client_token(
    conn: sqlite3.Connection, *, client_id: str, scope: str, now: float, ttl: int
) -> dict[str, Any]:
    """A client_credentials access token acting for the client itself (no refresh token)."""
    token = _issue_access(
        conn, grant_id=None, client_id=client_id, account_id=None, scope=scope, now=now, ttl=ttl
    )
    return {"access_token": token, "token_type": "Bearer", "expires_in": ttl, "scope": scope}


# --- authorization codes -------------------------------------------------------------------


def issue_code(
    conn: sqlite3.Connection,
    *,
    client_id: str,
    account_id: str,
    redirect_uri: str,
    scope: str,
    code_challenge: str,
    now: float,
    rules: TokenRules,
) -> str:
    code = _new("ctw_ac")
    conn.execute(
        "INSERT INTO auth_codes (code_hash, client_id, account_id, redirect_uri, scope,"
        " code_challenge, expires_at) VALUES (?, ?, ?, ?, ?, ?, ?)",
        (
            digest(code),
            client_id,
            account_id,
            redirect_uri,
            scope,
            code_challenge,
            now + rules.code_ttl,
        ),
    )
    return code


def redeem_code(
    conn: sqlite3.Connection,
    *,
    client_id: str,
    code: str,
    redirect_uri: str,
    code_verifier: str,
    now: float,
    rules: TokenRules,
) -> dict[str, Any]:
    """Exchange a code for the grant's first pair; raises :class:`GrantRefused`."""
    row = conn.execute("SELECT * FROM auth_codes WHERE code_hash = ?", (digest(code),)).fetchone()
    if row is None or row["client_id"] != client_id:
        raise GrantRefused("The authorization code is unknown or was issued to another client.")
    if row["used_at"] is not None:
        # RFC 6749 §4.1.2: a replayed code may mean it leaked; withdraw what it granted.
        if row["grant_id"] is not None:
            revoke_grant(conn, row["grant_id"], reason="code_reuse", now=now)
        raise GrantRefused(
            "The authorization code was already used; the tokens it issued are revoked."
        )
    if now >= row["expires_at"]:
        raise GrantRefused("The authorization code has expired; start the authorization again.")
    if row["redirect_uri"] != redirect_uri:
        raise GrantRefused("redirect_uri does not match the one used in the authorization request.")
    if not pkce_matches(code_verifier, row["code_challenge"]):
        raise GrantRefused("code_verifier does not match the code_challenge (PKCE S256).")
    body = start_grant(
        conn,
        client_id=client_id,
        account_id=row["account_id"],
        scope=row["scope"],
        origin="authorization_code",
        now=now,
        rules=rules,
    )
    grant_id = conn.execute(
        "SELECT grant_id FROM refresh_tokens WHERE token_hash = ?",
        (digest(body["refresh_token"]),),
    ).fetchone()["grant_id"]
    conn.execute(
        "UPDATE auth_codes SET used_at = ?, grant_id = ? WHERE code_hash = ?",
        (now, grant_id, digest(code)),
    )
    return body


# --- refresh -------------------------------------------------------------------------------


def refresh(
    conn: sqlite3.Connection,
    *,
    client_id: str,
    refresh_token: str,
    scope: str | None,
    now: float,
    rules: TokenRules,
) -> dict[str, Any]:
    """Rotate ``refresh_token`` (see the module rules); raises GrantRefused or ScopeRefused."""
    # Replacement pairs are kept in clear only while their grace window is open.
    conn.execute(
        "UPDATE refresh_tokens SET successor_body = NULL"
        " WHERE successor_body IS NOT NULL AND rotated_at < ?",
        (now - rules.grace_seconds,),
    )
    row = conn.execute(
        "SELECT r.*, g.client_id, g.account_id, g.revoked_at AS grant_revoked_at"
        " FROM refresh_tokens r JOIN grants g ON g.id = r.grant_id WHERE r.token_hash = ?",
        (digest(refresh_token),),
    ).fetchone()
    if row is None or row["client_id"] != client_id:
        raise GrantRefused("The refresh token is unknown or was issued to another client.")
    if row["revoked_at"] is not None or row["grant_revoked_at"] is not None:
        raise GrantRefused("The refresh token was revoked; the merchant must connect again.")
    if now >= row["expires_at"]:
        raise GrantRefused("The refresh token has expired; the merchant must connect again.")
    if row["rotated_at"] is not None:
        return _reused(conn, row, now=now, rules=rules)
    new_scope = narrow_scope(scope, parse_scope(row["scope"])) if scope else row["scope"]
    body = _issue_pair(
        conn,
        grant_id=row["grant_id"],
        client_id=client_id,
        account_id=row["account_id"],
        scope=new_scope,
        now=now,
        rules=rules,
    )
    conn.execute(
        "UPDATE refresh_tokens SET rotated_at = ?, successor_hash = ?, successor_body = ?"
        " WHERE token_hash = ?",
        (now, digest(body["refresh_token"]), json.dumps(body), row["token_hash"]),
    )
    # Using the replacement closes its parent's grace window for good.
    conn.execute(
        "UPDATE refresh_tokens SET successor_body = NULL WHERE successor_hash = ?",
        (row["token_hash"],),
    )
    return body


def _reused(
    conn: sqlite3.Connection, row: sqlite3.Row, *, now: float, rules: TokenRules
) -> dict[str, Any]:
    in_window = now - float(row["rotated_at"]) <= rules.grace_seconds
    successor = conn.execute(
        "SELECT rotated_at, revoked_at FROM refresh_tokens WHERE token_hash = ?",
        (row["successor_hash"],),
    ).fetchone()
    successor_unused = (
        successor is not None
        and successor["rotated_at"] is None
        and successor["revoked_at"] is None
    )
    if in_window and successor_unused and row["successor_body"]:
        stored: dict[str, Any] = json.loads(row["successor_body"])
        return stored
    revoke_grant(conn, row["grant_id"], reason="refresh_token_reuse", now=now)
    raise GrantRefused(
        "The refresh token was already used; reuse detected, so the grant is revoked."
        " The merchant must connect again."
    )


# --- revocation and lookup -----------------------------------------------------------------


def revoke_token(
    conn: sqlite3.Connection, *, client_id: str, token: str, hint: str | None, now: float
) -> None:
    """RFC 7009: a refresh token revokes its grant; an access token only itself."""
    hashed = digest(token)
    order = (
        ["refresh_token", "access_token"]
        if hint != "access_token"
        else ["access_token", "refresh_token"]
    )
    for kind in order:
        if kind == "refresh_token":
            row = conn.execute(
                "SELECT r.grant_id, g.client_id FROM refresh_tokens r"
                " JOIN grants g ON g.id = r.grant_id WHERE r.token_hash = ?",
                (hashed,),
            ).fetchone()
            if row is not None:
                if row["client_id"] == client_id:
                    revoke_grant(conn, row["grant_id"], reason="revoked_by_client", now=now)
                return
        else:
            row = conn.execute(
                "SELECT client_id FROM access_tokens WHERE token_hash = ?", (hashed,)
            ).fetchone()
            if row is not None:
                if row["client_id"] == client_id:
                    conn.execute(
                        "UPDATE access_tokens SET revoked_at = ? WHERE token_hash = ?"
                        " AND revoked_at IS NULL",
                        (now, hashed),
                    )
                return


def lookup_access(conn: sqlite3.Connection, token: str, *, now: float) -> AccessInfo | None:
    """The live access token ``token`` stands for, or None (unknown, expired, revoked)."""
    row = conn.execute(
        "SELECT * FROM access_tokens WHERE token_hash = ?", (digest(token),)
    ).fetchone()
    if row is None or row["revoked_at"] is not None or now >= row["expires_at"]:
        return None
    return AccessInfo(
        client_id=row["client_id"],
        account_id=row["account_id"],
        scopes=frozenset(parse_scope(row["scope"])),
        grant_id=row["grant_id"],
    )


def live_tokens(conn: sqlite3.Connection, *, now: float) -> list[dict[str, Any]]:
    """Every usable token, for the control routes: kind, owner, grant, fingerprint."""
    found: list[dict[str, Any]] = []
    for row in conn.execute(
        "SELECT * FROM access_tokens WHERE revoked_at IS NULL AND expires_at > ?"
        " ORDER BY created_at",
        (now,),
    ):
        found.append(
            {
                "kind": "access_token",
                "fingerprint": row["token_hash"][:12],
                "client_id": row["client_id"],
                "account_id": row["account_id"],
                "grant_id": row["grant_id"],
                "scope": row["scope"],
                "expires_at": row["expires_at"],
            }
        )
    for row in conn.execute(
        "SELECT r.*, g.client_id, g.account_id FROM refresh_tokens r"
        " JOIN grants g ON g.id = r.grant_id"
        " WHERE r.revoked_at IS NULL AND r.rotated_at IS NULL AND r.expires_at > ?"
        " ORDER BY r.created_at",
        (now,),
    ):
        found.append(
            {
                "kind": "refresh_token",
                "fingerprint": row["token_hash"][:12],
                "client_id": row["client_id"],
                "account_id": row["account_id"],
                "grant_id": row["grant_id"],
                "scope": row["scope"],
                "expires_at": row["expires_at"],
            }
        )
    return found


def grant_status(conn: sqlite3.Connection, grant_id: str) -> dict[str, Any] | None:
    row = conn.execute("SELECT * FROM grants WHERE id = ?", (grant_id,)).fetchone()
    return None if row is None else dict(row)
