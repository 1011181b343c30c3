"""The eManageCRM/CTRwow settings: sandbox defaults, generated system clients, production."""

from __future__ import annotations

import stat
from pathlib import Path

import pytest

from syncapp.config import ensure_embedded_secrets, load_settings
from syncapp.errors import ConfigError


def test_the_sandboxes_are_the_default_systems(tmp_path: Path) -> None:
    """With SYNCAPP_SANDBOX on, both base URLs point at the local sandboxes' ports."""
    settings = load_settings(data_dir=tmp_path, sandbox_ctrwow_port=8399)
    assert settings.emanage_base_url == "http://127.0.0.1:8200"
    assert settings.ctrwow_base_url == "http://127.0.0.1:8399"
    assert settings.ctrwow_redirect_uri == "http://127.0.0.1:8000/ctrwow/callback"


def test_embedded_system_clients_are_generated_once_and_private(tmp_path: Path) -> None:
    """Client ids and secrets are created under the data dir (0600) and reused next start."""
    first = ensure_embedded_secrets(load_settings(data_dir=tmp_path))
    second = ensure_embedded_secrets(load_settings(data_dir=tmp_path))
    assert first.emanage_client_id.startswith("syncapp-emanage-")
    assert first.ctrwow_client_id == second.ctrwow_client_id
    assert first.emanage_client_secret is not None
    assert second.emanage_client_secret is not None
    assert (
        first.emanage_client_secret.get_secret_value()
        == second.emanage_client_secret.get_secret_value()
    )
    assert stat.S_IMODE((tmp_path / "ctrwow_client_secret").stat().st_mode) == 0o600


def test_nothing_is_generated_without_the_sandboxes(tmp_path: Path) -> None:
    """Against real systems the credentials must come from the environment."""
    settings = ensure_embedded_secrets(load_settings(data_dir=tmp_path, sandbox=False))
    assert settings.emanage_client_secret is None
    assert not (tmp_path / "emanage_client_secret").exists()


def test_production_names_every_missing_emanage_and_ctrwow_variable() -> None:
    """The error lists the base URLs, client ids and secrets of both systems."""
    with pytest.raises(ConfigError) as raised:
        load_settings(env="production", sandbox=False, secret_key="k", shopify_client_secret="s")
    for name in (
        "SYNCAPP_EMANAGE_BASE_URL",
        "SYNCAPP_EMANAGE_CLIENT_ID",
        "SYNCAPP_EMANAGE_CLIENT_SECRET",
        "SYNCAPP_EMANAGE_WEBHOOK_SECRET",
        "SYNCAPP_CTRWOW_BASE_URL",
        "SYNCAPP_CTRWOW_CLIENT_ID",
        "SYNCAPP_CTRWOW_CLIENT_SECRET",
    ):
        assert name in str(raised.value)


def test_secrets_of_both_systems_are_masked_in_repr() -> None:
    """repr(settings) never shows the eManageCRM or CTRwow client secret."""
    settings = load_settings(
        emanage_client_secret="emanage-secret-value", ctrwow_client_secret="ctrwow-secret-value"
    )
    assert "emanage-secret-value" not in repr(settings)
    assert "ctrwow-secret-value" not in repr(settings)
