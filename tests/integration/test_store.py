"""Migrations, models and the vault on a real database (SQLite and PostgreSQL)."""

from __future__ import annotations

import subprocess
from pathlib import Path

import pytest
from cryptography.fernet import Fernet
from sqlalchemy import inspect, select
from sqlalchemy.exc import IntegrityError

from syncapp.schema import model_differences
from syncapp.store.db import make_engine, make_session_factory
from syncapp.store.migrate import downgrade, upgrade
from syncapp.store.models import Credential, Shop
from syncapp.store.vault import Vault, get_secret, put_secret, rotate_all
from tests.subprocesses import child_env

TOKEN = "shpat_live_token_do_not_leak_8f3a9c1e5d7b"


def test_migrations_create_exactly_the_models(database_url: str) -> None:
    """After upgrade, autogenerate finds nothing to add: models and migrations agree."""
    engine = make_engine(database_url)
    upgrade(engine)
    assert model_differences(engine) == []
    assert {"shops", "credentials", "inbound_events"} <= set(inspect(engine).get_table_names())
    engine.dispose()


def test_a_model_change_without_migration_is_detected(database_url: str) -> None:
    """An empty database differs from the models, so the check can fail."""
    engine = make_engine(database_url)
    assert model_differences(engine) != []
    engine.dispose()


def test_migrations_downgrade_to_nothing_and_upgrade_again(database_url: str) -> None:
    """Every migration can be undone and reapplied."""
    engine = make_engine(database_url)
    upgrade(engine)
    downgrade(engine, "base")
    assert "shops" not in inspect(engine).get_table_names()
    upgrade(engine)
    assert model_differences(engine) == []
    engine.dispose()


def _store_token(database_url: str, keys: str) -> None:
    engine = make_engine(database_url)
    upgrade(engine)
    with make_session_factory(engine).begin() as session:
        shop = Shop(domain="demo.myshopify.com")
        session.add(shop)
        session.flush()
        put_secret(
            session,
            Vault(keys),
            shop_id=shop.id,
            provider="shopify",
            name="offline_token",
            value=TOKEN,
        )
    engine.dispose()


def test_a_stored_token_reads_back_through_the_vault(database_url: str) -> None:
    """put_secret then get_secret returns the plaintext; the row holds ciphertext."""
    key = Fernet.generate_key().decode()
    _store_token(database_url, key)
    engine = make_engine(database_url)
    with make_session_factory(engine)() as session:
        shop_id = session.scalars(select(Shop.id)).one()
        got = get_secret(
            session, Vault(key), shop_id=shop_id, provider="shopify", name="offline_token"
        )
        row = session.scalars(select(Credential)).one()
    assert got == TOKEN
    assert TOKEN.encode() not in row.ciphertext
    engine.dispose()


def test_the_raw_sqlite_file_never_contains_a_stored_token(tmp_path: Path) -> None:
    """Searching the database file and its WAL byte by byte does not find the token."""
    url = f"sqlite:///{tmp_path / 'vault.db'}"
    _store_token(url, Fernet.generate_key().decode())
    files = [p for p in tmp_path.iterdir() if p.name.startswith("vault.db")]
    assert files
    for path in files:
        assert TOKEN.encode() not in path.read_bytes()


def test_a_postgresql_dump_never_contains_a_stored_token(postgres_url: str) -> None:
    """pg_dump of the whole database does not contain the token."""
    _store_token(postgres_url, Fernet.generate_key().decode())
    dump = subprocess.run(
        ["pg_dump", "--no-owner", postgres_url], env=child_env(), check=True, capture_output=True
    ).stdout
    assert b"offline_token" in dump  # the row is there...
    assert TOKEN.encode() not in dump  # ...but not the secret


def test_rotate_all_moves_every_credential_to_the_newest_key(database_url: str) -> None:
    """After rotate_all the old key can be dropped and every secret still decrypts."""
    old, new = Fernet.generate_key().decode(), Fernet.generate_key().decode()
    _store_token(database_url, old)
    engine = make_engine(database_url)
    sessions = make_session_factory(engine)
    with sessions.begin() as session:
        assert rotate_all(session, Vault(f"{new},{old}"), batch_size=1) == 1
    with sessions.begin() as session:
        assert rotate_all(session, Vault(f"{new},{old}")) == 0
    with sessions() as session:
        shop_id = session.scalars(select(Shop.id)).one()
        assert (
            get_secret(
                session, Vault(new), shop_id=shop_id, provider="shopify", name="offline_token"
            )
            == TOKEN
        )
    engine.dispose()


@pytest.mark.parametrize("name", ["offline_token", "refresh_token"])
def test_putting_a_secret_twice_replaces_it(tmp_path: Path, name: str) -> None:
    """One row per (shop, provider, name): a refreshed token replaces the old one."""
    key = Fernet.generate_key().decode()
    engine = make_engine(f"sqlite:///{tmp_path / 'x.db'}")
    upgrade(engine)
    vault = Vault(key)
    with make_session_factory(engine).begin() as session:
        session.add(shop := Shop(domain="a.myshopify.com"))
        session.flush()
        put_secret(session, vault, shop_id=shop.id, provider="shopify", name=name, value="one")
        put_secret(session, vault, shop_id=shop.id, provider="shopify", name=name, value="two")
        assert len(session.scalars(select(Credential)).all()) == 1
        assert get_secret(session, vault, shop_id=shop.id, provider="shopify", name=name) == "two"
    engine.dispose()


def test_a_second_system_credential_with_the_same_name_is_refused(database_url: str) -> None:
    """System rows (no shop) are unique per (provider, name) too, on both databases."""
    engine = make_engine(database_url)
    upgrade(engine)
    vault = Vault(Fernet.generate_key().decode())
    with make_session_factory(engine).begin() as session:
        put_secret(session, vault, shop_id=None, provider="emanage", name="client", value="one")
        put_secret(session, vault, shop_id=None, provider="emanage", name="client", value="two")
        put_secret(session, vault, shop_id=None, provider="ctrwow", name="client", value="three")
        assert len(session.scalars(select(Credential)).all()) == 2
    with pytest.raises(IntegrityError), make_session_factory(engine).begin() as session:
        # What a racing second writer would do: insert without seeing the first row.
        session.add(Credential(provider="emanage", name="client", ciphertext=b"x"))
    with make_session_factory(engine)() as session:
        value = get_secret(session, vault, shop_id=None, provider="emanage", name="client")
        assert value == "two"
    engine.dispose()
