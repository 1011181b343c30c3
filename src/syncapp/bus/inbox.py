"""The bus's inbox: durable recording of inbound events, many requests per commit.

Every notification from outside (verified Shopify webhooks, eManageCRM notifications) enters
the bus here, as an ``inbound_events`` row of its ``source``, before it is acknowledged.
A webhook must be on disk before we answer 200, and a commit (an fsync) per request would cap
ingest at a few hundred per second. The :class:`Inbox` therefore collects the rows of
concurrent requests and writes each batch in one transaction, with a single
``INSERT … ON CONFLICT DO NOTHING RETURNING`` statement: each waiting request learns whether its
row was new or a redelivery, and nobody is answered before the commit returns. A failed commit
fails every request of the batch (they answer 503, and Shopify redelivers).

On SQLite the batch is written on the event loop itself through the driver's cursor, in a
handful of statements (about a millisecond for 32 rows, fsync included); a writer thread would
spend longer waiting for the GIL than writing. PostgreSQL batches run in a thread (network
round trips). Several processes take turns on SQLite through an exclusive ``flock`` on a file beside
the database: a blocked writer wakes the moment the lock is released, where SQLite's own busy
handler would sleep and poll in steps of up to 100 ms.
"""

from __future__ import annotations

import asyncio
import contextlib
import fcntl
import sqlite3
from dataclasses import dataclass
from datetime import UTC, datetime
from typing import IO, Any, Literal

import structlog
from prometheus_client import Counter, Histogram
from sqlalchemy import Engine, Table
from sqlalchemy.dialects import postgresql, sqlite

from syncapp.bus.doorbell import ring, ring_in
from syncapp.bus.models import InboundEvent
from syncapp.store.db import SQLITE_BUSY_TIMEOUT_MS, sqlite_write_lock_path

log = structlog.get_logger("syncapp.bus.inbox")

BATCH_ROWS = Histogram(
    "syncapp_ingest_batch_rows",
    "Inbound events written per group commit.",
    buckets=(1, 2, 4, 8, 16, 32, 64, 128, 256, 512),
)
BATCH_SECONDS = Histogram(
    "syncapp_ingest_batch_seconds",
    "Time to write and commit one batch of inbound events.",
    buckets=(0.0005, 0.001, 0.0025, 0.005, 0.01, 0.025, 0.05, 0.1, 0.25, 1),
)

LOCK_WAITS = Counter(
    "syncapp_ingest_lock_waits_total",
    "Times a batch of webhooks found SQLite's write lock held by another process and waited.",
)


Source = Literal["shopify", "emanage", "syncapp"]
"""Who sent an event: Shopify (webhooks), eManageCRM (its notifications) or the app itself."""


@dataclass(frozen=True, slots=True)
class InboxEvent:
    """One verified inbound event, ready to be recorded. ``delivery_id`` is unique per
    ``source`` (a redelivery is recognised by it); ``event_id``, when the sender has one, is
    unique per source, shop and topic."""

    source: Source
    shop_domain: str
    topic: str
    delivery_id: str
    event_id: str | None
    api_version: str | None
    triggered_at: str | None
    payload: str
    # Shop and object (syncapp.bus.envelope.webhook_partition_key); None: the whole shop.
    partition_key: str | None = None


class InboxClosed(RuntimeError):
    """The inbox is stopping; the request should be refused with 503."""


class Inbox:
    """Group-commits :class:`InboxEvent` rows; ``await record(event)`` → True if new."""

    def __init__(
        self, engine: Engine, *, max_batch: int = 256, lock_wait_seconds: float = 3.0
    ) -> None:
        self._engine = engine
        self._max_batch = max_batch
        self._lock_wait = lock_wait_seconds
        self._queue: asyncio.Queue[tuple[InboxEvent, asyncio.Future[bool]]] = asyncio.Queue()
        self._task: asyncio.Task[None] | None = None
        insert = postgresql.insert if engine.dialect.name == "postgresql" else sqlite.insert
        table = InboundEvent.__table__
        assert isinstance(table, Table)
        # One statement, compiled once and cached: executed with a list of rows it becomes a
        # multi-row INSERT (SQLAlchemy's insertmanyvalues) that reports which rows were new.
        self._stmt = (
            insert(table).on_conflict_do_nothing().returning(table.c.source, table.c.delivery_id)
        )
        # The writers' flock shared with every locked_transaction (see syncapp.store.db).
        self._sqlite_lock = sqlite_write_lock_path(engine)
        self._lock_file: IO[str] | None = None
        self._checkpointer: asyncio.Task[None] | None = None
        self.batches = 0

    async def start(self) -> None:
        self._task = asyncio.create_task(self._run(), name="bus-inbox")
        if self._sqlite_lock is not None:
            self._checkpointer = asyncio.create_task(self._checkpoints(), name="wal-checkpoints")

    async def _checkpoints(self) -> None:
        """Move the WAL into the database about once a second, off the event loop."""
        while True:
            await asyncio.sleep(1.0)
            try:
                await asyncio.to_thread(self._checkpoint)
            except Exception as exc:  # a busy or failing checkpoint is retried next second
                log.warning("ingest.checkpoint_failed", error=str(exc))

    def _checkpoint(self) -> None:
        with self._engine.connect() as conn:
            conn.exec_driver_sql("PRAGMA wal_checkpoint(PASSIVE)")

    async def stop(self) -> None:
        checkpointer, self._checkpointer = self._checkpointer, None
        if checkpointer is not None:
            checkpointer.cancel()
            with contextlib.suppress(asyncio.CancelledError):
                await checkpointer
        task, self._task = self._task, None
        if task is None:
            return
        await self._queue.join()
        task.cancel()
        with contextlib.suppress(asyncio.CancelledError):
            await task

    async def record(self, event: InboxEvent) -> bool:
        if self._task is None:
            raise InboxClosed("the inbox is not running")
        future: asyncio.Future[bool] = asyncio.get_running_loop().create_future()
        await self._queue.put((event, future))
        return await future

    def _drain(self, batch: list[tuple[InboxEvent, asyncio.Future[bool]]]) -> None:
        while len(batch) < self._max_batch and not self._queue.empty():
            batch.append(self._queue.get_nowait())

    async def _take_sqlite_lock(self, lock: IO[str]) -> None:
        """Take the cross-process write lock without blocking the loop while another has it."""
        try:
            fcntl.flock(lock, fcntl.LOCK_EX | fcntl.LOCK_NB)
        except BlockingIOError:
            await asyncio.to_thread(fcntl.flock, lock, fcntl.LOCK_EX)

    async def _run(self) -> None:
        try:
            while True:
                batch = [await self._queue.get()]
                self._drain(batch)
                await self._commit(batch)
        finally:
            if self._lock_file is not None:
                self._lock_file.close()

    def _open_lock(self) -> IO[str]:
        # Opened on first use (and again after a failure) so that a missing directory fails
        # the batch with a 503 instead of killing the inbox.
        assert self._sqlite_lock is not None
        if self._lock_file is None:
            self._lock_file = self._sqlite_lock.open("a")
        return self._lock_file

    async def _commit(self, batch: list[tuple[InboxEvent, asyncio.Future[bool]]]) -> None:
        try:
            with BATCH_SECONDS.time():
                if self._sqlite_lock is not None:
                    lock = self._open_lock()
                    await self._take_sqlite_lock(lock)
                    try:
                        results = await self._write_sqlite_when_free(batch)
                    finally:
                        fcntl.flock(lock, fcntl.LOCK_UN)
                    if any(results):
                        ring(self._engine)  # committed: idle consumers start on it now
                else:
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
            BATCH_ROWS.observe(len(batch))
            for _ in batch:
                self._queue.task_done()

    async def _write_sqlite_when_free(
        self, batch: list[tuple[InboxEvent, asyncio.Future[bool]]]
    ) -> list[bool]:
        """Write the batch once SQLite's write lock is free, without blocking the loop.

        Other processes (the worker, the sign-up, App Home writes) hold SQLite's write lock for
        short transactions. SQLite's own busy handler would sleep *on the event loop*, stalling
        every request of this web worker, so the batch tries without waiting and, while the lock
        is taken, sleeps on the loop instead (1 ms, doubling to 20 ms) up to the configured
        wait, then fails (503; Shopify redelivers).
        """
        loop = asyncio.get_running_loop()
        deadline = loop.time() + self._lock_wait
        delay = 0.001
        while True:
            # Whatever arrived while another process held a lock rides along.
            self._drain(batch)
            try:
                # Deliberately on the event loop: a batch costs about a millisecond, and a
                # writer thread would wait for the GIL behind this very loop (measured: 2-3x
                # slower commits under load; docs/adr/0003).
                return self._write_sqlite([e for e, _ in batch])
            except sqlite3.OperationalError as exc:
                if not _is_busy(exc) or loop.time() + delay > deadline:
                    raise
                LOCK_WAITS.inc()
            await asyncio.sleep(delay)
            delay = min(delay * 2, 0.02)

    def _write(self, events: list[InboxEvent]) -> list[bool]:
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
                "partition_key": e.partition_key or f"{e.shop_domain}/shop",
                "status": "pending",
                "attempts": 0,
            }
            for e in events
        ]
        with self._engine.begin() as conn:
            inserted = {(r.source, r.delivery_id) for r in conn.execute(self._stmt, rows)}
            if inserted:
                ring_in(conn)  # NOTIFY, delivered with the commit
        self.batches += 1
        return _first_of_kept(events, inserted)

    def _write_sqlite(self, events: list[InboxEvent]) -> list[bool]:
        """Write a batch; the caller holds the cross-process lock."""
        now = datetime.now(UTC).isoformat(sep=" ")
        params: list[Any] = []
        for e in events:
            params += (
                e.source,
                e.shop_domain,
                e.topic,
                e.delivery_id,
                e.event_id,
                e.api_version,
                e.triggered_at,
                now,
                e.payload,
                e.partition_key or f"{e.shop_domain}/shop",
            )
        placeholders = ",".join(["(?,?,?,?,?,?,?,?,?,?,'pending',0)"] * len(events))
        raw = self._engine.raw_connection()
        cursor = raw.cursor()
        try:
            # Checkpoints copy the WAL into the database and fsync it: tens of milliseconds that
            # must not block the event loop. The inbox runs them in a thread instead.
            cursor.execute("PRAGMA wal_autocheckpoint=0")
            # Fail at once when another process writes (the caller waits off the busy handler).
            cursor.execute("PRAGMA busy_timeout=0")
            try:
                cursor.execute("BEGIN IMMEDIATE")
            finally:
                cursor.execute(f"PRAGMA busy_timeout={SQLITE_BUSY_TIMEOUT_MS}")
            try:
                # Holding the write lock, every row with a larger id is one this INSERT kept.
                (last_id,) = cursor.execute(
                    "SELECT coalesce(max(id), 0) FROM inbound_events"
                ).fetchone()
                cursor.execute(_SQLITE_INSERT + placeholders + " ON CONFLICT DO NOTHING", params)
                kept = cursor.execute(
                    "SELECT source, delivery_id FROM inbound_events WHERE id > ?", (last_id,)
                ).fetchall()
                cursor.execute("COMMIT")
            except BaseException:
                cursor.execute("ROLLBACK")
                raise
        finally:
            cursor.close()
            raw.close()
        self.batches += 1
        return _first_of_kept(events, {(row[0], row[1]) for row in kept})


def _is_busy(exc: sqlite3.OperationalError) -> bool:
    # The primary result code is the low byte of the extended one (SQLITE_BUSY_RECOVERY, ...).
    code = int(getattr(exc, "sqlite_errorcode", 0)) & 0xFF
    return code in (sqlite3.SQLITE_BUSY, sqlite3.SQLITE_LOCKED)


def _first_of_kept(events: list[InboxEvent], kept: set[tuple[str, str]]) -> list[bool]:
    """An event is new when the INSERT kept its row and no earlier event of the batch claimed it."""
    results = []
    for e in events:
        key = (e.source, e.delivery_id)
        results.append(key in kept)
        kept.discard(key)
    return results


_SQLITE_INSERT = (
    "INSERT INTO inbound_events (source, shop_domain, topic, delivery_id, event_id, api_version,"
    " triggered_at, received_at, payload, partition_key, status, attempts)"
    " VALUES "
)
