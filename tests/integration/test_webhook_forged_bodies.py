"""Issue 7 item 2: nothing parses a webhook body before its signature is checked.

An unsigned body is refused with 401 whatever it contains (deep nesting, a million-digit
number, a megabyte of JSON); a signed but pathological body is a 400, never a 500. The App
Home's verification does not parse the (unsigned) body either. Topics the app does not
subscribe to are acknowledged and not stored.
"""

from __future__ import annotations

from collections.abc import Iterator
from pathlib import Path

import pytest
from starlette.testclient import TestClient

from syncapp.store.db import make_engine
from syncapp.store.migrate import upgrade
from syncapp.web.app import create_app
from tests.builders import signed_delivery
from tests.conftest import CLIENT_SECRET, OLD_CLIENT_SECRET, make_settings
from tests.integration.test_webhook_ingest import count

URL = "/webhooks/shopify"

PATHOLOGICAL = {
    "nested_100k": b"[" * 100_000 + b"]" * 100_000,
    "nested_objects": b'{"a":' * 50_000 + b"1" + b"}" * 50_000,
    "nested_1000": b'{"a":' + b"[" * 999 + b"]" * 999 + b"}",
    "million_digits": b'{"n":' + b"9" * 1_000_000 + b"}",
    "five_thousand_digits": b'{"n":' + b"9" * 5_000 + b"}",
    "huge_float": b'{"n":1e999999}',
    "megabyte_of_json": b'{"k":[' + b",".join([b'"abcdefgh"'] * 90_000) + b"]}",
}


@pytest.fixture
def client(tmp_path: Path) -> Iterator[TestClient]:
    settings = make_settings(
        tmp_path, shopify_old_client_secret=OLD_CLIENT_SECRET, webhook_max_bytes=2_000_000
    )
    engine = make_engine(settings.database_url)
    upgrade(engine)
    engine.dispose()
    # A 500 must show as a status here, not as an exception raised into the test.
    with TestClient(create_app(settings), raise_server_exceptions=False) as client:
        yield client


@pytest.mark.parametrize("name", sorted(PATHOLOGICAL))
def test_an_unsigned_pathological_body_is_401(client: TestClient, name: str) -> None:
    """A forged signature gets 401 before anything parses the body."""
    body = PATHOLOGICAL[name]
    _, headers = signed_delivery("not-the-secret", body=body)
    response = client.post(URL, content=body, headers=headers)
    assert response.status_code == 401
    assert count(client) == 0


@pytest.mark.parametrize("name", sorted(PATHOLOGICAL))
def test_a_body_without_any_signature_is_401(client: TestClient, name: str) -> None:
    body = PATHOLOGICAL[name]
    _, headers = signed_delivery(CLIENT_SECRET, body=body)
    del headers["X-Shopify-Hmac-Sha256"]
    assert client.post(URL, content=body, headers=headers).status_code == 401
    assert count(client) == 0


@pytest.mark.parametrize(
    "name",
    [
        "nested_100k",
        "nested_objects",
        "nested_1000",
        "million_digits",
        "five_thousand_digits",
        "huge_float",
    ],
)
@pytest.mark.parametrize("secret", [CLIENT_SECRET, OLD_CLIENT_SECRET])
def test_a_signed_pathological_body_is_400(client: TestClient, name: str, secret: str) -> None:
    """Signed with the current or the previous secret, still refused as Bad Request."""
    body = PATHOLOGICAL[name]
    _, headers = signed_delivery(secret, body=body)
    response = client.post(URL, content=body, headers=headers)
    assert response.status_code == 400
    assert count(client) == 0
    # And the service goes on storing good deliveries.
    good, good_headers = signed_delivery(secret)
    assert client.post(URL, content=good, headers=good_headers).status_code == 200
    assert count(client) == 1


def test_a_malformed_signature_header_is_401(client: TestClient) -> None:
    body, headers = signed_delivery(CLIENT_SECRET)
    headers["X-Shopify-Hmac-Sha256"] = "not base64 at all!"
    assert client.post(URL, content=body, headers=headers).status_code == 401
    assert count(client) == 0


def test_a_topic_not_subscribed_is_acknowledged_but_not_stored(client: TestClient) -> None:
    """shopify.app.toml does not subscribe to customers/create: 200 so Shopify stops, no row."""
    body, headers = signed_delivery(CLIENT_SECRET, topic="customers/create")
    assert client.post(URL, content=body, headers=headers).status_code == 200
    assert count(client) == 0
    body, headers = signed_delivery(CLIENT_SECRET, topic="orders/create")
    assert client.post(URL, content=body, headers=headers).status_code == 200
    assert count(client) == 1


@pytest.mark.parametrize("name", sorted(PATHOLOGICAL))
def test_the_app_home_does_not_parse_an_unverified_body(client: TestClient, name: str) -> None:
    """A state-changing App Home route with a pathological body and no session token is
    refused by the verification (no 500)."""
    response = client.post(
        "/app/api/shop/refresh",
        content=PATHOLOGICAL[name],
        headers={"Content-Type": "application/json", "Authorization": "Bearer not-a-token"},
        follow_redirects=False,
    )
    assert response.status_code < 500
    assert response.status_code in (302, 400, 401, 403, 413)
