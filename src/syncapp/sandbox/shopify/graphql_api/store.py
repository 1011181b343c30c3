"""Products, options, variants and metafields of the sandbox's shops, as SQLite rows.

Ids are legacy numeric ids shaped like Shopify's (13-14 digit integers, never reused: the
tables use AUTOINCREMENT seeded at Shopify-like offsets). Timestamps are the ISO strings of
``utcnow_iso`` so that SQL string comparison is time order. Every function takes the
connection of the caller's transaction; none opens its own.
"""

from __future__ import annotations

import json
import re
import sqlite3
from collections.abc import Sequence
from dataclasses import dataclass
from typing import Any

from syncapp.sandbox.shopify.db import register_schema, utcnow_iso

register_schema(
    """
    CREATE TABLE IF NOT EXISTS sb_products (
        id INTEGER PRIMARY KEY AUTOINCREMENT,
        shop_domain TEXT NOT NULL,
        title TEXT NOT NULL,
        handle TEXT NOT NULL,
        description_html TEXT NOT NULL DEFAULT '',
        vendor TEXT NOT NULL DEFAULT '',
        product_type TEXT NOT NULL DEFAULT '',
        status TEXT NOT NULL DEFAULT 'ACTIVE',
        tags TEXT NOT NULL DEFAULT '[]',          -- JSON list, in the order given
        template_suffix TEXT,
        published_at TEXT,
        created_at TEXT NOT NULL,
        updated_at TEXT NOT NULL,
        UNIQUE (shop_domain, handle)
    );
    CREATE INDEX IF NOT EXISTS sb_products_by_id ON sb_products (shop_domain, id);
    CREATE INDEX IF NOT EXISTS sb_products_by_updated ON sb_products (shop_domain, updated_at, id);
    CREATE INDEX IF NOT EXISTS sb_products_by_created ON sb_products (shop_domain, created_at, id);
    CREATE INDEX IF NOT EXISTS sb_products_by_title ON sb_products (shop_domain, title, id);
    CREATE TABLE IF NOT EXISTS sb_options (
        id INTEGER PRIMARY KEY AUTOINCREMENT,
        product_id INTEGER NOT NULL REFERENCES sb_products (id) ON DELETE CASCADE,
        name TEXT NOT NULL,
        position INTEGER NOT NULL
    );
    CREATE INDEX IF NOT EXISTS sb_options_by_product ON sb_options (product_id, position);
    CREATE TABLE IF NOT EXISTS sb_option_values (
        id INTEGER PRIMARY KEY AUTOINCREMENT,
        option_id INTEGER NOT NULL REFERENCES sb_options (id) ON DELETE CASCADE,
        name TEXT NOT NULL,
        position INTEGER NOT NULL
    );
    CREATE INDEX IF NOT EXISTS sb_option_values_by_option ON sb_option_values (option_id, position);
    CREATE TABLE IF NOT EXISTS sb_variants (
        id INTEGER PRIMARY KEY AUTOINCREMENT,
        product_id INTEGER NOT NULL REFERENCES sb_products (id) ON DELETE CASCADE,
        shop_domain TEXT NOT NULL,
        title TEXT NOT NULL,
        sku TEXT,
        price TEXT NOT NULL DEFAULT '0.00',
        compare_at_price TEXT,
        position INTEGER NOT NULL,
        option1 TEXT,
        option2 TEXT,
        option3 TEXT,
        barcode TEXT,
        taxable INTEGER NOT NULL DEFAULT 1,
        inventory_quantity INTEGER NOT NULL DEFAULT 0,
        inventory_policy TEXT NOT NULL DEFAULT 'DENY',
        created_at TEXT NOT NULL,
        updated_at TEXT NOT NULL
    );
    CREATE INDEX IF NOT EXISTS sb_variants_by_product ON sb_variants (product_id, position);
    CREATE INDEX IF NOT EXISTS sb_variants_by_shop ON sb_variants (shop_domain, id);
    CREATE INDEX IF NOT EXISTS sb_variants_by_sku ON sb_variants (shop_domain, sku);
    CREATE TABLE IF NOT EXISTS sb_metafields (
        id INTEGER PRIMARY KEY AUTOINCREMENT,
        owner_type TEXT NOT NULL,              -- PRODUCT | PRODUCTVARIANT
        owner_id INTEGER NOT NULL,
        namespace TEXT NOT NULL,
        key TEXT NOT NULL,
        type TEXT NOT NULL,
        value TEXT NOT NULL,
        created_at TEXT NOT NULL,
        updated_at TEXT NOT NULL,
        UNIQUE (owner_type, owner_id, namespace, key)
    );
    -- A variant's inventory item; no row means Shopify's defaults (tracked, shipped, weight 0).
    CREATE TABLE IF NOT EXISTS sb_inventory_items (
        variant_id INTEGER PRIMARY KEY REFERENCES sb_variants (id) ON DELETE CASCADE,
        tracked INTEGER NOT NULL DEFAULT 1,
        requires_shipping INTEGER NOT NULL DEFAULT 1,
        weight_value REAL NOT NULL DEFAULT 0,
        weight_unit TEXT NOT NULL DEFAULT 'KILOGRAMS',
        updated_at TEXT NOT NULL
    );
    -- Start ids where Shopify's are today, so code that assumes small ids is caught here.
    INSERT INTO sqlite_sequence (name, seq) SELECT 'sb_products', 8100000000000
        WHERE NOT EXISTS (SELECT 1 FROM sqlite_sequence WHERE name = 'sb_products');
    INSERT INTO sqlite_sequence (name, seq) SELECT 'sb_options', 10300000000000
        WHERE NOT EXISTS (SELECT 1 FROM sqlite_sequence WHERE name = 'sb_options');
    INSERT INTO sqlite_sequence (name, seq) SELECT 'sb_option_values', 3500000000000
        WHERE NOT EXISTS (SELECT 1 FROM sqlite_sequence WHERE name = 'sb_option_values');
    INSERT INTO sqlite_sequence (name, seq) SELECT 'sb_variants', 45000000000000
        WHERE NOT EXISTS (SELECT 1 FROM sqlite_sequence WHERE name = 'sb_variants');
    INSERT INTO sqlite_sequence (name, seq) SELECT 'sb_metafields', 30000000000000
        WHERE NOT EXISTS (SELECT 1 FROM sqlite_sequence WHERE name = 'sb_metafields');
    """
)

# Inventory items share the variant's number in the sandbox, offset into their own range.
INVENTORY_ITEM_OFFSET = 2_000_000_000_000

DEFAULT_OPTION = "Title"
DEFAULT_VALUE = "Default Title"


@dataclass(frozen=True)
class OptionValue:
    id: int
    name: str
    position: int


@dataclass(frozen=True)
class Option:
    id: int
    product_id: int
    name: str
    position: int
    values: tuple[OptionValue, ...]


def row_dict(row: sqlite3.Row | None) -> dict[str, Any] | None:
    return dict(row) if row is not None else None


def get_product(
    conn: sqlite3.Connection, shop_domain: str, product_id: int
) -> dict[str, Any] | None:
    row = conn.execute(
        "SELECT * FROM sb_products WHERE id = ? AND shop_domain = ?", (product_id, shop_domain)
    ).fetchone()
    return row_dict(row)


def get_product_by_handle(
    conn: sqlite3.Connection, shop_domain: str, handle: str
) -> dict[str, Any] | None:
    row = conn.execute(
        "SELECT * FROM sb_products WHERE shop_domain = ? AND handle = ?", (shop_domain, handle)
    ).fetchone()
    return row_dict(row)


def get_products(
    conn: sqlite3.Connection, shop_domain: str, product_ids: Sequence[int]
) -> dict[int, dict[str, Any]]:
    if not product_ids:
        return {}
    marks = ",".join("?" * len(product_ids))
    rows = conn.execute(
        f"SELECT * FROM sb_products WHERE shop_domain = ? AND id IN ({marks})",  # noqa: S608
        (shop_domain, *product_ids),
    ).fetchall()
    return {row["id"]: dict(row) for row in rows}


def get_variant(
    conn: sqlite3.Connection, shop_domain: str, variant_id: int
) -> dict[str, Any] | None:
    row = conn.execute(
        "SELECT * FROM sb_variants WHERE id = ? AND shop_domain = ?", (variant_id, shop_domain)
    ).fetchone()
    return row_dict(row)


def variants_of(conn: sqlite3.Connection, product_id: int) -> list[dict[str, Any]]:
    rows = conn.execute(
        "SELECT * FROM sb_variants WHERE product_id = ? ORDER BY position, id", (product_id,)
    ).fetchall()
    return [dict(row) for row in rows]


def options_of(conn: sqlite3.Connection, product_id: int) -> list[Option]:
    rows = conn.execute(
        "SELECT o.id AS oid, o.name AS oname, o.position AS opos,"
        " v.id AS vid, v.name AS vname, v.position AS vpos"
        " FROM sb_options o LEFT JOIN sb_option_values v ON v.option_id = o.id"
        " WHERE o.product_id = ? ORDER BY o.position, v.position",
        (product_id,),
    ).fetchall()
    options: list[Option] = []
    for row in rows:
        if not options or options[-1].id != row["oid"]:
            options.append(Option(row["oid"], product_id, row["oname"], row["opos"], ()))
        if row["vid"] is not None:
            last = options[-1]
            value = OptionValue(row["vid"], row["vname"], row["vpos"])
            options[-1] = Option(
                last.id, product_id, last.name, last.position, (*last.values, value)
            )
    return options


def metafields_of(
    conn: sqlite3.Connection, owner_type: str, owner_id: int, namespace: str | None = None
) -> list[dict[str, Any]]:
    sql = "SELECT * FROM sb_metafields WHERE owner_type = ? AND owner_id = ?"
    params: list[Any] = [owner_type, owner_id]
    if namespace is not None:
        sql += " AND namespace = ?"
        params.append(namespace)
    return [dict(row) for row in conn.execute(sql + " ORDER BY id", params).fetchall()]


def get_metafield(
    conn: sqlite3.Connection, owner_type: str, owner_id: int, namespace: str, key: str
) -> dict[str, Any] | None:
    row = conn.execute(
        "SELECT * FROM sb_metafields WHERE owner_type = ? AND owner_id = ? AND namespace = ?"
        " AND key = ?",
        (owner_type, owner_id, namespace, key),
    ).fetchone()
    return row_dict(row)


# ---- writes ----------------------------------------------------------------------------

_NOT_HANDLE = re.compile(r"[^a-z0-9]+")


def handleize(text: str) -> str:
    """Shopify's handle of a title: lower case, runs of other characters become one ``-``."""
    return _NOT_HANDLE.sub("-", text.lower()).strip("-") or "product"


def unique_handle(
    conn: sqlite3.Connection, shop_domain: str, base: str, *, exclude_id: int | None = None
) -> str:
    """``base``, or ``base-1``, ``base-2``… — the first not taken by another product."""
    candidate, n = base, 0
    while True:
        row = conn.execute(
            "SELECT id FROM sb_products WHERE shop_domain = ? AND handle = ?",
            (shop_domain, candidate),
        ).fetchone()
        if row is None or row["id"] == exclude_id:
            return candidate
        n += 1
        candidate = f"{base}-{n}"


def handle_taken(
    conn: sqlite3.Connection, shop_domain: str, handle: str, *, exclude_id: int | None
) -> bool:
    row = conn.execute(
        "SELECT id FROM sb_products WHERE shop_domain = ? AND handle = ?", (shop_domain, handle)
    ).fetchone()
    return row is not None and row["id"] != exclude_id


PRODUCT_COLUMNS = (
    "title",
    "handle",
    "description_html",
    "vendor",
    "product_type",
    "status",
    "tags",
    "template_suffix",
    "published_at",
)


def insert_product(conn: sqlite3.Connection, shop_domain: str, fields: dict[str, Any]) -> int:
    now = utcnow_iso()
    values = {key: fields[key] for key in PRODUCT_COLUMNS if key in fields}
    values.setdefault("published_at", now if values.get("status", "ACTIVE") == "ACTIVE" else None)
    columns = ["shop_domain", *values, "created_at", "updated_at"]
    cursor = conn.execute(
        f"INSERT INTO sb_products ({', '.join(columns)})"  # noqa: S608 - fixed column names
        f" VALUES ({', '.join('?' * len(columns))})",
        (shop_domain, *values.values(), now, now),
    )
    assert cursor.lastrowid is not None
    return cursor.lastrowid


def update_product(conn: sqlite3.Connection, product_id: int, fields: dict[str, Any]) -> None:
    """Set ``fields`` (column names) and bump ``updated_at``; an empty dict only bumps."""
    values = {key: fields[key] for key in PRODUCT_COLUMNS if key in fields}
    assignments = [f"{key} = ?" for key in values] + ["updated_at = ?"]
    conn.execute(
        f"UPDATE sb_products SET {', '.join(assignments)} WHERE id = ?",  # noqa: S608
        (*values.values(), utcnow_iso(), product_id),
    )


def delete_product(conn: sqlite3.Connection, product_id: int) -> None:
    variant_ids = [
        r["id"]
        for r in conn.execute("SELECT id FROM sb_variants WHERE product_id = ?", (product_id,))
    ]
    conn.executemany(
        "DELETE FROM sb_metafields WHERE owner_type = 'PRODUCTVARIANT' AND owner_id = ?",
        [(vid,) for vid in variant_ids],
    )
    conn.execute(
        "DELETE FROM sb_metafields WHERE owner_type = 'PRODUCT' AND owner_id = ?", (product_id,)
    )
    conn.execute("DELETE FROM sb_products WHERE id = ?", (product_id,))


def replace_options(
    conn: sqlite3.Connection, product_id: int, options: Sequence[tuple[str, Sequence[str]]]
) -> None:
    """Make the product's options exactly ``options`` (name, values), keeping ids of kept ones."""
    existing = {opt.name: opt for opt in options_of(conn, product_id)}
    keep = {name for name, _ in options}
    for name, opt in existing.items():
        if name not in keep:
            conn.execute("DELETE FROM sb_options WHERE id = ?", (opt.id,))
    for position, (name, values) in enumerate(options, start=1):
        old = existing.get(name)
        if old is None:
            cursor = conn.execute(
                "INSERT INTO sb_options (product_id, name, position) VALUES (?, ?, ?)",
                (product_id, name, position),
            )
            assert cursor.lastrowid is not None
            option_id = cursor.lastrowid
            old_values: dict[str, OptionValue] = {}
        else:
            option_id = old.id
            conn.execute("UPDATE sb_options SET position = ? WHERE id = ?", (position, option_id))
            old_values = {v.name: v for v in old.values}
        for value_name, value in old_values.items():
            if value_name not in values:
                conn.execute("DELETE FROM sb_option_values WHERE id = ?", (value.id,))
        for value_position, value_name in enumerate(values, start=1):
            if value_name in old_values:
                conn.execute(
                    "UPDATE sb_option_values SET position = ? WHERE id = ?",
                    (value_position, old_values[value_name].id),
                )
            else:
                conn.execute(
                    "INSERT INTO sb_option_values (option_id, name, position) VALUES (?, ?, ?)",
                    (option_id, value_name, value_position),
                )


VARIANT_COLUMNS = (
    "title",
    "sku",
    "price",
    "compare_at_price",
    "position",
    "option1",
    "option2",
    "option3",
    "barcode",
    "taxable",
    "inventory_quantity",
    "inventory_policy",
)


def variant_title(option_values: Sequence[str | None]) -> str:
    return " / ".join(v for v in option_values if v is not None)


def insert_variant(
    conn: sqlite3.Connection, shop_domain: str, product_id: int, fields: dict[str, Any]
) -> int:
    now = utcnow_iso()
    values = {key: fields[key] for key in VARIANT_COLUMNS if key in fields}
    columns = ["product_id", "shop_domain", *values, "created_at", "updated_at"]
    cursor = conn.execute(
        f"INSERT INTO sb_variants ({', '.join(columns)})"  # noqa: S608 - fixed column names
        f" VALUES ({', '.join('?' * len(columns))})",
        (product_id, shop_domain, *values.values(), now, now),
    )
    assert cursor.lastrowid is not None
    return cursor.lastrowid


def update_variant(conn: sqlite3.Connection, variant_id: int, fields: dict[str, Any]) -> None:
    values = {key: fields[key] for key in VARIANT_COLUMNS if key in fields}
    assignments = [f"{key} = ?" for key in values] + ["updated_at = ?"]
    conn.execute(
        f"UPDATE sb_variants SET {', '.join(assignments)} WHERE id = ?",  # noqa: S608
        (*values.values(), utcnow_iso(), variant_id),
    )


def delete_variant(conn: sqlite3.Connection, variant_id: int) -> None:
    conn.execute(
        "DELETE FROM sb_metafields WHERE owner_type = 'PRODUCTVARIANT' AND owner_id = ?",
        (variant_id,),
    )
    conn.execute("DELETE FROM sb_variants WHERE id = ?", (variant_id,))


def upsert_metafield(
    conn: sqlite3.Connection,
    *,
    owner_type: str,
    owner_id: int,
    namespace: str,
    key: str,
    type_: str,
    value: str,
) -> None:
    now = utcnow_iso()
    conn.execute(
        "INSERT INTO sb_metafields (owner_type, owner_id, namespace, key, type, value,"
        " created_at, updated_at) VALUES (?, ?, ?, ?, ?, ?, ?, ?)"
        " ON CONFLICT (owner_type, owner_id, namespace, key)"
        " DO UPDATE SET type = excluded.type, value = excluded.value,"
        " updated_at = excluded.updated_at",
        (owner_type, owner_id, namespace, key, type_, value, now, now),
    )


INVENTORY_ITEM_DEFAULTS: dict[str, Any] = {
    "tracked": 1,
    "requires_shipping": 1,
    "weight_value": 0.0,
    "weight_unit": "KILOGRAMS",
}
INVENTORY_ITEM_COLUMNS = tuple(INVENTORY_ITEM_DEFAULTS)


def inventory_item_of(conn: sqlite3.Connection, variant_id: int) -> dict[str, Any]:
    """The stored inventory-item fields of a variant, Shopify's defaults where none are set."""
    row = conn.execute(
        "SELECT * FROM sb_inventory_items WHERE variant_id = ?", (variant_id,)
    ).fetchone()
    return {**INVENTORY_ITEM_DEFAULTS, **(dict(row) if row else {})}


def update_inventory_item(
    conn: sqlite3.Connection, variant_id: int, fields: dict[str, Any]
) -> None:
    values = {key: fields[key] for key in INVENTORY_ITEM_COLUMNS if key in fields}
    if not values:
        return
    current = {**inventory_item_of(conn, variant_id), **values}
    conn.execute(
        "INSERT INTO sb_inventory_items (variant_id, tracked, requires_shipping, weight_value,"
        " weight_unit, updated_at) VALUES (?, ?, ?, ?, ?, ?)"
        " ON CONFLICT (variant_id) DO UPDATE SET tracked = excluded.tracked,"
        " requires_shipping = excluded.requires_shipping, weight_value = excluded.weight_value,"
        " weight_unit = excluded.weight_unit, updated_at = excluded.updated_at",
        (
            variant_id,
            current["tracked"],
            current["requires_shipping"],
            current["weight_value"],
            current["weight_unit"],
            utcnow_iso(),
        ),
    )


def delete_metafields_except(
    conn: sqlite3.Connection, owner_type: str, owner_id: int, keep: set[tuple[str, str]]
) -> None:
    """Delete the owner's metafields whose (namespace, key) is not in ``keep``."""
    for row in metafields_of(conn, owner_type, owner_id):
        if (row["namespace"], row["key"]) not in keep:
            conn.execute("DELETE FROM sb_metafields WHERE id = ?", (row["id"],))


def tags_list(raw: str) -> list[str]:
    loaded = json.loads(raw)
    return [str(tag) for tag in loaded]


def normalize_tags(tags: Sequence[str]) -> list[str]:
    """Shopify trims tags, drops empty ones and duplicates (case-insensitively), keeps order."""
    seen: set[str] = set()
    result: list[str] = []
    for tag in tags:
        for part in tag.split(","):
            clean = part.strip()
            if clean and clean.lower() not in seen:
                seen.add(clean.lower())
                result.append(clean)
    return sorted(result, key=str.lower)
