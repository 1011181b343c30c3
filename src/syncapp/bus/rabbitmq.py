"""The RabbitMQ back-end (``SYNCAPP_BUS_URL=amqp://…``), with aio-pika (docs/adr/0013).

Topology, all durable, declared by whoever connects first (idempotent):

* ``<ns>.events`` — a topic exchange. An event's routing key is ``p<n>.<source>.<topic>``, where
  ``n`` is its partition key hashed onto ``partitions`` partitions;
* per consumer group and partition, a quorum queue ``<ns>.<group>.p<n>`` bound to the group's
  topics, with *single active consumer*: one consumer at a time takes a partition, in order —
  so one partition key is never processed by two consumers at once, across processes (the way
  Azure Service Bus sessions lock a session id). ``x-delivery-limit`` makes the broker count
  redeliveries (a consumer that dies mid-event) and dead-letter a poison message to ``<ns>.dlx``;
* ``<ns>.<group>.dead`` — the group's dead letters (reason and history in the headers);
* ``<ns>.<group>.delay.<ms>`` — retry tiers, for delays longer than the consumer may hold a
  message (``hold_seconds``): a message waits out its TTL there and is dead-lettered through
  ``<ns>.retry`` back to its partition queue. A delay is rounded up to the next tier
  (:meth:`Topology.tier`).

A retry within ``hold_seconds`` is held by the consumer, unacknowledged, until it is due, and the
later messages of its key wait behind it (per-key order survives retries); a consumer that dies
hands all of them back to the broker, which redelivers them in order.

Publishing uses publisher confirms: the relay marks an outbox row relayed only once the broker
has confirmed it. Effects are exactly once on top of at-least-once delivery: a settled event's
id is written to ``bus_receipts`` in the transaction of the handler's write, so a redelivery is
acknowledged without being applied again. A consumer whose channel closed (its "lease": the
broker has handed its unacknowledged messages to another consumer) settles nothing.
"""

from __future__ import annotations

import asyncio
import contextlib
import math
import zlib
from collections.abc import Sequence
from dataclasses import dataclass
from datetime import UTC, datetime, timedelta
from typing import Any, cast

import aio_pika
import orjson
import structlog
from aio_pika.abc import (
    AbstractChannel,
    AbstractExchange,
    AbstractIncomingMessage,
    AbstractQueue,
    AbstractRobustConnection,
)
from aiormq.abc import DeliveredMessage
from pamqp.commands import Basic
from sqlalchemy import ColumnElement, Engine, and_, func, insert, or_, select, text, update
from sqlalchemy.exc import IntegrityError
from sqlalchemy.orm import Session, aliased

from syncapp.bus.doorbell import Listener, listen, ring_on_commit
from syncapp.bus.embedded import delivery_of, not_earlier, shops_after
from syncapp.bus.interface import (
    APP,
    Ack,
    BrokerUnavailable,
    DeadLetter,
    Delivery,
    Outcome,
    Retry,
    Settled,
    outcome_of_error,
)
from syncapp.bus.metrics import RELAYED, SETTLED
from syncapp.bus.models import BusReceipt, InboundEvent
from syncapp.bus.retry import RetryPolicy, backoff_delay
from syncapp.store.db import make_session_factory
from syncapp.store.locking import lease_owner, locked_transaction

log = structlog.get_logger("syncapp.bus.rabbitmq")

H_ROW, H_SOURCE, H_TOPIC, H_SHOP = "syncapp-row", "syncapp-source", "syncapp-topic", "syncapp-shop"
H_DELIVERY, H_KEY, H_ATTEMPTS = "syncapp-delivery-id", "syncapp-key", "syncapp-attempts"


@dataclass(frozen=True, slots=True)
class Topology:
    """Names and shape of the broker objects (one ``namespace`` per deployment or test)."""

    namespace: str = "syncapp"
    partitions: int = 4
    delivery_limit: int = 20
    delay_tiers: tuple[float, ...] = (1.0, 5.0, 30.0, 120.0, 900.0)

    @property
    def exchange(self) -> str:
        return f"{self.namespace}.events"

    @property
    def dlx(self) -> str:
        return f"{self.namespace}.dlx"

    @property
    def retry_exchange(self) -> str:
        return f"{self.namespace}.retry"

    def partition(self, key: str) -> int:
        return zlib.crc32(key.encode()) % self.partitions

    def routing_key(self, source: str, topic: str, key: str) -> str:
        return f"p{self.partition(key)}.{source}.{topic.replace('/', '.')}"

    def queue(self, group: str, n: int) -> str:
        return f"{self.namespace}.{group}.p{n}"

    def dead_queue(self, group: str) -> str:
        return f"{self.namespace}.{group}.dead"

    def tier(self, delay: float) -> float:
        """The shortest delay tier at least ``delay`` long (else the longest)."""
        return next((t for t in sorted(self.delay_tiers) if t >= delay), max(self.delay_tiers))

    def delay_queue(self, group: str, n: int, tier: float) -> str:
        return f"{self.queue(group, n)}.delay.{round(tier * 1000)}"


def message_for(row: InboundEvent) -> tuple[bytes, dict[str, Any], str]:
    """The CloudEvent body, headers and message id of a stored event."""
    delivery = delivery_of(row)
    envelope = delivery.envelope()
    headers: dict[str, Any] = {
        H_ROW: row.id,
        H_SOURCE: row.source,
        H_TOPIC: row.topic,
        H_SHOP: row.shop_domain,
        H_DELIVERY: row.delivery_id,
        H_KEY: delivery.partition_key,
        H_ATTEMPTS: 0,
    }
    return envelope.to_json(), headers, envelope.id


class RabbitBus:
    """A connection to the broker shared by a process's relay and consumers."""

    def __init__(
        self,
        url: str,
        engine: Engine,
        *,
        topology: Topology | None = None,
        policy: RetryPolicy | None = None,
        prefetch: int = 64,
        window: int | None = None,
        jitter: Any = None,
        hold_seconds: float = 900.0,
    ) -> None:
        import random

        self.url = url
        self.engine = engine
        self.sessions = make_session_factory(engine)
        self.topology = topology or Topology()
        self.policy = policy or RetryPolicy()
        self.prefetch = prefetch
        # Per partition: the relay keeps at most ``window`` unsettled events in the broker, and
        # a consumer holds at most ``prefetch - window`` retries; so held retries never fill the
        # prefetch and every event in the broker reaches the consumer's buffer (fairness).
        self.window = window if window is not None else max(1, prefetch // 2)
        if not 0 < self.window <= prefetch:
            raise ValueError(f"window {self.window} must be within 1..prefetch ({prefetch})")
        self.hold_limit = prefetch - self.window
        self.jitter = jitter or random.random
        # A retry due within this is held by the consumer, unacknowledged (the key's order
        # kept); below RabbitMQ's consumer_timeout (30 min by default), which would close it.
        self.hold_seconds = hold_seconds
        self._connection: AbstractRobustConnection | None = None

    async def connection(self) -> AbstractRobustConnection:
        if self._connection is None or self._connection.is_closed:
            try:
                self._connection = await aio_pika.connect_robust(self.url, timeout=10)
            except (OSError, aio_pika.exceptions.AMQPError) as exc:
                raise BrokerUnavailable(f"cannot reach the broker at {self.url}: {exc}") from exc
        return self._connection

    async def declare(self, channel: AbstractChannel) -> AbstractExchange:
        t = self.topology
        exchange = await channel.declare_exchange(
            t.exchange, aio_pika.ExchangeType.TOPIC, durable=True
        )
        await channel.declare_exchange(t.dlx, aio_pika.ExchangeType.DIRECT, durable=True)
        await channel.declare_exchange(t.retry_exchange, aio_pika.ExchangeType.DIRECT, durable=True)
        return exchange

    async def declare_group(
        self, channel: AbstractChannel, group: str, topics: Sequence[tuple[str, str]]
    ) -> list[AbstractQueue]:
        """The group's partition queues bound to its topics, its dead-letter and delay queues."""
        t = self.topology
        await self.declare(channel)
        dead = await channel.declare_queue(
            t.dead_queue(group), durable=True, arguments={"x-queue-type": "quorum"}
        )
        await dead.bind(t.dlx, routing_key=group)
        queues = []
        for n in range(t.partitions):
            name = t.queue(group, n)
            queue = await channel.declare_queue(
                name,
                durable=True,
                arguments={
                    "x-queue-type": "quorum",
                    "x-single-active-consumer": True,
                    "x-delivery-limit": t.delivery_limit,
                    "x-dead-letter-exchange": t.dlx,
                    "x-dead-letter-routing-key": group,
                },
            )
            for source, topic in topics:
                await queue.bind(t.exchange, routing_key=f"p{n}.{source}.{topic.replace('/', '.')}")
            await queue.bind(t.retry_exchange, routing_key=name)
            queues.append(queue)
            for tier in t.delay_tiers:
                await channel.declare_queue(
                    t.delay_queue(group, n, tier),
                    durable=True,
                    arguments={
                        "x-message-ttl": round(tier * 1000),
                        "x-dead-letter-exchange": t.retry_exchange,
                        "x-dead-letter-routing-key": name,
                    },
                )
        return queues

    def consumer(
        self,
        topics: Sequence[tuple[str, str]],
        *,
        group: str = "worker",
        owner: str | None = None,
        wait_seconds: float = 0.2,
    ) -> RabbitConsumer:
        return RabbitConsumer(
            self, topics, group=group, owner=owner or lease_owner(), wait=wait_seconds
        )

    def relay(
        self, *, batch: int = 500, window: int | None = None, lease_seconds: float = 60.0
    ) -> Relay:
        return Relay(self, batch=batch, window=window, lease_seconds=lease_seconds)

    async def close(self) -> None:
        if self._connection is not None:
            await self._connection.close()
            self._connection = None


IN_BROKER = ("relaying", "relayed", "retrying")
"""Row states of an event the broker holds (or is being handed): the relay publishes no later
event of its partition key meanwhile, so per-key order survives retries, delay tiers and
crashes, and the broker never holds a key's later events behind a held retry."""

RELAY_LOCK = 0x5359_4E43_0001  # pg_advisory_xact_lock key: one relay chooses at a time


class Relay:
    """Publishes stored events not relayed yet, with confirms, then marks them ``relayed``.

    The outbox is the fair scheduler (ADR 0013): each round visits the shops with unrelayed
    events round-robin (like the embedded claim) and publishes into a partition only while it
    holds fewer than ``window`` events in flight (relayed, not settled yet; retries held or in
    a delay tier do not count). With ``window`` no larger than the consumer's prefetch minus
    its held retries, every event in the broker is in the consumer's buffer, so another shop's
    new event is published in the next round and taken in the consumer's next batch, however
    many events a busy shop has waiting. A key's next event is published only once its earlier
    one is settled (at most one event per key in the broker).

    Three moves, no lock across the publish: choose and lease a batch, publish it (each
    confirmed), mark the published rows in a short transaction. A relay that dies after
    publishing and before marking publishes those events again; consumers' receipts make that
    harmless. Events stay in the database while the broker is away.
    """

    def __init__(
        self,
        bus: RabbitBus,
        *,
        batch: int,
        lease_seconds: float = 60.0,
        window: int | None = None,
        stale_seconds: float = 600.0,
    ) -> None:
        self._bus = bus
        self._batch = batch
        self._lease = lease_seconds
        self._window = window if window is not None else bus.window
        # An in-flight event not settled after this no longer holds its partition's window or
        # its key (a message lost with a deleted queue must not stop the relay for good).
        self._stale = stale_seconds
        self._owner = lease_owner()
        self._cursor = ""  # the shop the previous round stopped at (round-robin)
        self._channel: AbstractChannel | None = None
        self._exchange: AbstractExchange | None = None
        self.published: list[int] = []  # the row ids the last round published (tests, metrics)
        self._closed_since: float | None = None

    async def _open(self) -> AbstractExchange:
        if self._channel is None or self._exchange is None:
            connection = await self._bus.connection()
            self._channel = await connection.channel(publisher_confirms=True)
            self._exchange = await self._bus.declare(self._channel)
        elif self._channel.is_closed:
            # The robust connection restores this channel when it reconnects; a new channel
            # opened meanwhile fails, and left half-open it spoils the restore. If the
            # connection is back and the channel still is not (its restore failed), the relay
            # would stop for good: after a grace, open a fresh one.
            loop = asyncio.get_running_loop()
            self._closed_since = self._closed_since or loop.time()
            current = self._bus._connection
            if (
                loop.time() - self._closed_since > 10.0
                and current is not None
                and not current.is_closed
            ):
                log.warning("bus.relay_channel_reopened")
                self._channel = self._exchange = None
                self._closed_since = None
                return await self._open()
            raise BrokerUnavailable("the channel to the broker is closed; reconnecting")
        self._closed_since = None
        return self._exchange

    def _in_flight(self, table: Any, now: datetime) -> ColumnElement[bool]:
        """``table``'s row is in the broker, unsettled, and not stale."""
        fresh = now - timedelta(seconds=self._stale)
        return or_(
            and_(table.status == "relaying", table.locked_until >= now),
            and_(table.status == "relayed", table.relayed_at > fresh),
            and_(table.status == "retrying", table.locked_until > now),
        )

    def _claim(self) -> list[InboundEvent]:
        """Choose the round's events and lease them to this relay (status ``relaying``), so two
        relays never publish one event; a dead relay's lease runs out and the events go again.
        One short write transaction (serialised across relays) so the window holds."""
        now = datetime.now(UTC)
        topology = self._bus.topology
        with locked_transaction(self._bus.sessions) as session:
            if session.get_bind().dialect.name == "postgresql":
                session.execute(text("SELECT pg_advisory_xact_lock(:k)"), {"k": RELAY_LOCK})
            flying = session.execute(
                select(InboundEvent.partition_key, InboundEvent.shop_domain).where(
                    InboundEvent.status.in_(("relaying", "relayed")),
                    self._in_flight(InboundEvent, now),
                )
            ).all()
            room = [self._window] * topology.partitions
            for key, shop in flying:
                room[topology.partition(key or f"{shop}/shop")] -= 1
            budget = min(self._batch, sum(max(0, r) for r in room))
            if budget <= 0:
                return []
            chosen: list[int] = []

            def take(candidates: Sequence[Any]) -> None:
                for row_id, key, shop in candidates:
                    n = topology.partition(key or f"{shop}/shop")
                    if room[n] > 0 and len(chosen) < budget:
                        room[n] -= 1
                        chosen.append(row_id)

            columns = (InboundEvent.id, InboundEvent.partition_key, InboundEvent.shop_domain)
            # A dead relay's leases first (their events may be in the broker already).
            take(
                session.execute(
                    select(*columns)
                    .where(InboundEvent.status == "relaying", InboundEvent.locked_until < now)
                    .order_by(InboundEvent.id)
                    .limit(budget)
                ).all()
            )
            earlier = aliased(InboundEvent)
            head = not_earlier(
                earlier,
                earlier.partition_key == InboundEvent.partition_key,
                earlier.id < InboundEvent.id,
                or_(earlier.status == "pending", self._in_flight(earlier, now)),
            )
            shops = shops_after(session, self._cursor, max(1, budget - len(chosen)))
            if shops and len(chosen) < budget:
                quota = max(1, math.ceil((budget - len(chosen)) / len(shops)))
                for shop in shops:
                    if len(chosen) >= budget:
                        break
                    take(
                        session.execute(
                            select(*columns)
                            .where(
                                InboundEvent.status == "pending",
                                InboundEvent.relayed_at.is_(None),
                                InboundEvent.shop_domain == shop,
                                head,
                            )
                            .order_by(InboundEvent.id)
                            .limit(quota)
                        ).all()
                    )
                    self._cursor = shop
            if not chosen:
                return []
            session.execute(
                update(InboundEvent)
                .where(InboundEvent.id.in_(chosen))
                .values(
                    status="relaying",
                    lease_owner=self._owner,
                    locked_until=now + timedelta(seconds=self._lease),
                )
                .execution_options(synchronize_session=False)
            )
            rows = list(
                session.scalars(
                    select(InboundEvent)
                    .where(InboundEvent.id.in_(chosen))
                    .order_by(InboundEvent.id)
                )
            )
            return rows

    async def run_once(self) -> int:
        """Relay one round; returns how many events the broker confirmed."""
        self.published = []
        exchange = await self._open()  # first: with the broker away, nothing is leased
        rows = await asyncio.to_thread(self._claim)
        if not rows:
            return 0
        topology = self._bus.topology
        published: list[int] = []
        unrouted: list[int] = []

        async def send(row: InboundEvent) -> None:
            body, headers, message_id = message_for(row)
            confirmed = await exchange.publish(
                aio_pika.Message(
                    body,
                    headers=headers,
                    message_id=message_id,
                    content_type="application/cloudevents+json",
                    delivery_mode=aio_pika.DeliveryMode.PERSISTENT,
                ),
                routing_key=topology.routing_key(row.source, row.topic, headers[H_KEY]),
            )
            if isinstance(confirmed, DeliveredMessage) and isinstance(
                confirmed.delivery, Basic.Return
            ):
                unrouted.append(row.id)  # no group's queue is bound to its topic
            else:
                published.append(row.id)

        # Every publish finishes (confirmed or failed) before the rows are marked: with a plain
        # gather the first failure returned at once, the others' rows stayed leased for the
        # lease's length and, in flight, held their partition's window and their keys.
        outcomes = await asyncio.gather(*(send(row) for row in rows), return_exceptions=True)
        await asyncio.to_thread(self._mark, rows, published, unrouted)
        RELAYED.inc(len(published))
        failures = [o for o in outcomes if isinstance(o, BaseException)]
        if failures:
            raise failures[0]
        self.published = published
        return len(published)

    def _mark(
        self, rows: Sequence[InboundEvent], published: list[int], unrouted: list[int]
    ) -> None:
        now = datetime.now(UTC)
        mine = (InboundEvent.lease_owner == self._owner, InboundEvent.status == "relaying")
        with locked_transaction(self._bus.sessions) as session:
            if published:  # a consumer may have settled one already: that row stays settled
                session.execute(
                    update(InboundEvent)
                    .where(InboundEvent.id.in_(published), *mine)
                    .values(status="relayed", relayed_at=now, lease_owner=None, locked_until=None)
                    .execution_options(synchronize_session=False)
                )
            if unrouted:
                log.info("bus.relay_unrouted", count=len(unrouted))
                session.execute(
                    update(InboundEvent)
                    .where(InboundEvent.id.in_(unrouted), *mine)
                    .values(
                        status="done",
                        relayed_at=now,
                        processed_at=now,
                        lease_owner=None,
                        locked_until=None,
                        last_error="unroutable: no consumer group's queue is bound to its topic",
                    )
                    .execution_options(synchronize_session=False)
                )
            sent = set(published) | set(unrouted)
            unsent = [r.id for r in rows if r.id not in sent]
            if unsent:  # the broker refused or went away: back to the outbox at once
                session.execute(
                    update(InboundEvent)
                    .where(InboundEvent.id.in_(unsent), *mine)
                    .values(status="pending", lease_owner=None, locked_until=None)
                    .execution_options(synchronize_session=False)
                )

    async def run(self, stop: asyncio.Event, *, poll_seconds: float = 0.2) -> None:
        """Relay until ``stop``; idle, it waits for the database's doorbell (an event stored, or
        a settle that opened a window or freed a key), polling every ``poll_seconds`` besides."""
        listener = await listen(self._bus.engine)
        try:
            while not stop.is_set():
                try:
                    relayed = await self.run_once()
                except Exception as exc:  # the broker is away: the events wait in the outbox
                    log.warning("bus.relay_failed", error=f"{type(exc).__name__}: {exc}")
                    with contextlib.suppress(TimeoutError):
                        await asyncio.wait_for(stop.wait(), timeout=max(poll_seconds, 1.0))
                    continue
                if relayed == 0:
                    await _until_rung(stop, listener, poll_seconds)
        finally:
            await listener.close()


async def _until_rung(stop: asyncio.Event, listener: Listener, seconds: float) -> None:
    """Until ``stop`` is set, the doorbell rings, or ``seconds``."""
    stopping = asyncio.create_task(stop.wait())
    rung = asyncio.create_task(listener.wait(seconds))
    try:
        await asyncio.wait({stopping, rung}, return_when=asyncio.FIRST_COMPLETED)
    finally:
        for task in (stopping, rung):
            task.cancel()
        for task in (stopping, rung):
            with contextlib.suppress(asyncio.CancelledError):
                await task


class RabbitConsumer:
    """Consumes a group's partition queues (``basic.consume``: the broker pushes, nothing
    polls); a claim hands out at most one event per key, none of a key in flight."""

    def __init__(
        self,
        bus: RabbitBus,
        topics: Sequence[tuple[str, str]],
        *,
        group: str,
        owner: str,
        wait: float,
    ) -> None:
        self._bus = bus
        self.topics = sorted(set(topics))
        self.group = group
        self.owner = owner
        self._wait = wait
        self._channel: AbstractChannel | None = None
        self._buffer: list[AbstractIncomingMessage] = []
        self._arrived = asyncio.Event()
        # Retries held unacknowledged until due, by partition key: the key's later messages wait
        # behind them, and a consumer that dies hands them back to the broker in order.
        self._held: dict[str, _Held] = {}
        self._headers: dict[int, dict[str, Any]] = {}  # a held message's updated headers
        # The deliveries handed out, not settled yet: row id → partition key (a key in flight
        # is not handed out again, whatever the consumer claims meanwhile).
        self._out: dict[int, str] = {}

    async def start(self) -> AbstractChannel:
        """Declare the group's queues and start consuming (idempotent)."""
        if self._channel is None:
            connection = await self._bus.connection()
            channel = await connection.channel(publisher_confirms=True)
            await channel.set_qos(prefetch_count=self._bus.prefetch)
            for queue in await self._bus.declare_group(channel, self.group, self.topics):
                await queue.consume(self._received)
            self._channel = channel
        return self._channel

    async def _received(self, message: AbstractIncomingMessage) -> None:
        self._buffer.append(message)
        self._arrived.set()

    def holding(self) -> set[int]:
        """The stored events whose messages this consumer has received and not settled."""
        if self._channel is None or self._channel.is_closed:
            return set()  # the broker has handed all of it to another consumer
        messages = self._buffer + [h.message for h in self._held.values()]
        return {int(cast(int, (m.headers or {}).get(H_ROW, 0))) for m in messages} | set(self._out)

    async def lose_lease(self) -> None:
        """Close the channel as the broker would for a stalled consumer (tests, shutdown)."""
        if self._channel is not None:
            await self._channel.close()

    async def claim(self, limit: int, *, wait: bool = True) -> list[Delivery]:
        """Up to ``limit`` deliveries, at most one per key, none of a key in flight or whose
        earlier event is held for its retry; with ``wait``, waits up to ``wait_seconds`` for one
        (or for a retry to come due)."""
        await self.start()
        loop = asyncio.get_running_loop()
        deadline = loop.time() + (self._wait if wait else 0.0)
        while True:
            taken = self._take(limit, loop.time())
            if taken:
                fresh = await self._fresh(taken)
                if fresh:
                    return fresh
                continue
            now = loop.time()
            if now >= deadline:
                return []
            timeout = deadline - now
            if self._held:
                timeout = min(timeout, max(0.0, min(h.due for h in self._held.values()) - now))
            self._arrived.clear()
            with contextlib.suppress(TimeoutError):
                await asyncio.wait_for(self._arrived.wait(), timeout=timeout)

    async def wait_for_work(self, seconds: float) -> None:
        """Until the broker pushes a message (basic.consume: no polling) or a held retry comes
        due, or ``seconds``."""
        await self.start()
        loop = asyncio.get_running_loop()
        timeout = seconds
        if self._held:
            due = min(h.due for h in self._held.values()) - loop.time()
            timeout = max(0.0, min(timeout, due))
        if not self._arrived.is_set():
            with contextlib.suppress(TimeoutError):
                await asyncio.wait_for(self._arrived.wait(), timeout=timeout)
        self._arrived.clear()

    def _take(
        self, limit: int, now: float
    ) -> list[tuple[AbstractIncomingMessage, dict[str, Any] | None]]:
        """Held retries that came due first, then buffered messages of keys not taken or held."""
        taken: list[tuple[AbstractIncomingMessage, dict[str, Any] | None]] = []
        for key, held in list(self._held.items()):
            if _closed(held.message):
                del self._held[key]  # the broker redelivers it, ahead of the later ones
            elif held.due <= now and len(taken) < limit:
                del self._held[key]
                taken.append((held.message, held.headers))
        blocked = {str((m.headers or {}).get(H_KEY, "")) for m, _ in taken} | set(self._held)
        blocked |= set(self._out.values())  # a key in flight: its next event waits for it
        # The head of each key, grouped by shop; the batch is filled round-robin across shops so
        # another shop's event in the buffer is in this batch (fairness, with the relay's window).
        by_shop: dict[str, list[AbstractIncomingMessage]] = {}
        heads: set[int] = set()
        live: list[AbstractIncomingMessage] = []
        for message in self._buffer:
            if _closed(message):
                continue  # the broker gives it to another consumer
            live.append(message)
            headers = message.headers or {}
            key = str(headers.get(H_KEY, ""))
            if key not in blocked:
                by_shop.setdefault(str(headers.get(H_SHOP, "")), []).append(message)
                heads.add(id(message))
            blocked.add(key)  # a later event of a key waits for the earlier one
        chosen: set[int] = set()
        queues = list(by_shop.values())
        while len(taken) < limit and queues:
            for queue in queues:
                if len(taken) >= limit:
                    break
                message = queue.pop(0)
                taken.append((message, None))
                chosen.add(id(message))
            queues = [q for q in queues if q]
        self._buffer = [m for m in live if id(m) not in chosen]
        return taken

    async def _fresh(
        self, taken: list[tuple[AbstractIncomingMessage, dict[str, Any] | None]]
    ) -> list[Delivery]:
        """``taken`` as deliveries, less those already settled (acked again, not handled)."""
        deliveries = []
        for message, headers in taken:
            if headers is not None:
                self._headers[id(message)] = headers
            deliveries.append(_delivery(message, headers))
        seen = self._receipts([receipt_id(d) for d in deliveries])
        again = [d.id for d in deliveries if receipt_id(d) in seen]
        if again:  # a second copy (the relay republished it) must not leave its row in flight
            await asyncio.to_thread(self._settle_again, again)
        fresh = []
        for delivery in deliveries:
            if receipt_id(delivery) in seen:  # settled before: a redelivery of a done event
                self._headers.pop(id(delivery.handle), None)
                with contextlib.suppress(Exception):
                    await delivery.handle.ack()
            else:
                fresh.append(delivery)
                self._out[delivery.id] = delivery.partition_key
        return fresh

    def _settle_again(self, rows: list[int]) -> None:
        with locked_transaction(self._bus.sessions) as session:
            _settle_rows(session, rows)

    def _receipts(self, ids: list[str]) -> set[str]:
        if not ids:
            return set()
        with self._bus.sessions() as session:
            return set(
                session.scalars(
                    select(BusReceipt.event_id).where(
                        BusReceipt.consumer_group == self.group, BusReceipt.event_id.in_(ids)
                    )
                )
            )

    async def settle(self, outcomes: Sequence[tuple[Delivery, Outcome]]) -> list[Settled]:
        for delivery, _ in outcomes:
            self._out.pop(delivery.id, None)
        results: dict[int, Settled] = {}
        acks: list[Delivery] = []
        live = [(d, o) for d, o in outcomes if not _closed(d.handle)]
        for delivery, _ in outcomes:
            if _closed(delivery.handle):
                results[id(delivery)] = Settled(delivery, "lost")
        done = [(d, o) for d, o in live if isinstance(o, Ack)]
        failed: list[tuple[Delivery, Retry | DeadLetter]] = [
            (d, o) for d, o in live if isinstance(o, Retry | DeadLetter)
        ]
        if done:
            # In a thread: the handlers' after-commit actions may block (see embedded).
            await asyncio.to_thread(self._record, done, results, acks, failed)
        # After the commit, with no lock held: republishing talks to the broker.
        for delivery, outcome in failed:
            results[id(delivery)] = await self._retry(delivery, outcome)
        for delivery in acks:
            self._headers.pop(id(delivery.handle), None)
            try:
                await delivery.handle.ack()
            except Exception:  # the channel closed: the broker redelivers, the receipt holds
                if results[id(delivery)].result == "done":
                    log.warning("bus.ack_failed", event_id=delivery.delivery_id)
        ordered = [results[id(d)] for d, _ in outcomes]
        for item in ordered:
            SETTLED.labels(topic=item.delivery.topic, result=item.result).inc()
        return ordered

    def _record(
        self,
        done: Sequence[tuple[Delivery, Outcome]],
        results: dict[int, Settled],
        acks: list[Delivery],
        failed: list[tuple[Delivery, Retry | DeadLetter]],
    ) -> None:
        """Receipts and the handlers' writes of a batch, in one transaction (each delivery in a
        savepoint: a duplicate or a failing write spoils only itself)."""
        with locked_transaction(self._bus.sessions) as session:
            plain = [d for d, ack in done if isinstance(ack, Ack) and ack.apply is None]
            if plain:
                # Plain acknowledgements: their receipts in one statement (the usual case);
                # a duplicate among them (another consumer settled one) falls back to one
                # savepoint each below.
                try:
                    with session.begin_nested():
                        session.execute(
                            insert(BusReceipt),
                            [
                                {"consumer_group": self.group, "event_id": receipt_id(d)}
                                for d in plain
                            ],
                        )
                except IntegrityError:
                    plain = []
                for delivery in plain:
                    results[id(delivery)] = Settled(delivery, "done")
                    acks.append(delivery)
            for delivery, ack in done:
                assert isinstance(ack, Ack)
                if id(delivery) in results:
                    continue
                try:
                    with session.begin_nested():
                        session.add(
                            BusReceipt(consumer_group=self.group, event_id=receipt_id(delivery))
                        )
                        session.flush()
                        if ack.apply is not None:
                            ack.apply(session)
                            session.flush()
                except IntegrityError:  # another consumer settled it first
                    results[id(delivery)] = Settled(delivery, "lost")
                    acks.append(delivery)
                except Exception as exc:  # the handler's write failed: retry (or refuse)
                    failed.append((delivery, outcome_of_error(exc)))
                else:
                    results[id(delivery)] = Settled(delivery, "done")
                    acks.append(delivery)
            settled = [d.id for d, _ in done if results[id(d)].result == "done"]
            if settled:  # the relay's window and the key's next event follow the rows
                _settle_rows(session, settled)
                ring_on_commit(session)  # the relay publishes the keys' next events at once

    async def _retry(self, delivery: Delivery, outcome: Retry | DeadLetter) -> Settled:
        """Hold the message until its retry is due (or, past ``hold_seconds`` or ``hold_limit``,
        republish it to a delay tier), or dead-letter it: republished, confirmed, then acked."""
        t = self._bus.topology
        message = cast(AbstractIncomingMessage, delivery.handle)
        headers = dict(self._headers.pop(id(message), None) or message.headers or {})
        if _closed(message):
            return Settled(delivery, "lost")
        history = orjson.loads(str(headers.get("syncapp-history", "[]")))
        history.append(
            {
                "attempt": delivery.attempts,
                "at": datetime.now(UTC).isoformat(),
                "error": outcome.reason,
            }
        )
        headers["syncapp-history"] = orjson.dumps(history[-50:]).decode()
        headers["syncapp-last-error"] = outcome.reason[:2000]
        headers[H_ATTEMPTS] = delivery.attempts
        headers.pop("x-delivery-count", None)
        headers.pop("x-death", None)
        waiting = isinstance(outcome, Retry) and not outcome.counts
        if waiting:  # a wait, not a failure: the attempt is not spent
            headers[H_ATTEMPTS] = delivery.attempts - 1
        dead = not waiting and (
            isinstance(outcome, DeadLetter) or self._bus.policy.exhausted(delivery.attempts)
        )
        delay = None
        if dead:
            exchange, routing_key = t.dlx, self.group
        else:
            assert isinstance(outcome, Retry)
            delay = (
                outcome.after or 0.0
                if waiting
                else backoff_delay(
                    max(delivery.attempts, 1),
                    policy=self._bus.policy,
                    jitter=min(self._bus.jitter(), 0.999999),
                    retry_after=outcome.after,
                )
            )
            partition = t.partition(delivery.partition_key)
            held_here = sum(1 for h in self._held.values() if t.partition(h.key) == partition)
            # Until due, the row is ``retrying``: the relay publishes no later event of its key
            # (order kept, also through a delay tier and a crash) and the retry is outside the
            # partition's window. Past ``hold_limit`` held retries in one partition, the next
            # goes to a delay tier, so held retries never take the prefetch fresh events need.
            await asyncio.to_thread(self._mark_retrying, delivery.id, delay)
            if delay <= self._bus.hold_seconds and held_here < self._bus.hold_limit:
                self._held[delivery.partition_key] = _Held(
                    message,
                    asyncio.get_running_loop().time() + delay,
                    headers,
                    delivery.partition_key,
                )
                return Settled(delivery, "retry", delay)
            # Longer than the broker lets a delivery stay unacknowledged, or too many held: the
            # tier's queue dead-letters it back to its partition queue when the TTL is up.
            log.info("bus.retry_not_held", event_id=delivery.delivery_id, delay=delay)
            exchange, routing_key = "", t.delay_queue(self.group, partition, t.tier(delay))
        channel = await self.start()
        target = (
            channel.default_exchange if exchange == "" else await channel.get_exchange(exchange)
        )
        await target.publish(
            _copy(message, headers),
            routing_key=routing_key,
        )
        try:
            await message.ack()
        except Exception:
            return Settled(delivery, "lost")
        if dead:
            await asyncio.to_thread(self._mark_dead, delivery.id, headers)
        return Settled(delivery, "dead" if dead else "retry", delay)

    def _mark_retrying(self, row: int, delay: float) -> None:
        # The key stays blocked until the retry is due and, past that, for the relay's staleness
        # (a retry nobody settles, its queue deleted, must not block its key for good).
        until = datetime.now(UTC) + timedelta(seconds=delay + 600.0)
        self._mark_row(row, status="retrying", locked_until=until)

    def _mark_dead(self, row: int, headers: dict[str, Any]) -> None:
        """The row is a dead letter too (``syncapp bus status``; the key's next event goes)."""
        self._mark_row(
            row,
            status="dead",
            processed_at=datetime.now(UTC),
            locked_until=None,
            last_error=str(headers.get("syncapp-last-error", "")),
            history=str(headers.get("syncapp-history", "[]")),
        )

    def _mark_row(self, row: int, **values: Any) -> None:
        """Record what became of a stored event the broker holds (never of a settled one)."""
        with locked_transaction(self._bus.sessions) as session:
            if values.get("status") == "dead":
                ring_on_commit(session)  # the key's next event may go (the relay)
            session.execute(
                update(InboundEvent)
                .where(InboundEvent.id == row, InboundEvent.status.in_(IN_BROKER))
                .values(
                    relayed_at=func.coalesce(InboundEvent.relayed_at, datetime.now(UTC)), **values
                )
                .execution_options(synchronize_session=False)
            )

    async def renew(self, deliveries: Sequence[Delivery]) -> None:
        return None  # the broker keeps unacknowledged messages for a live channel

    async def release(self, deliveries: Sequence[Delivery]) -> None:
        for delivery in deliveries:
            self._out.pop(delivery.id, None)
        for delivery in deliveries:
            with contextlib.suppress(Exception):
                await delivery.handle.nack(requeue=True)

    async def close(self) -> None:
        held = [h.message for h in self._held.values()]
        for message in held + self._buffer:
            with contextlib.suppress(Exception):
                await message.nack(requeue=True)
        self._buffer, self._held, self._headers, self._out = [], {}, {}, {}
        if self._channel is not None and not self._channel.is_closed:
            await self._channel.close()
        self._channel = None


def _settle_rows(session: Session, rows: Sequence[int]) -> None:
    """Mark stored events settled (``done``) in ``session``'s transaction: in the broker, or
    back in the outbox (``pending``: a publish whose confirm was lost with the connection is
    put back for the relay, yet the broker had it and the consumer settled it; marked done,
    it is not published a third time)."""
    now = datetime.now(UTC)
    session.execute(
        update(InboundEvent)
        .where(InboundEvent.id.in_(rows), InboundEvent.status.in_((*IN_BROKER, "pending")))
        .values(
            status="done",
            processed_at=now,
            locked_until=None,
            lease_owner=None,
            # Settled before the relay marked it relayed (the delivery can beat the relay's
            # own bookkeeping): it was relayed all the same.
            relayed_at=func.coalesce(InboundEvent.relayed_at, now),
        )
        .execution_options(synchronize_session=False)
    )


@dataclass(slots=True)
class _Held:
    """A retry waiting in the consumer, unacknowledged, until ``due`` (the loop's clock)."""

    message: AbstractIncomingMessage
    due: float
    headers: dict[str, Any]
    key: str


def _copy(message: AbstractIncomingMessage, headers: dict[str, Any]) -> aio_pika.Message:
    """``message`` again (a retry, a replay), persistent, with ``headers``."""
    return aio_pika.Message(
        message.body,
        headers=headers,
        message_id=message.message_id,
        content_type=message.content_type,
        delivery_mode=aio_pika.DeliveryMode.PERSISTENT,
    )


def _closed(message: AbstractIncomingMessage) -> bool:
    """Whether the message's channel is gone (its unacknowledged delivery went back)."""
    try:
        return bool(message.channel.is_closed)
    except aio_pika.exceptions.ChannelInvalidStateError:
        return True


def receipt_id(delivery: Delivery) -> str:
    return f"{delivery.source}:{delivery.delivery_id}"


def _delivery(message: AbstractIncomingMessage, headers: dict[str, Any] | None = None) -> Delivery:
    headers = headers if headers is not None else dict(message.headers or {})
    envelope = orjson.loads(message.body)
    source = str(headers.get(H_SOURCE, ""))
    payload = (
        message.body.decode() if source == APP else orjson.dumps(envelope.get("data")).decode()
    )
    redelivered = int(cast(int, headers.get("x-delivery-count", 0) or 0))
    time = datetime.fromisoformat(str(envelope["time"]).replace("Z", "+00:00"))
    return Delivery(
        id=int(cast(int, headers.get(H_ROW, 0) or 0)),
        source=source,
        topic=str(headers.get(H_TOPIC, "")),
        shop_domain=str(headers.get(H_SHOP, "")),
        partition_key=str(headers.get(H_KEY, "")),
        delivery_id=str(headers.get(H_DELIVERY, message.message_id or "")),
        payload=payload,
        attempts=int(cast(int, headers.get(H_ATTEMPTS, 0) or 0)) + redelivered + 1,
        token=int(message.delivery_tag or 0),
        received_at=time,
        api_version=envelope.get("shopifyapiversion"),
        handle=message,
    )


async def dead_letters(bus: RabbitBus, *, group: str) -> list[AbstractIncomingMessage]:
    """Every message of ``group``'s dead-letter queue, peeked: they stay in the queue."""
    connection = await bus.connection()
    channel = await connection.channel()
    try:
        queue = await channel.get_queue(bus.topology.dead_queue(group))
        found = []
        while (message := await queue.get(no_ack=False, fail=False, timeout=5)) is not None:
            found.append(message)
        return found
    finally:
        await channel.close()  # nothing acknowledged: every message is back in the queue


async def replay_dead(bus: RabbitBus, *, group: str, ids: Sequence[int] | None = None) -> int:
    """Send ``group``'s dead letters (those of the stored events ``ids``, or all) back to their
    partition queues with a fresh retry budget; returns how many. Idempotent: a replayed
    message has left the dead-letter queue."""
    connection = await bus.connection()
    channel = await connection.channel(publisher_confirms=True)
    t = bus.topology
    wanted = None if ids is None else set(ids)
    replayed = 0
    try:
        queue = await channel.get_queue(t.dead_queue(group))
        retry = await channel.get_exchange(t.retry_exchange)
        while (message := await queue.get(no_ack=False, fail=False, timeout=5)) is not None:
            headers = dict(message.headers or {})
            if wanted is not None and int(cast(int, headers.get(H_ROW, 0))) not in wanted:
                continue  # left unacknowledged: back in the queue when the channel closes
            headers[H_ATTEMPTS] = 0
            for name in ("x-delivery-count", "x-death", "x-first-death-exchange"):
                headers.pop(name, None)
            partition = t.partition(str(headers.get(H_KEY, "")))
            await retry.publish(
                _copy(message, headers),
                routing_key=t.queue(group, partition),
            )
            await message.ack()
            replayed += 1
            row = int(cast(int, headers.get(H_ROW, 0)))
            await asyncio.to_thread(_mark_replayed, bus, row)
    finally:
        await channel.close()
    return replayed


def _mark_replayed(bus: RabbitBus, row: int) -> None:
    """A replayed dead letter is in flight again (the relay's window, its key's next event)."""
    with locked_transaction(bus.sessions) as session:
        session.execute(
            update(InboundEvent)
            .where(InboundEvent.id == row, InboundEvent.status == "dead")
            .values(status="relayed", relayed_at=datetime.now(UTC), processed_at=None)
            .execution_options(synchronize_session=False)
        )
