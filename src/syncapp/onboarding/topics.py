"""The onboarding domain's topic table for the bus: ``signup.requested`` runs the sign-up.

The job's own steps make the three moves (record the attempt, send the request with nothing
held, record the result fenced by the job's lease; :mod:`syncapp.onboarding.runner`). While the
job waits (a step's backoff), its event waits too — outside the retry budget, since waiting is
not failing — and comes back when the job is due.

``syncapp worker`` subscribes this table with every other domain's; ``syncapp onboarding run``
consumes it alone (:func:`consume_signups`), on the same consumer machinery.
"""

from __future__ import annotations

import asyncio

from syncapp.bus.consumer import Consumer
from syncapp.bus.embedded import EmbeddedBus
from syncapp.bus.interface import APP, Ack, Delivery, Outcome, Retry, TopicTable, subscriptions
from syncapp.onboarding.events import SIGNUP_REQUESTED, request_due_signups
from syncapp.onboarding.runner import advance_signup
from syncapp.onboarding.runtime import OnboardingRuntime


def topics(rt: OnboardingRuntime) -> TopicTable:
    async def signup_requested(delivery: Delivery) -> Outcome:
        data = delivery.data()
        wait = await advance_signup(rt, int(data["shop_id"]))
        if wait is None:
            return Ack(note="sign-up over")
        return Retry("the sign-up waits for its next step", after=wait, counts=False)

    return {(APP, SIGNUP_REQUESTED.name): signup_requested}


async def consume_signups(
    rt: OnboardingRuntime,
    bus: EmbeddedBus,
    *,
    stop: asyncio.Event,
    until_idle: bool = False,
    poll_seconds: float = 0.5,
    batch_size: int = 32,
) -> None:
    """Consume the onboarding topics alone on the embedded ``bus`` until ``stop`` is set (or,
    with ``until_idle``, until no sign-up event is left unsettled: waits for a step's backoff
    included). Due jobs without an event get one first (:func:`request_due_signups`)."""
    await asyncio.to_thread(request_due_signups, rt.sessions)
    table = topics(rt)
    backend = bus.consumer(sorted(table))
    consumer = Consumer(
        backend,
        subscriptions(table),
        batch_size=batch_size,
        poll_seconds=poll_seconds,
        renew_every=bus.lease_seconds / 3,
    )
    await consumer.run(stop, until_idle=backend.idle if until_idle else None)
