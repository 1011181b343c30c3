"""The bus contract suite's back-ends: every test here runs on each of them.

A :class:`Medium` puts events on a back-end the way the app does (rows in the database; with a
broker, relayed after commit) and opens consumers on it. ``embedded-sqlite`` and
``embedded-postgresql`` use the app's database; ``rabbitmq`` the server on 127.0.0.1:5672 (a
missing broker fails the run).
"""

from __future__ import annotations

import asyncio
import itertools
import uuid
from collections.abc import AsyncIterator, Iterator, Sequence
from dataclasses import dataclass, field
from datetime import UTC, datetime, timedelta
from pathlib import Path
from typing import Any

import pytest
from sqlalchemy import Engine, insert, select

from syncapp.bus.embedded import EmbeddedBus
from syncapp.bus.interface import ConsumerBackend, Delivery, Outcome, Settled
from syncapp.bus.models import BusReceipt, InboundEvent
from syncapp.bus.rabbitmq import IN_BROKER, RabbitBus, RabbitConsumer, Relay, Topology
from syncapp.bus.retry import RetryPolicy
from syncapp.store.db import make_engine
from syncapp.store.migrate import upgrade

RABBITMQ_URL = "amqp://guest:guest@127.0.0.1:5672/"

TOPIC = ("shopify", "things/update")
_serial = itertools.count(1)


class FakeClock:
    """A clock the test moves (leases and backoffs without sleeping)."""

    def __init__(self) -> None:
        self.now = datetime(2026, 12, 1, 12, 0, tzinfo=UTC)

    def __call__(self) -> datetime:
        return self.now

    def advance(self, seconds: float) -> None:
        self.now += timedelta(seconds=seconds)


@dataclass
class Medium:
    """An embedded back-end on a fake clock (subclass: RabbitMQ, on real time)."""

    name: str
    engine: Engine
    clock: FakeClock
    policy: RetryPolicy = field(default_factory=lambda: RetryPolicy(max_attempts=3))
    lease_seconds: float = 30.0
    fake_time = True

    async def advance(self, seconds: float) -> None:
        """Let ``seconds`` pass for leases and backoffs."""
        self.clock.advance(seconds)

    async def expire_lease(self, consumer: ConsumerBackend) -> None:
        """Make ``consumer`` lose its claims the way a stalled consumer does."""
        self.clock.advance(self.lease_seconds + 1)

    async def state(self, event_id: int) -> str:
        """done | dead | pending | processing, as this back-end records it."""
        return str(self.status(event_id).status)

    async def history(self, event_id: int) -> tuple[str | None, list[dict[str, Any]]]:
        import orjson

        row = self.status(event_id)
        return row.last_error, orjson.loads(row.history or "[]")

    async def replay(self, event_id: int) -> int:
        from syncapp.bus.operators import replay
        from syncapp.store.db import make_session_factory

        return replay(make_session_factory(self.engine), ids=[event_id])

    async def close(self) -> None:
        return None

    @property
    def bus(self) -> EmbeddedBus:
        return EmbeddedBus(
            self.engine,
            policy=self.policy,
            lease_seconds=self.lease_seconds,
            jitter=lambda: 0.5,
            clock=self.clock,
        )

    def rows(
        self, shop: str, keys: Sequence[str], *, topic: tuple[str, str] = TOPIC
    ) -> list[dict[str, Any]]:
        return [
            {
                "source": topic[0],
                "topic": topic[1],
                "shop_domain": shop,
                "partition_key": f"{shop}/{key}",
                "delivery_id": f"d-{next(_serial)}",
                "payload": f'{{"key": "{key}", "n": {n}}}',
                "received_at": self.clock(),
                "status": "pending",
                "attempts": 0,
            }
            for n, key in enumerate(keys)
        ]

    def add(self, shop: str, keys: Sequence[str], *, topic: tuple[str, str] = TOPIC) -> list[int]:
        """Store one event per key (in order) for ``shop``; their ids."""
        rows = self.rows(shop, keys, topic=topic)
        with self.engine.begin() as conn:
            conn.execute(insert(InboundEvent), rows)
            ids = conn.scalars(
                select(InboundEvent.id)
                .where(InboundEvent.delivery_id.in_([r["delivery_id"] for r in rows]))
                .order_by(InboundEvent.id)
            ).all()
        return list(ids)

    def consumer(
        self, owner: str | None = None, topics: Sequence[tuple[str, str]] = (TOPIC,)
    ) -> ConsumerBackend:
        return self.bus.consumer(topics, owner=owner)

    def status(self, event_id: int) -> InboundEvent:
        with self.engine.connect() as conn:
            row = conn.execute(select(InboundEvent).where(InboundEvent.id == event_id)).one()
        return row  # type: ignore[return-value]


class RelayingConsumer:
    """A RabbitMQ consumer that first relays what the test stored (the relay process's job).

    After a relay round it waits (up to 2 s) until the broker has delivered what the round
    published to one of the medium's consumers: in production the relay runs on its own and the
    consumer's next claim comes later; here the claim follows the publish at once, and the
    delivery trails the publisher's confirm by a few milliseconds. A consumer to which nothing
    can come (everything in the broker is with its peers: single active consumer per
    partition) returns at once instead of waiting out its claim's timeout.
    """

    def __init__(
        self, relay: Relay, consumer: RabbitConsumer, peers: list[RabbitConsumer], engine: Engine
    ) -> None:
        self.relay, self.inner, self.peers, self.engine = relay, consumer, peers, engine

    def _with_peers(self) -> set[int]:
        return set().union(*(p.holding() for p in self.peers if p is not self.inner))

    async def wait_for_work(self, seconds: float) -> None:
        await self.inner.wait_for_work(seconds)

    async def claim(self, limit: int, *, wait: bool = True) -> list[Delivery]:
        await self.inner.start()  # the group's queues exist before anything is published
        await self.relay.run_once()
        loop = asyncio.get_running_loop()
        deadline = loop.time() + 2.0
        published = set(self.relay.published)
        while published and loop.time() < deadline:
            published -= self.inner.holding() | self._with_peers()
            if published:
                await asyncio.sleep(0.005)
        while not self.inner.holding() and loop.time() < deadline:
            with self.engine.connect() as conn:
                flying = set(
                    conn.scalars(select(InboundEvent.id).where(InboundEvent.status.in_(IN_BROKER)))
                )
            if not flying:
                break
            if flying <= self._with_peers():
                return []
            await asyncio.sleep(0.01)
        return await self.inner.claim(limit, wait=wait)

    async def settle(self, outcomes: Sequence[tuple[Delivery, Outcome]]) -> list[Settled]:
        return await self.inner.settle(outcomes)

    async def renew(self, deliveries: Sequence[Delivery]) -> None:
        await self.inner.renew(deliveries)

    async def release(self, deliveries: Sequence[Delivery]) -> None:
        await self.inner.release(deliveries)

    async def close(self) -> None:
        await self.inner.close()


@dataclass
class RabbitMedium(Medium):
    """RabbitMQ on 127.0.0.1:5672 in a namespace of its own; real time, short backoffs."""

    fake_time = False
    url: str = RABBITMQ_URL
    namespace: str = ""
    rabbit: RabbitBus | None = None
    consumers: list[RabbitConsumer] = field(default_factory=list)

    def __post_init__(self) -> None:
        self.policy = RetryPolicy(max_attempts=3, base_seconds=0.2, cap_seconds=1.0)
        self.namespace = f"test-{uuid.uuid4().hex[:10]}"
        self.rabbit = RabbitBus(
            self.url,
            self.engine,
            topology=Topology(
                namespace=self.namespace, partitions=2, delay_tiers=(0.1, 0.2, 0.4, 0.8, 1.6)
            ),
            policy=self.policy,
            jitter=lambda: 0.5,
        )

    def consumer(
        self, owner: str | None = None, topics: Sequence[tuple[str, str]] = (TOPIC,)
    ) -> ConsumerBackend:
        assert self.rabbit is not None
        inner = self.rabbit.consumer(topics, group="contract", owner=owner, wait_seconds=2.0)
        self.consumers.append(inner)
        return RelayingConsumer(self.rabbit.relay(), inner, self.consumers, self.engine)

    async def advance(self, seconds: float) -> None:
        return None  # the consumer's claim waits for the delayed redelivery

    async def expire_lease(self, consumer: ConsumerBackend) -> None:
        assert isinstance(consumer, RelayingConsumer)
        await consumer.inner.lose_lease()

    async def state(self, event_id: int) -> str:
        row = self.status(event_id)
        with self.engine.connect() as conn:
            receipt = conn.scalar(
                select(BusReceipt.event_id).where(
                    BusReceipt.event_id == f"{row.source}:{row.delivery_id}"
                )
            )
        if receipt is not None:
            return "done"
        dead = {int(h["syncapp-row"]) for h in await self.dead_messages()}
        return "dead" if event_id in dead else "processing"

    async def dead_messages(self) -> list[dict[str, Any]]:
        """The headers of every message in the group's dead-letter queue (peeked, requeued)."""
        assert self.rabbit is not None
        connection = await self.rabbit.connection()
        channel = await connection.channel()
        queue = await channel.get_queue(self.rabbit.topology.dead_queue("contract"))
        found = []
        while (message := await queue.get(no_ack=False, fail=False, timeout=2)) is not None:
            found.append(dict(message.headers or {}))
        await channel.close()  # unacknowledged: back in the queue
        return found

    async def history(self, event_id: int) -> tuple[str | None, list[dict[str, Any]]]:
        import orjson

        for headers in await self.dead_messages():
            if int(headers["syncapp-row"]) == event_id:
                return str(headers["syncapp-last-error"]), orjson.loads(headers["syncapp-history"])
        raise AssertionError(f"event {event_id} is not a dead letter")

    async def replay(self, event_id: int) -> int:
        from syncapp.bus.rabbitmq import replay_dead

        assert self.rabbit is not None
        return await replay_dead(self.rabbit, group="contract", ids=[event_id])

    async def close(self) -> None:
        for consumer in self.consumers:
            await consumer.close()
        assert self.rabbit is not None
        connection = await self.rabbit.connection()
        channel = await connection.channel()
        t = self.rabbit.topology
        names = [t.dead_queue("contract")]
        for n in range(t.partitions):
            names.append(t.queue("contract", n))
            names += [t.delay_queue("contract", n, tier) for tier in t.delay_tiers]
        for name in names:
            await channel.queue_delete(name)
        for name in (t.exchange, t.dlx, t.retry_exchange):
            await channel.exchange_delete(name)
        await self.rabbit.close()


@pytest.fixture(params=["embedded-sqlite", "embedded-postgresql", "rabbitmq"])
async def medium(request: pytest.FixtureRequest, tmp_path: Path) -> AsyncIterator[Medium]:
    if request.param == "embedded-postgresql":
        url = request.getfixturevalue("postgres_url")
    else:
        url = f"sqlite:///{tmp_path / 'bus.db'}"
    engine = make_engine(url)
    upgrade(engine)
    cls = RabbitMedium if request.param == "rabbitmq" else Medium
    instance = cls(request.param, engine, FakeClock())
    try:
        yield instance
    finally:
        await instance.close()
        engine.dispose()


@pytest.fixture
def anyio_backend() -> str:
    return "asyncio"


@pytest.fixture(params=["embedded-sqlite", "embedded-postgresql"])
def embedded_medium(request: pytest.FixtureRequest, tmp_path: Path) -> Iterator[Medium]:
    """The embedded back-end only (tests of a process consuming the database)."""
    if request.param == "embedded-postgresql":
        url = request.getfixturevalue("postgres_url")
    else:
        url = f"sqlite:///{tmp_path / 'bus.db'}"
    engine = make_engine(url)
    upgrade(engine)
    try:
        yield Medium(request.param, engine, FakeClock())
    finally:
        engine.dispose()
