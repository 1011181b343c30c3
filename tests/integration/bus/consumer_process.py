"""A consumer process for the SIGTERM test: ``python -m tests.integration.bus.consumer_process
<database url> <handler seconds>``. Its handler takes that long; it prints ``ready`` once it
holds its first claim and stops as the worker does (syncapp.bus.consumer.stop_on_signals)."""

from __future__ import annotations

import asyncio
import sys

from syncapp.bus.consumer import Consumer, stop_on_signals
from syncapp.bus.embedded import EmbeddedBus
from syncapp.bus.interface import Ack, Delivery, Outcome, Subscription
from syncapp.store.db import make_engine

TOPIC = ("shopify", "things/update")


async def main(url: str, seconds: float) -> None:
    engine = make_engine(url)
    stop = asyncio.Event()
    stop_on_signals(stop)

    async def slow(delivery: Delivery) -> Outcome:
        print("ready", delivery.id, flush=True)
        await asyncio.sleep(seconds)
        return Ack()

    backend = EmbeddedBus(engine).consumer([TOPIC], owner="process")
    consumer = Consumer(backend, [Subscription(*TOPIC, slow)], grace_seconds=2.0, poll_seconds=0.05)
    await consumer.run(stop)
    engine.dispose()
    print("stopped", flush=True)


if __name__ == "__main__":
    asyncio.run(main(sys.argv[1], float(sys.argv[2])))
