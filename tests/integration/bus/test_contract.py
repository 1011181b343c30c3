"""The bus contract: what every back-end guarantees to its consumers."""

from __future__ import annotations

import asyncio
import time
from collections import defaultdict
from collections.abc import Callable

import pytest
from sqlalchemy import select, text
from sqlalchemy.orm import Session

from syncapp.bus.consumer import Consumer
from syncapp.bus.envelope import EventType
from syncapp.bus.interface import APP, Ack, DeadLetter, Delivery, Outcome, Retry, Subscription
from syncapp.bus.models import InboundEvent
from syncapp.bus.outbox import new_event, publish
from syncapp.bus.retry import backoff_delay
from syncapp.store.db import make_session_factory
from tests.integration.bus.conftest import TOPIC, Medium

pytestmark = [
    pytest.mark.anyio,
    # aio-pika's robust connection leaves its close callbacks as tasks still pending when a
    # test's event loop closes (nothing of ours: the broker objects are closed and deleted).
    pytest.mark.filterwarnings("ignore::pytest.PytestUnraisableExceptionWarning"),
]


def consumer_of(
    medium: Medium, handler, *, owner: str | None = None, batch: int = 32, topics=(TOPIC,)
) -> Consumer:
    backend = medium.consumer(owner, topics=topics)
    return Consumer(backend, [Subscription(s, t, handler) for s, t in topics], batch_size=batch)


async def drain(*consumers: Consumer, rounds: int = 1000) -> None:
    """Run the consumers side by side until none of them finds work."""
    for _ in range(rounds):
        settled = await asyncio.gather(*(c.run_once() for c in consumers))
        if not any(settled):
            return
    raise AssertionError("the consumers never ran out of work")


async def test_events_of_one_partition_key_are_handled_in_order(medium: Medium) -> None:
    """Three consumers share 3 keys x 20 events; each key's events are seen in order."""
    for _ in range(20):
        medium.add("a.myshopify.com", ["k1", "k2", "k3"])
    seen: dict[str, list[int]] = defaultdict(list)

    async def handler(d: Delivery) -> Outcome:
        seen[d.partition_key].append(d.id)
        await asyncio.sleep(0)
        return Ack()

    await drain(*(consumer_of(medium, handler, owner=f"c{i}", batch=4) for i in range(3)))
    assert sorted(seen) == [f"a.myshopify.com/k{i}" for i in (1, 2, 3)]
    for ids in seen.values():
        assert ids == sorted(ids)
        assert len(ids) == 20


async def test_one_partition_key_is_never_handled_twice_at_once(medium: Medium) -> None:
    """Instrumented handlers across four consumers never overlap on one key."""
    for _ in range(10):
        medium.add("a.myshopify.com", ["hot", "warm"])
        medium.add("b.myshopify.com", ["hot"])
    in_flight: set[str] = set()
    overlaps: list[str] = []
    handled = 0

    async def handler(d: Delivery) -> Outcome:
        nonlocal handled
        if d.partition_key in in_flight:
            overlaps.append(d.partition_key)
        in_flight.add(d.partition_key)
        await asyncio.sleep(0.001)
        in_flight.discard(d.partition_key)
        handled += 1
        return Ack()

    await drain(*(consumer_of(medium, handler, owner=f"c{i}") for i in range(4)))
    assert overlaps == []
    assert handled == 30


async def test_a_consumer_whose_lease_was_taken_over_cannot_settle(medium: Medium) -> None:
    """A stalled consumer's late completion, retry or dead letter is refused after a takeover."""
    [event] = medium.add("a.myshopify.com", ["k"])
    stalled, other = medium.consumer("stalled"), medium.consumer("other")
    [mine] = await stalled.claim(10)
    if medium.fake_time:
        assert await other.claim(10) == []  # the lease holds the key
    await medium.expire_lease(stalled)
    [theirs] = await other.claim(10)
    assert theirs.id == mine.id

    refused = await stalled.settle(
        [(mine, Ack()), (mine, Retry("late")), (mine, DeadLetter("late"))]
    )
    assert [s.result for s in refused] == ["lost", "lost", "lost"]
    assert await medium.state(event) == "processing"
    [accepted] = await other.settle([(theirs, Ack())])
    assert accepted.result == "done"
    assert await medium.state(event) == "done"


async def test_a_late_write_of_a_taken_over_claim_is_not_applied(medium: Medium) -> None:
    """The handler's write commits with the fenced completion, or not at all."""
    [event] = medium.add("a.myshopify.com", ["k"])
    stalled, other = medium.consumer("stalled"), medium.consumer("other")
    [mine] = await stalled.claim(1)
    await medium.expire_lease(stalled)
    [theirs] = await other.claim(1)
    writes: list[str] = []

    def mark(tag: str) -> Callable[[Session], None]:
        def apply(session: Session) -> None:
            writes.append(tag)
            session.execute(
                text("UPDATE inbound_events SET triggered_at = :tag WHERE id = :id"),
                {"tag": tag, "id": event},
            )

        return apply

    await stalled.settle([(mine, Ack(apply=mark("stalled")))])
    await other.settle([(theirs, Ack(apply=mark("other")))])
    assert await medium.state(event) == "done"
    assert medium.status(event).triggered_at == "other"
    assert writes == ["other"]


async def test_failures_retry_with_backoff_then_become_dead_letters_with_history(
    medium: Medium,
) -> None:
    """Three failed attempts: two retries after a growing delay, then a dead letter."""
    [event] = medium.add("a.myshopify.com", ["k"])
    calls = 0

    async def failing(d: Delivery) -> Outcome:
        nonlocal calls
        calls += 1
        raise RuntimeError(f"boom {calls}")

    consumer = consumer_of(medium, failing)
    expected = [backoff_delay(n, policy=medium.policy, jitter=0.5) for n in (1, 2)]
    for n in (1, 2):
        [settled] = await consumer.run_once()
        assert settled.result == "retry"
        assert settled.delay == pytest.approx(expected[n - 1])
        if medium.fake_time:
            assert await consumer.run_once() == []  # not due before the backoff
        await medium.advance(settled.delay or 0)
    [third] = await consumer.run_once()
    assert third.result == "dead"
    assert await medium.state(event) == "dead"
    last_error, history = await medium.history(event)
    assert last_error == "RuntimeError: boom 3"
    assert [h["attempt"] for h in history] == [1, 2, 3]
    assert [h["error"] for h in history] == [f"RuntimeError: boom {i}" for i in (1, 2, 3)]


async def test_retry_after_is_honoured(medium: Medium) -> None:
    """A handler's Retry-After is a floor for the next attempt."""
    medium.add("a.myshopify.com", ["k"])
    attempts: list[int] = []

    async def throttled(d: Delivery) -> Outcome:
        attempts.append(d.attempts)
        return Retry("throttled", after=1.6) if len(attempts) == 1 else Ack()

    consumer = consumer_of(medium, throttled)
    [settled] = await consumer.run_once()
    assert settled.delay == 1.6
    if medium.fake_time:
        await medium.advance(1.5)
        assert await consumer.run_once() == []
        await medium.advance(0.2)
    started = time.monotonic()
    [done] = await consumer.run_once()
    assert done.result == "done"
    assert attempts == [1, 2]
    if not medium.fake_time:
        assert time.monotonic() - started >= 1.0  # the broker held it back (1.6 s tier)


async def test_a_retrying_event_holds_back_the_later_events_of_its_key(medium: Medium) -> None:
    """Ordering survives a retry: the key's next event waits for the first to finish."""
    first, second = medium.add("a.myshopify.com", ["k", "k"])
    order: list[int] = []

    async def flaky(d: Delivery) -> Outcome:
        order.append(d.id)
        return Retry("once") if len(order) == 1 else Ack()

    consumer = consumer_of(medium, flaky)
    await consumer.run_once()
    if medium.fake_time:
        assert await consumer.run_once() == []
    await medium.advance(60)
    await drain(consumer)
    assert order == [first, first, second]


async def test_a_dead_letter_replayed_is_handled_again_and_replay_is_idempotent(
    medium: Medium,
) -> None:
    """Replay puts a dead letter back once; replaying it twice changes nothing more."""
    [event] = medium.add("a.myshopify.com", ["k"])
    outcomes: list[Outcome] = [DeadLetter("bad payload"), Ack()]
    handled: list[int] = []

    async def handler(d: Delivery) -> Outcome:
        handled.append(d.id)
        return outcomes[len(handled) - 1]

    consumer = consumer_of(medium, handler)
    await drain(consumer)
    assert await medium.state(event) == "dead"
    assert await medium.replay(event) == 1
    assert await medium.replay(event) == 0
    await drain(consumer)
    assert handled == [event, event]
    assert await medium.state(event) == "done"


SOMETHING = EventType(
    "com.emanagecrm.syncapp.test.happened.v1", "A test event.", {"type": "object"}
)


async def test_the_outbox_delivers_committed_events_once_and_rolled_back_ones_never(
    medium: Medium,
) -> None:
    """An event published in a transaction exists exactly when that transaction commits."""
    sessions = make_session_factory(medium.engine)
    kept = new_event(SOMETHING, shop_domain="a.myshopify.com", obj="Thing/1", data={"n": 1})
    lost = new_event(SOMETHING, shop_domain="a.myshopify.com", obj="Thing/2", data={"n": 2})
    with sessions.begin() as session:
        publish(session, kept)
    with sessions() as session:
        publish(session, lost)
        session.flush()
        session.rollback()
    seen: list[str] = []

    async def handler(d: Delivery) -> Outcome:
        seen.append(d.envelope().id)
        assert d.data() == {"n": 1}
        return Ack()

    topics = ((APP, SOMETHING.name),)
    await drain(*(consumer_of(medium, handler, owner=f"c{i}", topics=topics) for i in range(3)))
    assert seen == [kept.id]


async def test_a_shop_with_a_huge_backlog_delays_another_shops_new_event_by_one_batch(
    medium: Medium,
) -> None:
    """100,000 pending events of one shop; another shop's new event is in the next batch."""
    rows = medium.rows("busy.myshopify.com", [f"Product/{i}" for i in range(100_000)])
    with medium.engine.begin() as conn:
        conn.execute(InboundEvent.__table__.insert(), rows)
    seen: list[str] = []

    async def handler(d: Delivery) -> Outcome:
        seen.append(d.shop_domain)
        return Ack()

    consumer = consumer_of(medium, handler, batch=32)
    assert len(await consumer.run_once()) == 32  # a batch of the busy shop is in flight
    medium.add("quiet.myshopify.com", ["Product/1"])
    await consumer.run_once()
    assert "quiet.myshopify.com" in seen[32:64]
    with medium.engine.connect() as conn:
        pending = conn.scalar(
            select(InboundEvent.id).where(
                InboundEvent.shop_domain == "quiet.myshopify.com",
                InboundEvent.status != "done",
            )
        )
    assert pending is None
