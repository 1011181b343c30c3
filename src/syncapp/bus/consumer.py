"""The consumer loop, the same for every back-end.

:meth:`Consumer.run` is a pipeline: up to ``batch_size`` handlers in flight (at most one per
partition key), each settled as soon as it finishes — with whatever else finished in the same
turn of the loop — and its slot refilled by the next claim, so one slow handler (a Shopify
throttle's wait) holds up neither the settlement of the others nor the next claim. Idle, it
waits for the back-end's wake-up (the doorbell rung after a publish's commit, a broker's push)
and polls every ``poll_seconds`` besides. :meth:`Consumer.run_once` claims one batch, handles it
and settles it at once (tests, benchmarks).

While handlers run, leases are renewed every third of their length, so a slow handler keeps
its claim and a dead consumer's claims run out. On stop (SIGTERM) the consumer claims nothing
more, gives the running handlers ``grace_seconds`` to finish (settling each as it finishes),
and hands the rest back (due again at once, attempt uncounted) — well within 10 s.
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
        """Consume until ``stop`` is set, keeping up to ``batch_size`` handlers in flight: each
        is settled as soon as it finishes (with whatever finished in the same turn of the loop)
        and its slot refilled by the next claim, so a slow handler delays nobody else. Idle, the
        consumer waits for the back-end's wake-up (a doorbell ring, a broker's delivery) and
        polls every ``poll_seconds`` besides. With ``until_idle``, also return once a claim finds
        nothing, nothing is in flight, and ``until_idle()`` says nothing is left at all (events
        waiting for a retry are not nothing)."""
        log.info("bus.consumer_started", topics=[f"{s}:{t}" for s, t in self.topics])
        try:
            await _Pipeline(self, stop).run(until_idle)
        finally:
            await self._backend.close()
            log.info("bus.consumer_stopped")


class _Pipeline:
    """The state of one :meth:`Consumer.run`: the handlers in flight and their keys.

    At most one delivery per partition key is in flight. The back-ends claim nothing of a key
    this consumer holds (the embedded claim's head-of-key rule; the broker consumer's keys
    handed out); should one hand out such a delivery anyway (our own lease ran out and was
    taken over by our own claim), it waits here, its lease renewed, until the key is free.
    """

    def __init__(self, consumer: Consumer, stop: asyncio.Event) -> None:
        self.c = consumer
        self.backend = consumer._backend
        self.stop = stop
        self.running: dict[asyncio.Task[Outcome], Delivery] = {}
        self.keys: set[str] = set()
        self.parked: list[Delivery] = []
        self.loop = asyncio.get_running_loop()

    def _start(self, delivery: Delivery) -> None:
        if delivery.partition_key in self.keys:
            self.parked.append(delivery)
            return
        self.keys.add(delivery.partition_key)
        self.running[asyncio.create_task(self.c._handle(delivery))] = delivery

    def _unpark(self) -> None:
        parked, self.parked = self.parked, []
        for delivery in parked:
            self._start(delivery)

    def _held(self) -> list[Delivery]:
        return [*self.running.values(), *self.parked]

    async def run(self, until_idle: Callable[[], Awaitable[bool]] | None) -> None:
        loop, c = self.loop, self.c
        stopping = asyncio.create_task(self.stop.wait())
        wake: asyncio.Task[None] | None = None
        claim = True  # look now: at start, after a wake-up or a poll, after a settle
        not_before = 0.0  # after a failure: no claim before this
        next_renew = loop.time() + c._renew_every
        try:
            while not self.stop.is_set():
                free = c._batch - len(self.running) - len(self.parked)
                if claim and free > 0 and loop.time() >= not_before:
                    idle_before = not self.running and not self.parked
                    try:
                        claimed = await self.backend.claim(free, wait=False)
                    except Exception as exc:  # the database or broker is away: wait, try again
                        log.error("bus.claim_failed", error=f"{type(exc).__name__}: {exc}")
                        claimed, not_before = [], loop.time() + c._poll
                    for delivery in claimed:
                        self._start(delivery)
                    if idle_before and claimed:
                        next_renew = loop.time() + c._renew_every
                    # A full claim: more may be waiting (claimed as soon as a slot is free).
                    claim = len(claimed) == free
                    if (
                        not claimed
                        and not self.running
                        and until_idle is not None
                        and await until_idle()
                    ):
                        return
                free = c._batch - len(self.running) - len(self.parked)
                waits: set[asyncio.Future[Any]] = {stopping, *self.running}
                timeout: float | None = None  # none: the wake-up, its poll or the stop ends it
                if claim and free > 0:
                    timeout = max(0.0, not_before - loop.time())  # claim again (now, mostly)
                elif free > 0:
                    if wake is None:
                        poll = max(c._poll, not_before - loop.time())
                        wake = asyncio.create_task(self.backend.wait_for_work(poll))
                    waits.add(wake)
                if self.running or self.parked:
                    renew_in = max(0.0, next_renew - loop.time())
                    timeout = renew_in if timeout is None else min(timeout, renew_in)
                done, _ = await asyncio.wait(
                    waits, timeout=timeout, return_when=asyncio.FIRST_COMPLETED
                )
                if wake is not None and wake in done:
                    failed = wake.exception()
                    wake = None
                    claim = True
                    if failed is not None:  # the broker is away: the next claim says so too
                        log.error("bus.wait_failed", error=f"{type(failed).__name__}: {failed}")
                        not_before = loop.time() + c._poll
                finished = [t for t in done if t in self.running]
                if finished:
                    await self._settle(finished)
                    claim = True  # free slots, and the keys' next events are claimable now
                if (self.running or self.parked) and loop.time() >= next_renew:
                    next_renew = loop.time() + c._renew_every
                    await self._renew()
        finally:
            stopping.cancel()
            if wake is not None:
                wake.cancel()
                with contextlib.suppress(asyncio.CancelledError, Exception):
                    await wake
            await self._wind_down()

    async def _settle(self, finished: Sequence[asyncio.Task[Outcome]]) -> None:
        outcomes = []
        for task in finished:
            delivery = self.running.pop(task)
            self.keys.discard(delivery.partition_key)
            outcomes.append((delivery, task.result()))
        try:
            await self.backend.settle(outcomes)
        except Exception as exc:  # the leases run out and the events come again
            log.error(
                "bus.settle_failed", count=len(outcomes), error=f"{type(exc).__name__}: {exc}"
            )
        self._unpark()  # a key's next delivery starts once the earlier one is settled

    async def _renew(self) -> None:
        held = self._held()
        if held:
            try:
                await self.backend.renew(held)
            except Exception as exc:  # fencing refuses a settle whose lease was taken over
                log.error("bus.renew_failed", error=f"{type(exc).__name__}: {exc}")

    async def _wind_down(self) -> None:
        """Stopping: claim nothing more, give the running handlers ``grace_seconds`` (settling
        each as it finishes), hand the rest back."""
        deadline = self.loop.time() + self.c._grace
        while self.running:
            timeout = deadline - self.loop.time()
            if timeout <= 0:
                break
            done, _ = await asyncio.wait(
                set(self.running), timeout=timeout, return_when=asyncio.FIRST_COMPLETED
            )
            if done:
                await self._settle([t for t in done if t in self.running])
        unfinished = [*self.running.values(), *self.parked]
        for task in self.running:
            task.cancel()
        for task in self.running:
            with contextlib.suppress(asyncio.CancelledError):
                await task
        self.running, self.parked, self.keys = {}, [], set()
        if unfinished:
            log.warning("bus.handed_back", count=len(unfinished))
            try:
                await self.backend.release(unfinished)
            except Exception as exc:  # their leases run out instead
                log.error("bus.release_failed", error=f"{type(exc).__name__}: {exc}")
