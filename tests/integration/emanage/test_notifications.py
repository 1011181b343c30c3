"""eManageCRM notifications from the sandbox: partner-wide webhook subscriptions, and delivery
over real HTTP to a receiver served on a free port: signed (Stripe-style), in order, retried
with backoff, given up after the last attempt, resumed by a restarted sandbox, and the knobs
(pause, duplicate, reorder, replay) sync tests use."""

from __future__ import annotations

import hashlib
import hmac
import threading
import uuid
from collections.abc import Iterator
from contextlib import contextmanager
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import httpx
import orjson
import pytest
from starlette.applications import Starlette
from starlette.requests import Request
from starlette.responses import Response
from starlette.routing import Route

from syncapp.sandbox.emanage import create_app
from syncapp.sandbox.emanage.events import record_event
from syncapp.sandbox.emanage.state import EmanageState
from tests.integration.emanage.conftest import (
    CLIENT_ID,
    CLIENT_SECRET,
    OTHER_CLIENT_ID,
    OTHER_CLIENT_SECRET,
    sandbox_config,
    serve,
    shop_body,
)
from tests.waiting import wait_until

SECRET = "whsec_test_0123456789abcdef0123456789abcdef"
FAST = {
    "notification_poll_seconds": 0.01,
    "notification_retry_base_seconds": 0.05,
    "notification_retry_cap_seconds": 0.2,
    "notification_max_attempts": 4,
}


@dataclass
class Receiver:
    """A webhook receiver that records what it got and answers ``statuses`` in turn (then 200)."""

    url: str = ""
    got: list[dict[str, Any]] = field(default_factory=list)
    statuses: list[int] = field(default_factory=list)
    lock: threading.Lock = field(default_factory=threading.Lock)

    def app(self) -> Starlette:
        async def hook(request: Request) -> Response:
            raw = await request.body()
            with self.lock:
                self.got.append({"headers": dict(request.headers), "raw": raw})
                status = self.statuses.pop(0) if self.statuses else 200
            return Response(status_code=status)

        return Starlette(routes=[Route("/hook", hook, methods=["POST"])])

    def events(self) -> list[dict[str, Any]]:
        with self.lock:
            return [orjson.loads(g["raw"]) for g in self.got]

    def ids(self) -> list[str]:
        return [e["id"] for e in self.events()]


@pytest.fixture
def receiver() -> Iterator[Receiver]:
    r = Receiver()
    with serve(lambda url: r.app()) as url:
        r.url = f"{url}/hook"
        yield r


@dataclass
class Sandbox:
    url: str
    state: EmanageState
    http: httpx.Client

    def token(self, client_id: str = CLIENT_ID, secret: str = CLIENT_SECRET, **form: str) -> str:
        r = self.http.post(
            "/iam/oauth/token",
            data={"grant_type": "client_credentials", **form},
            auth=(client_id, secret),
        )
        assert r.status_code == 200, r.text
        return str(r.json()["access_token"])

    def write(self, method: str, path: str, token: str, body: Any = None) -> httpx.Response:
        headers = {"Authorization": f"Bearer {token}", "Idempotency-Key": str(uuid.uuid4())}
        return self.http.request(method, path, json=body, headers=headers)

    def account(self, shop: str, client_id: str = CLIENT_ID, secret: str = CLIENT_SECRET) -> str:
        r = self.write("POST", "/admin/v1/accounts", self.token(client_id, secret), shop_body(shop))
        assert r.status_code == 201, r.text
        return str(r.json()["id"])

    def subscribe(self, url: str, **extra: Any) -> dict[str, Any]:
        body = {"url": url, "eventTypes": ["product.created", "product.updated"], **extra}
        r = self.write("POST", "/admin/v1/webhook-subscriptions", self.token(), body)
        assert r.status_code == 201, r.text
        return dict(r.json())

    def record(self, account_id: str, product_id: int, event_type: str = "product.updated") -> str:
        with self.state.db.transaction() as conn:
            return record_event(
                conn,
                account_id=account_id,
                event_type=event_type,
                data={"id": product_id, "name": f"P{product_id}"},
                occurred_at="2026-12-08T10:00:00Z",
            )

    def knobs(self, **values: Any) -> None:
        r = self.http.post("/_sandbox/notifications/faults", json=values)
        assert r.status_code == 200, r.text

    def overview(self) -> dict[str, Any]:
        return dict(self.http.get("/_sandbox/notifications").json())


@contextmanager
def running(tmp_path: Path, **config: Any) -> Iterator[Sandbox]:
    apps: list[Starlette] = []

    def make(url: str) -> Starlette:
        apps.append(create_app(sandbox_config(tmp_path, public_url=url, **{**FAST, **config})))
        return apps[-1]

    with serve(make) as url, httpx.Client(base_url=url, timeout=10) as http:
        yield Sandbox(url, apps[0].state.sandbox, http)


@pytest.fixture
def sandbox(tmp_path: Path) -> Iterator[Sandbox]:
    with running(tmp_path) as s:
        yield s


def verify(secret: str, got: dict[str, Any]) -> int:
    """The signed timestamp, after checking the signature the way a receiver must."""
    parts = dict(p.split("=", 1) for p in got["headers"]["emanage-signature"].split(","))
    expected = hmac.new(
        secret.encode(), parts["t"].encode() + b"." + got["raw"], hashlib.sha256
    ).hexdigest()
    assert hmac.compare_digest(expected, parts["v1"])
    return int(parts["t"])


def test_subscriptions_are_the_clients_own_and_show_their_secret_once(sandbox: Sandbox) -> None:
    system = sandbox.token()
    created = sandbox.subscribe("https://app.example/webhooks/emanage")
    assert created["secret"].startswith("whsec_")
    assert created["eventTypes"] == ["product.created", "product.updated"]
    listed = sandbox.http.get(
        "/admin/v1/webhook-subscriptions", headers={"Authorization": f"Bearer {system}"}
    ).json()["items"]
    assert [s["id"] for s in listed] == [created["id"]]
    assert "secret" not in listed[0]
    again = sandbox.write(
        "POST",
        "/admin/v1/webhook-subscriptions",
        system,
        {"url": "https://app.example/webhooks/emanage", "eventTypes": ["product.updated"]},
    )
    assert again.status_code == 409
    assert again.json()["existingId"] == created["id"]
    path = f"/admin/v1/webhook-subscriptions/{created['id']}"
    other = sandbox.token(OTHER_CLIENT_ID, OTHER_CLIENT_SECRET)
    assert sandbox.write("PATCH", path, other, {"secret": SECRET}).status_code == 404
    account_token = sandbox.token(account_id=sandbox.account("a.myshopify.com"))
    assert sandbox.write("PATCH", path, account_token, {"secret": SECRET}).status_code == 403
    changed = sandbox.write("PATCH", path, system, {"eventTypes": ["product.archived"]})
    assert changed.json()["eventTypes"] == ["product.archived"]
    bad = sandbox.write("PATCH", path, system, {"eventTypes": ["order.created"]})
    assert bad.status_code == 422
    assert sandbox.write("DELETE", path, system).status_code == 204
    assert sandbox.write("DELETE", path, system).status_code == 404


def test_events_of_the_clients_accounts_are_delivered_signed_and_in_order(
    sandbox: Sandbox, receiver: Receiver
) -> None:
    mine = sandbox.account("mine.myshopify.com")
    theirs = sandbox.account("theirs.myshopify.com", OTHER_CLIENT_ID, OTHER_CLIENT_SECRET)
    before = sandbox.record(mine, 1)  # before the subscription: not heard
    sandbox.subscribe(receiver.url, secret=SECRET)
    sandbox.record(theirs, 2)
    ids = [sandbox.record(mine, n) for n in range(3, 8)]
    sandbox.record(mine, 9, "product.archived")  # a type it did not subscribe to
    wait_until(lambda: len(receiver.got) >= 5, what="five deliveries")
    assert receiver.ids() == ids
    assert before not in receiver.ids()
    first = receiver.got[0]
    assert first["headers"]["emanage-event-id"] == ids[0]
    assert first["headers"]["emanage-event-type"] == "product.updated"
    assert abs(verify(SECRET, first) - sandbox.state.clock.now()) < 5
    assert receiver.events()[0] == {
        "id": ids[0],
        "type": "product.updated",
        "occurredAt": "2026-12-08T10:00:00Z",
        "accountId": mine,
        "data": {"id": 3, "name": "P3"},
    }
    state = sandbox.overview()["subscriptions"][0]
    wait_until(lambda: sandbox.overview()["subscriptions"][0]["deliveredCount"] == 5)
    assert state["lastError"] is None


def test_a_failing_receiver_is_retried_with_backoff_and_later_events_wait(
    sandbox: Sandbox, receiver: Receiver
) -> None:
    account = sandbox.account("retry.myshopify.com")
    sub = sandbox.subscribe(receiver.url)
    receiver.statuses = [500, 503]
    a, b = sandbox.record(account, 1), sandbox.record(account, 2)
    wait_until(lambda: len(receiver.got) >= 4, what="two failures, then both delivered")
    assert receiver.ids() == [a, a, a, b]

    def attempts() -> list[dict[str, Any]]:
        return list(
            sandbox.http.get(
                "/_sandbox/notifications/attempts", params={"subscriptionId": sub["id"]}
            ).json()["attempts"]
        )

    wait_until(lambda: len(attempts()) == 4, what="four attempts recorded")
    assert [x["statusCode"] for x in attempts()] == [500, 503, 200, 200]
    times = [verify(sub["secret"], g) for g in receiver.got]
    assert times == sorted(times)


def test_an_event_is_given_up_after_the_last_attempt_and_the_rest_flow(
    sandbox: Sandbox, receiver: Receiver
) -> None:
    account = sandbox.account("giveup.myshopify.com")
    sandbox.subscribe(receiver.url)
    receiver.statuses = [500] * FAST["notification_max_attempts"]
    doomed, fine = sandbox.record(account, 1), sandbox.record(account, 2)
    wait_until(lambda: fine in receiver.ids(), what="the next event after giving up")
    state = sandbox.overview()["subscriptions"][0]
    assert state["failedCount"] == 1
    assert state["failedEvents"][0]["eventId"] == doomed
    assert receiver.ids().count(doomed) == FAST["notification_max_attempts"]


def test_a_restarted_sandbox_resumes_delivery(tmp_path: Path, receiver: Receiver) -> None:
    with running(tmp_path) as first:
        account = first.account("restart.myshopify.com")
        first.subscribe(receiver.url)
        first.knobs(paused=True)
        ids = [first.record(account, n) for n in range(3)]
        assert first.overview()["subscriptions"][0]["pending"] == 3
    assert receiver.got == []
    with running(tmp_path) as second:  # the pause was in memory: a new sandbox delivers
        wait_until(lambda: len(receiver.got) == 3, what="delivery after the restart")
        assert receiver.ids() == ids
        assert second.overview()["subscriptions"][0]["pending"] == 0


def test_an_unreachable_receiver_is_retried_until_it_answers(
    sandbox: Sandbox, receiver: Receiver
) -> None:
    with serve(lambda url: Receiver().app()) as url:
        gone = f"{url}/hook"  # a port nobody listens on any more: connection refused
    sub = sandbox.subscribe(gone)
    event = sandbox.record(sandbox.account("down.myshopify.com"), 1)

    def state() -> dict[str, Any]:
        return dict(sandbox.overview()["subscriptions"][0])

    wait_until(lambda: state()["attempts"] >= 2, what="failed attempts")
    assert "ConnectError" in (state()["lastError"] or "")
    assert state()["pending"] == 1
    moved = sandbox.write(
        "PATCH",
        f"/admin/v1/webhook-subscriptions/{sub['id']}",
        sandbox.token(),
        {"url": receiver.url},
    )
    assert moved.status_code == 200
    wait_until(lambda: receiver.ids() == [event], what="delivery once it answers")


def test_knobs_pause_duplicate_reorder_and_replay(sandbox: Sandbox, receiver: Receiver) -> None:
    account = sandbox.account("knobs.myshopify.com")
    sub = sandbox.subscribe(receiver.url, secret=SECRET)
    sandbox.knobs(paused=True)
    ids = [sandbox.record(account, n) for n in range(4)]
    sandbox.knobs(paused=False, reorder=2)
    wait_until(lambda: len(receiver.got) == 4, what="two reversed windows")
    assert receiver.ids() == [ids[1], ids[0], ids[3], ids[2]]
    sandbox.knobs(reorder=0, duplicate=1)
    dup = sandbox.record(account, 9)
    wait_until(lambda: receiver.ids().count(dup) == 2, what="a duplicated delivery")
    assert sandbox.http.get("/_sandbox/notifications/faults").json()["duplicate"] == 0
    replay = sandbox.http.post(
        "/_sandbox/notifications/replay", json={"eventId": ids[0], "signedAgeSeconds": 600}
    ).json()
    assert replay["sent"] == [{"subscriptionId": sub["id"], "statusCode": 200, "error": None}]
    assert receiver.ids()[-1] == ids[0]
    assert verify(SECRET, receiver.got[-1]) == replay["signedAt"]
    assert replay["signedAt"] <= sandbox.state.clock.now() - 599
