"""The eManageCRM sandbox's state: one SQLite file, so a restarted sandbox keeps its accounts,
users, tokens, links and providers.

All access goes through :meth:`EmanageDB.transaction`, which serialises writers and commits or
rolls back as a unit: an idempotent write and the stored answer to its key land together.
"""

from __future__ import annotations

from pathlib import Path

from syncapp.sandbox.emanage import events, notification_tables
from syncapp.sandbox.sqlite import SQLiteStore

SCHEMA = """
CREATE TABLE IF NOT EXISTS accounts (
    id TEXT PRIMARY KEY,                  -- GUID
    kind TEXT NOT NULL,                   -- shared | dedicated
    status TEXT NOT NULL DEFAULT 'active',-- active | suspended | closed
    name TEXT NOT NULL,
    email TEXT NOT NULL,
    currency TEXT NOT NULL,
    shop_domain TEXT UNIQUE,              -- NULL for a dedicated subscription not linked yet
    cid TEXT NOT NULL UNIQUE,             -- X_CID of the Web Sales API
    owner_client_id TEXT,                 -- the system client that created or linked it
    subscription_id TEXT UNIQUE,          -- dedicated only
    created_at REAL NOT NULL
);
-- A shared tenant closed when its shop linked a dedicated subscription gives up its
-- shop_domain (unique: the shop's one account); the shop it served is kept here.
CREATE TABLE IF NOT EXISTS closed_accounts (
    account_id TEXT PRIMARY KEY REFERENCES accounts(id),
    shop_domain TEXT NOT NULL,
    replaced_by TEXT NOT NULL REFERENCES accounts(id),
    closed_at REAL NOT NULL
);
CREATE TABLE IF NOT EXISTS link_codes (
    code_hash TEXT PRIMARY KEY,
    account_id TEXT NOT NULL REFERENCES accounts(id),
    expires_at REAL NOT NULL,
    used_at REAL
);
CREATE TABLE IF NOT EXISTS tokens (
    token_hash TEXT PRIMARY KEY,
    client_id TEXT NOT NULL,
    account_id TEXT,                      -- NULL: a system token
    scopes TEXT NOT NULL,
    issued_at REAL NOT NULL,
    expires_at REAL NOT NULL
);
CREATE TABLE IF NOT EXISTS users (
    id TEXT PRIMARY KEY,
    account_id TEXT NOT NULL REFERENCES accounts(id),
    email TEXT NOT NULL,
    name TEXT NOT NULL,
    role TEXT NOT NULL,
    created_at REAL NOT NULL,
    UNIQUE (account_id, email)
);
CREATE TABLE IF NOT EXISTS sso_links (
    token_hash TEXT PRIMARY KEY,
    account_id TEXT NOT NULL REFERENCES accounts(id),
    user_id TEXT NOT NULL REFERENCES users(id),
    redirect_path TEXT NOT NULL,
    expires_at REAL NOT NULL,
    used_at REAL
);
CREATE TABLE IF NOT EXISTS sessions (
    id_hash TEXT PRIMARY KEY,
    account_id TEXT NOT NULL REFERENCES accounts(id),
    user_id TEXT NOT NULL REFERENCES users(id),
    csrf_token TEXT NOT NULL,
    expires_at REAL NOT NULL
);
CREATE TABLE IF NOT EXISTS payment_providers (
    id INTEGER PRIMARY KEY AUTOINCREMENT,
    account_id TEXT NOT NULL REFERENCES accounts(id),
    name TEXT NOT NULL,
    type TEXT NOT NULL,
    category TEXT NOT NULL,
    currency TEXT NOT NULL,
    is_active INTEGER NOT NULL DEFAULT 0,
    created_at REAL NOT NULL,
    updated_at REAL NOT NULL
);
CREATE TABLE IF NOT EXISTS mids (
    id INTEGER PRIMARY KEY AUTOINCREMENT,
    provider_id INTEGER NOT NULL REFERENCES payment_providers(id),
    mid TEXT NOT NULL,
    descriptor TEXT,
    is_active INTEGER NOT NULL DEFAULT 1,
    is_main INTEGER NOT NULL DEFAULT 1,
    monthly_cap_usd REAL
);
CREATE TABLE IF NOT EXISTS idempotency_keys (
    client_id TEXT NOT NULL,
    key TEXT NOT NULL,
    fingerprint TEXT NOT NULL,
    status INTEGER NOT NULL,
    body TEXT NOT NULL,
    headers TEXT NOT NULL,
    created_at REAL NOT NULL,
    PRIMARY KEY (client_id, key)
);
CREATE TABLE IF NOT EXISTS campaigns (
    id INTEGER PRIMARY KEY AUTOINCREMENT,
    account_id TEXT NOT NULL REFERENCES accounts(id),
    web_key TEXT NOT NULL UNIQUE,         -- upper-case GUID, as live pages carry it
    name TEXT NOT NULL,
    language_code TEXT NOT NULL,
    currency TEXT NOT NULL,
    status TEXT NOT NULL,                 -- Pending | Active with Traffic
    countries TEXT NOT NULL,              -- JSON list of ISO country codes, first = default
    created_at REAL NOT NULL
);
CREATE TABLE IF NOT EXISTS campaign_products (
    product_id INTEGER PRIMARY KEY AUTOINCREMENT,
    campaign_id INTEGER NOT NULL REFERENCES campaigns(id),
    name TEXT NOT NULL,
    sku TEXT NOT NULL,
    quantity INTEGER NOT NULL,
    price REAL NOT NULL,
    full_retail_price REAL NOT NULL,
    shipping_price REAL NOT NULL,
    shipping_method_id INTEGER NOT NULL,
    shipping_name TEXT NOT NULL,
    message TEXT,
    position INTEGER NOT NULL,
    -- A package of a synced product's variant: name, SKU and prices come from the variant.
    variant_id INTEGER REFERENCES product_variants(id) ON DELETE SET NULL
);
-- Product ids look like eManageCRM's (six digits) rather than 1, 2, 3.
INSERT INTO sqlite_sequence (name, seq) SELECT 'campaign_products', 917700
    WHERE NOT EXISTS (SELECT 1 FROM sqlite_sequence WHERE name = 'campaign_products');
INSERT INTO sqlite_sequence (name, seq) SELECT 'payment_providers', 100
    WHERE NOT EXISTS (SELECT 1 FROM sqlite_sequence WHERE name = 'payment_providers');
-- Products (products.py): the catalogue the Sync App keeps in step with Shopify.
CREATE TABLE IF NOT EXISTS products (
    id INTEGER PRIMARY KEY AUTOINCREMENT, -- productId (answered as a string)
    account_id TEXT NOT NULL REFERENCES accounts(id),
    version INTEGER NOT NULL,
    name TEXT NOT NULL,
    status TEXT NOT NULL,                 -- active | archived
    draft INTEGER NOT NULL,
    description TEXT NOT NULL,
    vendor TEXT NOT NULL,
    product_type TEXT NOT NULL,
    options TEXT NOT NULL,                -- JSON [{name, values}]
    image_url TEXT,
    currency TEXT NOT NULL,
    shopify_product_id TEXT,
    last_write_origin TEXT,
    created_at REAL NOT NULL,
    updated_at REAL NOT NULL
);
CREATE INDEX IF NOT EXISTS products_by_update ON products (account_id, updated_at, id);
CREATE INDEX IF NOT EXISTS products_by_shopify_id ON products (account_id, shopify_product_id);
CREATE TABLE IF NOT EXISTS product_variants (
    id INTEGER PRIMARY KEY AUTOINCREMENT, -- variantId (answered as a string)
    product_id INTEGER NOT NULL REFERENCES products(id),
    position INTEGER NOT NULL,
    sku TEXT,
    options TEXT NOT NULL,                -- JSON list of option values
    weight_value TEXT,                    -- decimal text
    weight_unit TEXT,                     -- g | kg | oz | lb
    price TEXT NOT NULL,                  -- DiscountedPrice.Value, decimal text
    full_retail_price TEXT,               -- FullRetailPrice.Value, decimal text, or NULL
    shopify_variant_id TEXT
);
CREATE INDEX IF NOT EXISTS product_variants_by_product ON product_variants (product_id, position);
CREATE INDEX IF NOT EXISTS product_variants_by_sku ON product_variants (sku);
-- Ids look like eManageCRM's (seven digits) rather than 1, 2, 3.
INSERT INTO sqlite_sequence (name, seq) SELECT 'products', 3100000
    WHERE NOT EXISTS (SELECT 1 FROM sqlite_sequence WHERE name = 'products');
INSERT INTO sqlite_sequence (name, seq) SELECT 'product_variants', 5200000
    WHERE NOT EXISTS (SELECT 1 FROM sqlite_sequence WHERE name = 'product_variants');
"""


class EmanageDB(SQLiteStore):
    """The eManageCRM sandbox's database."""

    def __init__(self, path: Path | str) -> None:
        super().__init__(path, [SCHEMA, events.SCHEMA, notification_tables.SCHEMA])
        with self.transaction() as conn:
            # A sandbox file from before products: CREATE TABLE IF NOT EXISTS kept its old
            # campaign_products, which gets the column (state survives an upgrade too).
            columns = {r["name"] for r in conn.execute("PRAGMA table_info(campaign_products)")}
            if "variant_id" not in columns:
                conn.execute(
                    "ALTER TABLE campaign_products ADD COLUMN variant_id INTEGER"
                    " REFERENCES product_variants(id) ON DELETE SET NULL"
                )
