"""What operators see and do: the bus's depth per topic and shop, dead letters listed, shown,
replayed (idempotent: only dead letters move) and dropped, and pruning after the retentions.

Selections are by id, topic, shop or time range (:class:`Selection`), the same for every
command, so ``syncapp dlq list`` shows exactly what ``replay`` or ``drop`` would touch.
"""

from __future__ import annotations

from collections.abc import Callable, Sequence
from dataclasses import dataclass
from datetime import UTC, datetime, timedelta
from typing import Any, cast

from sqlalchemy import ColumnElement, CursorResult, and_, delete, func, select, true, update
from sqlalchemy.orm import Session, sessionmaker

from syncapp.bus.doorbell import ring_on_commit
from syncapp.bus.models import InboundEvent
from syncapp.store.locking import locked_transaction

IN_FLIGHT = ("processing", "relaying", "relayed", "retrying")


@dataclass(frozen=True, slots=True)
class Selection:
    """Which events: any of ``ids``; of ``topic``; of ``shop``; dead since/until a time."""

    ids: Sequence[int] = ()
    topic: str | None = None
    shop: str | None = None
    since: datetime | None = None
    until: datetime | None = None

    def where(self) -> ColumnElement[bool]:
        conditions: list[ColumnElement[bool]] = []
        if self.ids:
            conditions.append(InboundEvent.id.in_(list(self.ids)))
        if self.topic:
            conditions.append(InboundEvent.topic == self.topic)
        if self.shop:
            conditions.append(InboundEvent.shop_domain == self.shop)
        if self.since:
            conditions.append(InboundEvent.processed_at >= self.since)
        if self.until:
            conditions.append(InboundEvent.processed_at < self.until)
        return and_(InboundEvent.status == "dead", *conditions)


def dead_letters(
    sessions: sessionmaker[Session], selection: Selection, *, limit: int = 100
) -> list[InboundEvent]:
    with sessions() as session:
        return list(
            session.scalars(
                select(InboundEvent).where(selection.where()).order_by(InboundEvent.id).limit(limit)
            )
        )


def dead_letter(sessions: sessionmaker[Session], event_id: int) -> InboundEvent | None:
    with sessions() as session:
        return session.get(InboundEvent, event_id)


def replay(
    sessions: sessionmaker[Session],
    selection: Selection | None = None,
    *,
    ids: Sequence[int] = (),
    batch: int = 500,
    progress: Callable[[int], None] | None = None,
) -> int:
    """Put the selected dead letters back (due now, attempts from zero); returns how many.

    Idempotent: an event that is not a dead letter any more is left alone, so replaying twice
    replays once. Works in batches of short transactions.
    """
    where = (selection or Selection(ids=ids)).where()
    total = 0
    while True:
        with locked_transaction(sessions) as session:
            chosen = list(
                session.scalars(
                    select(InboundEvent.id).where(where).order_by(InboundEvent.id).limit(batch)
                )
            )
            if chosen:
                ring_on_commit(session)
                session.execute(
                    update(InboundEvent)
                    .where(InboundEvent.id.in_(chosen), InboundEvent.status == "dead")
                    .values(
                        status="pending",
                        attempts=0,
                        next_attempt_at=None,
                        locked_until=None,
                        lease_owner=None,
                        processed_at=None,
                        relayed_at=None,
                    )
                    .execution_options(synchronize_session=False)
                )
        total += len(chosen)
        if progress is not None:
            progress(len(chosen))
        if len(chosen) < batch:
            return total


def drop(sessions: sessionmaker[Session], selection: Selection) -> int:
    """Delete the selected dead letters; returns how many."""
    with locked_transaction(sessions) as session:
        result = session.execute(
            delete(InboundEvent)
            .where(selection.where())
            .execution_options(synchronize_session=False)
        )
        return int(cast(CursorResult[Any], result).rowcount or 0)


@dataclass(frozen=True, slots=True)
class TopicStatus:
    source: str
    topic: str
    shop: str | None
    pending: int
    in_flight: int
    dead: int
    oldest_pending: datetime | None

    def oldest_age(self, now: datetime) -> float | None:
        if self.oldest_pending is None:
            return None
        oldest = self.oldest_pending
        if oldest.tzinfo is None:
            oldest = oldest.replace(tzinfo=UTC)
        return max(0.0, (now - oldest).total_seconds())


def status(
    sessions: sessionmaker[Session], *, per_shop: bool = False, shop: str | None = None
) -> list[TopicStatus]:
    """Depth, in flight, dead letters and the oldest pending event, per topic (and shop);
    ``shop`` counts that shop's events only (the App Home asks on every poll)."""
    groups: list[Any] = [InboundEvent.source, InboundEvent.topic]
    if per_shop:
        groups.append(InboundEvent.shop_domain)
    counts = [
        func.sum(_when(InboundEvent.status == "pending")),
        # In flight: claimed (embedded), or in a broker and not settled yet (RabbitMQ).
        func.sum(_when(InboundEvent.status.in_(IN_FLIGHT))),
        func.sum(_when(InboundEvent.status == "dead")),
        func.min(
            func.coalesce(
                _pending_received(),
                None,
            )
        ),
    ]
    with sessions() as session:
        rows = session.execute(
            select(*groups, *counts)
            .where(InboundEvent.status.in_(("pending", "dead", *IN_FLIGHT)))
            .where(InboundEvent.shop_domain == shop if shop is not None else true())
            .group_by(*groups)
            .order_by(*groups)
        ).all()
    out = []
    for row in rows:
        shop = row[2] if per_shop else None
        pending, in_flight, dead, oldest = row[-4:]
        out.append(
            TopicStatus(
                row[0], row[1], shop, int(pending or 0), int(in_flight or 0), int(dead or 0),
                oldest,
            )
        )  # fmt: skip
    return out


def _when(condition: ColumnElement[bool]) -> Any:
    from sqlalchemy import case

    return case((condition, 1), else_=0)


def _pending_received() -> Any:
    from sqlalchemy import case

    return case((InboundEvent.status == "pending", InboundEvent.received_at), else_=None)


def prune(
    sessions: sessionmaker[Session],
    *,
    done_hours: float,
    dead_hours: float,
    batch: int = 500,
    now: datetime | None = None,
) -> int:
    """Delete events done (or relayed to a broker) longer than ``done_hours`` ago and dead
    letters that arrived more than ``dead_hours`` ago, a batch per short transaction; returns
    how many."""
    now = now or datetime.now(UTC)
    expired = or_expired(now, done_hours, dead_hours)
    total = 0
    while True:
        with sessions.begin() as session:
            ids = select(InboundEvent.id).where(expired).order_by(InboundEvent.id).limit(batch)
            result = session.execute(
                delete(InboundEvent)
                .where(InboundEvent.id.in_(ids.scalar_subquery()))
                .execution_options(synchronize_session=False)
            )
            count = int(cast(CursorResult[Any], result).rowcount or 0)
        total += count
        if count < batch:
            return total


def or_expired(now: datetime, done_hours: float, dead_hours: float) -> ColumnElement[bool]:
    from sqlalchemy import or_

    done_cutoff = now - timedelta(hours=done_hours)
    return or_(
        and_(InboundEvent.status == "done", InboundEvent.processed_at < done_cutoff),
        and_(InboundEvent.status == "relayed", InboundEvent.relayed_at < done_cutoff),
        # Dead letters count from their arrival: their payloads carry customer data.
        and_(
            InboundEvent.status == "dead",
            InboundEvent.received_at < now - timedelta(hours=dead_hours),
        ),
    )
