"""Settings: environment variables, validation errors that name them, masked secrets."""

from __future__ import annotations

import stat
from pathlib import Path

import pytest

from syncapp.config import ensure_embedded_secrets, load_settings
from syncapp.errors import ConfigError


def test_every_field_is_read_from_its_syncapp_variable(
    monkeypatch: pytest.MonkeyPatch, tmp_path: Path
) -> None:
    """SYNCAPP_PORT and SYNCAPP_DATABASE_URL set the matching fields."""
    monkeypatch.setenv("SYNCAPP_PORT", "9123")
    monkeypatch.setenv("SYNCAPP_DATABASE_URL", "postgresql://u:pw@db.internal/sync")
    settings = load_settings(data_dir=tmp_path)
    assert settings.port == 9123
    assert settings.database_url == "postgresql://u:pw@db.internal/sync"
    assert settings.public_url == "http://127.0.0.1:9123"


def test_defaults_are_the_embedded_mode(tmp_path: Path) -> None:
    """Without variables the app runs on SQLite under the data dir with the sandboxes on."""
    settings = load_settings(data_dir=tmp_path)
    assert settings.database_url == f"sqlite:///{tmp_path / 'syncapp.db'}"
    assert settings.sandbox is True
    assert settings.port == 8000
    assert settings.shopify_base_url == "http://127.0.0.1:8100"


def test_an_invalid_value_names_the_variable(monkeypatch: pytest.MonkeyPatch) -> None:
    """A bad SYNCAPP_PORT is reported as SYNCAPP_PORT, not as a Python field."""
    monkeypatch.setenv("SYNCAPP_PORT", "eighty")
    with pytest.raises(ConfigError, match="SYNCAPP_PORT"):
        load_settings()


def test_an_unsupported_database_is_refused_by_name() -> None:
    """Only SQLite and PostgreSQL URLs are accepted for SYNCAPP_DATABASE_URL."""
    with pytest.raises(ConfigError, match="SYNCAPP_DATABASE_URL"):
        load_settings(database_url="mysql://root@localhost/x")


def test_production_refuses_to_start_without_its_secrets() -> None:
    """In production a missing key is an error naming both variables, never generated."""
    with pytest.raises(ConfigError, match="SYNCAPP_SECRET_KEY, SYNCAPP_SHOPIFY_CLIENT_SECRET"):
        load_settings(env="production", sandbox=False)


def test_secrets_and_database_password_are_masked_in_repr() -> None:
    """repr(settings) never shows a secret value or the database password."""
    settings = load_settings(
        database_url="postgresql://sync:hunter2-db@db/sync",
        secret_key="super-secret-key-value",
        shopify_client_secret="shpss_client_secret_value",
    )
    text = repr(settings)
    assert "hunter2-db" not in text
    assert "super-secret-key-value" not in text
    assert "shpss_client_secret_value" not in text
    assert "postgresql://sync:***@db/sync" in text


def test_embedded_secrets_are_generated_once_and_private(tmp_path: Path) -> None:
    """The vault key is created under the data dir with mode 0600 and reused on next start."""
    first = ensure_embedded_secrets(load_settings(data_dir=tmp_path))
    second = ensure_embedded_secrets(load_settings(data_dir=tmp_path))
    assert first.secret_key is not None
    assert second.secret_key is not None
    assert first.secret_key.get_secret_value() == second.secret_key.get_secret_value()
    mode = stat.S_IMODE((tmp_path / "secret.key").stat().st_mode)
    assert mode == 0o600
