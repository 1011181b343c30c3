"""The tables of webhook subscriptions and their delivery state (``subscriptions.py`` writes the
subscriptions, ``delivery.py`` the state). Apart from both so that ``db.py`` can create them
without importing the handlers."""

SCHEMA = """
CREATE TABLE IF NOT EXISTS webhook_subscriptions (
    id TEXT PRIMARY KEY,                  -- GUID
    client_id TEXT NOT NULL,              -- the system client; hears every account it owns
    url TEXT NOT NULL,
    event_types TEXT NOT NULL,            -- JSON list
    secret TEXT NOT NULL,                 -- kept retrievable: the sender must sign with it
    created_at REAL NOT NULL,
    updated_at REAL NOT NULL,
    -- Delivery state (delivery.py): every outbox row up to delivered_seq is settled
    -- (delivered, or given up after the last retry); the next one has had `attempts` tries.
    delivered_seq INTEGER NOT NULL,
    attempts INTEGER NOT NULL DEFAULT 0,
    next_attempt_at REAL NOT NULL DEFAULT 0,
    last_attempt_at REAL,
    last_status_code INTEGER,
    last_error TEXT,
    delivered_count INTEGER NOT NULL DEFAULT 0,
    failed_count INTEGER NOT NULL DEFAULT 0,
    UNIQUE (client_id, url)
);
-- Every POST the deliverer made (kind: delivery | duplicate | replay), newest kept.
CREATE TABLE IF NOT EXISTS webhook_attempts (
    id INTEGER PRIMARY KEY AUTOINCREMENT,
    subscription_id TEXT NOT NULL,
    seq INTEGER NOT NULL,
    event_id TEXT NOT NULL,
    kind TEXT NOT NULL,
    signed_at INTEGER NOT NULL,
    status_code INTEGER,
    error TEXT,
    at REAL NOT NULL
);
CREATE INDEX IF NOT EXISTS webhook_attempts_by_subscription
    ON webhook_attempts (subscription_id, id);
-- Events given up after the last retry (the cursor moved past them).
CREATE TABLE IF NOT EXISTS webhook_failed_events (
    subscription_id TEXT NOT NULL,
    seq INTEGER NOT NULL,
    event_id TEXT NOT NULL,
    attempts INTEGER NOT NULL,
    last_error TEXT,
    failed_at REAL NOT NULL,
    PRIMARY KEY (subscription_id, seq)
);
"""
