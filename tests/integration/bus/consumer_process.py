"""A consumer process for the shutdown and crash tests: ``python -m
tests.integration.bus.consumer_process <database url> <handler seconds> [effects] [<amqp url>]``.
Its handler takes that long; it prints ``ready`` once it holds its first claim and stops as the
worker does (syncapp.bus.consumer.stop_on_signals). With ``effects`` every handled event records
its effect, a row of ``effects``, in the fenced write of its completion. With an AMQP URL it
consumes from RabbitMQ and relays the outbox there too, as ``syncapp worker`` does."""

from __future__ import annotations

import asyncio
import sys

from sqlalchemy import text
from sqlalchemy.orm import Session

from syncapp.bus.consumer import Consumer, stop_on_signals
from syncapp.bus.embedded import EmbeddedBus
from syncapp.bus.interface import Ack, ConsumerBackend, Delivery, Outcome, Subscription
from syncapp.bus.rabbitmq import RabbitBus, Relay
from syncapp.store.db import make_engine

TOPIC = ("shopify", "things/update")


async def main(url: str, seconds: float, effects: bool, amqp: str | None) -> None:
    engine = make_engine(url)
    stop = asyncio.Event()
    stop_on_signals(stop)
    announced = False

    async def slow(delivery: Delivery) -> Outcome:
        nonlocal announced
        if not announced:
            print("ready", delivery.id, flush=True)
            announced = True
        await asyncio.sleep(seconds)
        if not effects:
            return Ack()

        def record(session: Session) -> None:
            session.execute(
                text("INSERT INTO effects (event_id) VALUES (:id)"), {"id": delivery.id}
            )

        return Ack(apply=record)

    rabbit = relaying = None
    backend: ConsumerBackend
    if amqp is None:
        backend = EmbeddedBus(engine, lease_seconds=1.0).consumer([TOPIC])
    else:
        rabbit = RabbitBus(amqp, engine)
        broker_consumer = rabbit.consumer([TOPIC], group="crash")
        await broker_consumer.start()  # the group's queues exist before anything is relayed
        backend = broker_consumer
        # A short relay lease: a relay killed mid-batch leaves its rows leased that long.
        relay = Relay(rabbit, batch=500, lease_seconds=2.0)
        relaying = asyncio.create_task(relay.run(stop, poll_seconds=0.05))
    consumer = Consumer(backend, [Subscription(*TOPIC, slow)], grace_seconds=2.0, poll_seconds=0.05)
    await consumer.run(stop)
    if relaying is not None and rabbit is not None:
        await relaying
        await rabbit.close()
    engine.dispose()
    print("stopped", flush=True)


if __name__ == "__main__":
    rest = sys.argv[3:]
    amqp = next((a for a in rest if a.startswith("amqp")), None)
    asyncio.run(main(sys.argv[1], float(sys.argv[2]), "effects" in rest, amqp))
