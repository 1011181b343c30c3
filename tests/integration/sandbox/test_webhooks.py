"""Webhook delivery from the sandbox to a real receiving app over HTTP: Shopify's headers and
signature (checked with shopifyapp's ``verify_webhook_req``), retries, injected faults, shops
without the app, and deliveries that survive a restart."""

from __future__ import annotations

import json
import socket
import time
import uuid
from dataclasses import replace
from pathlib import Path
from typing import Any

from shopify_app import ShopifyApp

from syncapp.sandbox.shopify.config import WebhookSubscription
from syncapp.sandbox.shopify.events import record_webhook
from tests.waiting import wait_until

from .conftest import (
    CLIENT_ID,
    CLIENT_SECRET,
    SHOP,
    Received,
    RunningSandbox,
    WebhookReceiver,
    make_config,
    running_sandbox,
)

Receiver = tuple[WebhookReceiver, str]


def fire(
    sandbox: RunningSandbox,
    topic: str = "products/update",
    payload: dict[str, Any] | None = None,
    shop: str = SHOP,
) -> str:
    """Record an event the way every sandbox state change does; returns its event id."""
    with sandbox.state.db.transaction() as conn:
        return record_webhook(
            conn, shop_domain=shop, topic=topic, payload=payload or {"id": 1, "title": "Hat"}
        )


def verified(request: Received) -> bool:
    """Whether shopifyapp, as the app uses it, accepts this delivery."""
    result = ShopifyApp(client_id=CLIENT_ID, client_secret=CLIENT_SECRET).verify_webhook_req(
        {
            "method": "POST",
            "headers": request.headers,
            "url": f"https://syncapp.example.com{request.path}",
            "body": request.body.decode("utf-8"),
        }
    )
    return result.ok


def settled(sandbox: RunningSandbox, timeout: float = 5.0) -> None:
    """Wait until the sandbox will send nothing more: every recorded event fanned out and no
    delivery pending (a delivery is recorded only after its last copy was answered)."""

    def done() -> bool:
        with sandbox.state.db.transaction() as conn:
            last = conn.execute("SELECT coalesce(max(id), 0) FROM webhook_outbox").fetchone()[0]
            row = conn.execute(
                "SELECT last_outbox_id FROM webhook_fanout_cursor WHERE id = 1"
            ).fetchone()
            pending = conn.execute(
                "SELECT count(*) FROM webhook_deliveries WHERE status = 'pending'"
            ).fetchone()[0]
        return row is not None and row[0] >= last and pending == 0

    wait_until(done, timeout=timeout, what="the sandbox's deliveries settled")


def closed_port_url() -> str:
    """A local URL where nothing listens: connections are refused at once."""
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        port = sock.getsockname()[1]
    return f"http://127.0.0.1:{port}"


def test_a_delivery_carries_shopifys_headers_and_a_valid_signature(
    sandbox: RunningSandbox, receiver: Receiver
) -> None:
    """The receiver gets the payload with Shopify's headers, and shopifyapp verifies it."""
    recv, _ = receiver
    payload = {"id": 7, "title": "Straw hat", "variants": [{"price": "10.00"}]}
    event_id = fire(sandbox, payload=payload)

    [request] = recv.wait_for(1)

    headers = request.headers
    assert verified(request)
    assert request.path == "/webhooks/shopify"
    assert json.loads(request.body) == payload
    assert headers["x-shopify-topic"] == "products/update"
    assert headers["x-shopify-shop-domain"] == SHOP
    assert headers["x-shopify-api-version"] == "2026-10"
    assert headers["x-shopify-event-id"] == event_id
    assert uuid.UUID(headers["x-shopify-webhook-id"])
    assert headers["x-shopify-triggered-at"].endswith("Z")
    assert headers["content-type"] == "application/json"
    assert headers["user-agent"] == "Shopify-Captain-Hook"


def test_a_tampered_body_fails_shopifyapps_verification(
    sandbox: RunningSandbox, receiver: Receiver
) -> None:
    """The signature covers the exact body: one changed byte makes verification fail."""
    recv, _ = receiver
    fire(sandbox)
    [request] = recv.wait_for(1)

    tampered = replace(request, body=request.body.replace(b"Hat", b"Cap"))

    assert not verified(tampered)


def test_a_failed_delivery_is_retried_with_the_same_webhook_id(
    sandbox: RunningSandbox, receiver: Receiver
) -> None:
    """After two 500s the third attempt succeeds, all with one webhook id."""
    recv, _ = receiver
    recv.planned_statuses.extend([500, 500])
    fire(sandbox)

    requests = recv.wait_for(3)
    [delivery] = sandbox.wait_for_deliveries(1, status="delivered")

    assert len({r.headers["x-shopify-webhook-id"] for r in requests}) == 1
    assert delivery["attempts"] == 3
    assert delivery["last_status_code"] == 200


def test_a_delivery_fails_after_eight_retries(sandbox: RunningSandbox, receiver: Receiver) -> None:
    """A receiver that keeps answering 500 gets nine attempts, then the delivery is failed."""
    recv, _ = receiver
    recv.planned_statuses.extend([500] * 20)
    fire(sandbox)

    [delivery] = sandbox.wait_for_deliveries(1, status="failed")
    settled(sandbox)

    assert delivery["attempts"] == 9
    assert delivery["last_status_code"] == 500
    assert len(recv.requests) == 9


def test_at_most_sixteen_deliveries_are_in_flight_at_once(
    sandbox: RunningSandbox, receiver: Receiver
) -> None:
    """A receiver holding every request open sees exactly 16 at once — then, released, all 40."""
    recv, _ = receiver
    recv.gate.clear()
    with sandbox.state.db.transaction() as conn:
        for n in range(40):
            record_webhook(conn, shop_domain=SHOP, topic="products/update", payload={"id": n})

    wait_until(lambda: recv.open_requests >= 16, what="16 deliveries held open")
    recv.gate.set()
    requests = recv.wait_for(40, timeout=10)

    assert recv.max_concurrent == 16
    assert sorted(json.loads(r.body)["id"] for r in requests) == list(range(40))


def test_every_subscription_to_a_topic_gets_its_own_delivery_of_one_event(
    tmp_path: Path, receiver: Receiver
) -> None:
    """Two subscriptions to a topic: two webhook ids, one event id."""
    recv, url = receiver
    subs = (
        WebhookSubscription(topics=("products/update",), uri="/webhooks/a"),
        WebhookSubscription(topics=("products/update", "products/create"), uri="/webhooks/b"),
    )
    with running_sandbox(make_config(tmp_path, url, subscriptions=subs)) as sandbox:
        sandbox.create_shop(SHOP)
        fire(sandbox)
        requests = recv.wait_for(2)

    assert sorted(r.path for r in requests) == ["/webhooks/a", "/webhooks/b"]
    assert len({r.headers["x-shopify-webhook-id"] for r in requests}) == 2
    assert len({r.headers["x-shopify-event-id"] for r in requests}) == 1


def test_the_duplicate_fault_sends_extra_copies_with_one_webhook_id(
    sandbox: RunningSandbox, receiver: Receiver
) -> None:
    """With ``duplicate: 2`` each delivery arrives three times, all with one webhook id."""
    recv, _ = receiver
    assert (
        sandbox.control.post("/_sandbox/webhooks/faults", json={"duplicate": 2}).status_code == 200
    )
    fire(sandbox)

    requests = recv.wait_for(3)
    settled(sandbox)

    assert len(recv.requests) == 3
    assert len({r.headers["x-shopify-webhook-id"] for r in requests}) == 1


def test_the_reorder_fault_delivers_a_batch_in_reverse(
    sandbox: RunningSandbox, receiver: Receiver
) -> None:
    """Events recorded together arrive newest first while ``reorder`` is on."""
    recv, _ = receiver
    sandbox.control.post("/_sandbox/webhooks/faults", json={"reorder": True})
    with sandbox.state.db.transaction() as conn:
        for n in range(1, 4):
            record_webhook(conn, shop_domain=SHOP, topic="products/update", payload={"id": n})

    requests = recv.wait_for(3)

    assert [json.loads(r.body)["id"] for r in requests] == [3, 2, 1]


def test_the_delay_fault_holds_deliveries_back(sandbox: RunningSandbox, receiver: Receiver) -> None:
    """With ``delay_ms: 300`` nothing arrives in the first 300 ms."""
    recv, _ = receiver
    sandbox.control.post("/_sandbox/webhooks/faults", json={"delay_ms": 300})
    started = time.monotonic()
    fire(sandbox)

    recv.wait_for(1)

    assert time.monotonic() - started >= 0.3


def test_deleting_faults_restores_normal_delivery(
    sandbox: RunningSandbox, receiver: Receiver
) -> None:
    """DELETE on the faults resets them: one delivery, one request."""
    recv, _ = receiver
    sandbox.control.post("/_sandbox/webhooks/faults", json={"duplicate": 3, "reorder": True})

    reset = sandbox.control.delete("/_sandbox/webhooks/faults")
    fire(sandbox)
    recv.wait_for(1)
    settled(sandbox)

    assert reset.json() == {
        "duplicate": 0,
        "delay_ms": 0,
        "reorder": False,
        "redeliver_new_id": 0,
        "coalesce_ms": 0,
        "drop_next": 0,
    }
    assert len(recv.requests) == 1


def test_an_unknown_fault_is_refused(sandbox: RunningSandbox) -> None:
    """A fault the sandbox does not know is a 400 naming the ones it does."""
    response = sandbox.control.post("/_sandbox/webhooks/faults", json={"drop": True})

    assert response.status_code == 400
    assert "duplicate" in response.json()["error"]


def test_a_shop_without_the_app_gets_no_product_webhooks(
    sandbox: RunningSandbox, receiver: Receiver
) -> None:
    """Events of a shop that has not installed the app are not delivered; compliance ones are."""
    recv, _ = receiver
    sandbox.create_shop("bare", installed=False)
    fire(sandbox, shop="bare.myshopify.com")
    redact = sandbox.control.post("/_sandbox/shops/bare/compliance/shop-redact")
    assert redact.status_code == 200

    recv.wait_for(1)
    settled(sandbox)

    assert recv.topics() == ["shop/redact"]
    assert sandbox.deliveries(shop="bare", topic="products/update") == []


def test_uninstalling_delivers_app_uninstalled_with_the_shop(
    sandbox: RunningSandbox, receiver: Receiver
) -> None:
    """The uninstall control route fires ``app/uninstalled`` with the REST Shop payload."""
    recv, _ = receiver

    sandbox.control.post(f"/_sandbox/shops/{SHOP}/uninstall")
    [request] = recv.wait_for(1)

    shop = json.loads(request.body)
    assert request.headers["x-shopify-topic"] == "app/uninstalled"
    assert verified(request)
    assert shop["myshopify_domain"] == SHOP
    assert isinstance(shop["id"], int)


def test_a_customer_data_request_carries_the_customer_and_orders(
    sandbox: RunningSandbox, receiver: Receiver
) -> None:
    """``customers/data_request`` names the shop, the customer, the orders and the request."""
    recv, _ = receiver

    sandbox.control.post(
        f"/_sandbox/shops/{SHOP}/compliance/customers-data_request",
        json={"customer": {"id": 5, "email": "ann@example.com"}, "orders": [11, 12]},
    )
    [request] = recv.wait_for(1)

    body = json.loads(request.body)
    assert request.headers["x-shopify-topic"] == "customers/data_request"
    assert body["shop_domain"] == SHOP
    assert body["customer"] == {"id": 5, "email": "ann@example.com", "phone": None}
    assert body["orders_requested"] == [11, 12]
    assert isinstance(body["data_request"]["id"], int)


def test_a_pending_delivery_resumes_after_a_restart(tmp_path: Path, receiver: Receiver) -> None:
    """A delivery that failed before the sandbox stopped is retried by the next one."""
    recv, url = receiver
    slow_retries = (0.3,) * 8
    down = make_config(tmp_path, closed_port_url(), webhook_retry_delays=slow_retries)
    with running_sandbox(down) as first:
        first.create_shop(SHOP)
        fire(first)
        first.wait_for_deliveries(1, status="pending", topic="products/update")
        wait_until(
            lambda: first.deliveries(topic="products/update")[0]["attempts"] > 0,
            what="the first attempt failed",
        )
        [pending] = first.deliveries(topic="products/update")

    with running_sandbox(replace(down, app_url=url)) as second:
        [request] = recv.wait_for(1)
        [delivered] = second.wait_for_deliveries(1, status="delivered")

    assert request.headers["x-shopify-webhook-id"] == pending["webhook_id"]
    assert delivered["attempts"] == 2


def test_events_recorded_while_delivery_was_off_are_delivered_on_the_next_start(
    tmp_path: Path, receiver: Receiver
) -> None:
    """The outbox is read past a durable cursor, so nothing recorded meanwhile is lost."""
    recv, url = receiver
    quiet = make_config(tmp_path, url, deliver_webhooks=False)
    with running_sandbox(quiet) as first:
        first.create_shop(SHOP)
        event_id = fire(first)

    with running_sandbox(replace(quiet, deliver_webhooks=True)):
        [request] = recv.wait_for(1)

    assert request.headers["x-shopify-event-id"] == event_id


def test_the_deliveries_listing_filters_by_topic_and_status(
    sandbox: RunningSandbox, receiver: Receiver
) -> None:
    """GET /_sandbox/webhooks/deliveries narrows by topic and status."""
    recv, _ = receiver
    fire(sandbox, topic="products/create")
    fire(sandbox, topic="orders/create")
    recv.wait_for(2)
    sandbox.wait_for_deliveries(2, status="delivered")

    creates = sandbox.deliveries(topic="products/create", status="delivered")

    assert [d["topic"] for d in creates] == ["products/create"]
    assert sandbox.deliveries(status="failed") == []
