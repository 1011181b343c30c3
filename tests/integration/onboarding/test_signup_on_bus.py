"""The sign-up runs on the bus: ``signup.requested`` is consumed like any event, its job's
waits are not failures, and a due job without an event gets one."""

from __future__ import annotations

import asyncio

import pytest
from sqlalchemy import select

from syncapp.bus.consumer import Consumer
from syncapp.bus.embedded import EmbeddedBus
from syncapp.bus.interface import subscriptions
from syncapp.bus.models import InboundEvent
from syncapp.onboarding import topics
from syncapp.onboarding.events import SIGNUP_REQUESTED, request_due_signups
from syncapp.onboarding.runtime import OnboardingRuntime
from syncapp.store.db import make_session_factory
from tests.integration.onboarding.conftest import FINAL, World

pytestmark = pytest.mark.anyio


def _events(world: World) -> list[InboundEvent]:
    with world.session() as session:
        return list(
            session.scalars(select(InboundEvent).where(InboundEvent.topic == SIGNUP_REQUESTED.name))
        )


async def _consume_until_over(consumer: Consumer, world: World, shop_id: int) -> str:
    deadline = asyncio.get_running_loop().time() + 30
    while (status := world.job(shop_id).status) not in FINAL:
        assert asyncio.get_running_loop().time() < deadline, f"job still {status}"
        if not await consumer.run_once():
            await asyncio.sleep(0.02)  # the job's backoff: its event is due again shortly
    return str(status)


async def test_a_due_job_gets_one_event_and_the_bus_runs_it_to_the_end(
    world: World, runtime: OnboardingRuntime
) -> None:
    """The sweep publishes signup.requested once; the consumer runs the sign-up to done."""
    shop_id = world.install()
    sessions = make_session_factory(world.engine)
    assert request_due_signups(sessions) == 1
    assert request_due_signups(sessions) == 0  # one is waiting already
    table = topics.topics(runtime)
    consumer = Consumer(EmbeddedBus(world.engine).consumer(sorted(table)), subscriptions(table))

    assert await _consume_until_over(consumer, world, shop_id) == "done"
    assert len(world.emanage_accounts()) == 1
    [event] = _events(world)
    assert event.status == "done"


async def test_waiting_for_a_failing_provider_does_not_spend_the_events_retries(
    world: World, runtime: OnboardingRuntime
) -> None:
    """Three 503s from eManageCRM: the job backs off three times, the event is not a dead
    letter (its budget here is one attempt) and the sign-up completes."""
    response = world.control.post(
        f"{world.emanage_url}/_sandbox/faults", json={"failNext": 3, "status": 503}
    )
    assert response.status_code == 200
    shop_id = world.install()
    request_due_signups(make_session_factory(world.engine))
    table = topics.topics(runtime)
    bus = EmbeddedBus(world.engine)
    bus.policy = bus.policy.__class__(max_attempts=1)
    consumer = Consumer(bus.consumer(sorted(table)), subscriptions(table))

    assert await _consume_until_over(consumer, world, shop_id) == "done"
    [event] = _events(world)
    assert event.status == "done"
    assert event.attempts == 1  # the waits were not counted as failed attempts
