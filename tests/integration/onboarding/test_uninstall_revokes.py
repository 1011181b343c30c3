"""app/uninstalled through the worker revokes the shop's CTRwow grant at the served CTRwow
sandbox and leaves no CTRwow token in the app's database, even when CTRwow is down."""

from __future__ import annotations

import asyncio
import json
from datetime import UTC, datetime

import pytest
from sqlalchemy import select

from syncapp.bus.models import InboundEvent
from syncapp.onboarding.models import CtrwowAccount
from syncapp.onboarding.runtime import OnboardingRuntime
from syncapp.onboarding.uninstall import revoke_ctrwow_on_uninstall
from syncapp.shops.runtime import ShopsRuntime
from syncapp.store.models import Connection, Credential
from syncapp.worker import Worker, WorkerOptions, default_handlers
from tests.integration.onboarding.conftest import SHOP, World, run_to_end
from tests.probes import write_without_waiting

pytestmark = pytest.mark.anyio


def _deliver_uninstall(world: World, delivery: str) -> int:
    with world.session() as session, session.begin():
        event = InboundEvent(
            source="shopify",
            shop_domain=SHOP,
            topic="app/uninstalled",
            delivery_id=delivery,
            triggered_at=datetime.now(UTC).isoformat(),
            payload=json.dumps({"domain": SHOP}),
        )
        session.add(event)
        session.flush()
        return event.id


async def _process(world: World) -> None:
    worker = Worker(
        ShopsRuntime.from_settings(world.settings, world.engine),
        options=WorkerOptions(poll_seconds=0.05),
        handlers=default_handlers(uninstall_hooks=(revoke_ctrwow_on_uninstall(world.settings),)),
    )
    # The hook runs its own event loop, as in the synchronous worker process.
    await asyncio.to_thread(worker.run_once)


async def _connected(runtime: OnboardingRuntime, world: World) -> str:
    shop_id = world.install()
    assert await run_to_end(runtime, world, shop_id) == "done"
    with world.session() as session:
        account_id = session.scalar(select(CtrwowAccount.account_id))
    assert account_id is not None
    return account_id


def _live_tokens(world: World, account_id: str) -> list[object]:
    response = world.control.get(
        f"{world.ctrwow_url}/_sandbox/tokens", params={"account_id": account_id}
    )
    assert response.status_code == 200, response.text
    tokens: list[object] = response.json()["tokens"]
    return tokens


def _ctrwow_state(world: World) -> tuple[int, str | None, str | None]:
    with world.session() as session:
        creds = len(
            session.scalars(select(Credential).where(Credential.provider == "ctrwow")).all()
        )
        conn = session.scalar(select(Connection).where(Connection.provider == "ctrwow"))
        assert conn is not None
        return creds, conn.status, conn.detail


def _event_status(world: World, event_id: int) -> str:
    with world.session() as session:
        event = session.get(InboundEvent, event_id)
        assert event is not None
        return event.status


async def test_uninstall_revokes_the_ctrwow_grant_and_deletes_the_tokens(
    runtime: OnboardingRuntime, world: World
) -> None:
    """After the worker processes app/uninstalled the sandbox holds no live token for the
    account and the app holds no CTRwow credential, with the connection uninstalled."""
    account_id = await _connected(runtime, world)
    assert _live_tokens(world, account_id)
    event_id = _deliver_uninstall(world, "d-1")
    await _process(world)
    assert _event_status(world, event_id) == "done"
    assert _live_tokens(world, account_id) == []
    grants = world.control.get(
        f"{world.ctrwow_url}/_sandbox/grants", params={"account_id": account_id}
    ).json()["grants"]
    assert grants
    assert all(g["revoked_at"] is not None for g in grants)
    creds, status, _ = _ctrwow_state(world)
    assert (creds, status) == (0, "uninstalled")


async def test_a_second_app_uninstalled_is_harmless(
    runtime: OnboardingRuntime, world: World
) -> None:
    """A redelivered uninstall is processed without error and changes nothing more."""
    await _connected(runtime, world)
    _deliver_uninstall(world, "d-1")
    await _process(world)
    again = _deliver_uninstall(world, "d-2")
    await _process(world)
    assert _event_status(world, again) == "done"
    creds, status, detail = _ctrwow_state(world)
    assert (creds, status) == (0, "uninstalled")
    assert detail is not None
    assert "revoked" in detail


async def test_no_database_lock_is_held_while_ctrwow_revokes(
    runtime: OnboardingRuntime, world: World
) -> None:
    """The revocation runs after the uninstall has committed: while CTRwow takes its time,
    another writer (the webhook ingest, say) gets the database at once."""
    account_id = await _connected(runtime, world)
    slow = world.control.post(f"{world.ctrwow_url}/_sandbox/faults", json={"latency": 1.0})
    assert slow.status_code == 200, slow.text
    event_id = _deliver_uninstall(world, "d-1")
    processing = asyncio.create_task(_process(world))
    try:
        deadline = asyncio.get_running_loop().time() + 20
        while not (_ctrwow_state(world)[2] or "").startswith("revocation pending"):
            assert not processing.done(), "the uninstall finished without a pending record"
            assert asyncio.get_running_loop().time() < deadline
            await asyncio.sleep(0.02)
        probe = write_without_waiting(world.engine)
        await processing
    finally:
        world.control.delete(f"{world.ctrwow_url}/_sandbox/faults")
    assert probe == "written"
    assert _event_status(world, event_id) == "done"
    assert _live_tokens(world, account_id) == []
    creds, status, detail = _ctrwow_state(world)
    assert (creds, status) == (0, "uninstalled")
    assert detail == "app uninstalled from the Shopify admin; CTRwow access revoked"


async def test_a_ctrwow_that_is_down_does_not_block_the_uninstall(
    runtime: OnboardingRuntime, world: World
) -> None:
    """With CTRwow failing, the uninstall still completes, the tokens are deleted locally and
    the connection records that the revocation failed."""
    account_id = await _connected(runtime, world)
    faults = world.control.post(f"{world.ctrwow_url}/_sandbox/faults", json={"down_for": 30})
    assert faults.status_code == 200, faults.text
    event_id = _deliver_uninstall(world, "d-1")
    await _process(world)
    world.control.delete(f"{world.ctrwow_url}/_sandbox/faults")
    assert _event_status(world, event_id) == "done"
    creds, status, detail = _ctrwow_state(world)
    assert (creds, status) == (0, "uninstalled")
    assert detail is not None
    assert detail.startswith("revocation failed")
    assert account_id in detail
