"""Fixtures shared by the whole suite: settings on a temporary data dir, and databases.

No ``SYNCAPP_*`` variable of the environment reaches a test: they are removed when this module
is imported (before any fixture reads settings) and again around every test, so the settings a
test builds are exactly what it names. ``SYNCAPP_TEST_POSTGRES_URL`` is the suite's own input,
read once here before that.

PostgreSQL tests use the server named by ``SYNCAPP_TEST_POSTGRES_URL`` (CI: the local server,
database ``test``); each test gets a fresh database of its own, dropped afterwards. A server
that cannot be reached fails the test: in CI a missing service is a failure, never a skip.
"""

from __future__ import annotations

import os
import uuid
from collections.abc import Iterator
from pathlib import Path

import psycopg
import pytest
from cryptography.fernet import Fernet
from sqlalchemy.engine import make_url

from syncapp.config import ENV_PREFIX, Settings, ensure_embedded_secrets, load_settings

POSTGRES_URL = os.environ.get("SYNCAPP_TEST_POSTGRES_URL", "postgresql://127.0.0.1:5432/test")
CLIENT_SECRET = "test-client-secret-0123456789abcdef"
OLD_CLIENT_SECRET = "old-client-secret-fedcba9876543210"


def _clear_syncapp_environment() -> None:
    for name in [n for n in os.environ if n.startswith(ENV_PREFIX)]:
        del os.environ[name]


_clear_syncapp_environment()


@pytest.fixture(autouse=True)
def _no_syncapp_environment() -> Iterator[None]:
    """Also what a test (or a library it calls) set in ``os.environ`` goes with it."""
    _clear_syncapp_environment()
    yield
    _clear_syncapp_environment()


def make_settings(data_dir: Path, **overrides: object) -> Settings:
    """Settings for a test: everything under ``data_dir``, a fixed Shopify secret."""
    values: dict[str, object] = {
        "data_dir": data_dir,
        "database_url": f"sqlite:///{data_dir / 'syncapp.db'}",
        "env": "test",
        "shopify_client_secret": CLIENT_SECRET,
        "secret_key": Fernet.generate_key().decode(),
        "log_level": "warning",
    }
    values.update(overrides)
    return ensure_embedded_secrets(load_settings(**values))


@pytest.fixture
def settings(tmp_path: Path) -> Settings:
    return make_settings(tmp_path)


@pytest.fixture
def postgres_url() -> Iterator[str]:
    """A fresh, empty PostgreSQL database for this test."""
    admin = make_url(POSTGRES_URL)
    name = f"syncapp_test_{uuid.uuid4().hex[:12]}"
    dsn = admin.set(drivername="postgresql").render_as_string(hide_password=False)
    with psycopg.connect(dsn, autocommit=True, connect_timeout=5) as conn:
        conn.execute(f'CREATE DATABASE "{name}"')
    try:
        yield admin.set(database=name).render_as_string(hide_password=False)
    finally:
        with psycopg.connect(dsn, autocommit=True, connect_timeout=5) as conn:
            conn.execute(f'DROP DATABASE IF EXISTS "{name}" WITH (FORCE)')


@pytest.fixture(params=["sqlite", "postgresql"])
def database_url(request: pytest.FixtureRequest, tmp_path: Path) -> str:
    """Each test using this runs on SQLite and on PostgreSQL."""
    if request.param == "sqlite":
        return f"sqlite:///{tmp_path / 'app.db'}"
    url: str = request.getfixturevalue("postgres_url")
    return url
