"""The consumer loop, the same for every back-end: claim a batch, run the handlers
concurrently (the batch holds at most one event per partition key), settle the batch at once.

While handlers run, leases are renewed every third of their length, so a slow handler keeps
its claim and a dead consumer's claims run out. On stop (SIGTERM) the consumer claims nothing
more, gives the running handlers ``grace_seconds`` to finish, settles what finished and hands
the rest back (due again at once, attempt uncounted) — well within 10 s.
"""

from __future__ import annotations

import asyncio
import contextlib
import signal
import time
from collections.abc import Awaitable, Callable, Sequence
from typing import Any

import structlog

from syncapp.bus.interface import (
    ConsumerBackend,
    Delivery,
    Handler,
    Outcome,
    Retry,
    Settled,
    Subscription,
    outcome_of_error,
)
from syncapp.bus.metrics import HANDLER_SECONDS

log = structlog.get_logger("syncapp.bus")


def stop_on_signals(stop: asyncio.Event) -> None:
    """Set ``stop`` on SIGTERM or SIGINT (call from inside the running loop)."""
    loop = asyncio.get_running_loop()
    for signum in (signal.SIGTERM, signal.SIGINT):
        loop.add_signal_handler(signum, stop.set)


class Consumer:
    """Runs ``subscriptions`` on ``backend``; state lives in the back-end, not here."""

    def __init__(
        self,
        backend: ConsumerBackend,
        subscriptions: Sequence[Subscription],
        *,
        batch_size: int = 32,
        poll_seconds: float = 0.5,
        renew_every: float = 100.0,
        grace_seconds: float = 8.0,
    ) -> None:
        self._backend = backend
        self._handlers: dict[tuple[str, str], Handler] = {
            (s.source, s.topic): s.handler for s in subscriptions
        }
        self._batch = batch_size
        self._poll = poll_seconds
        self._renew_every = renew_every
        self._grace = grace_seconds

    @property
    def topics(self) -> list[tuple[str, str]]:
        return sorted(self._handlers)

    async def _handle(self, delivery: Delivery) -> Outcome:
        handler = self._handlers.get((delivery.source, delivery.topic))
        if handler is None:  # a broker queue bound more widely than this consumer
            return Retry(f"no handler here for {delivery.source} topic {delivery.topic!r}")
        started = time.perf_counter()
        with structlog.contextvars.bound_contextvars(
            shop=delivery.shop_domain, event_id=delivery.id, topic=delivery.topic
        ):
            try:
                return await handler(delivery)
            except Exception as exc:
                return outcome_of_error(exc)
            finally:
                HANDLER_SECONDS.labels(topic=delivery.topic).observe(time.perf_counter() - started)

    async def run_once(self, stop: asyncio.Event | None = None) -> list[Settled]:
        """Claim one batch, handle it and settle it; returns what was settled."""
        deliveries = await self._backend.claim(self._batch)
        if not deliveries:
            return []
        stop = stop or asyncio.Event()
        tasks = {asyncio.create_task(self._handle(d)): d for d in deliveries}
        stopping = asyncio.create_task(stop.wait())
        loop = asyncio.get_running_loop()
        deadline: float | None = None
        pending = set(tasks)
        try:
            while pending:
                timeout = self._renew_every
                if stop.is_set():
                    deadline = deadline or loop.time() + self._grace
                    timeout = min(timeout, max(0.0, deadline - loop.time()))
                    if timeout == 0.0:
                        break
                waiting: set[asyncio.Future[Any]] = set(pending)
                if not stop.is_set():
                    waiting.add(stopping)
                done, _ = await asyncio.wait(
                    waiting, timeout=timeout, return_when=asyncio.FIRST_COMPLETED
                )
                pending -= done
                if not done and pending and not stop.is_set():
                    await self._backend.renew([tasks[t] for t in pending])
        finally:
            stopping.cancel()
        unfinished = [tasks[t] for t in pending]
        for task in pending:
            task.cancel()
        for task in pending:
            with contextlib.suppress(asyncio.CancelledError):
                await task
        if unfinished:
            log.warning("bus.handed_back", count=len(unfinished))
            await self._backend.release(unfinished)
        finished = [(d, t.result()) for t, d in tasks.items() if t.done() and not t.cancelled()]
        finished = [(d, o) for d, o in finished if d not in unfinished]
        return await self._backend.settle(finished)

    async def run(
        self, stop: asyncio.Event, *, until_idle: Callable[[], Awaitable[bool]] | None = None
    ) -> None:
        """Consume until ``stop`` is set, polling every ``poll_seconds`` when idle; with
        ``until_idle``, also return once a poll finds nothing to do and ``until_idle()`` says
        nothing is left at all (events waiting for a retry are not nothing)."""
        log.info("bus.consumer_started", topics=[f"{s}:{t}" for s, t in self.topics])
        try:
            while not stop.is_set():
                try:
                    settled = await self.run_once(stop)
                except Exception as exc:  # the database or broker is away: wait, try again
                    log.error("bus.batch_failed", error=f"{type(exc).__name__}: {exc}")
                    settled = []
                if not settled and until_idle is not None and await until_idle():
                    return
                if not settled:
                    with contextlib.suppress(TimeoutError):
                        await asyncio.wait_for(stop.wait(), timeout=self._poll)
        finally:
            await self._backend.close()
            log.info("bus.consumer_stopped")
