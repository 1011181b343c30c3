"""CTRwow accounts: who signs in, what the API's ``/v1/me`` returns, and which partner created
which account (``external_ref`` is unique per partner client).

Passwords are PBKDF2-SHA256 with a per-account salt. An account a partner provisioned has no
password until its owner sets one (not part of this contract), so it cannot sign in through
the consent page; the partner acts for it with the grant it received.
"""

from __future__ import annotations

import hashlib
import hmac
import secrets
import sqlite3
from dataclasses import dataclass
from typing import Any

from syncapp.sandbox.ctrwow.db import iso, register_schema

DEFAULT_PLAN = "starter"

register_schema(
    """
    CREATE TABLE IF NOT EXISTS accounts (
        id TEXT PRIMARY KEY,                   -- acc_<24 hex>
        name TEXT NOT NULL,
        email TEXT NOT NULL UNIQUE COLLATE NOCASE,
        plan TEXT NOT NULL,
        password_hash TEXT,                    -- pbkdf2$rounds$salt$hash; NULL: cannot sign in
        external_ref TEXT,                     -- the shop domain, when known
        created_via TEXT NOT NULL,             -- authorize | partner
        created_at REAL NOT NULL
    );
    CREATE TABLE IF NOT EXISTS partner_links (
        client_id TEXT NOT NULL,
        external_ref TEXT NOT NULL,
        account_id TEXT NOT NULL REFERENCES accounts (id),
        created_at REAL NOT NULL,
        PRIMARY KEY (client_id, external_ref)
    );
    """
)


@dataclass(frozen=True)
class Account:
    id: str
    name: str
    email: str
    plan: str
    external_ref: str | None
    created_via: str
    created_at: float
    has_password: bool

    def to_json(self) -> dict[str, Any]:
        """The contract's ``Account``."""
        return {
            "id": self.id,
            "name": self.name,
            "email": self.email,
            "plan": self.plan,
            "created_at": iso(self.created_at),
            "external_ref": self.external_ref,
        }


class EmailTaken(Exception):
    """Another account already uses this email."""


def hash_password(password: str, *, rounds: int) -> str:
    salt = secrets.token_hex(16)
    digest = hashlib.pbkdf2_hmac("sha256", password.encode(), salt.encode(), rounds).hex()
    return f"pbkdf2${rounds}${salt}${digest}"


def check_password(stored: str, password: str) -> bool:
    try:
        _, rounds, salt, digest = stored.split("$")
        computed = hashlib.pbkdf2_hmac("sha256", password.encode(), salt.encode(), int(rounds))
    except ValueError:
        return False
    return hmac.compare_digest(computed.hex(), digest)


def _from_row(row: sqlite3.Row) -> Account:
    return Account(
        id=row["id"],
        name=row["name"],
        email=row["email"],
        plan=row["plan"],
        external_ref=row["external_ref"],
        created_via=row["created_via"],
        created_at=row["created_at"],
        has_password=row["password_hash"] is not None,
    )


def get_account(conn: sqlite3.Connection, account_id: str) -> Account | None:
    row = conn.execute("SELECT * FROM accounts WHERE id = ?", (account_id,)).fetchone()
    return None if row is None else _from_row(row)


def find_by_email(conn: sqlite3.Connection, email: str) -> Account | None:
    row = conn.execute("SELECT * FROM accounts WHERE email = ?", (email.strip(),)).fetchone()
    return None if row is None else _from_row(row)


def authenticate(conn: sqlite3.Connection, email: str, password: str) -> Account | None:
    """The account for ``email`` when ``password`` is its password, else None."""
    row = conn.execute("SELECT * FROM accounts WHERE email = ?", (email.strip(),)).fetchone()
    if row is None or row["password_hash"] is None:
        return None
    if not check_password(row["password_hash"], password):
        return None
    return _from_row(row)


def create_account(
    conn: sqlite3.Connection,
    *,
    name: str,
    email: str,
    now: float,
    created_via: str,
    password_hash: str | None = None,
    external_ref: str | None = None,
) -> Account:
    """A new account; raises :class:`EmailTaken` when the email is in use."""
    if find_by_email(conn, email) is not None:
        raise EmailTaken(email)
    account_id = f"acc_{secrets.token_hex(12)}"
    conn.execute(
        "INSERT INTO accounts (id, name, email, plan, password_hash, external_ref, created_via,"
        " created_at) VALUES (?, ?, ?, ?, ?, ?, ?, ?)",
        (
            account_id,
            name.strip(),
            email.strip(),
            DEFAULT_PLAN,
            password_hash,
            external_ref,
            created_via,
            now,
        ),
    )
    account = get_account(conn, account_id)
    assert account is not None
    return account


def linked_account(conn: sqlite3.Connection, client_id: str, external_ref: str) -> str | None:
    """The id of the account ``client_id`` provisioned for ``external_ref``, if any."""
    row = conn.execute(
        "SELECT account_id FROM partner_links WHERE client_id = ? AND external_ref = ?",
        (client_id, external_ref),
    ).fetchone()
    return None if row is None else str(row["account_id"])


def is_linked(conn: sqlite3.Connection, client_id: str, account_id: str) -> bool:
    row = conn.execute(
        "SELECT 1 FROM partner_links WHERE client_id = ? AND account_id = ?",
        (client_id, account_id),
    ).fetchone()
    return row is not None


def link(
    conn: sqlite3.Connection, *, client_id: str, external_ref: str, account_id: str, now: float
) -> None:
    conn.execute(
        "INSERT INTO partner_links (client_id, external_ref, account_id, created_at)"
        " VALUES (?, ?, ?, ?)",
        (client_id, external_ref, account_id, now),
    )


def list_accounts(conn: sqlite3.Connection) -> list[Account]:
    return [_from_row(r) for r in conn.execute("SELECT * FROM accounts ORDER BY created_at, id")]
