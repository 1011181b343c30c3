"""App subscriptions (Billing API) as rows, and every change of their status with its webhook.

A subscription is created ``PENDING`` by ``appSubscriptionCreate``; the merchant approves it
(``ACTIVE``) or declines it (``DECLINED``) on the sandbox's confirmation page; the app cancels it
(``appSubscriptionCancel``), uninstalling cancels it, and approving a new one cancels the one it
replaces (``CANCELLED``). Each change records an ``app_subscriptions/update`` webhook with the
REST payload in the same transaction. Usage records count against the usage line item's capped
amount for the current period; crossing 90 % of it records
``app_subscriptions/approaching_capped_amount`` once per period, as Shopify does.

The sandbox models one billing period per subscription (activation + trial + interval); it does
not roll periods over, invoice, or expire pending subscriptions after two days.
"""

from __future__ import annotations

import sqlite3
from dataclasses import dataclass
from datetime import UTC, datetime, timedelta
from decimal import Decimal
from typing import Any

from syncapp.sandbox.shopify.db import register_schema, utcnow_iso
from syncapp.sandbox.shopify.events import record_webhook
from syncapp.sandbox.shopify.graphql_api.ids import gid

register_schema(
    """
    CREATE TABLE IF NOT EXISTS sb_app_subscriptions (
        id INTEGER PRIMARY KEY AUTOINCREMENT,
        shop_domain TEXT NOT NULL,
        name TEXT NOT NULL,
        status TEXT NOT NULL,                 -- PENDING ACTIVE DECLINED CANCELLED
        test INTEGER NOT NULL,
        trial_days INTEGER NOT NULL,
        return_url TEXT NOT NULL,
        currency TEXT NOT NULL,
        replacement_behavior TEXT NOT NULL,
        created_at TEXT NOT NULL,
        updated_at TEXT NOT NULL,
        activated_at TEXT,
        current_period_end TEXT
    );
    CREATE INDEX IF NOT EXISTS sb_app_subscriptions_by_shop
        ON sb_app_subscriptions (shop_domain, status);
    CREATE TABLE IF NOT EXISTS sb_app_subscription_line_items (
        id INTEGER PRIMARY KEY AUTOINCREMENT,
        subscription_id INTEGER NOT NULL REFERENCES sb_app_subscriptions (id),
        position INTEGER NOT NULL,
        kind TEXT NOT NULL,                   -- RECURRING | USAGE
        price TEXT,                           -- recurring: the amount every interval
        interval TEXT NOT NULL,               -- EVERY_30_DAYS | ANNUAL
        capped_amount TEXT,                   -- usage: the most charged per period
        terms TEXT,
        approaching_notified INTEGER NOT NULL DEFAULT 0
    );
    CREATE TABLE IF NOT EXISTS sb_app_usage_records (
        id INTEGER PRIMARY KEY AUTOINCREMENT,
        line_item_id INTEGER NOT NULL REFERENCES sb_app_subscription_line_items (id),
        shop_domain TEXT NOT NULL,
        price TEXT NOT NULL,
        description TEXT NOT NULL,
        idempotency_key TEXT,
        created_at TEXT NOT NULL,
        UNIQUE (line_item_id, idempotency_key)
    );
    INSERT INTO sqlite_sequence (name, seq) SELECT 'sb_app_subscriptions', 29000000000
        WHERE NOT EXISTS (SELECT 1 FROM sqlite_sequence WHERE name = 'sb_app_subscriptions');
    """
)

INTERVAL_DAYS = {"EVERY_30_DAYS": 30, "ANNUAL": 365}
# Subscriptions that still bill the shop: the ones a newly approved subscription replaces.
BILLING_STATUSES = ("ACTIVE", "FROZEN")
CANCELLABLE_STATUSES = ("PENDING", "ACCEPTED", "ACTIVE", "FROZEN")
APPROACHING_CAP_SHARE = Decimal("0.9")


class BillingStateError(Exception):
    """The subscription is not in a state that allows the requested change."""


@dataclass(frozen=True)
class LineItemSpec:
    """One validated line item of a new subscription."""

    kind: str  # RECURRING | USAGE
    interval: str
    price: Decimal | None = None
    capped_amount: Decimal | None = None
    terms: str | None = None


def decimal_text(amount: Decimal) -> str:
    """Shopify's Decimal scalar: no trailing zeros past one decimal (``"19.9"``, ``"20.0"``)."""
    text = format(amount.normalize(), "f")
    return text if "." in text else f"{text}.0"


def money_text(amount: Decimal) -> str:
    return str(amount.quantize(Decimal("0.01")))


def _iso(moment: datetime) -> str:
    return moment.astimezone(UTC).replace(microsecond=0).isoformat().replace("+00:00", "Z")


def _rest_time(value: str) -> str:
    return value.replace("Z", "+00:00") if value.endswith("Z") else value


# ---- reads ---------------------------------------------------------------------------------


def get_subscription(
    conn: sqlite3.Connection, shop_domain: str, subscription_id: int
) -> dict[str, Any] | None:
    row = conn.execute(
        "SELECT * FROM sb_app_subscriptions WHERE id = ? AND shop_domain = ?",
        (subscription_id, shop_domain),
    ).fetchone()
    return dict(row) if row else None


def line_items_of(conn: sqlite3.Connection, subscription_id: int) -> list[dict[str, Any]]:
    rows = conn.execute(
        "SELECT * FROM sb_app_subscription_line_items WHERE subscription_id = ? ORDER BY position",
        (subscription_id,),
    ).fetchall()
    return [dict(r) for r in rows]


def get_line_item(
    conn: sqlite3.Connection, shop_domain: str, line_item_id: int
) -> dict[str, Any] | None:
    row = conn.execute(
        "SELECT li.* FROM sb_app_subscription_line_items li"
        " JOIN sb_app_subscriptions s ON s.id = li.subscription_id"
        " WHERE li.id = ? AND s.shop_domain = ?",
        (line_item_id, shop_domain),
    ).fetchone()
    return dict(row) if row else None


def subscriptions_with_status(
    conn: sqlite3.Connection, shop_domain: str, statuses: tuple[str, ...]
) -> list[dict[str, Any]]:
    marks = ",".join("?" for _ in statuses)
    rows = conn.execute(
        f"SELECT * FROM sb_app_subscriptions WHERE shop_domain = ? AND status IN ({marks})"  # noqa: S608
        " ORDER BY id",
        (shop_domain, *statuses),
    ).fetchall()
    return [dict(r) for r in rows]


def get_usage_record(
    conn: sqlite3.Connection, shop_domain: str, record_id: int
) -> dict[str, Any] | None:
    row = conn.execute(
        "SELECT * FROM sb_app_usage_records WHERE id = ? AND shop_domain = ?",
        (record_id, shop_domain),
    ).fetchone()
    return dict(row) if row else None


def balance_used(conn: sqlite3.Connection, line_item_id: int) -> Decimal:
    """What the usage line item has charged in its (single, modelled) period."""
    rows = conn.execute(
        "SELECT price FROM sb_app_usage_records WHERE line_item_id = ?", (line_item_id,)
    ).fetchall()
    return sum((Decimal(r["price"]) for r in rows), Decimal(0))


# ---- writes --------------------------------------------------------------------------------


def create_subscription(
    conn: sqlite3.Connection,
    *,
    shop_domain: str,
    name: str,
    return_url: str,
    test: bool,
    trial_days: int,
    replacement_behavior: str,
    currency: str,
    line_items: list[LineItemSpec],
) -> int:
    """Insert a PENDING subscription with its line items; returns its id."""
    now = utcnow_iso()
    cursor = conn.execute(
        "INSERT INTO sb_app_subscriptions (shop_domain, name, status, test, trial_days,"
        " return_url, currency, replacement_behavior, created_at, updated_at)"
        " VALUES (?, ?, 'PENDING', ?, ?, ?, ?, ?, ?, ?)",
        (
            shop_domain,
            name,
            1 if test else 0,
            trial_days,
            return_url,
            currency,
            replacement_behavior,
            now,
            now,
        ),
    )
    subscription_id = int(cursor.lastrowid or 0)
    for position, item in enumerate(line_items):
        conn.execute(
            "INSERT INTO sb_app_subscription_line_items (subscription_id, position, kind, price,"
            " interval, capped_amount, terms) VALUES (?, ?, ?, ?, ?, ?, ?)",
            (
                subscription_id,
                position,
                item.kind,
                money_text(item.price) if item.price is not None else None,
                item.interval,
                money_text(item.capped_amount) if item.capped_amount is not None else None,
                item.terms,
            ),
        )
    return subscription_id


def _set_status(
    conn: sqlite3.Connection, subscription: dict[str, Any], status: str, **columns: Any
) -> dict[str, Any]:
    now = utcnow_iso()
    sets = ", ".join(f"{name} = ?" for name in ("status", "updated_at", *columns))
    conn.execute(
        f"UPDATE sb_app_subscriptions SET {sets} WHERE id = ?",  # noqa: S608
        (status, now, *columns.values(), subscription["id"]),
    )
    updated = get_subscription(conn, subscription["shop_domain"], subscription["id"])
    assert updated is not None
    record_webhook(
        conn,
        shop_domain=updated["shop_domain"],
        topic="app_subscriptions/update",
        payload=update_payload(conn, updated),
    )
    return updated


def approve(conn: sqlite3.Connection, shop_domain: str, subscription_id: int) -> dict[str, Any]:
    """The merchant approves: ACTIVE now, replacing (cancelling) what the shop had before."""
    subscription = get_subscription(conn, shop_domain, subscription_id)
    if subscription is None:
        raise LookupError(f"no app subscription {subscription_id} in {shop_domain}")
    if subscription["status"] != "PENDING":
        raise BillingStateError(
            f"this charge is {subscription['status'].lower()}; only a pending charge can be"
            " approved"
        )
    for previous in subscriptions_with_status(conn, shop_domain, BILLING_STATUSES):
        _set_status(conn, previous, "CANCELLED", current_period_end=None)
    activated = datetime.now(UTC)
    longest = max(INTERVAL_DAYS[i["interval"]] for i in line_items_of(conn, subscription_id))
    period_end = activated + timedelta(days=subscription["trial_days"] + longest)
    return _set_status(
        conn,
        subscription,
        "ACTIVE",
        activated_at=_iso(activated),
        current_period_end=_iso(period_end),
    )


def decline(conn: sqlite3.Connection, shop_domain: str, subscription_id: int) -> dict[str, Any]:
    """The merchant declines a pending charge: DECLINED, a terminal state."""
    subscription = get_subscription(conn, shop_domain, subscription_id)
    if subscription is None:
        raise LookupError(f"no app subscription {subscription_id} in {shop_domain}")
    if subscription["status"] != "PENDING":
        raise BillingStateError(
            f"this charge is {subscription['status'].lower()}; only a pending charge can be"
            " declined"
        )
    return _set_status(conn, subscription, "DECLINED")


def cancel(conn: sqlite3.Connection, subscription: dict[str, Any]) -> dict[str, Any]:
    """CANCELLED (by the app, or by uninstalling); raises BillingStateError when already over."""
    if subscription["status"] not in CANCELLABLE_STATUSES:
        raise BillingStateError(
            f"the subscription is {subscription['status'].lower()} and cannot be cancelled"
        )
    return _set_status(conn, subscription, "CANCELLED", current_period_end=None)


def cancel_all(conn: sqlite3.Connection, shop_domain: str) -> int:
    """Cancel every live subscription of the shop (the app is being uninstalled)."""
    live = subscriptions_with_status(conn, shop_domain, CANCELLABLE_STATUSES)
    for subscription in live:
        cancel(conn, subscription)
    return len(live)


def create_usage_record(
    conn: sqlite3.Connection,
    *,
    shop_domain: str,
    line_item: dict[str, Any],
    price: Decimal,
    description: str,
    idempotency_key: str | None,
) -> int:
    """Insert a usage record (validated by the caller); may record the approaching-cap webhook."""
    cap = Decimal(line_item["capped_amount"])
    before = balance_used(conn, line_item["id"])
    cursor = conn.execute(
        "INSERT INTO sb_app_usage_records (line_item_id, shop_domain, price, description,"
        " idempotency_key, created_at) VALUES (?, ?, ?, ?, ?, ?)",
        (
            line_item["id"],
            shop_domain,
            money_text(price),
            description,
            idempotency_key,
            utcnow_iso(),
        ),
    )
    after = before + price
    threshold = cap * APPROACHING_CAP_SHARE
    if before < threshold <= after and not line_item["approaching_notified"]:
        conn.execute(
            "UPDATE sb_app_subscription_line_items SET approaching_notified = 1 WHERE id = ?",
            (line_item["id"],),
        )
        subscription = get_subscription(conn, shop_domain, line_item["subscription_id"])
        assert subscription is not None
        record_webhook(
            conn,
            shop_domain=shop_domain,
            topic="app_subscriptions/approaching_capped_amount",
            payload=approaching_cap_payload(conn, subscription, after, cap),
        )
    return int(cursor.lastrowid or 0)


def find_usage_record_by_key(
    conn: sqlite3.Connection, line_item_id: int, idempotency_key: str
) -> dict[str, Any] | None:
    row = conn.execute(
        "SELECT * FROM sb_app_usage_records WHERE line_item_id = ? AND idempotency_key = ?",
        (line_item_id, idempotency_key),
    ).fetchone()
    return dict(row) if row else None


# ---- webhook payloads (REST shapes) ----------------------------------------------------------


def _shop_gid(conn: sqlite3.Connection, shop_domain: str) -> str:
    row = conn.execute("SELECT id FROM shops WHERE domain = ?", (shop_domain,)).fetchone()
    return gid("Shop", int(row["id"])) if row else ""


def update_payload(conn: sqlite3.Connection, subscription: dict[str, Any]) -> dict[str, Any]:
    """``app_subscriptions/update``: the subscription as the REST webhook carries it."""
    items = line_items_of(conn, subscription["id"])
    recurring = next((i for i in items if i["kind"] == "RECURRING"), None)
    usage = next((i for i in items if i["kind"] == "USAGE"), None)
    return {
        "app_subscription": {
            "admin_graphql_api_id": gid("AppSubscription", subscription["id"]),
            "name": subscription["name"],
            "status": subscription["status"],
            "admin_graphql_api_shop_id": _shop_gid(conn, subscription["shop_domain"]),
            "created_at": _rest_time(subscription["created_at"]),
            "updated_at": _rest_time(subscription["updated_at"]),
            "currency": subscription["currency"],
            "capped_amount": decimal_text(Decimal(usage["capped_amount"])) if usage else None,
            "price": recurring["price"] if recurring else None,
            "interval": recurring["interval"].lower() if recurring else None,
            # Only subscriptions made by Shopify App Pricing have a plan handle.
            "plan_handle": None,
        }
    }


def approaching_cap_payload(
    conn: sqlite3.Connection, subscription: dict[str, Any], used: Decimal, cap: Decimal
) -> dict[str, Any]:
    """``app_subscriptions/approaching_capped_amount``: usage reached 90 % of the cap."""
    return {
        "app_subscription": {
            "admin_graphql_api_id": gid("AppSubscription", subscription["id"]),
            "name": subscription["name"],
            "balance_used": float(used),
            "capped_amount": decimal_text(cap),
            "currency_code": subscription["currency"],
            "admin_graphql_api_shop_id": _shop_gid(conn, subscription["shop_domain"]),
            "created_at": _rest_time(subscription["created_at"]),
            "updated_at": _rest_time(utcnow_iso()),
        }
    }
