"""RabbitMQ: retries held by the consumer never stall their partition (they used to: as many
held retries as the prefetch, and no fresh event of that partition was delivered until the
first came due)."""

from __future__ import annotations

from pathlib import Path

import pytest

from syncapp.bus.consumer import Consumer
from syncapp.bus.interface import Ack, Delivery, Outcome, Retry, Subscription
from syncapp.bus.rabbitmq import RabbitBus, Topology
from syncapp.store.db import make_engine
from syncapp.store.migrate import upgrade
from tests.integration.bus.conftest import RABBITMQ_URL, TOPIC, FakeClock, RabbitMedium

pytestmark = [
    pytest.mark.anyio,
    pytest.mark.filterwarnings("ignore::pytest.PytestUnraisableExceptionWarning"),
]


async def test_held_retries_leave_room_for_fresh_events(tmp_path: Path) -> None:
    """One partition, prefetch 2, window 1 (so at most one held retry): two keys retry after
    30 s, and a third key's event is still handled at once; then each event once, in order."""
    engine = make_engine(f"sqlite:///{tmp_path / 'bus.db'}")
    upgrade(engine)
    medium = RabbitMedium("rabbitmq", engine, FakeClock())
    assert medium.rabbit is not None
    medium.rabbit = RabbitBus(
        RABBITMQ_URL,
        engine,
        topology=Topology(namespace=medium.namespace, partitions=1, delay_tiers=(0.2, 1.0)),
        policy=medium.policy,
        prefetch=2,
        window=1,
        jitter=lambda: 0.5,
    )
    try:
        slow, other, fresh = medium.add("a.myshopify.com", ["k1", "k2", "k3"])
        seen: list[int] = []

        async def handler(d: Delivery) -> Outcome:
            seen.append(d.id)
            first = seen.count(d.id) == 1
            return Retry("later", after=30.0) if first and d.id in (slow, other) else Ack()

        consumer = Consumer(medium.consumer(), [Subscription(*TOPIC, handler)], batch_size=8)
        for _ in range(6):
            await consumer.run_once()
            if fresh in seen:
                break
        assert fresh in seen, f"the partition stalled behind held retries: {seen}"
        assert seen.count(slow) == 1  # held (30 s): not retried early
        # The retry past the hold limit went to a delay tier (cut to its longest, 1 s): it
        # comes back and is handled, the held one is still waiting.
        for _ in range(10):
            if seen.count(other) == 2:
                break
            await consumer.run_once()
        assert seen.count(other) == 2
        assert seen.count(slow) == 1
        assert await medium.state(fresh) == "done"
        assert await medium.state(other) == "done"
    finally:
        await medium.close()
        engine.dispose()


@pytest.fixture
def anyio_backend() -> str:
    return "asyncio"
