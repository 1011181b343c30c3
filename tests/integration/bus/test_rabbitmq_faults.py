"""The RabbitMQ back-end under broker faults: connections closed by the broker mid-run, and the
broker unreachable for 30 s. Every handled event records its effect, a row of ``effects``, in
the fenced write of its completion; the tests count them (none lost, none twice)."""

from __future__ import annotations

import asyncio
import contextlib
from collections.abc import AsyncIterator, Callable, Iterator
from pathlib import Path

import pytest
from sqlalchemy import func, select, text
from sqlalchemy.orm import Session

from syncapp.bus.consumer import Consumer
from syncapp.bus.interface import Ack, Delivery, Outcome, Subscription
from syncapp.bus.models import InboundEvent
from syncapp.store.db import make_engine
from syncapp.store.migrate import upgrade
from tests.integration.bus.conftest import TOPIC, FakeClock, RabbitMedium
from tests.integration.bus.faults import TcpProxy, close_all_connections, private_vhost, wait_for

pytestmark = [
    pytest.mark.anyio,
    pytest.mark.filterwarnings("ignore::pytest.PytestUnraisableExceptionWarning"),
]


@pytest.fixture
def vhost() -> Iterator[str]:
    with private_vhost() as name:
        yield name


async def _record(delivery: Delivery) -> Outcome:
    def apply(session: Session) -> None:
        session.execute(text("INSERT INTO effects (event_id) VALUES (:id)"), {"id": delivery.id})

    return Ack(apply=apply)


class Run:
    """A medium on ``url`` with one consumer and one relay running until ``stop()``."""

    def __init__(self, url: str, tmp_path: Path) -> None:
        self.engine = make_engine(f"sqlite:///{tmp_path / 'bus.db'}")
        upgrade(self.engine)
        with self.engine.begin() as conn:
            conn.execute(text("CREATE TABLE effects (event_id INTEGER NOT NULL)"))
        self.medium = RabbitMedium("rabbitmq", self.engine, FakeClock(), url=url)
        assert self.medium.rabbit is not None
        self.rabbit = self.medium.rabbit
        self.backend = self.rabbit.consumer([TOPIC], group="contract", wait_seconds=0.2)
        self._stop = asyncio.Event()
        self._tasks: list[asyncio.Task[None]] = []

    async def start(self) -> None:
        await self.backend.start()  # the group's queues exist before anything is published
        consumer = Consumer(
            self.backend, [Subscription(*TOPIC, _record)], batch_size=32, poll_seconds=0.05
        )
        relay = self.rabbit.relay(batch=200)
        self._tasks = [
            asyncio.create_task(consumer.run(self._stop)),
            asyncio.create_task(relay.run(self._stop, poll_seconds=0.05)),
        ]

    async def stop(self) -> None:
        self._stop.set()
        await asyncio.gather(*self._tasks)
        await self.medium.close()
        self.engine.dispose()

    def effects(self) -> int:
        with self.engine.connect() as conn:
            return int(conn.scalar(text("SELECT count(*) FROM effects")) or 0)

    def twice(self) -> list[tuple[int, int]]:
        with self.engine.connect() as conn:
            rows = conn.execute(
                text("SELECT event_id, count(*) FROM effects GROUP BY event_id HAVING count(*) > 1")
            ).all()
        return [(int(a), int(b)) for a, b in rows]

    def unrelayed(self) -> int:
        with self.engine.connect() as conn:
            return int(
                conn.scalar(
                    select(func.count())
                    .select_from(InboundEvent)
                    .where(InboundEvent.relayed_at.is_(None))
                )
                or 0
            )

    def add(self, count: int, *, first: int = 0) -> list[int]:
        return self.medium.add(
            "a.myshopify.com", [f"Product/{n % 300}" for n in range(first, first + count)]
        )

    def at_least(self, n: int) -> Callable[[], bool]:
        return lambda: self.effects() >= n


@contextlib.asynccontextmanager
async def running(url: str, tmp_path: Path) -> AsyncIterator[Run]:
    run = Run(url, tmp_path)
    await run.start()
    try:
        yield run
    finally:
        await run.stop()


async def test_connections_closed_by_the_broker_mid_run_lose_nothing_and_apply_each_once(
    vhost: str, tmp_path: Path
) -> None:
    """3,000 events stored while the relay publishes and the consumer drains; the broker closes
    every connection of the app twice (``rabbitmqctl close_all_connections``): every event is
    handled, its effect applied exactly once."""
    events = 3_000
    async with running(f"amqp://guest:guest@127.0.0.1:5672/{vhost}", tmp_path) as run:

        async def produce() -> None:
            for first in range(0, events, 100):
                # Paced by the consumer too (at most ~500 events ahead of their effects), so
                # events are still being stored at both closes however slow the machine is.
                while run.effects() < first - 400:  # noqa: ASYNC110 - a count in the database
                    await asyncio.sleep(0.05)
                run.add(100, first=first)
                await asyncio.sleep(0.1)

        producing = asyncio.create_task(produce())
        await wait_for(run.at_least(300), within=60, what="300 effects")
        assert not producing.done()  # events are still being stored and relayed
        await close_all_connections(vhost)
        await wait_for(run.at_least(1_500), within=60, what="1,500 effects")
        await close_all_connections(vhost)
        await producing
        await wait_for(
            run.at_least(events), within=120, what=f"{events} effects (have {run.effects()})"
        )
        assert run.unrelayed() == 0
        assert run.twice() == []
        assert run.effects() == events


async def test_the_broker_unreachable_for_30_s_leaves_events_in_the_outbox_relayed_when_back(
    vhost: str, tmp_path: Path
) -> None:
    """With a proxy between the app and the broker cutting and refusing connections for 30 s,
    events stored meanwhile stay in the outbox; once the broker is reachable again they are
    relayed and handled, each effect once."""
    async with TcpProxy() as proxy:
        url = f"amqp://guest:guest@127.0.0.1:{proxy.port}/{vhost}"
        async with running(url, tmp_path) as run:
            run.add(500)
            await wait_for(run.at_least(500), within=60, what="the first 500 effects")
            proxy.cut()
            run.add(500, first=500)
            await asyncio.sleep(30)  # the outage (not a measurement)
            assert proxy.refused > 0  # the app kept trying to reconnect
            assert run.unrelayed() == 500
            assert run.effects() == 500
            proxy.restore()
            await wait_for(
                run.at_least(1_000), within=90, what=f"1,000 effects (have {run.effects()})"
            )
            assert run.unrelayed() == 0
            assert run.twice() == []
            assert run.effects() == 1_000


@pytest.fixture
def anyio_backend() -> str:
    return "asyncio"
