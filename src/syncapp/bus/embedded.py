"""The embedded back-end: the bus in the app's own database (SQLite or PostgreSQL).

Events are rows of ``inbound_events``. A consumer claims a batch in two steps: it *reads*
candidates with no lock held (SQLite readers never wait for the writer), then *claims* them with
one conditional ``UPDATE`` that re-checks every condition — under the shared write lock on
SQLite, through ``FOR UPDATE SKIP LOCKED`` on PostgreSQL, so any number of consumers in any
number of processes share the table and none waits for another's rows.

Which events are candidates:

* **one per partition key, in order**: an event is claimable only while no earlier event of its
  key (among the consumer's topics) is unfinished — pending, retrying or in flight. So one key is
  never processed by two consumers at once, and a key's events are handled in id order;
* **fair across shops**: a claim visits the shops with pending events round-robin from where
  the previous claim stopped and takes at most ``ceil(batch / shops)`` events of each, so a shop
  with 100,000 pending events delays another shop's new event by at most one batch;
* events whose lease ran out (their consumer died) are claimed again first.

A claim is a lease: ``lease_owner`` (this consumer), ``lease_token`` (incremented by every
claim: the fencing token) and ``locked_until``. Settling (done, retry, dead letter) and renewing
happen only ``WHERE lease_owner = me AND lease_token = token``: a consumer whose lease was taken
over changes nothing. A batch is settled in one transaction (one fsync on SQLite), each delivery
in a savepoint together with its handler's write.
"""

from __future__ import annotations

import asyncio
import math
import random
from collections.abc import Callable, Sequence
from datetime import UTC, datetime, timedelta
from typing import Any, cast

import orjson
import structlog
from sqlalchemy import (
    ColumnElement,
    CursorResult,
    Engine,
    and_,
    exists,
    func,
    literal_column,
    or_,
    select,
    tuple_,
    union_all,
    update,
)
from sqlalchemy.orm import Session, aliased

from syncapp.bus.doorbell import Listener, listen, ring_on_commit
from syncapp.bus.interface import (
    Ack,
    DeadLetter,
    Delivery,
    Outcome,
    Retry,
    Settled,
    outcome_of_error,
)
from syncapp.bus.metrics import SETTLED
from syncapp.bus.models import UNFINISHED_STATES, InboundEvent
from syncapp.bus.retry import RetryPolicy, backoff_delay
from syncapp.store.db import make_session_factory
from syncapp.store.locking import lease_owner, locked_transaction

log = structlog.get_logger("syncapp.bus")

UNFINISHED = ("pending", "processing")
"""States in which an event still holds back the later events of its partition key."""


def utcnow() -> datetime:
    return datetime.now(UTC)


def _aware(value: datetime) -> datetime:
    return value if value.tzinfo is not None else value.replace(tzinfo=UTC)


class EmbeddedBus:
    """The embedded bus on ``engine``; :meth:`consumer` opens a consumer of some topics."""

    def __init__(
        self,
        engine: Engine,
        *,
        policy: RetryPolicy | None = None,
        lease_seconds: float = 300.0,
        jitter: Callable[[], float] = random.random,
        clock: Callable[[], datetime] = utcnow,
    ) -> None:
        self.engine = engine
        self.sessions = make_session_factory(engine)
        self.policy = policy or RetryPolicy()
        self.lease_seconds = lease_seconds
        self.jitter = jitter
        self.clock = clock

    def consumer(
        self, topics: Sequence[tuple[str, str]], *, owner: str | None = None
    ) -> EmbeddedConsumer:
        return EmbeddedConsumer(self, topics, owner=owner or lease_owner())


class EmbeddedConsumer:
    """Claims and settles events of ``topics`` ((source, topic) pairs) as ``owner``."""

    def __init__(self, bus: EmbeddedBus, topics: Sequence[tuple[str, str]], *, owner: str) -> None:
        if not topics:
            raise ValueError("a consumer needs at least one (source, topic)")
        self._bus = bus
        self.owner = owner
        self.topics = sorted(set(topics))
        self._cursor = ""  # the shop the previous claim stopped at (round-robin)
        self._listener: Listener | None = None  # the doorbell, once the consumer first idles

    # --- claiming -------------------------------------------------------------------------------

    def _ours(self, table: Any = InboundEvent) -> ColumnElement[bool]:
        by_source: dict[str, list[str]] = {}
        for source, topic in self.topics:
            by_source.setdefault(source, []).append(topic)
        return or_(
            *(and_(table.source == s, table.topic.in_(ts)) for s, ts in sorted(by_source.items()))
        )

    def _head_of_key(self) -> ColumnElement[bool]:
        """No earlier unfinished event of the same partition key (among our topics)."""
        earlier = aliased(InboundEvent)
        return not_earlier(
            earlier,
            earlier.partition_key == InboundEvent.partition_key,
            earlier.id < InboundEvent.id,
            earlier.status.in_(UNFINISHED),
            self._ours_by_key(earlier),
        )

    def _ours_by_key(self, table: Any) -> ColumnElement[bool]:
        """Our topics as one (source:topic) expression, not column comparisons: a lookup by key
        must go by the key's index, never by an index on (source, ..., topic) that a planner
        without statistics finds as selective (see :func:`not_earlier`)."""
        pair = table.source + ":" + table.topic
        return cast(ColumnElement[bool], pair.in_([f"{s}:{t}" for s, t in self.topics]))

    def _due(self, now: datetime) -> ColumnElement[bool]:
        return and_(
            InboundEvent.status == "pending",
            or_(InboundEvent.next_attempt_at.is_(None), InboundEvent.next_attempt_at <= now),
        )

    def _abandoned(self, now: datetime) -> ColumnElement[bool]:
        return and_(InboundEvent.status == "processing", InboundEvent.locked_until < now)

    def _shops(self, session: Session, limit: int) -> list[str]:
        return shops_after(session, self._cursor, limit)

    def candidates(self, limit: int, now: datetime) -> list[int]:
        """Ids worth claiming (read with no lock held; the claim re-checks them)."""
        with self._bus.sessions() as session:
            return self._candidates(session, limit, now)

    def _candidates(self, session: Session, limit: int, now: datetime) -> list[int]:
        ours, head = self._ours(), self._head_of_key()
        found = list(
            session.scalars(
                select(InboundEvent.id)
                .where(self._abandoned(now), ours)
                .order_by(InboundEvent.id)
                .limit(limit)
            )
        )
        # Light load (the usual case): when everything claimable fits in the batch, one
        # query finds it and fairness holds trivially; only a backlog larger than a batch
        # pays for the round-robin (a probe and a query per shop).
        rest = limit - len(found)
        if rest <= 0:
            return found
        everything = list(
            session.scalars(
                select(InboundEvent.id)
                .where(self._due(now), ours, head)
                .order_by(InboundEvent.id)
                .limit(rest + 1)
            )
        )
        if len(everything) <= rest:
            return found + everything
        shops = self._shops(session, limit)
        if shops:
            # One statement for every shop's share (a UNION ALL of per-shop index walks): on
            # PostgreSQL each statement is a round trip, and there is one per shop otherwise.
            quota = max(1, math.ceil(rest / len(shops)))
            parts = [
                select(InboundEvent.id, InboundEvent.shop_domain)
                .where(self._due(now), InboundEvent.shop_domain == shop, ours, head)
                .order_by(InboundEvent.id)
                .limit(quota)
                .subquery()
                for shop in shops
            ]
            union = union_all(*(select(p.c.id, p.c.shop_domain) for p in parts))
            taken = session.execute(union).all()
            order = {shop: n for n, shop in enumerate(shops)}
            for row_id, _ in sorted(taken, key=lambda r: (order[r[1]], r[0]))[:rest]:
                found.append(row_id)
            self._cursor = shops[-1]
        return found

    # The database work runs in a thread: PostgreSQL round trips and SQLite's fsync stay off the
    # event loop, and actions registered with call_after_commit (blocking I/O) may run there.
    async def claim(self, limit: int, *, wait: bool = True) -> list[Delivery]:
        return await asyncio.to_thread(self.claim_now, limit)

    async def wait_for_work(self, seconds: float) -> None:
        """Until the doorbell rings (an event stored and committed) or ``seconds``."""
        if self._listener is None:
            # Just set up: whatever was stored before it listened is looked for at once.
            self._listener = await listen(self._bus.engine)
            return
        await self._listener.wait(seconds)

    async def idle(self) -> bool:
        """Whether no event of its topics is left unsettled (pending, waiting or in flight)."""
        return await asyncio.to_thread(self.outstanding) == 0

    def outstanding(self) -> int:
        with self._bus.sessions() as session:
            count = session.scalar(
                select(func.count())
                .select_from(InboundEvent)
                .where(self._ours(), InboundEvent.status.in_(UNFINISHED))
            )
        return int(count or 0)

    def claim_now(self, limit: int) -> list[Delivery]:
        now = self._bus.clock()
        ids = self.candidates(limit, now)
        if not ids:
            return []
        lease = now + timedelta(seconds=self._bus.lease_seconds)
        # Three plain statements rather than one UPDATE with a correlated NOT EXISTS: on
        # PostgreSQL without fresh statistics (a new, fast-churning table) the planner turned
        # that into a nested loop over the whole table per candidate (seconds per claim). Each
        # of these has one obvious plan: the primary key, then the partition-key index.
        with locked_transaction(self._bus.sessions) as session:
            lock = (
                select(InboundEvent.id, InboundEvent.partition_key)
                .where(InboundEvent.id.in_(ids), or_(self._due(now), self._abandoned(now)))
                .order_by(InboundEvent.id)
            )
            if session.get_bind().dialect.name == "postgresql":
                lock = lock.with_for_update(skip_locked=True)
            rows = session.execute(lock).all()
            keys = sorted({key for _, key in rows if key is not None})
            heads = dict(
                session.execute(
                    select(InboundEvent.partition_key, func.min(InboundEvent.id))
                    .where(
                        InboundEvent.partition_key.in_(keys),
                        unfinished(InboundEvent),
                        InboundEvent.status.in_(UNFINISHED),
                        self._ours_by_key(InboundEvent),
                    )
                    .group_by(InboundEvent.partition_key)
                ).all()
                if keys
                else []
            )
            # Only the first unfinished event of its key (re-checked under the lock: a dead
            # letter replayed since the read is earlier again).
            chosen = [i for i, key in rows if key is None or heads.get(key) == i]
            if not chosen:
                return []
            return self._take(session, chosen, lease)

    def _take(self, session: Session, ids: list[int], lease: datetime) -> list[Delivery]:
        claimed = session.scalars(
            update(InboundEvent)
            .where(InboundEvent.id.in_(ids))
            .values(
                status="processing",
                locked_until=lease,
                lease_owner=self.owner,
                lease_token=InboundEvent.lease_token + 1,
                attempts=InboundEvent.attempts + 1,
            )
            .returning(InboundEvent)
            .execution_options(synchronize_session=False)
        ).all()
        return [delivery_of(row) for row in sorted(claimed, key=lambda r: r.id)]

    # --- settling -------------------------------------------------------------------------------

    def _fenced(self, delivery: Delivery) -> ColumnElement[bool]:
        return and_(
            InboundEvent.id == delivery.id,
            InboundEvent.status == "processing",
            InboundEvent.lease_owner == self.owner,
            InboundEvent.lease_token == delivery.token,
        )

    async def settle(self, outcomes: Sequence[tuple[Delivery, Outcome]]) -> list[Settled]:
        return await asyncio.to_thread(self.settle_now, outcomes)

    def settle_now(self, outcomes: Sequence[tuple[Delivery, Outcome]]) -> list[Settled]:
        """Record every outcome of a batch in one transaction (fenced, each in a savepoint)."""
        if not outcomes:
            return []
        results: list[Settled | None] = [None] * len(outcomes)
        # Plain acknowledgements (no write of the handler's) settle in one statement.
        plain = [
            (n, d) for n, (d, o) in enumerate(outcomes) if isinstance(o, Ack) and o.apply is None
        ]
        with locked_transaction(self._bus.sessions) as session:
            if plain:
                settled = set(
                    session.scalars(
                        update(InboundEvent)
                        .where(
                            tuple_(InboundEvent.id, InboundEvent.lease_token).in_(
                                [(d.id, d.token) for _, d in plain]
                            ),
                            InboundEvent.status == "processing",
                            InboundEvent.lease_owner == self.owner,
                        )
                        .values(**_done(self._bus.clock()))
                        .returning(InboundEvent.id)
                        .execution_options(synchronize_session=False)
                    )
                )
                for n, d in plain:
                    results[n] = Settled(d, "done" if d.id in settled else "lost")
                    settled.discard(d.id)  # the same delivery twice: the second is lost
            for n, (delivery, outcome) in enumerate(outcomes):
                if results[n] is None:
                    results[n] = self._settle_one(session, delivery, outcome)
        done = [r for r in results if r is not None]
        for item in done:
            SETTLED.labels(topic=item.delivery.topic, result=item.result).inc()
            fields = {
                "event_id": item.delivery.id,
                "topic": item.delivery.topic,
                "shop": item.delivery.shop_domain,
                "attempts": item.delivery.attempts,
            }
            if item.result == "lost":
                log.warning("bus.lease_lost", **fields)
            elif item.result == "dead":
                log.error("bus.event_dead", reason=item.reason, **fields)
            elif item.result == "retry":
                log.warning(
                    "bus.event_retry",
                    retry_in=round(item.delay or 0.0, 3),
                    reason=item.reason,
                    **fields,
                )
        return done

    def _settle_one(self, session: Session, delivery: Delivery, outcome: Outcome) -> Settled:
        now = self._bus.clock()
        if isinstance(outcome, Ack):
            try:
                with session.begin_nested():
                    if not self._update(session, delivery, _done(now)):
                        return Settled(delivery, "lost")
                    if outcome.apply is not None:
                        outcome.apply(session)
                        session.flush()
                return Settled(delivery, "done")
            except Exception as exc:  # the handler's write failed: retried, or refused for good
                outcome = outcome_of_error(exc)
        if isinstance(outcome, Retry) and not outcome.counts:
            with session.begin_nested():
                values = {
                    "status": "pending",
                    "locked_until": None,
                    "lease_owner": None,
                    "attempts": InboundEvent.attempts - 1,
                    "next_attempt_at": now + timedelta(seconds=outcome.after or 0.0),
                }
                if not self._update(session, delivery, values):
                    return Settled(delivery, "lost")
                return Settled(delivery, "wait", outcome.after, reason=outcome.reason)
        with session.begin_nested():
            history = session.scalar(
                select(InboundEvent.history).where(InboundEvent.id == delivery.id)
            )
            entries = orjson.loads(history) if history else []
            reason = outcome.reason
            entries.append({"attempt": delivery.attempts, "at": now.isoformat(), "error": reason})
            common: dict[str, Any] = {
                "last_error": reason[:2000],
                "history": orjson.dumps(entries[-50:]).decode(),
                "locked_until": None,
                "lease_owner": None,
            }
            if isinstance(outcome, DeadLetter) or self._bus.policy.exhausted(delivery.attempts):
                if not self._update(
                    session, delivery, {**common, "status": "dead", "processed_at": now}
                ):
                    return Settled(delivery, "lost")
                return Settled(delivery, "dead", reason=reason)
            delay = backoff_delay(
                max(delivery.attempts, 1),
                policy=self._bus.policy,
                jitter=min(self._bus.jitter(), 0.999999),
                retry_after=outcome.after,
            )
            values = {
                **common,
                "status": "pending",
                "next_attempt_at": now + timedelta(seconds=delay),
            }
            if not self._update(session, delivery, values):
                return Settled(delivery, "lost")
            return Settled(delivery, "retry", delay, reason=reason)

    def _update(self, session: Session, delivery: Delivery, values: dict[str, Any]) -> bool:
        result = session.execute(
            update(InboundEvent)
            .where(self._fenced(delivery))
            .values(**values)
            .execution_options(synchronize_session=False)
        )
        return cast(CursorResult[Any], result).rowcount == 1

    async def renew(self, deliveries: Sequence[Delivery]) -> None:
        """Extend the leases still ours (a long handler keeps its claim)."""
        if deliveries:
            await asyncio.to_thread(self._renew, deliveries)

    def _renew(self, deliveries: Sequence[Delivery]) -> None:
        until = self._bus.clock() + timedelta(seconds=self._bus.lease_seconds)
        with locked_transaction(self._bus.sessions) as session:
            for delivery in deliveries:
                self._update(session, delivery, {"locked_until": until})

    async def release(self, deliveries: Sequence[Delivery]) -> None:
        """Hand claims back unprocessed (shutdown): due again at once, the attempt uncounted."""
        if deliveries:
            await asyncio.to_thread(self._release, deliveries)

    def _release(self, deliveries: Sequence[Delivery]) -> None:
        with locked_transaction(self._bus.sessions) as session:
            ring_on_commit(session)  # a peer takes them over at once
            for delivery in deliveries:
                self._update(
                    session,
                    delivery,
                    {
                        "status": "pending",
                        "locked_until": None,
                        "lease_owner": None,
                        "attempts": InboundEvent.attempts - 1,
                    },
                )

    async def close(self) -> None:
        listener, self._listener = self._listener, None
        if listener is not None:
            await listener.close()


def not_earlier(earlier: Any, *conditions: ColumnElement[bool]) -> ColumnElement[bool]:
    """``NOT EXISTS`` an ``earlier`` row meeting ``conditions``, kept a per-row probe.

    On a fresh, fast-churning PostgreSQL table (no statistics yet) the planner turned this into
    an anti-join, or a probe through the (source, shop, topic, event id) index, that scanned the
    whole table per candidate: about 700 ms per claim, seconds under load. With the partial
    index's predicate repeated literally the probe is a lookup in the small index of unfinished
    rows, whatever the statistics say; ``OFFSET 0`` keeps it a per-row probe."""
    return ~exists(select(earlier.id).where(unfinished(earlier), *conditions).offset(0))


def unfinished(table: Any) -> ColumnElement[bool]:
    """The predicate of ``ix_inbound_events_unfinished_key``, with literals (a planner matches
    a partial index against constants, not bound parameters)."""
    return cast(
        ColumnElement[bool],
        table.status.in_([literal_column(f"'{s}'") for s in UNFINISHED_STATES]),
    )


def shops_after(session: Session, cursor: str, limit: int, status: str = "pending") -> list[str]:
    """Up to ``limit`` shops with events in ``status``, round-robin after ``cursor`` (a loose
    index scan of (status, shop_domain): one probe per shop, not per event). The embedded claim
    and the broker relay both visit shops this way (fairness across shops)."""
    shops = _shops_from(session, cursor, limit, status)
    if len(shops) < limit and cursor:  # wrap around: the shops up to the cursor
        shops += [s for s in _shops_from(session, "", limit - len(shops), status) if s <= cursor]
    return list(dict.fromkeys(shops))


def _shops_from(session: Session, after: str, limit: int, status: str) -> list[str]:
    """Up to ``limit`` shops after ``after`` in one statement: a recursive loose index scan
    (each step the next shop_domain of the (status, shop_domain) index)."""
    step = aliased(InboundEvent)
    first = select(func.min(InboundEvent.shop_domain).label("shop")).where(
        InboundEvent.status == status, InboundEvent.shop_domain > after
    )
    walk = first.cte("shops", recursive=True)
    following = (
        select(func.min(step.shop_domain))
        .where(step.status == status, step.shop_domain > walk.c.shop)
        .scalar_subquery()
    )
    walk = walk.union_all(select(following).where(walk.c.shop.is_not(None)))
    return [
        shop
        for shop in session.scalars(
            select(walk.c.shop).where(walk.c.shop.is_not(None)).limit(limit)
        )
    ]


def _done(now: datetime) -> dict[str, Any]:
    return {
        "status": "done",
        "processed_at": now,
        "locked_until": None,
        "lease_owner": None,
        "next_attempt_at": None,
        "last_error": None,
    }


def delivery_of(row: InboundEvent) -> Delivery:
    return Delivery(
        id=row.id,
        source=row.source,
        topic=row.topic,
        shop_domain=row.shop_domain,
        partition_key=row.partition_key or f"{row.shop_domain}/shop",
        delivery_id=row.delivery_id,
        payload=row.payload,
        attempts=row.attempts,
        token=row.lease_token,
        received_at=_aware(row.received_at),
        event_id=row.event_id,
        triggered_at=row.triggered_at,
        api_version=row.api_version,
    )
