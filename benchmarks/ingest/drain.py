"""A consumer draining the ingest benchmark's topic (``run.py --drain``): every stored
``products/update`` is claimed, handed to a handler that acks at once, and settled, the way the
worker consumes, on the embedded bus of the same database. Stops on SIGTERM.

    python -m benchmarks.ingest.drain <database url>
"""

from __future__ import annotations

import asyncio
import sys

from syncapp.bus.consumer import Consumer, stop_on_signals
from syncapp.bus.embedded import EmbeddedBus
from syncapp.bus.interface import Ack, Delivery, Outcome, Subscription
from syncapp.store.db import make_engine

TOPIC = ("shopify", "products/update")


async def main(url: str) -> None:
    engine = make_engine(url)
    stop = asyncio.Event()
    stop_on_signals(stop)

    async def ack(delivery: Delivery) -> Outcome:
        return Ack()

    backend = EmbeddedBus(engine).consumer([TOPIC])
    consumer = Consumer(backend, [Subscription(*TOPIC, ack)], batch_size=256, poll_seconds=0.05)
    await consumer.run(stop)
    engine.dispose()


if __name__ == "__main__":
    asyncio.run(main(sys.argv[1]))
