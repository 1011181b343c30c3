"""The bus contract suite's back-ends: every test here runs on each of them.

A :class:`Medium` puts events on a back-end the way the app does (rows in the database; with a
broker, relayed after commit) and opens consumers on it. ``embedded-sqlite`` and
``embedded-postgresql`` use the app's database; ``rabbitmq`` the server on 127.0.0.1:5672 (a
missing broker fails the run).
"""

from __future__ import annotations

import itertools
from collections.abc import Iterator, Sequence
from dataclasses import dataclass, field
from datetime import UTC, datetime, timedelta
from pathlib import Path
from typing import Any

import pytest
from sqlalchemy import Engine, insert, select

from syncapp.bus.embedded import EmbeddedBus
from syncapp.bus.interface import ConsumerBackend
from syncapp.bus.retry import RetryPolicy
from syncapp.store.db import make_engine
from syncapp.store.migrate import upgrade
from syncapp.store.models import InboundEvent

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
    name: str
    engine: Engine
    clock: FakeClock
    policy: RetryPolicy = field(default_factory=lambda: RetryPolicy(max_attempts=3))
    lease_seconds: float = 30.0

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


@pytest.fixture(params=["embedded-sqlite", "embedded-postgresql"])
def medium(request: pytest.FixtureRequest, tmp_path: Path) -> Iterator[Medium]:
    if request.param == "embedded-sqlite":
        url = f"sqlite:///{tmp_path / 'bus.db'}"
    else:
        url = request.getfixturevalue("postgres_url")
    engine = make_engine(url)
    upgrade(engine)
    try:
        yield Medium(request.param, engine, FakeClock())
    finally:
        engine.dispose()


@pytest.fixture
def anyio_backend() -> str:
    return "asyncio"
