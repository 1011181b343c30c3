"""POST /webhooks/shopify: verified deliveries are stored once; every refusal stores nothing."""

from __future__ import annotations

import shutil
import sqlite3
from collections.abc import Iterator
from concurrent.futures import ThreadPoolExecutor
from pathlib import Path

import pytest
from prometheus_client import REGISTRY
from sqlalchemy import func, select
from starlette.testclient import TestClient

from syncapp.bus.models import InboundEvent
from syncapp.config import Settings
from syncapp.store.db import make_engine
from syncapp.store.migrate import upgrade
from syncapp.web.app import create_app
from tests.builders import shopify_hmac, signed_delivery
from tests.conftest import CLIENT_SECRET, OLD_CLIENT_SECRET, make_settings
from tests.waiting import wait_until

URL = "/webhooks/shopify"


def _client(settings: Settings) -> Iterator[TestClient]:
    engine = make_engine(settings.database_url)
    upgrade(engine)
    engine.dispose()
    with TestClient(create_app(settings)) as client:
        yield client


@pytest.fixture
def client(tmp_path: Path) -> Iterator[TestClient]:
    yield from _client(
        make_settings(tmp_path, shopify_old_client_secret=OLD_CLIENT_SECRET, webhook_max_bytes=4096)
    )


def stored(client: TestClient) -> list[InboundEvent]:
    engine = client.app.state.engine  # type: ignore[attr-defined]
    with engine.connect() as conn:
        return list(conn.execute(select(InboundEvent).order_by(InboundEvent.id)).all())


def count(client: TestClient) -> int:
    engine = client.app.state.engine  # type: ignore[attr-defined]
    with engine.connect() as conn:
        return int(conn.execute(select(func.count()).select_from(InboundEvent)).scalar_one())


def test_a_signed_delivery_is_stored_with_its_headers(client: TestClient) -> None:
    """A valid products/update is acknowledged 200 and recorded with topic, shop and ids."""
    body, headers = signed_delivery(CLIENT_SECRET, webhook_id="wh-1", event_id="ev-1")
    response = client.post(URL, content=body, headers=headers)
    assert response.status_code == 200
    rows = stored(client)
    assert len(rows) == 1
    row = rows[0]
    assert (row.topic, row.shop_domain, row.delivery_id, row.event_id) == (
        "products/update",
        "demo.myshopify.com",
        "wh-1",
        "ev-1",
    )
    assert row.payload == body.decode()
    assert row.status == "pending"


def test_a_redelivery_is_acknowledged_but_stored_once(client: TestClient) -> None:
    """The same X-Shopify-Webhook-Id twice gives 200 twice and one row."""
    body, headers = signed_delivery(CLIENT_SECRET)
    assert client.post(URL, content=body, headers=headers).status_code == 200
    assert client.post(URL, content=body, headers=headers).status_code == 200
    assert count(client) == 1


def test_one_event_delivered_twice_under_new_delivery_ids_is_stored_once(
    client: TestClient,
) -> None:
    """Same X-Shopify-Event-Id and topic with a different webhook id is a duplicate."""
    body, first = signed_delivery(CLIENT_SECRET, webhook_id="wh-a", event_id="ev-same")
    _, second = signed_delivery(CLIENT_SECRET, webhook_id="wh-b", event_id="ev-same")
    assert client.post(URL, content=body, headers=first).status_code == 200
    assert client.post(URL, content=body, headers=second).status_code == 200
    assert count(client) == 1


def test_a_delivery_signed_with_the_previous_secret_is_accepted(client: TestClient) -> None:
    """During secret rotation Shopify may still sign with the old secret."""
    body, headers = signed_delivery(OLD_CLIENT_SECRET)
    assert client.post(URL, content=body, headers=headers).status_code == 200
    assert count(client) == 1


@pytest.mark.parametrize(
    "topic", ["products/update", "customers/data_request", "customers/redact", "shop/redact"]
)
def test_a_forged_signature_is_401_and_stores_nothing(client: TestClient, topic: str) -> None:
    """A body signed with another secret is Unauthorized, compliance topics included."""
    body, headers = signed_delivery("not-the-secret", topic=topic)
    assert client.post(URL, content=body, headers=headers).status_code == 401
    assert count(client) == 0


def test_a_missing_signature_is_401_and_stores_nothing(client: TestClient) -> None:
    """No X-Shopify-Hmac-Sha256 header at all is Unauthorized."""
    body, headers = signed_delivery(CLIENT_SECRET)
    del headers["X-Shopify-Hmac-Sha256"]
    assert client.post(URL, content=body, headers=headers).status_code == 401
    assert count(client) == 0


def test_a_tampered_body_is_401(client: TestClient) -> None:
    """Changing one byte after signing breaks the signature."""
    body, headers = signed_delivery(CLIENT_SECRET)
    assert (
        client.post(URL, content=body.replace(b"Blue", b"Blux"), headers=headers).status_code == 401
    )
    assert count(client) == 0


@pytest.mark.parametrize(
    ("header", "value"),
    [
        ("X-Shopify-Topic", None),
        ("X-Shopify-Topic", "not a topic"),
        ("X-Shopify-Shop-Domain", None),
        ("X-Shopify-Shop-Domain", "evil.example.com"),
        ("X-Shopify-Shop-Domain", "demo.myshopify.com.evil.com"),
        ("X-Shopify-Webhook-Id", None),
    ],
)
def test_missing_or_invalid_routing_headers_are_400(
    client: TestClient, header: str, value: str | None
) -> None:
    """A signed body with no usable topic, shop or delivery id is a Bad Request."""
    body, headers = signed_delivery(CLIENT_SECRET)
    if value is None:
        del headers[header]
    else:
        headers[header] = value
    assert client.post(URL, content=body, headers=headers).status_code == 400
    assert count(client) == 0


@pytest.mark.parametrize("body", [b"{not json", b"[1, 2, 3]", b""])
def test_a_signed_body_that_is_not_a_json_object_is_400(client: TestClient, body: bytes) -> None:
    """Malformed JSON, a JSON array or an empty body is refused even when signed."""
    _, headers = signed_delivery(CLIENT_SECRET, body=body)
    assert client.post(URL, content=body, headers=headers).status_code == 400
    assert count(client) == 0


def test_a_body_that_is_not_utf8_is_400(client: TestClient) -> None:
    """Bytes that do not decode as UTF-8 are refused before anything else is read."""
    body = b'{"title": "\xff\xfe"}'
    _, headers = signed_delivery(CLIENT_SECRET, body=body)
    headers["X-Shopify-Hmac-Sha256"] = shopify_hmac(body, CLIENT_SECRET)
    assert client.post(URL, content=body, headers=headers).status_code == 400
    assert count(client) == 0


def test_an_oversized_body_is_413(client: TestClient) -> None:
    """A body over SYNCAPP_WEBHOOK_MAX_BYTES is refused, signed or not."""
    body, headers = signed_delivery(CLIENT_SECRET, payload={"blob": "x" * 5000})
    assert client.post(URL, content=body, headers=headers).status_code == 413
    assert count(client) == 0


def test_an_oversized_chunked_body_is_413(client: TestClient) -> None:
    """Without Content-Length the limit is enforced while streaming."""
    body, headers = signed_delivery(CLIENT_SECRET, payload={"blob": "x" * 5000})

    def chunks() -> Iterator[bytes]:
        for i in range(0, len(body), 1000):
            yield body[i : i + 1000]

    assert client.post(URL, content=chunks(), headers=headers).status_code == 413
    assert count(client) == 0


@pytest.mark.parametrize("method", ["GET", "PUT", "DELETE", "PATCH"])
def test_a_wrong_method_is_405(client: TestClient, method: str) -> None:
    """Only POST is accepted."""
    body, headers = signed_delivery(CLIENT_SECRET)
    assert client.request(method, URL, content=body, headers=headers).status_code == 405
    assert count(client) == 0


def test_the_service_keeps_serving_after_bad_input(client: TestClient) -> None:
    """After a run of refusals a valid delivery is still stored."""
    for _ in range(20):
        client.post(URL, content=b"\x00garbage", headers={"X-Shopify-Hmac-Sha256": "x"})
    body, headers = signed_delivery(CLIENT_SECRET)
    assert client.post(URL, content=body, headers=headers).status_code == 200
    assert count(client) == 1


def test_deliveries_are_stored_on_postgresql_once(tmp_path: Path, postgres_url: str) -> None:
    """The same ingest on PostgreSQL: stored once, redelivery acknowledged."""
    for client in _client(make_settings(tmp_path, database_url=postgres_url)):
        body, headers = signed_delivery(CLIENT_SECRET)
        assert client.post(URL, content=body, headers=headers).status_code == 200
        assert client.post(URL, content=body, headers=headers).status_code == 200
        assert count(client) == 1


def test_a_redelivery_under_a_new_event_id_is_stored_once(
    tmp_path: Path, database_url: str
) -> None:
    """The same X-Shopify-Webhook-Id with another X-Shopify-Event-Id: 200 twice, the first row
    only. The event-id constraint cannot catch this one; SQLite and PostgreSQL are separate
    insert paths of the ingest."""
    for client in _client(make_settings(tmp_path, database_url=database_url)):
        body, first = signed_delivery(CLIENT_SECRET, webhook_id="wh-same", event_id="ev-1")
        _, again = signed_delivery(CLIENT_SECRET, webhook_id="wh-same", event_id="ev-2")
        assert client.post(URL, content=body, headers=first).status_code == 200
        assert client.post(URL, content=body, headers=again).status_code == 200
        assert [(r.delivery_id, r.event_id) for r in stored(client)] == [("wh-same", "ev-1")]


def test_healthz_is_200_while_the_database_answers(client: TestClient) -> None:
    """/healthz reports the database up."""
    response = client.get("/healthz")
    assert response.status_code == 200
    assert response.json()["database"] == "up"


def test_healthz_is_503_when_the_database_is_gone(tmp_path: Path) -> None:
    """A database that cannot be opened makes /healthz fail."""
    missing = tmp_path / "no-such-dir" / "sub" / "x.db"
    settings = make_settings(tmp_path, database_url=f"sqlite:///{missing}")
    app = create_app(settings)
    # The engine created the directory (and an empty database); remove them so SQLite cannot
    # open the file.
    shutil.rmtree(missing.parent.parent)
    with TestClient(app) as client:
        assert client.get("/healthz").status_code == 503


def test_metrics_count_webhooks_by_outcome(client: TestClient) -> None:
    """/metrics exposes stored and refused webhooks and request latencies."""
    body, headers = signed_delivery(CLIENT_SECRET)
    client.post(URL, content=body, headers=headers)
    client.post(URL, content=body, headers={**headers, "X-Shopify-Hmac-Sha256": "bad"})
    text = client.get("/metrics").text
    assert 'syncapp_webhooks_total{outcome="stored"}' in text
    assert 'syncapp_webhooks_total{outcome="signature"}' in text
    assert 'syncapp_http_request_seconds_count{method="POST",route="/webhooks/shopify"' in text


def test_every_response_carries_a_request_id(client: TestClient) -> None:
    """A caller's sane X-Request-Id is echoed; otherwise one is generated."""
    assert (
        client.get("/healthz", headers={"X-Request-Id": "abc-123"}).headers["x-request-id"]
        == "abc-123"
    )
    assert len(client.get("/healthz").headers["x-request-id"]) == 32


def test_a_failing_database_gives_503_and_the_recorder_recovers(client: TestClient) -> None:
    """When the write fails Shopify is told to retry (503); the redelivery is then stored."""
    engine = client.app.state.engine  # type: ignore[attr-defined]
    body, headers = signed_delivery(CLIENT_SECRET)
    with engine.begin() as conn:
        conn.exec_driver_sql("ALTER TABLE inbound_events RENAME TO inbound_events_away")
    try:
        response = client.post(URL, content=body, headers=headers)
        assert response.status_code == 503
        assert response.headers["retry-after"] == "5"
    finally:
        with engine.begin() as conn:
            conn.exec_driver_sql("ALTER TABLE inbound_events_away RENAME TO inbound_events")
    assert count(client) == 0
    assert client.post(URL, content=body, headers=headers).status_code == 200
    assert count(client) == 1


def _sqlite_path(client: TestClient) -> str:
    database = client.app.state.engine.url.database  # type: ignore[attr-defined]
    assert database
    return str(database)


def test_a_webhook_waits_for_another_writer_while_the_server_keeps_answering(
    client: TestClient,
) -> None:
    """Another process holds SQLite's write lock (the worker, say): the webhook waits without
    stalling the event loop — /healthz answers meanwhile — and is stored once it is free."""
    waits_before = REGISTRY.get_sample_value("syncapp_ingest_lock_waits_total") or 0
    blocker = sqlite3.connect(_sqlite_path(client), isolation_level=None)
    blocker.execute("BEGIN IMMEDIATE")
    body, headers = signed_delivery(CLIENT_SECRET, webhook_id="wh-wait")
    try:
        with ThreadPoolExecutor(max_workers=1) as pool:
            pending = pool.submit(client.post, URL, content=body, headers=headers)
            wait_until(
                lambda: (
                    (REGISTRY.get_sample_value("syncapp_ingest_lock_waits_total") or 0)
                    > waits_before
                ),
                what="the batch found the write lock taken",
            )
            assert client.get("/healthz").status_code == 200
            assert not pending.done()
            blocker.execute("ROLLBACK")
            assert pending.result(timeout=10).status_code == 200
    finally:
        blocker.close()
    assert [row.delivery_id for row in stored(client)] == ["wh-wait"]
    assert (REGISTRY.get_sample_value("syncapp_ingest_lock_waits_total") or 0) > waits_before


def test_a_write_lock_held_too_long_gives_503_and_stores_nothing(tmp_path: Path) -> None:
    """Past SYNCAPP_INGEST_LOCK_WAIT_SECONDS the webhook is answered 503 with Retry-After,
    inside Shopify's deadline; the redelivery after the lock is released is stored."""
    for client in _client(make_settings(tmp_path, ingest_lock_wait_seconds=0.3)):
        blocker = sqlite3.connect(_sqlite_path(client), isolation_level=None)
        blocker.execute("BEGIN IMMEDIATE")
        body, headers = signed_delivery(CLIENT_SECRET, webhook_id="wh-late")
        try:
            refused = client.post(URL, content=body, headers=headers)
        finally:
            blocker.execute("ROLLBACK")
            blocker.close()
        assert refused.status_code == 503
        assert refused.headers["retry-after"] == "5"
        assert count(client) == 0
        assert client.post(URL, content=body, headers=headers).status_code == 200
        assert count(client) == 1
