"""eManageCRM notifications end to end over HTTP: the worker's subscription (idempotent, retried
while eManageCRM is down, secret rotation), a product event recorded in the sandbox delivered
to the served app and landing in the bus's inbox with the right shop and partition key, the
app down then up (retried), a restarted sandbox (resumed), and the knobs (duplicate, reorder,
replays) deduplicated or refused by the app."""

from __future__ import annotations

import asyncio
import socket
import uuid
from collections.abc import Iterator
from contextlib import contextmanager
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import httpx
import pytest
from sqlalchemy import Engine, select
from sqlalchemy.orm import Session
from starlette.applications import Starlette

from syncapp.bus.models import InboundEvent
from syncapp.bus.retry import RetryPolicy
from syncapp.config import Settings
from syncapp.connectors.emanage import EmanageClient
from syncapp.onboarding.notifications import subscribe_to_notifications
from syncapp.sandbox.emanage import create_app as create_emanage
from syncapp.sandbox.emanage.events import record_event
from syncapp.sandbox.emanage.state import EmanageState
from syncapp.store.db import make_engine
from syncapp.store.migrate import upgrade
from syncapp.web.app import create_app
from tests.conftest import make_settings
from tests.integration.emanage.conftest import (
    CLIENT_ID,
    CLIENT_SECRET,
    sandbox_config,
    serve,
    shop_body,
)
from tests.integration.test_emanage_notification_ingest import add_shop
from tests.waiting import wait_until

SECRET = "whsec_e2e_current_0123456789abcdef0123456789ab"
NEW_SECRET = "whsec_e2e_rotated_0123456789abcdef0123456789ab"
SHOP = "e2e-notified.myshopify.com"
FAST = {
    "notification_poll_seconds": 0.01,
    "notification_retry_base_seconds": 0.05,
    "notification_retry_cap_seconds": 0.2,
    "notification_max_attempts": 50,
}
QUICK = RetryPolicy(max_attempts=20, base_seconds=0.05, cap_seconds=0.2)


@dataclass
class Emanage:
    url: str
    state: EmanageState
    http: httpx.Client

    def system_token(self) -> str:
        r = self.http.post(
            "/iam/oauth/token",
            data={"grant_type": "client_credentials"},
            auth=(CLIENT_ID, CLIENT_SECRET),
        )
        return str(r.json()["access_token"])

    def account(self, shop: str = SHOP) -> str:
        r = self.http.post(
            "/admin/v1/accounts",
            json=shop_body(shop),
            headers={
                "Authorization": f"Bearer {self.system_token()}",
                "Idempotency-Key": str(uuid.uuid4()),
            },
        )
        assert r.status_code == 201, r.text
        return str(r.json()["id"])

    def record(self, account_id: str, data: dict[str, Any]) -> str:
        with self.state.db.transaction() as conn:
            return record_event(
                conn,
                account_id=account_id,
                event_type="product.updated",
                data=data,
                occurred_at="2026-12-07T12:00:00Z",
            )

    def knobs(self, **values: Any) -> None:
        assert self.http.post("/_sandbox/notifications/faults", json=values).status_code == 200

    def subscription(self) -> dict[str, Any]:
        (sub,) = self.http.get("/_sandbox/notifications").json()["subscriptions"]
        return dict(sub)


@contextmanager
def emanage(path: Path) -> Iterator[Emanage]:
    apps: list[Starlette] = []

    def make(url: str) -> Starlette:
        apps.append(create_emanage(sandbox_config(path, public_url=url, **FAST)))
        return apps[-1]

    with serve(make) as url, httpx.Client(base_url=url, timeout=10) as http:
        yield Emanage(url, apps[0].state.sandbox, http)


class Port:
    """The app's port, held (bound, not listening: connections are refused, as by a stopped
    app) whenever the app is not served, so no other server of the test takes it meanwhile."""

    def __init__(self) -> None:
        self._sock = socket.socket()
        self._sock.bind(("127.0.0.1", 0))
        self.number = int(self._sock.getsockname()[1])

    def _hold(self) -> None:
        self._sock = socket.socket()
        # The served app's closed connections linger in TIME_WAIT on this port.
        self._sock.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
        self._sock.bind(("127.0.0.1", self.number))

    def close(self) -> None:
        self._sock.close()


@contextmanager
def app(settings: Settings, port: Port) -> Iterator[str]:
    port.close()
    try:
        with serve(lambda url: create_app(settings), port=port.number) as url:
            yield url
    finally:
        port._hold()


def settings_for(tmp_path: Path, port: Port, **extra: Any) -> Settings:
    values: dict[str, Any] = {
        "public_url": f"http://127.0.0.1:{port.number}",
        "emanage_webhook_secret": SECRET,
        **extra,
    }
    return make_settings(tmp_path, **values)


def prepared(settings: Settings, account_id: str) -> Engine:
    engine = make_engine(settings.database_url)
    upgrade(engine)
    add_shop(engine, SHOP, account_id)
    return engine


def subscribe(settings: Settings, sandbox_url: str) -> Any:
    async def run() -> Any:
        async with httpx.AsyncClient(timeout=5) as http:
            client = EmanageClient(http, sandbox_url, CLIENT_ID, CLIENT_SECRET)
            return await subscribe_to_notifications(client, settings, asyncio.Event(), policy=QUICK)

    return asyncio.run(run())


def inbox(engine: Engine) -> list[InboundEvent]:
    with Session(engine) as session:
        return list(
            session.scalars(
                select(InboundEvent)
                .where(InboundEvent.source == "emanage")
                .order_by(InboundEvent.id)
            )
        )


@contextmanager
def world(tmp_path: Path, port: Port) -> Iterator[tuple[Emanage, str, Settings, Engine]]:
    """The served sandbox with the shop's account, and the app's settings and migrated
    database knowing that account (the app itself is served by each test, when it wants)."""
    with emanage(tmp_path / "em") as em:
        account = em.account()
        settings = settings_for(tmp_path, port)
        engine = prepared(settings, account)
        try:
            yield em, account, settings, engine
        finally:
            engine.dispose()


@pytest.fixture
def port() -> Iterator[Port]:
    held = Port()
    yield held
    held.close()


def test_a_recorded_product_event_lands_in_the_inbox_and_knobs_are_deduped(
    tmp_path: Path, port: Port
) -> None:
    with world(tmp_path, port) as (em, account, settings, engine), app(settings, port):
        sub = subscribe(settings, em.url)
        assert sub.url == f"http://127.0.0.1:{port.number}/webhooks/emanage"
        linked = em.record(account, {"id": 917701, "externalRefs": {"shopifyProductId": 42}})
        wait_until(lambda: len(inbox(engine)) == 1, what="the notification in the inbox")
        (row,) = inbox(engine)
        assert (row.shop_domain, row.topic, row.delivery_id) == (
            SHOP,
            "product.updated",
            linked,
        )
        assert row.partition_key == f"{SHOP}/Product/42"
        wait_until(lambda: em.subscription()["deliveredCount"] == 1, what="settled")

        em.knobs(duplicate=1)
        twice = em.record(account, {"id": 917702})

        def sent_twice() -> list[tuple[str, int]]:
            attempts = em.http.get("/_sandbox/notifications/attempts").json()["attempts"]
            return [(a["eventId"], a["statusCode"]) for a in attempts if a["eventId"] == twice]

        wait_until(lambda: len(sent_twice()) == 2, what="the duplicate")
        assert sent_twice() == [(twice, 200), (twice, 200)]
        assert [r.delivery_id for r in inbox(engine)] == [linked, twice]
        assert inbox(engine)[1].partition_key == f"{SHOP}/EmanageProduct/917702"

        em.knobs(paused=True)
        later = [em.record(account, {"id": 917710 + n}) for n in range(2)]
        em.knobs(paused=False, reorder=2)
        wait_until(lambda: len(inbox(engine)) == 4, what="a reversed window")
        assert [r.delivery_id for r in inbox(engine)][2:] == list(reversed(later))
        em.knobs(reorder=0)

        old = em.http.post(
            "/_sandbox/notifications/replay",
            json={"eventId": linked, "signedAgeSeconds": 600},
        ).json()
        assert old["sent"][0]["statusCode"] == 401  # a replayed, old signature
        fresh = em.http.post("/_sandbox/notifications/replay", json={"eventId": linked})
        assert fresh.json()["sent"][0]["statusCode"] == 200  # a redelivery: deduped
        assert len(inbox(engine)) == 4


def test_an_app_down_then_up_gets_its_events_and_a_restarted_sandbox_resumes(
    tmp_path: Path, port: Port
) -> None:
    with world(tmp_path, port) as (em, account, settings, engine):
        with app(settings, port):
            subscribe(settings, em.url)
        # The app is down: deliveries fail (connection refused) and are retried.
        while_down = em.record(account, {"id": 1})
        wait_until(lambda: em.subscription()["attempts"] >= 2, what="failed attempts")
        assert "ConnectError" in em.subscription()["lastError"]
        with app(settings, port):
            wait_until(lambda: len(inbox(engine)) == 1, what="delivery once the app is up")
            assert inbox(engine)[0].delivery_id == while_down
            em.knobs(paused=True)
            pending = em.record(account, {"id": 2})
    with emanage(tmp_path / "em") as again, app(settings, port):
        assert again.subscription()["pending"] == 1
        wait_until(lambda: len(inbox(engine)) == 2, what="delivery after the sandbox restart")
        assert inbox(engine)[1].delivery_id == pending
    engine.dispose()


def test_the_subscription_is_idempotent_retried_while_down_and_rotated(
    tmp_path: Path, port: Port
) -> None:
    with world(tmp_path, port) as (em, account, settings, engine):
        em.http.post("/_sandbox/faults", json={"failNext": 3, "status": 503})
        first = subscribe(settings, em.url)  # retried through three 503s
        assert subscribe(settings, em.url).id == first.id
        listed = em.http.get(
            "/admin/v1/webhook-subscriptions",
            headers={"Authorization": f"Bearer {em.system_token()}"},
        ).json()["items"]
        assert len(listed) == 1
        rotated = settings_for(
            tmp_path, port, emanage_webhook_secret=NEW_SECRET, emanage_webhook_old_secret=SECRET
        )
        assert subscribe(rotated, em.url).id == first.id
        with app(rotated, port):
            event = em.record(account, {"id": 3})
            wait_until(lambda: len(inbox(engine)) == 1, what="a delivery signed anew")
            assert inbox(engine)[0].delivery_id == event
        # Signed with the new secret: an app that knows only the old one refuses it.
        with app(settings, port):
            replay = em.http.post("/_sandbox/notifications/replay", json={"eventId": event})
            assert replay.json()["sent"][0]["statusCode"] == 401


def test_a_changed_public_url_moves_the_subscription_instead_of_adding_one(
    tmp_path: Path, port: Port
) -> None:
    """The app moved (``SYNCAPP_PUBLIC_URL`` changed): the next worker start subscribes the new
    address and deletes the old one's subscription, so eManageCRM neither keeps retrying an
    address nobody serves nor delivers each event twice."""
    moved_to = Port()
    try:
        with world(tmp_path, port) as (em, account, settings, engine):
            old = subscribe(settings, em.url)
            moved = settings_for(tmp_path, moved_to)
            new = subscribe(moved, em.url)
            assert new.id != old.id
            listed = em.http.get(
                "/admin/v1/webhook-subscriptions",
                headers={"Authorization": f"Bearer {em.system_token()}"},
            ).json()["items"]
            assert [item["url"] for item in listed] == [moved.emanage_webhook_url]
            assert subscribe(moved, em.url).id == new.id  # the next start changes nothing
            with app(moved, moved_to):
                event = em.record(account, {"id": 4})
                wait_until(lambda: len(inbox(engine)) == 1, what="the delivery to the new URL")
                assert inbox(engine)[0].delivery_id == event
    finally:
        moved_to.close()


def test_products_written_through_the_api_notify_the_app(tmp_path: Path, port: Port) -> None:
    """The products API's own notifications (h-emprod): linked → the Shopify product's key."""
    with world(tmp_path, port) as (em, account, settings, engine):
        r = em.http.post(
            "/iam/oauth/token",
            data={"grant_type": "client_credentials", "account_id": account},
            auth=(CLIENT_ID, CLIENT_SECRET),
        )
        headers = {"Authorization": f"Bearer {r.json()['access_token']}"}
        with app(settings, port):
            subscribe(settings, em.url)
            created = em.http.post(
                f"/admin/v1/accounts/{account}/products",
                json={
                    "name": "Jet Fuel",
                    "status": "active",
                    "currency": "USD",
                    "externalRefs": {"shopifyProductId": "gid://shopify/Product/4242"},
                    "variants": [
                        {"sku": "JETF", "productPrices": {"DiscountedPrice": {"Value": 19.9}}}
                    ],
                },
                headers={**headers, "Idempotency-Key": str(uuid.uuid4())},
            )
            assert created.status_code == 201, created.text
            wait_until(lambda: len(inbox(engine)) == 1, what="product.created in the inbox")
            (row,) = inbox(engine)
            assert row.topic == "product.created"
            assert row.partition_key == f"{SHOP}/Product/4242"
