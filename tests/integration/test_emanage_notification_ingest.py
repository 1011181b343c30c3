"""POST /webhooks/emanage: a signed eManageCRM notification is stored once in the bus's inbox
with its shop and partition key; every refusal (forged, stale, malformed, oversized) stores
nothing; an account no shop has is acknowledged and dropped."""

from __future__ import annotations

import time
import uuid
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import orjson
import pytest
from prometheus_client import REGISTRY
from sqlalchemy import func, select
from sqlalchemy.orm import Session
from starlette.testclient import TestClient

from syncapp.bus.models import InboundEvent
from syncapp.connectors.emanage.notifications import sign
from syncapp.onboarding.models import EmanageAccount
from syncapp.store.db import make_engine
from syncapp.store.migrate import upgrade
from syncapp.store.models import Shop
from syncapp.web.app import create_app
from tests.conftest import make_settings

URL = "/webhooks/emanage"
SECRET = "whsec_current_0123456789abcdef0123456789abcdef"
OLD_SECRET = "whsec_previous_0123456789abcdef0123456789abcd"
SHOP = "notified.myshopify.com"
ACCOUNT = "5d7e2f0a-1b2c-4d3e-8f90-a1b2c3d4e5f6"


def add_shop(engine: Any, shop: str = SHOP, account_id: str = ACCOUNT) -> None:
    with Session(engine) as session, session.begin():
        row = Shop(domain=shop)
        session.add(row)
        session.flush()
        session.add(
            EmanageAccount(
                shop_id=row.id,
                account_id=account_id,
                kind="shared",
                cid=str(uuid.uuid4()),
                websales_api_url="http://127.0.0.1:8200/api",
            )
        )


def _client(tmp_path: Path, database_url: str) -> Iterator[TestClient]:
    settings = make_settings(
        tmp_path,
        database_url=database_url,
        emanage_webhook_secret=SECRET,
        emanage_webhook_old_secret=OLD_SECRET,
        webhook_max_bytes=4096,
    )
    engine = make_engine(settings.database_url)
    upgrade(engine)
    add_shop(engine)
    engine.dispose()
    with TestClient(create_app(settings)) as c:
        yield c


@pytest.fixture
def client(tmp_path: Path) -> Iterator[TestClient]:
    yield from _client(tmp_path, f"sqlite:///{tmp_path / 'app.db'}")


@pytest.fixture
def both(tmp_path: Path, database_url: str) -> Iterator[TestClient]:
    """The app on SQLite and on PostgreSQL."""
    yield from _client(tmp_path, database_url)


def notification(
    data: dict[str, Any] | None = None, *, event_type: str = "product.updated", **over: Any
) -> dict[str, Any]:
    return {
        "id": str(uuid.uuid4()),
        "type": event_type,
        "occurredAt": "2026-12-07T12:00:00Z",
        "accountId": ACCOUNT,
        "data": {"id": 917701, "name": "Blue Mug"} if data is None else data,
        **over,
    }


def signed(
    body: dict[str, Any] | bytes, secret: str = SECRET, *, at: float | None = None
) -> tuple[bytes, dict[str, str]]:
    raw = body if isinstance(body, bytes) else orjson.dumps(body)
    event_id = orjson.loads(raw)["id"] if isinstance(body, dict) else str(uuid.uuid4())
    headers = {
        "Content-Type": "application/json",
        "Emanage-Event-Id": event_id,
        "Emanage-Signature": sign(secret, int(time.time() if at is None else at), raw),
    }
    return raw, headers


def rows(client: TestClient) -> list[InboundEvent]:
    engine = client.app.state.engine  # type: ignore[attr-defined]
    with Session(engine) as session:
        return list(session.scalars(select(InboundEvent).order_by(InboundEvent.id)))


def count(client: TestClient) -> int:
    engine = client.app.state.engine  # type: ignore[attr-defined]
    with engine.connect() as conn:
        return int(conn.execute(select(func.count()).select_from(InboundEvent)).scalar_one())


def outcome(name: str) -> float:
    value = REGISTRY.get_sample_value("syncapp_emanage_notifications_total", {"outcome": name})
    return value or 0.0


def test_a_signed_notification_is_stored_for_the_accounts_shop(both: TestClient) -> None:
    body = notification({"id": 917701, "externalRefs": {"shopifyProductId": 7001234567}})
    raw, headers = signed(body)
    assert both.post(URL, content=raw, headers=headers).status_code == 200
    assert both.post(URL, content=raw, headers=headers).status_code == 200
    (row,) = rows(both)
    assert (row.source, row.shop_domain, row.topic) == ("emanage", SHOP, "product.updated")
    assert row.delivery_id == row.event_id == body["id"]
    assert row.partition_key == f"{SHOP}/Product/7001234567"
    assert row.triggered_at == "2026-12-07T12:00:00Z"
    assert orjson.loads(row.payload) == body
    assert row.status == "pending"


def test_an_unlinked_product_is_keyed_by_its_emanage_id(client: TestClient) -> None:
    raw, headers = signed(notification({"id": 917702}, event_type="product.created"))
    assert client.post(URL, content=raw, headers=headers).status_code == 200
    assert rows(client)[0].partition_key == f"{SHOP}/EmanageProduct/917702"


def test_the_previous_secret_is_accepted_during_a_rotation(client: TestClient) -> None:
    raw, headers = signed(notification(), OLD_SECRET)
    assert client.post(URL, content=raw, headers=headers).status_code == 200
    assert count(client) == 1


def test_a_redelivered_event_is_acknowledged_and_stored_once(client: TestClient) -> None:
    body = notification()
    before = outcome("duplicate")
    for _ in range(2):
        raw, headers = signed(body)  # signed anew each time, as a retry is
        assert client.post(URL, content=raw, headers=headers).status_code == 200
    assert count(client) == 1
    assert outcome("duplicate") == before + 1


@pytest.mark.parametrize(
    ("case", "reason"),
    [
        ("forged", "signature_mismatch"),
        ("other_secret", "signature_mismatch"),
        ("tampered", "signature_mismatch"),
        ("missing", "signature_missing"),
        ("malformed", "signature_malformed"),
        ("stale", "signature_stale"),
        ("future", "signature_stale"),
    ],
)
def test_a_bad_signature_is_401_and_stores_nothing(
    client: TestClient, case: str, reason: str
) -> None:
    raw, headers = signed(notification())
    if case == "forged":
        headers["Emanage-Signature"] = headers["Emanage-Signature"][:-4] + "0000"
    elif case == "other_secret":
        raw, headers = signed(notification(), "whsec_someone_else_0123456789abcdef012345")
    elif case == "tampered":
        raw = raw.replace(b"Blue Mug", b"Red Mug!")
    elif case == "missing":
        del headers["Emanage-Signature"]
    elif case == "malformed":
        headers["Emanage-Signature"] = "sha256=abc"
    elif case == "stale":
        # A minute past the tolerance: signatures carry whole seconds, so 301 s could read 300.
        raw, headers = signed(notification(), at=time.time() - 360)
    else:
        raw, headers = signed(notification(), at=time.time() + 360)
    before = outcome(reason)
    response = client.post(URL, content=raw, headers=headers)
    assert response.status_code == 401
    assert count(client) == 0
    assert outcome(reason) == before + 1


@pytest.mark.parametrize(
    "body",
    [
        b"not json",
        b"[1, 2]",
        b'{"id": "x"}',
        orjson.dumps(notification(event_type="order.created")),
        orjson.dumps(notification(accountId="not-a-guid")),
        orjson.dumps(notification(data=None) | {"data": [1]}),
        orjson.dumps(notification(occurredAt=None)),
        b"\xff\xfe" + b"{}",
    ],
)
def test_a_signed_but_malformed_body_is_400_and_stores_nothing(
    client: TestClient, body: bytes
) -> None:
    raw, headers = signed(body)
    assert client.post(URL, content=raw, headers=headers).status_code == 400
    assert count(client) == 0


def test_an_event_id_header_that_is_not_the_bodys_is_400(client: TestClient) -> None:
    raw, headers = signed(notification())
    headers["Emanage-Event-Id"] = str(uuid.uuid4())
    assert client.post(URL, content=raw, headers=headers).status_code == 400
    assert count(client) == 0


def test_an_oversized_body_is_413_before_any_signature_work(client: TestClient) -> None:
    raw, headers = signed(notification({"id": 1, "blob": "x" * 5000}))
    assert client.post(URL, content=raw, headers=headers).status_code == 413
    assert count(client) == 0


def test_an_unknown_account_is_acknowledged_and_not_stored(client: TestClient) -> None:
    before = outcome("unknown_account")
    raw, headers = signed(notification(accountId=str(uuid.uuid4())))
    assert client.post(URL, content=raw, headers=headers).status_code == 200
    assert count(client) == 0
    assert outcome("unknown_account") == before + 1


def test_other_methods_are_405(client: TestClient) -> None:
    assert client.get(URL).status_code == 405
