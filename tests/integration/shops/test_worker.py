"""The worker over stored webhooks: claims only its topics, in id order, with leases,
retries with backoff, dead-letters; app/uninstalled end to end from the sandbox."""

from __future__ import annotations

import json
import threading
import time
from datetime import UTC, datetime, timedelta

import pytest
from sqlalchemy import func, select, update

from syncapp.bus.models import InboundEvent
from syncapp.onboarding.models import OnboardingJob
from syncapp.sandbox.shopify.oauth import load_access_scopes
from syncapp.shops.errors import ShopNotInstalled
from syncapp.shops.tokens import get_admin_token
from syncapp.store.models import Connection, Credential, Shop
from tests.builders import product_payload, signed_delivery
from tests.integration.sandbox.conftest import APP_TOML, CLIENT_SECRET
from tests.integration.shops.conftest import System, handle_for


def deliver(system: System, topic: str, shop: str, payload: dict[str, object], **kw: str) -> int:
    """POST a signed webhook to the app; returns the stored event's id."""
    body, headers = signed_delivery(CLIENT_SECRET, topic=topic, shop=shop, payload=payload, **kw)
    assert system.app.post("/webhooks/shopify", content=body, headers=headers).status_code == 200
    with system.runtime.sessions() as session:
        found = session.scalar(
            select(InboundEvent.id).where(
                InboundEvent.delivery_id == headers["X-Shopify-Webhook-Id"]
            )
        )
    assert found is not None
    return found


def event(system: System, event_id: int) -> InboundEvent:
    with system.runtime.sessions() as session:
        found = session.get(InboundEvent, event_id)
    assert found is not None
    return found


def test_the_worker_leaves_topics_it_does_not_handle_pending(
    sqlite_system: System, request: pytest.FixtureRequest
) -> None:
    """products/update waits for the sync engine; app/uninstalled is processed."""
    shop = handle_for(request) + ".myshopify.com"
    product = deliver(sqlite_system, "products/update", shop, product_payload())
    uninstall = deliver(sqlite_system, "app/uninstalled", shop, {"domain": shop})
    sqlite_system.drain()
    assert event(sqlite_system, product).status == "pending"
    assert event(sqlite_system, product).attempts == 0
    assert event(sqlite_system, uninstall).status == "done"


def test_an_uninstall_from_the_sandbox_forgets_the_tokens_and_stops_the_shop(
    system: System, request: pytest.FixtureRequest
) -> None:
    """The sandbox's app/uninstalled arrives signed; the worker deletes the tokens, marks the
    shop uninstalled, cancels onboarding, and no token is handed out any more."""
    shop = system.create_shop(handle_for(request))
    system.install(shop)
    assert system.control.post(f"/_sandbox/shops/{shop}/uninstall").status_code == 200
    system.wait_for_event(shop, "app/uninstalled")
    system.drain()
    with system.runtime.sessions() as session:
        row = session.scalar(select(Shop).where(Shop.domain == shop))
        assert row is not None
        assert row.uninstalled_at is not None
        assert session.scalars(select(Credential).where(Credential.shop_id == row.id)).all() == []
        assert session.scalar(select(Connection.status)) == "uninstalled"
        assert session.scalar(select(OnboardingJob.status)) == "cancelled"
        assert (
            session.scalar(
                select(InboundEvent.status).where(InboundEvent.topic == "app/uninstalled")
            )
            == "done"
        )
    with pytest.raises(ShopNotInstalled):
        get_admin_token(system.runtime, shop=shop)


def test_app_uninstalled_twice_is_harmless(
    sqlite_system: System, request: pytest.FixtureRequest
) -> None:
    """Two deliveries (new webhook and event ids) both complete; the first time stamp stays."""
    system = sqlite_system
    shop = system.create_shop(handle_for(request))
    system.install(shop)
    assert system.control.post(f"/_sandbox/shops/{shop}/uninstall").status_code == 200
    first = system.wait_for_event(shop, "app/uninstalled").id
    system.drain()
    with system.runtime.sessions() as session:
        stamp = session.scalar(select(Shop.uninstalled_at))
    second = deliver(system, "app/uninstalled", shop, {"domain": shop})
    system.drain()
    assert (event(system, first).status, event(system, second).status) == ("done", "done")
    with system.runtime.sessions() as session:
        assert session.scalar(select(Shop.uninstalled_at)) == stamp


def test_a_reinstall_restores_the_shop_with_fresh_tokens(
    system: System, request: pytest.FixtureRequest
) -> None:
    """Uninstall, then open the app again: new tokens (the old ones are gone and revoked),
    uninstalled_at cleared, connection active, onboarding pending again."""
    shop = system.create_shop(handle_for(request))
    system.install(shop)
    old_token = get_admin_token(system.runtime, shop=shop)
    system.control.post(f"/_sandbox/shops/{shop}/uninstall")
    system.wait_for_event(shop, "app/uninstalled")
    system.drain()
    assert system.control.post(f"/_sandbox/shops/{shop}/install").status_code == 200
    assert system.open_app_home(shop).status_code == 200
    new_token = get_admin_token(system.runtime, shop=shop)
    assert new_token != old_token
    with system.runtime.sessions() as session:
        row = session.scalar(select(Shop).where(Shop.domain == shop))
        assert row is not None
        assert row.uninstalled_at is None
        assert session.scalar(select(Connection.status)) == "active"
        assert session.scalar(select(OnboardingJob.status)) == "pending"
        assert len(session.scalars(select(Credential.id)).all()) == 2
    graphql = system.app.__class__(base_url=system.sandbox_url, timeout=10)
    with graphql:
        for token, expected in ((old_token, 401), (new_token, 200)):
            response = graphql.post(
                "/admin/api/2026-10/graphql.json",
                headers={"Host": shop, "X-Shopify-Access-Token": token},
                json={"query": "{ shop { name } }"},
            )
            assert response.status_code == expected


def test_a_stale_uninstall_does_not_undo_a_later_reinstall(
    sqlite_system: System, request: pytest.FixtureRequest
) -> None:
    """An app/uninstalled sent before the current install (or replayed since) is refused while
    Shopify still accepts the shop's token: dead-lettered, tokens kept."""
    system = sqlite_system
    shop = system.create_shop(handle_for(request))
    system.install(shop)
    earlier = (datetime.now(UTC) - timedelta(hours=1)).strftime("%Y-%m-%dT%H:%M:%S.%f000Z")
    body, headers = signed_delivery(
        CLIENT_SECRET, topic="app/uninstalled", shop=shop, payload={"domain": shop}
    )
    headers["X-Shopify-Triggered-At"] = earlier
    assert system.app.post("/webhooks/shopify", content=body, headers=headers).status_code == 200
    system.drain()
    assert get_admin_token(system.runtime, shop=shop)
    with system.runtime.sessions() as session:
        # (Install also published signup.requested, an event of the app's own.)
        row = session.scalar(select(InboundEvent).where(InboundEvent.source == "shopify"))
        assert row is not None
        assert row.status == "dead"
        assert "Shopify still accepts the shop's access token" in (row.last_error or "")


def _blocked_data_request(system: System, shop: str) -> int:
    """A valid customers/data_request whose export cannot be written (a file is where the
    shop's export directory goes): a failure that may pass, so the worker retries it."""
    system.settings.exports_dir.mkdir(parents=True, exist_ok=True)
    (system.settings.exports_dir / shop).write_text("not a directory")
    payload = {
        "shop_id": 1,
        "shop_domain": shop,
        "customer": {"id": 5, "email": "x@example.com", "phone": None},
        "orders_requested": [],
        "data_request": {"id": 77},
    }
    return deliver(system, "customers/data_request", shop, payload)


def test_a_failing_event_is_retried_later_with_backoff(
    sqlite_system: System, request: pytest.FixtureRequest
) -> None:
    """A failure puts the event back with next_attempt_at in the future and the reason."""
    shop = handle_for(request) + ".myshopify.com"
    bad = _blocked_data_request(sqlite_system, shop)
    worker = sqlite_system.worker(backoff_base_seconds=60.0, max_attempts=5)
    before = datetime.now(UTC)
    assert worker.run_once() == 1
    row = event(sqlite_system, bad)
    assert (row.status, row.attempts) == ("pending", 1)
    assert row.last_error is not None
    assert "NotADirectoryError" in row.last_error
    assert row.next_attempt_at is not None
    due = row.next_attempt_at.replace(tzinfo=UTC)
    assert before + timedelta(seconds=30) <= due <= datetime.now(UTC) + timedelta(seconds=60)
    assert worker.run_once() == 0


def test_an_event_failing_every_attempt_is_dead_lettered_with_its_reason(
    system: System, request: pytest.FixtureRequest
) -> None:
    """After max_attempts the event is 'dead', keeps the reason, and is not claimed again."""
    shop = handle_for(request) + ".myshopify.com"
    bad = _blocked_data_request(system, shop)
    worker = system.worker(max_attempts=3)
    for _ in range(3):
        assert worker.run_once() == 1
    row = event(system, bad)
    assert (row.status, row.attempts) == ("dead", 3)
    assert row.last_error is not None
    assert row.last_error.startswith("NotADirectoryError: ")
    assert worker.run_once() == 0


def test_a_payload_of_the_wrong_shape_is_dead_lettered_at_once(
    system: System, request: pytest.FixtureRequest
) -> None:
    """Refused (not a customers/data_request payload): dead after one attempt, with the reason."""
    shop = handle_for(request) + ".myshopify.com"
    bad = deliver(system, "customers/data_request", shop, {"shop_domain": shop})
    assert system.worker(max_attempts=5).run_once() == 1
    row = event(system, bad)
    assert (row.status, row.attempts) == ("dead", 1)
    assert row.last_error is not None
    assert row.last_error.startswith("refused: customers/data_request: not a customers/data_req")
    assert "customer" in row.last_error


def test_an_event_whose_lease_ran_out_is_claimed_again(
    system: System, request: pytest.FixtureRequest
) -> None:
    """A worker that died after claiming: once the lease ends another worker takes the event."""
    shop = handle_for(request) + ".myshopify.com"
    claimed = deliver(system, "app/uninstalled", shop, {"domain": shop})
    first = system.worker(lease_seconds=300)
    assert first.claim() == [claimed]
    assert system.worker().claim() == []
    with system.runtime.sessions.begin() as session:
        session.execute(
            update(InboundEvent).values(locked_until=datetime.now(UTC) - timedelta(seconds=1))
        )
    assert system.worker().claim() == [claimed]
    assert event(system, claimed).attempts == 2


def test_concurrent_workers_claim_each_event_once_in_id_order(
    system: System, request: pytest.FixtureRequest
) -> None:
    """Four workers claiming at once split 40 shops' events without overlap, batches ascending.

    (Events of one shop's ``app/*`` topics share its partition key, so they are claimed one at
    a time; here each event is another shop's.)"""
    prefix = handle_for(request)
    ids = [
        deliver(system, "app/uninstalled", f"{prefix}{n}.myshopify.com", {"n": n})
        for n in range(40)
    ]
    claims: list[list[int]] = []
    lock = threading.Lock()

    def claim_all() -> None:
        worker = system.worker(batch_size=5)
        while batch := worker.claim():
            with lock:
                claims.append(batch)

    threads = [threading.Thread(target=claim_all) for _ in range(4)]
    for thread in threads:
        thread.start()
    for thread in threads:
        thread.join(timeout=60)
    flat = [i for batch in claims for i in batch]
    assert sorted(flat) == ids
    assert len(flat) == len(set(flat))
    assert all(batch == sorted(batch) for batch in claims)


def test_events_of_one_shop_are_claimed_one_at_a_time_in_order(
    system: System, request: pytest.FixtureRequest
) -> None:
    """A shop's app events share a partition key: the next is claimed once the first is done."""
    shop = handle_for(request) + ".myshopify.com"
    first, second = (deliver(system, "app/uninstalled", shop, {"n": n}) for n in range(2))
    worker = system.worker(lease_seconds=300)
    assert worker.claim() == [first]
    assert system.worker().claim() == []
    with system.runtime.sessions.begin() as session:  # the first one's lease ran out
        session.execute(
            update(InboundEvent).values(locked_until=datetime.now(UTC) - timedelta(seconds=1))
        )
    assert system.worker().run_once() == 1
    assert system.worker().claim() == [second]


def test_the_worker_logs_dead_letters_with_the_event_and_shop(
    sqlite_system: System, request: pytest.FixtureRequest
) -> None:
    """The dead letter's reason is in last_error and its payload untouched for a replay."""
    shop = handle_for(request) + ".myshopify.com"
    payload = {"shop_domain": shop, "customer": "not an object"}
    bad = deliver(sqlite_system, "customers/redact", shop, payload)
    sqlite_system.drain(max_attempts=1)
    row = event(sqlite_system, bad)
    assert row.status == "dead"
    assert json.loads(sqlite_system.runtime.payload_of(row)) == payload


def test_a_scopes_update_replaces_the_granted_scopes(
    sqlite_system: System, request: pytest.FixtureRequest
) -> None:
    """app/scopes_update through the webhook endpoint: the connection gets the new grant
    (checked against the shop's grant in Shopify); a grant Shopify does not confirm — another
    shop's body — is refused and changes nothing."""
    system = sqlite_system
    shop = system.create_shop(handle_for(request))
    system.install(shop)
    granted = load_access_scopes(APP_TOML).split(",")
    with system.runtime.sessions.begin() as session:
        # Recorded before the merchant approved the rest.
        session.execute(update(Connection).values(scopes="read_products"))

    def scopes_update(current: list[str]) -> int:
        payload = {
            "id": 1,
            "previous": ["read_products"],
            "current": current,
            "updated_at": datetime.now(UTC).isoformat(),
        }
        return deliver(system, "app/scopes_update", shop, payload)

    forged = scopes_update(["read_products", "read_discounts"])
    system.drain()
    assert event(system, forged).status == "dead"
    assert "not the shop's grant in Shopify" in (event(system, forged).last_error or "")
    with system.runtime.sessions() as session:
        assert session.scalar(select(Connection.scopes)) == "read_products"
    genuine = scopes_update(granted)
    system.drain()
    assert event(system, genuine).status == "done"
    with system.runtime.sessions() as session:
        connection = session.scalar(select(Connection).where(Connection.provider == "shopify"))
        assert connection is not None
        assert connection.scopes == ",".join(granted)


def test_a_scopes_update_without_current_scopes_is_dead_lettered(
    sqlite_system: System, request: pytest.FixtureRequest
) -> None:
    """A payload without 'current' fails with a reason an operator can act on."""
    system = sqlite_system
    shop = system.create_shop(handle_for(request))
    system.install(shop)
    body, headers = signed_delivery(
        CLIENT_SECRET, topic="app/scopes_update", shop=shop, payload={"id": 1, "previous": []}
    )
    assert system.app.post("/webhooks/shopify", content=body, headers=headers).status_code == 200
    with system.runtime.sessions() as session:
        bad = session.scalar(
            select(InboundEvent.id).where(InboundEvent.topic == "app/scopes_update")
        )
    assert bad is not None
    system.drain(max_attempts=1)
    found = event(system, bad)
    assert found.status == "dead"
    assert found.last_error is not None
    assert "needs 'current'" in found.last_error


def test_processed_events_are_pruned_after_the_retention(
    system: System, request: pytest.FixtureRequest
) -> None:
    """Done events processed and dead letters received longer ago than the retention go, in
    batches; recent done and pending events stay. A redelivery of a recent one is still
    recognised."""
    shop = handle_for(request) + ".myshopify.com"
    old = [deliver(system, "app/uninstalled", shop, {"domain": shop, "n": n}) for n in range(7)]
    recent = deliver(
        system, "app/uninstalled", shop, {"domain": shop, "n": "recent"}, webhook_id="wh-recent"
    )
    system.drain()
    dead = deliver(system, "customers/redact", shop, {"customer": "not an object"})
    system.drain(max_attempts=1)
    pending = deliver(system, "products/update", shop, product_payload())
    long_ago = datetime.now(UTC) - timedelta(hours=200)
    with system.runtime.sessions.begin() as session:
        session.execute(
            update(InboundEvent)
            .where(InboundEvent.id.in_([*old, dead, pending]))
            .values(processed_at=long_ago, received_at=long_ago)
        )
    assert system.worker(retention_hours=168, prune_batch=3).prune() == 8  # in three batches
    with system.runtime.sessions() as session:
        left = {
            r.id: r.status for r in session.execute(select(InboundEvent.id, InboundEvent.status))
        }
    assert left == {recent: "done", pending: "pending"}
    # Within the retention a redelivery is still a duplicate: not stored, not processed again.
    body, headers = signed_delivery(
        CLIENT_SECRET, topic="app/uninstalled", shop=shop, payload={"domain": shop, "n": "recent"}
    )
    headers["X-Shopify-Webhook-Id"] = "wh-recent"
    assert system.app.post("/webhooks/shopify", content=body, headers=headers).status_code == 200
    with system.runtime.sessions() as session:
        assert session.scalar(select(func.count()).select_from(InboundEvent)) == 2


def test_the_running_worker_prunes(sqlite_system: System, request: pytest.FixtureRequest) -> None:
    """Worker.run prunes at start (and every prune_every_seconds) besides processing."""
    system = sqlite_system
    shop = handle_for(request) + ".myshopify.com"
    done = deliver(system, "app/uninstalled", shop, {"domain": shop})
    system.drain()
    with system.runtime.sessions.begin() as session:
        session.execute(
            update(InboundEvent).values(processed_at=datetime.now(UTC) - timedelta(days=30))
        )
    stop = threading.Event()
    worker = system.worker(poll_seconds=0.05)
    thread = threading.Thread(target=worker.run, args=(stop,))
    thread.start()
    try:
        deadline = time.monotonic() + 10
        while time.monotonic() < deadline:
            with system.runtime.sessions() as session:
                if session.get(InboundEvent, done) is None:
                    break
            time.sleep(0.05)
    finally:
        stop.set()
        thread.join(timeout=10)
    with system.runtime.sessions() as session:
        assert session.get(InboundEvent, done) is None
