"""Bus benchmark: events/s end to end (publish → handler → ack) and the bare floor of the medium.

For each medium — embedded SQLite, embedded PostgreSQL, RabbitMQ — in the same run:

* **bus**: ``--events`` events are published (rows in one transaction per 500; with RabbitMQ,
  relayed with confirms) and drained by one consumer whose handler acks at once; events/s is
  counted from the first publish to the last settle;
* **floor**: the bare loop of the medium — SQLite/PostgreSQL: insert a batch, claim it with an
  UPDATE … RETURNING, delete it; RabbitMQ: a plain aio-pika publish (confirms) / consume (ack)
  loop on a quorum queue.

    .venv/bin/python benchmarks/bus/run.py [--events 20000] [--media sqlite,postgresql,rabbitmq]

PostgreSQL: the server on 127.0.0.1:5432 (database ``test`` for the admin connection);
RabbitMQ on 127.0.0.1:5672 (guest/guest).

* **hand-off latency** (``--rate 500 --seconds 10``): events stored at a fixed rate (5 every
  10 ms, each batch its own transaction, ``received_at`` = the commit's time) while the consumer
  (and with RabbitMQ the relay) runs as the worker runs it, polling every ``--poll`` seconds
  when idle (default 0.01; the worker's default is 0.5); latency = handler start - stored,
  p50/p99 over the run. The producer rings the doorbell as the inbox does (when the code has
  one: ``syncapp.bus.doorbell``). ``--slow-every N --slow-seconds S``: every N-th event's
  handler waits S seconds first (a Shopify THROTTLED wait), the others ack at once; the
  latency is then over the fast events only (what a slow one does to everybody else).

    .venv/bin/python benchmarks/bus/run.py --latency-only --rate 100 --poll 0.5 \\
        --slow-every 50 --slow-seconds 3

(``--latency-only``: skip the throughput and floor runs; ``--pipeline``: the throughput run
drains with ``Consumer.run``, the pipeline ``syncapp worker`` runs, instead of ``run_once``.)
"""

from __future__ import annotations

import argparse
import asyncio
import os
import sys
import tempfile
import time
import uuid
from datetime import UTC, datetime
from pathlib import Path
from typing import Any

import aio_pika
import psycopg
from sqlalchemy import Engine, insert, text

from syncapp.bus.consumer import Consumer
from syncapp.bus.embedded import EmbeddedBus
from syncapp.bus.interface import Ack, Delivery, Outcome, Subscription
from syncapp.bus.models import InboundEvent
from syncapp.bus.rabbitmq import RabbitBus, Topology
from syncapp.store.db import make_engine
from syncapp.store.migrate import upgrade

TOPIC = ("shopify", "products/update")
AMQP = "amqp://guest:guest@127.0.0.1:5672/"
PG_ADMIN = os.environ.get("SYNCAPP_TEST_POSTGRES_URL", "postgresql://127.0.0.1:5432/test")


def rows(n: int, start: int) -> list[dict[str, Any]]:
    """``n`` events of 10 shops, each of a product of its own (distinct partition keys: the
    benchmark measures the medium, not one key's serialisation)."""
    now = datetime.now(UTC)
    return [
        {
            "source": TOPIC[0],
            "topic": TOPIC[1],
            "shop_domain": f"shop{i % 10}.myshopify.com",
            "partition_key": f"shop{i % 10}.myshopify.com/Product/{i}",
            "delivery_id": f"bench-{i}",
            "payload": f'{{"id": {i}}}',
            "received_at": now,
            "status": "pending",
            "attempts": 0,
        }
        for i in range(start, start + n)
    ]


def publish(engine: Engine, events: int) -> None:
    for start in range(0, events, 500):
        with engine.begin() as conn:
            conn.execute(insert(InboundEvent), rows(min(500, events - start), start))


async def bus_embedded(engine: Engine, events: int, pipeline: bool = False) -> float:
    handled = 0
    finished = asyncio.Event()

    async def ack(d: Delivery) -> Outcome:
        nonlocal handled
        handled += 1
        if handled >= events:
            finished.set()
        return Ack()

    consumer = Consumer(
        EmbeddedBus(engine).consumer([TOPIC]), [Subscription(*TOPIC, ack)], batch_size=256
    )
    started = time.perf_counter()
    publish(engine, events)
    await drain(consumer, finished, pipeline)
    return events / (time.perf_counter() - started)


async def drain(consumer: Consumer, finished: asyncio.Event, pipeline: bool) -> None:
    """Until ``finished`` is set: batch by batch (``run_once``) or as ``syncapp worker``
    consumes (``run``, the pipeline)."""
    if not pipeline:
        while not finished.is_set():
            await consumer.run_once()
        return
    stop = asyncio.Event()
    running = asyncio.create_task(consumer.run(stop))
    await finished.wait()
    stop.set()
    await running


CLAIM = (
    "UPDATE inbound_events SET status = 'processing' WHERE id IN (SELECT id FROM"
    " inbound_events WHERE status = 'pending' ORDER BY id LIMIT 256) RETURNING id"
)


def floor_database(engine: Engine, events: int) -> float:
    started = time.perf_counter()
    publish(engine, events)
    done = 0
    while done < events:
        with engine.begin() as conn:
            ids = conn.execute(text(CLAIM)).scalars().all()
        with engine.begin() as conn:
            conn.execute(InboundEvent.__table__.delete().where(InboundEvent.id.in_(ids)))
        done += len(ids)
    return events / (time.perf_counter() - started)


async def bus_rabbitmq(engine: Engine, events: int, pipeline: bool = False) -> float:
    ns = f"bench-{uuid.uuid4().hex[:8]}"
    rabbit = RabbitBus(AMQP, engine, topology=Topology(namespace=ns), prefetch=512)
    handled = 0
    finished = asyncio.Event()

    async def ack(d: Delivery) -> Outcome:
        nonlocal handled
        handled += 1
        if handled >= events:
            finished.set()
        return Ack()

    backend = rabbit.consumer([TOPIC], group="bench", wait_seconds=0.05)
    await backend.start()
    consumer = Consumer(backend, [Subscription(*TOPIC, ack)], batch_size=256)
    relay = rabbit.relay(batch=1000)
    started = time.perf_counter()
    publish(engine, events)
    # As `syncapp worker` runs them: the relay and the consumer side by side.
    stop = asyncio.Event()
    relaying = asyncio.create_task(relay.run(stop, poll_seconds=0.01))
    await drain(consumer, finished, pipeline)
    rate = events / (time.perf_counter() - started)
    stop.set()
    await relaying
    await backend.close()
    await rabbit.close()
    return rate


async def floor_rabbitmq(events: int) -> float:
    connection = await aio_pika.connect_robust(AMQP)
    channel = await connection.channel(publisher_confirms=True)
    await channel.set_qos(prefetch_count=512)
    queue = await channel.declare_queue(
        f"bench-floor-{uuid.uuid4().hex[:8]}", durable=True, arguments={"x-queue-type": "quorum"}
    )
    got = 0
    finished = asyncio.Event()

    async def on_message(message: aio_pika.abc.AbstractIncomingMessage) -> None:
        nonlocal got
        await message.ack()
        got += 1
        if got >= events:
            finished.set()

    await queue.consume(on_message)
    started = time.perf_counter()
    for start in range(0, events, 500):
        await asyncio.gather(
            *(
                channel.default_exchange.publish(
                    aio_pika.Message(b'{"id": 1}', delivery_mode=aio_pika.DeliveryMode.PERSISTENT),
                    routing_key=queue.name,
                )
                for _ in range(min(500, events - start))
            )
        )
    await finished.wait()
    rate = events / (time.perf_counter() - started)
    await queue.delete(if_unused=False, if_empty=False)
    await connection.close()
    return rate


def percentile(values: list[float], q: float) -> float:
    ordered = sorted(values)
    return ordered[min(len(ordered) - 1, int(q * len(ordered)))] if ordered else float("nan")


async def produce_at(engine: Engine, rate: int, seconds: float) -> int:
    """Store ``rate`` events/s for ``seconds`` (5-event transactions); how many."""
    per_tick = 5
    loop = asyncio.get_running_loop()
    started, sent = loop.time(), 0
    while loop.time() - started < seconds:
        batch = rows(per_tick, 10_000_000 + sent)
        await asyncio.to_thread(_insert, engine, batch)
        sent += per_tick
        delay = started + sent / rate - loop.time()
        if delay > 0:
            await asyncio.sleep(delay)
    return sent


try:  # the doorbell, rung the way the inbox rings it (code from before it existed: none)
    from syncapp.bus.doorbell import ring, ring_in
except ImportError:  # pragma: no cover - benchmarking older code
    ring = ring_in = None  # type: ignore[assignment]


def _insert(engine: Engine, batch: list[dict[str, Any]]) -> None:
    now = datetime.now(UTC)
    for row in batch:
        row["received_at"] = now
    with engine.begin() as conn:
        conn.execute(insert(InboundEvent), batch)
        if ring_in is not None:
            ring_in(conn)
    if ring is not None and engine.dialect.name == "sqlite":
        ring(engine)


async def latency(
    engine: Engine,
    medium: str,
    rate: int,
    seconds: float,
    *,
    poll: float = 0.01,
    slow_every: int = 0,
    slow_seconds: float = 0.0,
) -> tuple[float, float]:
    """Hand-off p50/p99 in ms at ``rate`` events/s through the bus on ``medium`` (of the fast
    events: with ``slow_every``, every such event's handler waits ``slow_seconds`` first)."""
    seen: list[float] = []
    handled = 0

    async def handler(d: Delivery) -> Outcome:
        nonlocal handled
        started = time.time() - d.received_at.timestamp()
        n = int(d.delivery_id.rsplit("-", 1)[1])
        if slow_every and n % slow_every == 0:
            await asyncio.sleep(slow_seconds)
        else:
            seen.append(started)
        handled += 1
        return Ack()

    stop = asyncio.Event()
    tasks = []
    rabbit = None
    if medium == "rabbitmq":
        rabbit = RabbitBus(
            AMQP, engine, topology=Topology(namespace=f"lat-{uuid.uuid4().hex[:8]}"), prefetch=512
        )
        backend: Any = rabbit.consumer([TOPIC], group="bench", wait_seconds=0.05)
        await backend.start()
        relay = rabbit.relay(batch=1000)
        tasks.append(asyncio.create_task(relay.run(stop, poll_seconds=min(poll, 0.2))))
    else:
        backend = EmbeddedBus(engine).consumer([TOPIC])
    consumer = Consumer(backend, [Subscription(*TOPIC, handler)], batch_size=256, poll_seconds=poll)
    tasks.append(asyncio.create_task(consumer.run(stop)))
    sent = await produce_at(engine, rate, seconds)
    for _ in range(1000):
        if handled >= sent:
            break
        await asyncio.sleep(0.01)
    stop.set()
    await asyncio.gather(*tasks)
    if rabbit is not None:
        await rabbit.close()
    return percentile(seen, 0.5) * 1000, percentile(seen, 0.99) * 1000


def fresh_engine(medium: str, tmp: Path) -> tuple[Engine, str | None]:
    if medium == "sqlite":
        engine = make_engine(f"sqlite:///{tmp / f'bus-{uuid.uuid4().hex[:6]}.db'}")
        upgrade(engine)
        return engine, None
    name = f"bench_{uuid.uuid4().hex[:10]}"
    with psycopg.connect(PG_ADMIN, autocommit=True) as conn:
        conn.execute(f'CREATE DATABASE "{name}"')
    engine = make_engine(PG_ADMIN.rsplit("/", 1)[0] + "/" + name)
    upgrade(engine)
    return engine, name


def drop(name: str | None) -> None:
    if name is not None:
        with psycopg.connect(PG_ADMIN, autocommit=True) as conn:
            conn.execute(f'DROP DATABASE IF EXISTS "{name}" WITH (FORCE)')


def main() -> None:
    parser = argparse.ArgumentParser()
    parser.add_argument("--events", type=int, default=20_000)
    parser.add_argument("--media", default="sqlite,postgresql,rabbitmq")
    parser.add_argument("--rate", type=int, default=500)
    parser.add_argument("--seconds", type=float, default=10.0)
    parser.add_argument("--poll", type=float, default=0.01)
    parser.add_argument("--slow-every", type=int, default=0)
    parser.add_argument("--slow-seconds", type=float, default=3.0)
    parser.add_argument("--latency-only", action="store_true")
    parser.add_argument("--pipeline", action="store_true")
    args = parser.parse_args()
    print(f"# bus benchmark {datetime.now(UTC):%Y-%m-%d %H:%M} UTC, load {os.getloadavg()}")
    print(f"# {' '.join(sys.argv[1:])}")
    with tempfile.TemporaryDirectory() as tmp_dir:
        tmp = Path(tmp_dir)
        for medium in args.media.split(","):
            db = "sqlite" if medium in ("sqlite", "rabbitmq") else "postgresql"
            engine, name = fresh_engine(db, tmp)
            if args.latency_only:
                bus = floor = float("nan")
            elif medium == "rabbitmq":
                bus = asyncio.run(bus_rabbitmq(engine, args.events, args.pipeline))
                floor = asyncio.run(floor_rabbitmq(args.events))
            else:
                bus = asyncio.run(bus_embedded(engine, args.events, args.pipeline))
                engine.dispose()
                drop(name)
                engine, name = fresh_engine(db, tmp)
                floor = floor_database(engine, args.events)
            engine.dispose()
            drop(name)
            engine, name = fresh_engine(db, tmp)
            p50, p99 = asyncio.run(
                latency(
                    engine,
                    medium,
                    args.rate,
                    args.seconds,
                    poll=args.poll,
                    slow_every=args.slow_every,
                    slow_seconds=args.slow_seconds if args.slow_every else 0.0,
                )
            )
            engine.dispose()
            drop(name)
            print(
                f"{medium:11s} bus {bus:8,.0f} events/s   floor {floor:8,.0f} events/s   "
                f"ratio {bus / floor:.2f}   hand-off at {args.rate}/s p50 {p50:.1f} ms "
                f"p99 {p99:.1f} ms   load {os.getloadavg()[0]:.1f}"
            )
            sys.stdout.flush()


if __name__ == "__main__":
    main()
