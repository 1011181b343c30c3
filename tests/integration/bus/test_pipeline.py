"""The continuous consumer (``Consumer.run``): a slow handler holds up nobody else, an idle
consumer is woken by a publish's commit, and a key is never in flight twice across refills."""

from __future__ import annotations

import asyncio
import random
import sys
from collections import defaultdict
from collections.abc import Awaitable, Callable
from pathlib import Path

import pytest

from syncapp.bus.consumer import Consumer
from syncapp.bus.interface import Ack, ConsumerBackend, Delivery, Outcome, Subscription
from tests.integration.bus.conftest import TOPIC, Medium, RabbitMedium

pytestmark = [
    pytest.mark.anyio,
    # aio-pika's robust connection leaves its close callbacks pending when a loop closes.
    pytest.mark.filterwarnings("ignore::pytest.PytestUnraisableExceptionWarning"),
]

ROOT = Path(__file__).resolve().parents[3]
SHOP = "a.myshopify.com"


async def until(check: Callable[[], Awaitable[bool]], *, within: float, what: str) -> None:
    """Wait (polling the back-end's state) until ``check()``; fail after ``within`` s."""
    loop = asyncio.get_running_loop()
    deadline = loop.time() + within
    while not await check():
        assert loop.time() < deadline, f"not within {within} s: {what}"
        await asyncio.sleep(0.02)


async def _done(medium: Medium, event_id: int) -> bool:
    return medium.status(event_id).status == "done"


def pipeline(
    backend: ConsumerBackend,
    handler: Callable[[Delivery], Awaitable[Outcome]],
    *,
    batch: int = 32,
    poll: float = 0.05,
) -> Consumer:
    return Consumer(backend, [Subscription(*TOPIC, handler)], batch_size=batch, poll_seconds=poll)


async def test_a_slow_handler_holds_up_neither_other_keys_settlement_nor_the_next_claim(
    medium: Medium,
) -> None:
    """One handler blocked (a throttle's wait): the other keys' events of its claim settle,
    and an event stored afterwards is claimed and settled, all while it is still blocked."""
    slow, fast_a, fast_b = medium.add(SHOP, ["slow", "a", "b"])
    unblock = asyncio.Event()
    started: list[int] = []

    async def handler(d: Delivery) -> Outcome:
        started.append(d.id)
        if d.id == slow:
            await unblock.wait()
        return Ack()

    stop = asyncio.Event()
    running = asyncio.create_task(pipeline(medium.consumer(), handler).run(stop))
    try:

        async def settled(*ids: int) -> bool:  # the row's state (RabbitMQ: settled with it)
            return all(medium.status(i).status == "done" for i in ids)

        await until(lambda: settled(fast_a, fast_b), within=20, what="the fast keys settled")
        assert slow in started
        assert not await settled(slow)
        [later] = medium.add(SHOP, ["c"])
        await until(lambda: settled(later), within=20, what="a later event settled")
        assert not unblock.is_set()
        assert not await settled(slow)
        unblock.set()
        await until(lambda: settled(slow), within=20, what="the slow event settled")
    finally:
        unblock.set()
        stop.set()
        await running


PUBLISHER = """
import asyncio, sys
from syncapp.bus.inbox import Inbox, InboxEvent
from syncapp.store.db import make_engine

async def main(url: str, delivery_id: str) -> None:
    sys.stdin.readline()  # imported and ready: publish when told
    engine = make_engine(url)
    inbox = Inbox(engine)
    await inbox.start()
    stored = await inbox.record(InboxEvent(
        source="shopify", shop_domain="a.myshopify.com", topic="things/update",
        delivery_id=delivery_id, event_id=None, api_version=None, triggered_at=None,
        payload='{"n": 1}', partition_key="a.myshopify.com/woken"))
    await inbox.stop()
    engine.dispose()
    assert stored

asyncio.run(main(sys.argv[1], sys.argv[2]))
"""


async def test_an_idle_consumer_is_woken_by_another_processs_commit(medium: Medium) -> None:
    """The consumer (and with RabbitMQ the relay) polls every 30 s; an event another process
    stores through the inbox (the web process's webhook ingest) is handled long before any
    poll: only the doorbell (or the broker's push) can have started it."""
    handled: dict[str, asyncio.Event] = defaultdict(asyncio.Event)

    async def handler(d: Delivery) -> Outcome:
        handled[d.delivery_id].set()
        return Ack()

    stop = asyncio.Event()
    tasks = []
    if isinstance(medium, RabbitMedium):
        assert medium.rabbit is not None
        backend: ConsumerBackend = medium.rabbit.consumer([TOPIC], group="contract")
        medium.consumers.append(backend)  # type: ignore[arg-type]
        await backend.claim(1, wait=False)  # the group's queues exist before anything is relayed
        tasks.append(asyncio.create_task(medium.rabbit.relay().run(stop, poll_seconds=30.0)))
    else:
        backend = medium.bus.consumer([TOPIC])
    tasks.append(asyncio.create_task(pipeline(backend, handler, poll=30.0).run(stop)))
    url = medium.engine.url.render_as_string(hide_password=False)
    # Started first: its imports overlap the consumer's start.
    publisher = await asyncio.create_subprocess_exec(
        sys.executable,
        "-c",
        PUBLISHER,
        url,
        "from-another-process",
        cwd=ROOT,
        stdin=asyncio.subprocess.PIPE,
    )
    assert publisher.stdin is not None
    try:
        # Idle: its first claims are done.
        [first] = medium.add(SHOP, ["first"])
        await until(
            lambda: _done(medium, first), within=15, what="the first event, claimed at start"
        )
        publisher.stdin.write(b"go\n")
        await publisher.stdin.drain()
        assert await publisher.wait() == 0
        # The poll would come after 30 s; 15 s leave room for a loaded machine.
        await asyncio.wait_for(handled["from-another-process"].wait(), timeout=15.0)
    finally:
        if publisher.returncode is None:
            publisher.kill()
            await publisher.wait()
        stop.set()
        await asyncio.gather(*tasks)


async def test_a_key_is_never_in_flight_twice_across_refills(medium: Medium) -> None:
    """Six keys' events interleaved, handlers of random length, four slots refilled as each
    one finishes: no event starts before every earlier event of its key is settled (so no key
    is ever handled twice at once), and each key's events run in order."""
    rng = random.Random(20261208)
    keys = [f"k{n}" for n in range(6)]
    order = [rng.choice(keys) for _ in range(48)]
    ids = medium.add(SHOP, order)
    active: set[str] = set()
    overlaps: list[str] = []
    seen: dict[str, list[int]] = defaultdict(list)

    by_key: dict[str, list[int]] = defaultdict(list)
    for event_id, key in zip(ids, order, strict=True):
        by_key[f"{SHOP}/{key}"].append(event_id)

    async def handler(d: Delivery) -> Outcome:
        if d.partition_key in active:
            overlaps.append(d.partition_key)
        # In flight means claimed and not yet settled: every earlier event of the key is.
        earlier = [i for i in by_key[d.partition_key] if i < d.id]
        if any(medium.status(i).status != "done" for i in earlier):
            overlaps.append(f"{d.partition_key} before its earlier events settled")
        active.add(d.partition_key)
        seen[d.partition_key].append(d.id)
        await asyncio.sleep(rng.choice([0, 0, 0.001, 0.005, 0.02]))
        active.discard(d.partition_key)
        return Ack()

    stop = asyncio.Event()
    running = asyncio.create_task(pipeline(medium.consumer(), handler, batch=4).run(stop))
    try:

        async def all_done() -> bool:
            return sum(len(v) for v in seen.values()) >= len(ids) and not active

        await until(all_done, within=40, what="every event handled")
    finally:
        stop.set()
        await running
    assert overlaps == []
    for key, handled in seen.items():
        assert handled == sorted(handled), key
    assert sorted(i for v in seen.values() for i in v) == ids


def test_per_key_exclusivity_and_order_hold_for_any_mix_of_keys_and_handler_times(
    tmp_path: Path,
) -> None:
    """Hypothesis: any sequence of keys, any handler durations, any number of slots — the
    pipeline on the embedded bus (SQLite) starts no event before the earlier events of its key
    are settled, and keeps each key's order. One database; each example a shop of its own."""
    from hypothesis import HealthCheck, given, settings
    from hypothesis import strategies as st

    from syncapp.bus.embedded import EmbeddedBus
    from syncapp.store.db import make_engine
    from syncapp.store.migrate import upgrade
    from tests.integration.bus.conftest import FakeClock

    engine = make_engine(f"sqlite:///{tmp_path / 'bus.db'}")
    upgrade(engine)
    medium = Medium("embedded-sqlite", engine, FakeClock())
    shops = iter(range(1_000_000))

    @settings(max_examples=12, deadline=None, suppress_health_check=[HealthCheck.too_slow])
    @given(
        keys=st.lists(st.integers(0, 4), min_size=1, max_size=24),
        pauses=st.lists(st.sampled_from([0.0, 0.0005, 0.002, 0.01]), min_size=1, max_size=8),
        slots=st.integers(1, 6),
    )
    def example(keys: list[int], pauses: list[float], slots: int) -> None:
        shop = f"s{next(shops)}.myshopify.com"
        ids = medium.add(shop, [f"k{k}" for k in keys])
        active: set[str] = set()
        overlaps: list[str] = []
        seen: dict[str, list[int]] = defaultdict(list)
        turn = iter(range(1_000_000))

        by_key: dict[str, list[int]] = defaultdict(list)
        for event_id, key in zip(ids, keys, strict=True):
            by_key[f"{shop}/k{key}"].append(event_id)

        async def handler(d: Delivery) -> Outcome:
            if d.partition_key in active:
                overlaps.append(d.partition_key)
            earlier = [i for i in by_key[d.partition_key] if i < d.id]
            if any(medium.status(i).status != "done" for i in earlier):
                overlaps.append(f"{d.partition_key} before its earlier events settled")
            active.add(d.partition_key)
            seen[d.partition_key].append(d.id)
            await asyncio.sleep(pauses[next(turn) % len(pauses)])
            active.discard(d.partition_key)
            return Ack()

        async def run() -> None:
            bus = EmbeddedBus(engine, clock=medium.clock, lease_seconds=30)
            backend = bus.consumer([TOPIC])
            stop = asyncio.Event()
            consumer = pipeline(backend, handler, batch=slots)
            running = asyncio.create_task(consumer.run(stop, until_idle=backend.idle))
            await asyncio.wait_for(running, timeout=30)

        asyncio.run(run())
        assert overlaps == []
        for handled in seen.values():
            assert handled == sorted(handled)
        assert sorted(i for v in seen.values() for i in v) == ids

    try:
        example()
    finally:
        engine.dispose()
