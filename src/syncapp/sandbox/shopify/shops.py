"""Shops of the sandbox, and how a request names its shop (the ``Host`` header, as on Shopify)."""

from __future__ import annotations

import re
import sqlite3
from dataclasses import dataclass

from syncapp.sandbox.shopify.db import utcnow_iso

SHOP_DOMAIN = re.compile(r"^[a-z0-9][a-z0-9-]*\.myshopify\.com$")


@dataclass(frozen=True)
class Shop:
    id: int
    domain: str
    name: str
    email: str
    currency_code: str
    plan_name: str

    @property
    def gid(self) -> str:
        return f"gid://shopify/Shop/{self.id}"


def normalize_domain(shop: str) -> str:
    """``demo`` or ``demo.myshopify.com`` (any case, optional port) → ``demo.myshopify.com``."""
    shop = shop.strip().lower().split(":", 1)[0]
    if not shop.endswith(".myshopify.com"):
        shop = f"{shop}.myshopify.com"
    if not SHOP_DOMAIN.match(shop):
        raise ValueError(f"not a shop domain: {shop!r}")
    return shop


def shop_domain_from_host(host: str | None) -> str | None:
    """The shop a request is for, from its Host header; None when the host is not a shop's."""
    if not host:
        return None
    name = host.strip().lower().split(":", 1)[0]
    return name if SHOP_DOMAIN.match(name) else None


def _row_to_shop(row: sqlite3.Row) -> Shop:
    return Shop(
        id=row["id"],
        domain=row["domain"],
        name=row["name"],
        email=row["email"],
        currency_code=row["currency_code"],
        plan_name=row["plan_name"],
    )


def get_shop(conn: sqlite3.Connection, domain: str) -> Shop | None:
    row = conn.execute("SELECT * FROM shops WHERE domain = ?", (domain,)).fetchone()
    return _row_to_shop(row) if row else None


def ensure_shop(
    conn: sqlite3.Connection,
    domain: str,
    *,
    name: str | None = None,
    email: str | None = None,
    currency_code: str = "USD",
    plan_name: str = "Standard",
) -> Shop:
    """Create the shop if it does not exist yet; return it either way."""
    domain = normalize_domain(domain)
    existing = get_shop(conn, domain)
    if existing:
        return existing
    handle = domain.removesuffix(".myshopify.com")
    conn.execute(
        "INSERT INTO shops (domain, name, email, currency_code, plan_name, created_at)"
        " VALUES (?, ?, ?, ?, ?, ?)",
        (
            domain,
            name or handle.replace("-", " ").title(),
            email or f"owner@{handle}.example",
            currency_code,
            plan_name,
            utcnow_iso(),
        ),
    )
    shop = get_shop(conn, domain)
    assert shop is not None
    return shop


# Leaky-bucket size and restore rate per plan (Admin GraphQL calculated query cost).
PLAN_LIMITS: dict[str, tuple[int, int]] = {
    "Standard": (2000, 100),
    "Advanced": (4000, 200),
    "Plus": (20000, 1000),
    "Enterprise": (40000, 2000),
}
