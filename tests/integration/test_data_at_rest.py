"""Issue 7 item 7: customer data at rest.

Orders, customers and compliance payloads are stored encrypted under the vault's keys: the raw
SQLite files (database, WAL, shared memory) and a pg_dump of PostgreSQL hold neither the
buyer's e-mail nor phone, while the worker still reads them (a data request finds the order).
``syncapp vault rotate`` re-encrypts them. Databases, exports and sandbox databases are
created owner-only (files 0600, directories 0700).
"""

from __future__ import annotations

import json
import os
import stat
import subprocess
import sys
from collections.abc import Iterator
from contextlib import contextmanager
from pathlib import Path

from cryptography.fernet import Fernet
from sqlalchemy import select
from starlette.testclient import TestClient

from syncapp.bus.models import InboundEvent
from syncapp.bus.sealed import SEALED_PREFIX, unseal
from syncapp.config import Settings
from syncapp.shops.runtime import ShopsRuntime
from syncapp.store.db import make_engine
from syncapp.store.migrate import upgrade
from syncapp.store.vault import Vault
from syncapp.web.app import create_app
from syncapp.worker import Worker, WorkerOptions
from tests.builders import order_payload, product_payload, signed_delivery
from tests.conftest import CLIENT_SECRET, make_settings

SHOP = "demo.myshopify.com"
ORDER = order_payload()
EMAIL = ORDER["email"]
PHONE = ORDER["phone"]


@contextmanager
def _app(settings: Settings) -> Iterator[TestClient]:
    engine = make_engine(settings.database_url)
    upgrade(engine)
    engine.dispose()
    with TestClient(create_app(settings)) as client:
        yield client


def _deliver_customer_data(client: TestClient) -> None:
    """An order naming the buyer, a data request and a redaction request for them."""
    customer = {"id": ORDER["customer"]["id"], "email": EMAIL, "phone": PHONE}
    compliance = {"shop_id": 1, "shop_domain": SHOP, "customer": customer}
    deliveries = [
        ("products/update", product_payload()),
        ("orders/create", ORDER),
        (
            "customers/data_request",
            {**compliance, "orders_requested": [ORDER["id"]], "data_request": {"id": 31}},
        ),
    ]
    for topic, payload in deliveries:
        body, headers = signed_delivery(CLIENT_SECRET, topic=topic, shop=SHOP, payload=payload)
        assert client.post("/webhooks/shopify", content=body, headers=headers).status_code == 200


def _process(settings: Settings) -> None:
    engine = make_engine(settings.database_url)
    try:
        worker = Worker(ShopsRuntime.from_settings(settings, engine), options=WorkerOptions())
        while worker.run_once():
            pass
    finally:
        engine.dispose()


def _check_export_found_the_order(settings: Settings) -> None:
    export = json.loads((settings.exports_dir / SHOP / "31.json").read_text())
    assert [e["payload"]["id"] for e in export["inbound_events"]] == [ORDER["id"]]


def _check_stored_forms(settings: Settings) -> None:
    engine = make_engine(settings.database_url)
    try:
        with engine.connect() as conn:
            stored = dict(conn.execute(select(InboundEvent.topic, InboundEvent.payload)).all())
    finally:
        engine.dispose()
    assert stored["orders/create"].startswith(SEALED_PREFIX)
    assert stored["customers/data_request"].startswith(SEALED_PREFIX)
    assert stored["products/update"].startswith("{")


def test_the_raw_sqlite_files_hold_no_customer_email_or_phone(tmp_path: Path) -> None:
    settings = make_settings(tmp_path)
    with _app(settings) as client:
        _deliver_customer_data(client)
        _process(settings)
        database = Path(settings.database_url.removeprefix("sqlite:///"))
        files = [p for p in database.parent.iterdir() if p.name.startswith(database.name)]
        assert {p.name.removeprefix(database.name) for p in files} >= {"", "-wal"}
        for path in files:
            raw = path.read_bytes()
            for needle in (EMAIL, PHONE, EMAIL.split("@")[0]):
                assert needle.encode() not in raw, f"{needle} in {path.name}"
    _check_stored_forms(settings)
    _check_export_found_the_order(settings)


def test_a_postgresql_dump_holds_no_customer_email_or_phone(
    tmp_path: Path, postgres_url: str
) -> None:
    settings = make_settings(tmp_path, database_url=postgres_url)
    with _app(settings) as client:
        _deliver_customer_data(client)
    _process(settings)
    dump = subprocess.run(
        ["pg_dump", "--no-owner", postgres_url], capture_output=True, check=True, timeout=60
    ).stdout
    assert b"inbound_events" in dump
    for needle in (EMAIL, PHONE, EMAIL.split("@")[0]):
        assert needle.encode() not in dump, needle
    _check_stored_forms(settings)
    _check_export_found_the_order(settings)


def test_vault_rotate_reencrypts_sealed_payloads(tmp_path: Path) -> None:
    old_key = Fernet.generate_key().decode()
    settings = make_settings(tmp_path, secret_key=old_key)
    with _app(settings) as client:
        _deliver_customer_data(client)
    # One stored in plaintext, as before payloads were sealed.
    legacy = json.dumps(order_payload(42, email="legacy@example.com"))
    engine = make_engine(settings.database_url)
    with engine.begin() as conn:
        conn.execute(
            InboundEvent.__table__.insert().values(
                source="shopify",
                shop_domain=SHOP,
                topic="orders/updated",
                delivery_id="legacy-1",
                payload=legacy,
                status="pending",
                attempts=0,
            )
        )
    engine.dispose()
    new_key = Fernet.generate_key().decode()
    env = {
        **os.environ,
        "SYNCAPP_DATA_DIR": str(tmp_path),
        "SYNCAPP_DATABASE_URL": settings.database_url,
        "SYNCAPP_SECRET_KEY": f"{new_key},{old_key}",
        "SYNCAPP_SHOPIFY_CLIENT_SECRET": CLIENT_SECRET,
    }
    done = subprocess.run(
        [sys.executable, "-m", "syncapp.cli", "vault", "rotate"],
        env=env,
        capture_output=True,
        text=True,
        timeout=120,
    )
    assert done.returncode == 0, done.stderr
    assert "3 webhook payload(s)" in done.stderr
    engine = make_engine(settings.database_url)
    with engine.connect() as conn:
        stored = dict(conn.execute(select(InboundEvent.topic, InboundEvent.payload)).all())
    engine.dispose()
    only_new = Vault(new_key)
    assert json.loads(unseal(only_new, stored["orders/create"]))["email"] == EMAIL
    assert stored["orders/updated"].startswith(SEALED_PREFIX)
    assert unseal(only_new, stored["orders/updated"]) == legacy


def _mode(path: Path) -> int:
    return stat.S_IMODE(path.stat().st_mode)


def test_databases_and_exports_are_created_owner_only(tmp_path: Path) -> None:
    """With a permissive umask: the data directory, the database and its WAL, shared memory
    and write lock, and the export and its directories are private to the user."""
    previous = os.umask(0o022)
    try:
        data_dir = tmp_path / "var"
        settings = make_settings(data_dir)
        with _app(settings) as client:
            _deliver_customer_data(client)
            _process(settings)
            database = data_dir / "syncapp.db"
            assert _mode(data_dir) == 0o700
            for suffix in ("", "-wal", "-shm", ".write-lock"):
                assert _mode(Path(f"{database}{suffix}")) == 0o600, suffix
        export = settings.exports_dir / SHOP / "31.json"
        assert _mode(export) == 0o600
        assert _mode(export.parent) == 0o700
        assert _mode(settings.exports_dir) == 0o700
    finally:
        os.umask(previous)


def test_an_existing_world_readable_database_is_tightened(tmp_path: Path) -> None:
    database = tmp_path / "old.db"
    database.touch(mode=0o644)
    os.chmod(database, 0o644)
    make_engine(f"sqlite:///{database}").dispose()
    assert _mode(database) == 0o600


def test_sandbox_databases_are_created_owner_only(tmp_path: Path) -> None:
    from syncapp.sandbox.ctrwow.db import SandboxDB as CtrwowDB
    from syncapp.sandbox.emanage.db import EmanageDB
    from syncapp.sandbox.shopify.db import SandboxDB

    previous = os.umask(0o022)
    try:
        for name, store in (
            ("shopify", SandboxDB),
            ("emanage", EmanageDB),
            ("ctrwow", CtrwowDB),
        ):
            path = tmp_path / "sandbox" / f"{name}.db"
            db = store(path)
            try:
                with db.transaction() as conn:
                    conn.execute("SELECT 1")
                for suffix in ("", "-wal", "-shm"):
                    assert _mode(Path(f"{path}{suffix}")) == 0o600, (name, suffix)
            finally:
                db.close()
        assert _mode(tmp_path / "sandbox") == 0o700
    finally:
        os.umask(previous)
