"""Issue 7 item 8: ``/metrics`` is behind a bearer token, and refused in production without one."""

from __future__ import annotations

from collections.abc import Iterator
from contextlib import contextmanager
from pathlib import Path

from starlette.testclient import TestClient

from syncapp.store.db import make_engine
from syncapp.store.migrate import upgrade
from syncapp.web.app import create_app
from tests.conftest import make_settings

TOKEN = "metrics-token-0123456789"
PRODUCTION = {
    "env": "production",
    "sandbox": False,
    "emanage_base_url": "https://emanage.example.com",
    "emanage_client_id": "id",
    "emanage_client_secret": "secret",
    "emanage_webhook_secret": "whsec_production_0123456789abcdef0123456789",
    "ctrwow_base_url": "https://ctrwow.example.com",
    "ctrwow_client_id": "id",
    "ctrwow_client_secret": "secret",
}


@contextmanager
def _client(tmp_path: Path, **overrides: object) -> Iterator[TestClient]:
    settings = make_settings(tmp_path, **overrides)
    engine = make_engine(settings.database_url)
    upgrade(engine)
    engine.dispose()
    with TestClient(create_app(settings)) as client:
        yield client


def test_with_a_token_metrics_need_it(tmp_path: Path) -> None:
    with _client(tmp_path, metrics_token=TOKEN) as client:
        assert client.get("/metrics").status_code == 401
        assert client.get("/metrics", headers={"Authorization": "Bearer wrong"}).status_code == 401
        assert client.get("/metrics", headers={"Authorization": TOKEN}).status_code == 401
        ok = client.get("/metrics", headers={"Authorization": f"Bearer {TOKEN}"})
        assert ok.status_code == 200
        assert "syncapp_http_request_seconds" in ok.text


def test_production_without_a_token_refuses_metrics(tmp_path: Path) -> None:
    with _client(tmp_path, **PRODUCTION) as client:
        response = client.get("/metrics")
        assert response.status_code == 403
        assert "SYNCAPP_METRICS_TOKEN" in response.text
        assert "syncapp_" not in response.text


def test_production_with_a_token_serves_metrics_to_its_bearer(tmp_path: Path) -> None:
    with _client(tmp_path, metrics_token=TOKEN, **PRODUCTION) as client:
        assert client.get("/metrics").status_code == 401
        headers = {"Authorization": f"Bearer {TOKEN}"}
        assert client.get("/metrics", headers=headers).status_code == 200
