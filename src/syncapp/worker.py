"""``syncapp worker``: the bus consumers of every domain, composed.

Each domain exports its topic table — ``shops`` (installation, grants, privacy), ``billing``
(subscriptions), ``onboarding`` (the eManageCRM/CTRwow sign-up: ``signup.requested``) — and the
worker subscribes one :class:`~syncapp.bus.consumer.Consumer` to all of them on the configured
back-end: the embedded bus in the app's database by default, RabbitMQ when ``SYNCAPP_BUS_URL``
is an ``amqp://`` URL (then the worker also runs the outbox relay). Claims, leases, fencing,
fairness, retries and dead letters are the bus's (``syncapp.bus``); a handler that refuses its
event (:class:`~syncapp.errors.RefusedEvent`) dead-letters it at once and changes nothing.

``sync`` (the product sync: ``products/*`` webhooks, eManageCRM's ``product.*`` notifications,
``product.resync_requested``) runs when the eManageCRM system client is configured; the sync's
jobs (``backfill.requested``, ``reconcile.requested``, ``bulk_operations/finish``) always, and
a periodic tick publishes due backfills and sweeps (ADR 0023). Topics without a handler here
(orders, …) are never claimed: they stay ``pending`` for later issues.

Processed events are deleted ``SYNCAPP_INBOUND_RETENTION_HOURS`` (7 days) after processing,
dead letters the same time after they arrived (:meth:`Worker.prune`, every ten minutes): their
payloads carry customer data, which is kept no longer than needed, and two days are enough to
recognise Shopify's redeliveries.
"""

from __future__ import annotations

import asyncio
import contextlib
import random
import threading
import time
from collections.abc import Callable, Mapping, Sequence
from dataclasses import dataclass

import structlog

from syncapp.billing import topics as billing_topics
from syncapp.bus.consumer import Consumer, stop_on_signals
from syncapp.bus.embedded import EmbeddedBus
from syncapp.bus.interface import APP, ConsumerBackend, TopicTable, subscriptions
from syncapp.bus.operators import prune
from syncapp.bus.retry import RetryPolicy
from syncapp.config import Settings
from syncapp.onboarding import topics as onboarding_topics
from syncapp.onboarding.events import request_due_signups
from syncapp.onboarding.notifications import subscribe_to_notifications
from syncapp.onboarding.runtime import open_onboarding
from syncapp.onboarding.uninstall import revoke_ctrwow_on_uninstall
from syncapp.shops import topics as shops_topics
from syncapp.shops import uninstall
from syncapp.shops.runtime import ShopsRuntime
from syncapp.shops.topics import Precheck, TransactionalHandler, in_one_write
from syncapp.sync import jobs as sync_jobs
from syncapp.sync import topics as sync_topics
from syncapp.sync.context import open_sync
from syncapp.sync.runtime import SyncOptions, SyncRuntime

log = structlog.get_logger("syncapp.worker")

Handler = TransactionalHandler


def default_prechecks() -> dict[str, Precheck]:
    """Confirmations some topics need from Shopify before their handler may run."""
    return shops_topics.prechecks()


def default_handlers(
    *, uninstall_hooks: Sequence[uninstall.UninstallHook] = ()
) -> dict[str, Handler]:
    """The Shopify topics this worker handles and how (every domain's table); what an
    uninstall changes in other domains always runs, ``uninstall_hooks`` besides."""
    hooks = (*billing_topics.UNINSTALL_HOOKS, *uninstall_hooks)
    return {
        **shops_topics.shopify_handlers(uninstall_hooks=hooks),
        **billing_topics.HANDLERS,
    }


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

    @property
    def policy(self) -> RetryPolicy:
        return RetryPolicy(
            max_attempts=self.max_attempts,
            base_seconds=self.backoff_base_seconds,
            cap_seconds=max(self.backoff_cap_seconds, self.backoff_base_seconds),
        )


class Worker:
    """The worker's consumer on the embedded bus; state lives in the rows, not here."""

    def __init__(
        self,
        runtime: ShopsRuntime,
        *,
        options: WorkerOptions,
        handlers: Mapping[str, Handler] | None = None,
        prechecks: Mapping[str, Precheck] | None = None,
        jitter: Callable[[], float] = random.random,
        backend: ConsumerBackend | None = None,
        extra: TopicTable | None = None,
        periodic: Sequence[tuple[float, Callable[[], None]]] = (),
    ) -> None:
        self._runtime = runtime
        self._options = options
        self._periodic = tuple(periodic)
        checks = dict(prechecks if prechecks is not None else default_prechecks())
        table: TopicTable = {
            ("shopify", topic): in_one_write(handler, runtime, checks.get(topic))
            for topic, handler in (handlers if handlers is not None else default_handlers()).items()
        }
        table.update(extra or {})
        self._bus = EmbeddedBus(
            runtime.engine,
            policy=options.policy,
            lease_seconds=options.lease_seconds,
            jitter=jitter,
        )
        self._embedded = self._bus.consumer(sorted(table))
        self.consumer = Consumer(
            backend or self._embedded,
            subscriptions(table),
            batch_size=options.batch_size,
            poll_seconds=options.poll_seconds,
            renew_every=options.lease_seconds / 3,
        )

    @property
    def topics(self) -> frozenset[str]:
        return frozenset(topic for _, topic in self.consumer.topics)

    def claim(self) -> list[int]:
        """Lease up to ``batch_size`` due events (one per partition key, fair across shops)."""
        return [d.id for d in self._embedded.claim_now(self._options.batch_size)]

    def run_once(self) -> int:
        """Claim one batch, handle and settle it; returns how many events were claimed."""
        return len(asyncio.run(self.consumer.run_once()))

    def prune(self) -> int:
        """Delete events processed (``done``) more than the retention ago, and dead letters
        that arrived more than the retention ago; returns how many (batches of short
        transactions; ``pending`` events of later issues' topics stay)."""
        total = prune(
            self._runtime.sessions,
            done_hours=self._options.retention_hours,
            dead_hours=self._options.retention_hours,
            batch=self._options.prune_batch,
        )
        if total:
            log.info(
                "worker.events_pruned", count=total, retention_hours=self._options.retention_hours
            )
        return total

    def run(self, stop: threading.Event) -> None:
        """Process until ``stop`` is set (synchronous callers); prune every
        ``prune_every_seconds``."""
        log.info("worker.started", topics=sorted(self.topics))
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

    async def serve(self, stop: asyncio.Event) -> None:
        """Consume until ``stop`` is set, pruning every ``prune_every_seconds``."""

        async def pruning() -> None:
            while not stop.is_set():
                try:
                    await asyncio.to_thread(self.prune)
                    if any(source == APP for source, _ in self.consumer.topics):
                        await asyncio.to_thread(request_due_signups, self._runtime.sessions)
                except Exception as exc:
                    log.error("worker.prune_failed", error=f"{type(exc).__name__}: {exc}")
                with contextlib.suppress(TimeoutError):
                    await asyncio.wait_for(stop.wait(), timeout=self._options.prune_every_seconds)

        async def every(seconds: float, job: Callable[[], None]) -> None:
            while not stop.is_set():
                try:
                    await asyncio.to_thread(job)
                except Exception as exc:
                    log.error("worker.periodic_failed", error=f"{type(exc).__name__}: {exc}")
                with contextlib.suppress(TimeoutError):
                    await asyncio.wait_for(stop.wait(), timeout=seconds)

        pruner = asyncio.create_task(pruning())
        jobs = [asyncio.create_task(every(s, job)) for s, job in self._periodic]
        try:
            await self.consumer.run(stop)
        finally:
            await pruner
            for task in jobs:
                await task


def worker_topics(settings: Settings, runtime: ShopsRuntime) -> TopicTable:
    """Every domain's topic table, as ``syncapp worker`` subscribes to them."""
    hooks = (*billing_topics.UNINSTALL_HOOKS, revoke_ctrwow_on_uninstall(settings))
    return {
        **shops_topics.topics(runtime, uninstall_hooks=hooks),
        **billing_topics.topics(runtime),
    }


BACKFILL_POLL_SECONDS = 1.0


async def _serve(settings: Settings, runtime: ShopsRuntime, stop: asyncio.Event) -> None:
    async with contextlib.AsyncExitStack() as stack:
        signup: TopicTable = {}
        if settings.emanage_client_secret is None or settings.ctrwow_client_secret is None:
            log.warning(
                "onboarding.disabled",
                reason="SYNCAPP_EMANAGE_CLIENT_SECRET / SYNCAPP_CTRWOW_CLIENT_SECRET not set",
            )
        else:
            rt = await stack.enter_async_context(open_onboarding(settings, runtime.engine))
            signup = onboarding_topics.topics(rt)
            # eManageCRM's notifications come to /webhooks/emanage once this has run; the
            # worker consumes meanwhile (docs/adr/0019).
            subscribing = asyncio.create_task(
                subscribe_to_notifications(rt.emanage, settings, stop), name="emanage-subscribe"
            )
            stack.push_async_callback(_finish, subscribing)
        sync_options = SyncOptions.from_settings(settings)
        if settings.emanage_client_secret is None:
            log.warning("sync.disabled", reason="SYNCAPP_EMANAGE_CLIENT_SECRET not set")
            sync = SyncRuntime(runtime, sync_options)
        else:
            # The product sync (issue 10): Shopify's product webhooks, eManageCRM's product
            # notifications and the app's resync requests.
            context = await stack.enter_async_context(open_sync(settings, runtime))
            signup = {**signup, **sync_topics.topics(context)}
            # The backfill and the sweeps share the engine's clients: one cost budget per shop.
            sync = SyncRuntime(
                runtime, sync_options, emanage=context.emanage, products_factory=context.products
            )
        stack.callback(sync.close)
        # Backfills and reconcile sweeps. The sweeps are published once per interval whatever
        # the tick; a new shop's first backfill is looked for every second, so its catalog
        # follows the sign-up at once (a read, unless a shop is due).
        periodic = [
            (min(30.0, sync_options.reconcile_interval_seconds), lambda: sync_jobs.tick(sync)),
            (BACKFILL_POLL_SECONDS, lambda: sync_jobs.start_backfills(sync)),
        ]
        await _consume(settings, runtime, stop, {**signup, **sync_jobs.topics(sync)}, periodic)


async def _finish(task: asyncio.Task[object]) -> None:
    """Stop a start-up task still retrying when the worker stops."""
    task.cancel()
    with contextlib.suppress(asyncio.CancelledError):
        await task


async def _consume(
    settings: Settings,
    runtime: ShopsRuntime,
    stop: asyncio.Event,
    signup: TopicTable,
    periodic: Sequence[tuple[float, Callable[[], None]]] = (),
) -> None:
    options = WorkerOptions.from_settings(settings)
    handlers = default_handlers(uninstall_hooks=(revoke_ctrwow_on_uninstall(settings),))
    if not settings.bus_url.startswith(("amqp://", "amqps://")):
        worker = Worker(
            runtime, options=options, handlers=handlers, extra=signup, periodic=periodic
        )
        await worker.serve(stop)
        return
    from syncapp.bus.rabbitmq import RabbitBus

    rabbit = RabbitBus(settings.bus_url, runtime.engine, policy=options.policy)
    table = {**worker_topics(settings, runtime), **signup}
    backend = rabbit.consumer(sorted(table), group="worker")
    # The group's queues first, bound to every topic, then the relay: the broker returns a
    # message no queue is bound for, and the relay marks a returned event done ("no consumer
    # wants it"), so on a new broker the events stored before the first start were lost.
    while not stop.is_set():
        try:
            await backend.start()
            break
        except Exception as exc:  # the broker is away: the events wait in the outbox
            log.warning("worker.broker_unavailable", error=f"{type(exc).__name__}: {exc}")
            with contextlib.suppress(TimeoutError):
                await asyncio.wait_for(stop.wait(), timeout=1.0)
    worker = Worker(
        runtime,
        options=options,
        handlers=handlers,
        backend=backend,
        extra=signup,
        periodic=periodic,
    )
    relay = asyncio.create_task(
        rabbit.relay(lease_seconds=settings.bus_relay_lease_seconds).run(stop)
    )
    try:
        await worker.serve(stop)
    finally:
        await relay
        await rabbit.close()


def run_worker(settings: Settings) -> None:
    """``syncapp worker``: run until SIGINT or SIGTERM (finishing or handing back what it holds
    within 10 s)."""
    from syncapp.store.db import make_engine

    engine = make_engine(settings.database_url)
    runtime = ShopsRuntime.from_settings(settings, engine)

    async def main() -> None:
        stop = asyncio.Event()
        stop_on_signals(stop)
        await _serve(settings, runtime, stop)

    try:
        asyncio.run(main())
    finally:
        engine.dispose()
