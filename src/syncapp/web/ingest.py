"""Durable recording of inbound events, many requests per commit.

A webhook must be on disk before we answer 200, and a commit (an fsync) per request would cap
ingest at a few hundred per second. The :class:`EventRecorder` therefore collects the rows of
concurrent requests and writes each batch in one transaction, with a single
``INSERT … ON CONFLICT DO NOTHING RETURNING`` statement: each waiting request learns whether its
row was new or a redelivery, and nobody is answered before the commit returns. A failed commit
fails every request of the batch (they answer 503, and Shopify redelivers).
"""

from __future__ import annotations

import asyncio
import contextlib
from dataclasses import dataclass
from datetime import UTC, datetime
from typing import Any

from sqlalchemy import Engine, Table
from sqlalchemy.dialects import postgresql, sqlite

from syncapp.store.models import InboundEvent


@dataclass(frozen=True, slots=True)
class NewEvent:
    """One verified inbound event, ready to be recorded."""

    source: str
    shop_domain: str
    topic: str
    delivery_id: str
    event_id: str | None
    api_version: str | None
    triggered_at: str | None
    payload: str


class RecorderClosed(RuntimeError):
    """The recorder is stopping; the request should be refused with 503."""


class EventRecorder:
    """Group-commits :class:`NewEvent` rows; ``await record(event)`` → True if new."""

    def __init__(self, engine: Engine, *, max_batch: int = 256) -> None:
        self._engine = engine
        self._max_batch = max_batch
        self._queue: asyncio.Queue[tuple[NewEvent, asyncio.Future[bool]]] = asyncio.Queue()
        self._task: asyncio.Task[None] | None = None
        self._insert = postgresql.insert if engine.dialect.name == "postgresql" else sqlite.insert
        self.batches = 0

    async def start(self) -> None:
        self._task = asyncio.create_task(self._run(), name="event-recorder")

    async def stop(self) -> None:
        task, self._task = self._task, None
        if task is None:
            return
        await self._queue.join()
        task.cancel()
        with contextlib.suppress(asyncio.CancelledError):
            await task

    async def record(self, event: NewEvent) -> bool:
        if self._task is None:
            raise RecorderClosed("event recorder is not running")
        future: asyncio.Future[bool] = asyncio.get_running_loop().create_future()
        await self._queue.put((event, future))
        return await future

    async def _run(self) -> None:
        while True:
            first = await self._queue.get()
            batch = [first]
            while len(batch) < self._max_batch and not self._queue.empty():
                batch.append(self._queue.get_nowait())
            try:
                results = await asyncio.to_thread(self._write, [e for e, _ in batch])
            except Exception as exc:  # every waiter gets the failure; nothing was committed
                for _, fut in batch:
                    if not fut.done():
                        fut.set_exception(exc)
            else:
                for (_, fut), stored in zip(batch, results, strict=True):
                    if not fut.done():
                        fut.set_result(stored)
            finally:
                for _ in batch:
                    self._queue.task_done()

    def _write(self, events: list[NewEvent]) -> list[bool]:
        now = datetime.now(UTC)
        rows: list[dict[str, Any]] = [
            {
                "source": e.source,
                "shop_domain": e.shop_domain,
                "topic": e.topic,
                "delivery_id": e.delivery_id,
                "event_id": e.event_id,
                "api_version": e.api_version,
                "triggered_at": e.triggered_at,
                "received_at": now,
                "payload": e.payload,
                "status": "pending",
                "attempts": 0,
            }
            for e in events
        ]
        table = InboundEvent.__table__
        assert isinstance(table, Table)
        stmt = (
            self._insert(table)
            .values(rows)
            .on_conflict_do_nothing()
            .returning(table.c.source, table.c.delivery_id)
        )
        with self._engine.begin() as conn:
            inserted = {(r.source, r.delivery_id) for r in conn.execute(stmt)}
        self.batches += 1
        # A delivery id twice in one batch: the first request owns the stored row.
        results = []
        for e in events:
            key = (e.source, e.delivery_id)
            results.append(key in inserted)
            inserted.discard(key)
        return results
