"""``syncapp worker``: processes stored inbound events of the topics it handles.

The web tier only records verified webhooks (``inbound_events``, status ``pending``). The
worker claims the pending events *of the topics in its handler table* in id order, a batch at
a time — PostgreSQL: ``FOR UPDATE SKIP LOCKED``, so any number of workers share the table;
SQLite: a claim ``UPDATE`` inside ``BEGIN IMMEDIATE``. A claim is a lease: the row becomes
``processing`` with ``locked_until``, and a worker that dies mid-event leaves it to be claimed
again when the lease runs out. ``attempts`` counts claims.

Each event is handled in one transaction together with marking it ``done``, so its effects
and its completion commit (or roll back) together. A failure puts it back to ``pending``
with ``next_attempt_at`` = now + exponential backoff with jitter (:func:`retry_delay`), or,
after ``max_attempts``, to ``dead`` with the reason in ``last_error``, for operators. A handler
that refuses the event (:class:`~syncapp.errors.RefusedEvent`: not the topic's payload, another
shop's body replayed under this shop's header, a redaction too early) sends it to ``dead`` at
once with the reason: its transaction rolls back, so nothing is changed, and no retry can help.

Topics without a handler here (products, orders, bulk operations, …) are never claimed: they
stay ``pending`` for the sync engine of later issues, which claims its own topics the same way.

Processed events are deleted ``SYNCAPP_INBOUND_RETENTION_HOURS`` (7 days) after processing,
dead letters the same time after they arrived (:meth:`Worker.prune`, every ten minutes): their
payloads carry customer data, which is kept no longer than needed, and two days are enough to
recognise Shopify's redeliveries.
"""

from __future__ import annotations

import random
import signal
import threading
import time
from collections.abc import Callable, Mapping, Sequence
from dataclasses import dataclass
from datetime import UTC, datetime, timedelta
from functools import partial
from types import FrameType
from typing import Any, cast

import structlog
from sqlalchemy import ColumnElement, CursorResult, and_, delete, or_, select, update
from sqlalchemy.orm import Session

from syncapp.billing.service import handle_subscription_update
from syncapp.config import Settings
from syncapp.errors import RefusedEvent
from syncapp.onboarding.background import start_onboarding_thread
from syncapp.onboarding.uninstall import revoke_ctrwow_on_uninstall
from syncapp.shops import privacy, scopes, uninstall
from syncapp.shops.locking import locked_transaction
from syncapp.shops.runtime import ShopsRuntime
from syncapp.store.models import InboundEvent

log = structlog.get_logger("syncapp.worker")

Handler = Callable[[Session, ShopsRuntime, InboundEvent], str]
# Runs before a topic's handler with no transaction open (it may ask Shopify); raises
# RefusedEvent to refuse the event, anything else to retry it.
Precheck = Callable[[ShopsRuntime, InboundEvent], None]


def default_handlers(
    *, uninstall_hooks: Sequence[uninstall.UninstallHook] = ()
) -> dict[str, Handler]:
    """The topics this worker handles and how."""
    return {
        "app/uninstalled": partial(uninstall.handle_app_uninstalled, hooks=uninstall_hooks),
        "app/scopes_update": scopes.handle_scopes_update,
        "shop/redact": privacy.handle_shop_redact,
        "customers/redact": privacy.handle_customers_redact,
        "customers/data_request": privacy.handle_customers_data_request,
        "app_subscriptions/update": handle_subscription_update,
    }


def default_prechecks() -> dict[str, Precheck]:
    """Confirmations some topics need from Shopify before their handler may run."""
    return {
        "app/uninstalled": uninstall.confirm_uninstalled,
        "app/scopes_update": scopes.confirm_scopes,
    }


def retry_delay(attempt: int, *, base: float, cap: float, jitter: float) -> float:
    """Seconds to wait before attempt ``attempt + 1``: exponential, capped, "equal jitter".

    ``jitter`` is a number in [0, 1); the delay lies in [d/2, d] for d = min(cap,
    base * 2**(attempt-1)), so retries of many events spread out but never come sooner than
    half the nominal delay.
    """
    nominal = min(cap, base * 2.0 ** min(max(attempt, 1) - 1, 64))
    return nominal / 2 + nominal / 2 * min(max(jitter, 0.0), 1.0)


@dataclass(frozen=True, slots=True)
class WorkerOptions:
    """How the worker claims and retries (from ``SYNCAPP_WORKER_*``)."""

    batch_size: int = 32
    poll_seconds: float = 0.5
    max_attempts: int = 8
    backoff_base_seconds: float = 2.0
    backoff_cap_seconds: float = 900.0
    lease_seconds: float = 300.0
    retention_hours: float = 168.0
    prune_every_seconds: float = 600.0
    prune_batch: int = 500

    @classmethod
    def from_settings(cls, settings: Settings) -> WorkerOptions:
        return cls(
            batch_size=settings.worker_batch_size,
            poll_seconds=settings.worker_poll_seconds,
            max_attempts=settings.worker_max_attempts,
            backoff_base_seconds=settings.worker_backoff_base_seconds,
            backoff_cap_seconds=settings.worker_backoff_cap_seconds,
            lease_seconds=settings.worker_lease_seconds,
            retention_hours=settings.inbound_retention_hours,
        )


class Worker:
    """Claims and processes inbound events; state lives in the rows, not here."""

    def __init__(
        self,
        runtime: ShopsRuntime,
        *,
        options: WorkerOptions,
        handlers: Mapping[str, Handler] | None = None,
        prechecks: Mapping[str, Precheck] | None = None,
        jitter: Callable[[], float] = random.random,
    ) -> None:
        self._runtime = runtime
        self._options = options
        self._handlers = dict(handlers if handlers is not None else default_handlers())
        self._prechecks = dict(prechecks if prechecks is not None else default_prechecks())
        self._jitter = jitter

    @property
    def topics(self) -> frozenset[str]:
        return frozenset(self._handlers)

    def _due(self, now: datetime) -> ColumnElement[bool]:
        """Pending events of our topics whose retry time has come."""
        return and_(
            InboundEvent.status == "pending",
            InboundEvent.topic.in_(sorted(self._handlers)),
            InboundEvent.source == "shopify",
            or_(InboundEvent.next_attempt_at.is_(None), InboundEvent.next_attempt_at <= now),
        )

    def _abandoned(self, now: datetime) -> ColumnElement[bool]:
        """Events of our topics claimed by a worker whose lease ran out (it died)."""
        return and_(
            InboundEvent.status == "processing",
            InboundEvent.topic.in_(sorted(self._handlers)),
            InboundEvent.source == "shopify",
            InboundEvent.locked_until < now,
        )

    def claim(self) -> list[int]:
        """Lease up to ``batch_size`` due events of the handled topics; their ids in order."""
        now = datetime.now(UTC)
        lease = now + timedelta(seconds=self._options.lease_seconds)
        claim = {
            "status": "processing",
            "locked_until": lease,
            "attempts": InboundEvent.attempts + 1,
        }
        limit = self._options.batch_size
        due = (
            select(InboundEvent.id)
            .where(or_(self._due(now), self._abandoned(now)))
            .order_by(InboundEvent.id)
            .limit(limit)
        )
        with locked_transaction(self._runtime.sessions) as session:
            if session.get_bind().dialect.name == "postgresql":
                ids = session.scalars(
                    update(InboundEvent)
                    .where(
                        InboundEvent.id.in_(due.with_for_update(skip_locked=True).scalar_subquery())
                    )
                    .values(**claim)
                    .returning(InboundEvent.id)
                    .execution_options(synchronize_session=False)
                ).all()
            else:
                # One indexed query per state (status, topic, id): SQLite does not use the index
                # for the OR of both, and would walk every pending event of other topics.
                found: list[int] = []
                for condition in (self._due(now), self._abandoned(now)):
                    found += session.scalars(
                        select(InboundEvent.id)
                        .where(condition)
                        .order_by(InboundEvent.id)
                        .limit(limit)
                    )
                ids = sorted(found)[:limit]
                if ids:
                    session.execute(
                        update(InboundEvent)
                        .where(InboundEvent.id.in_(ids))
                        .values(**claim)
                        .execution_options(synchronize_session=False)
                    )
        return sorted(ids)

    def process(self, event_id: int) -> str:
        """Handle one claimed event; returns ``done``, ``retry``, ``dead`` or ``gone``."""
        try:
            if not self._precheck(event_id):
                return "gone"
            with locked_transaction(self._runtime.sessions) as session:
                event = session.get(InboundEvent, event_id)
                if event is None or event.status != "processing":
                    return "gone"
                topic, shop = event.topic, event.shop_domain
                with structlog.contextvars.bound_contextvars(
                    shop=shop, event_id=event_id, topic=topic
                ):
                    outcome = self._handlers[topic](session, self._runtime, event)
                session.execute(
                    update(InboundEvent)
                    .where(InboundEvent.id == event_id, InboundEvent.status == "processing")
                    .values(
                        status="done",
                        processed_at=datetime.now(UTC),
                        locked_until=None,
                        next_attempt_at=None,
                        last_error=None,
                    )
                    .execution_options(synchronize_session=False)
                )
        except RefusedEvent as exc:
            return self._failed(event_id, f"refused: {exc}", refused=True)
        except Exception as exc:
            return self._failed(event_id, f"{type(exc).__name__}: {exc}")
        log.info("worker.event_done", event_id=event_id, topic=topic, shop=shop, outcome=outcome)
        return "done"

    def _precheck(self, event_id: int) -> bool:
        """Run the topic's precheck, if it has one; False when the event is no longer ours."""
        with self._runtime.sessions() as session:
            event = session.get(InboundEvent, event_id)
            if event is None or event.status != "processing":
                return False
        check = self._prechecks.get(event.topic)
        if check is not None:
            with structlog.contextvars.bound_contextvars(
                shop=event.shop_domain, event_id=event_id, topic=event.topic
            ):
                check(self._runtime, event)
        return True

    def _failed(self, event_id: int, reason: str, *, refused: bool = False) -> str:
        with locked_transaction(self._runtime.sessions) as session:
            event = session.get(InboundEvent, event_id)
            if event is None:
                return "gone"
            fields = {"event_id": event_id, "topic": event.topic, "shop": event.shop_domain}
            event.last_error = reason[:2000]
            event.locked_until = None
            if refused or event.attempts >= self._options.max_attempts:
                event.status = "dead"
                event.processed_at = datetime.now(UTC)
                log.error("worker.event_dead", attempts=event.attempts, reason=reason, **fields)
                return "dead"
            delay = retry_delay(
                event.attempts,
                base=self._options.backoff_base_seconds,
                cap=self._options.backoff_cap_seconds,
                jitter=self._jitter(),
            )
            event.status = "pending"
            event.next_attempt_at = datetime.now(UTC) + timedelta(seconds=delay)
            log.warning(
                "worker.event_retry",
                attempts=event.attempts,
                retry_in=round(delay, 3),
                reason=reason,
                **fields,
            )
            return "retry"

    def run_once(self) -> int:
        """Claim one batch and process it; returns how many events were claimed."""
        ids = self.claim()
        for event_id in ids:
            self.process(event_id)
        return len(ids)

    def prune(self) -> int:
        """Delete events processed (``done``) more than the retention ago, and dead letters
        that arrived more than the retention ago; returns how many.

        A batch per short transaction, so other writers never wait long. Dead letters are kept
        for operators that long and no longer (their payloads carry customer data);
        ``pending`` ones (topics of later issues) stay for their workers.
        """
        cutoff = datetime.now(UTC) - timedelta(hours=self._options.retention_hours)
        expired = (
            select(InboundEvent.id)
            .where(
                or_(
                    and_(InboundEvent.status == "done", InboundEvent.processed_at < cutoff),
                    and_(InboundEvent.status == "dead", InboundEvent.received_at < cutoff),
                )
            )
            .order_by(InboundEvent.id)
            .limit(self._options.prune_batch)
        )
        total = 0
        while True:
            with self._runtime.sessions.begin() as session:
                deleted = session.execute(
                    delete(InboundEvent)
                    .where(InboundEvent.id.in_(expired.scalar_subquery()))
                    .execution_options(synchronize_session=False)
                )
                count = int(cast(CursorResult[Any], deleted).rowcount or 0)
            total += count
            if count < self._options.prune_batch:
                break
        if total:
            log.info(
                "worker.events_pruned", count=total, retention_hours=self._options.retention_hours
            )
        return total

    def run(self, stop: threading.Event) -> None:
        """Process until ``stop`` is set, polling when there is nothing due; prune processed
        events every ``prune_every_seconds``."""
        log.info("worker.started", topics=sorted(self._handlers))
        next_prune = 0.0
        while not stop.is_set():
            try:
                if time.monotonic() >= next_prune:
                    next_prune = time.monotonic() + self._options.prune_every_seconds
                    self.prune()
                claimed = self.run_once()
            except Exception as exc:  # the database is away: wait and try again
                log.error("worker.batch_failed", error=f"{type(exc).__name__}: {exc}")
                claimed = 0
            if claimed == 0:
                stop.wait(self._options.poll_seconds)
        log.info("worker.stopped")


def run_worker(settings: Settings) -> None:
    """``syncapp worker``: run until SIGINT or SIGTERM."""
    from syncapp.store.db import make_engine

    engine = make_engine(settings.database_url)
    runtime = ShopsRuntime.from_settings(settings, engine)
    stop = threading.Event()

    def on_signal(signum: int, _frame: FrameType | None) -> None:
        stop.set()

    signal.signal(signal.SIGTERM, on_signal)
    signal.signal(signal.SIGINT, on_signal)
    # The eManageCRM/CTRwow sign-up runs beside the event loop below, in a thread (asyncio).
    onboarding = start_onboarding_thread(settings, engine, stop)
    try:
        Worker(
            runtime,
            options=WorkerOptions.from_settings(settings),
            handlers=default_handlers(uninstall_hooks=(revoke_ctrwow_on_uninstall(settings),)),
        ).run(stop)
    finally:
        if onboarding is not None:
            onboarding.join(timeout=15)
        engine.dispose()
