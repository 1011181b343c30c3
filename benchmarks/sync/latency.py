"""Sync latency benchmark: a price change on one side → the engine's write arriving at the other,
p50/p90/p99 at a fixed offered rate spread over N shops, in both directions.

The system is the sync engine's integration harness (``tests/integration/sync/engine_world.py``,
``sync_world(..., deliver=True)`` and :meth:`SyncWorld.add_shop`): the Shopify sandbox
delivering signed webhooks to the app's ingest, the eManageCRM sandbox delivering its signed
notifications to ``/webhooks/emanage``, each served by uvicorn over real HTTP; N shops, each
installed and signed up to an eManageCRM account of its own; and one consumer of the sync topics
run as ``syncapp worker`` runs it (:class:`syncapp.worker.Worker` with the settings' options,
``serve`` → ``Consumer.run``). Everything runs in this one process (servers on threads), so the
GIL is shared: a separate-process deployment (``make run``) would not pay that.

Why N shops: Shopify's rate limit is per (app, shop) bucket. On the Standard plan (2,000
points, restored at 100/s) an eManageCRM change costs the app a ``productVariantsBulkUpdate``
and a product read for its echoed webhook (~23 points), so one shop sustains ~4 changes/s; an
offered 100 changes/s to one shop only queue behind its bucket. ``--shops N`` gives each shop
``rate / N`` (change *n* goes to shop ``n mod N``). ``--plan`` picks the shops' plan (the
sandbox applies Plus's 20,000-point bucket restored at 1,000/s).

The merchant's edits: in eManageCRM through its products API without the app's origin marker;
in Shopify on the admin's product form (``/store/<shop>/products/<id>``, as a merchant saves a
price), which spends no app's cost bucket (an edit through an API token would spend the
token's own bucket and be THROTTLED at these rates).

Observation: the harness's write counters see every write the engine sends to a sandbox at the
HTTP level, outside app code; the benchmark records the arrival time of each one (before the
sandbox applies it: add its own few ms) and matches it to the change by product and price.
Every change sets a unique price (``<n>.37``), so a write carrying it is unambiguous. The
engine fetches the current state, so several changes of one product may be coalesced into one
write: a change counts as arrived with the first write for its product that carries its price
or a later change's price ("superseded"). The same match against the app's inbox gives each
change's stages: edit acknowledged → its notification stored in the inbox (the source sandbox's
delivery and the ingest) → the write (waiting for the consumer, the handler's read and write).

    .venv/bin/python -m benchmarks.sync.latency --direction e2s --rate 100 --shops 50
    .venv/bin/python -m benchmarks.sync.latency --direction e2s --rate 3 --shops 1
    .venv/bin/python -m benchmarks.sync.latency ... --consumer run_once   # batch after batch

Run from the repository root (it imports the harness from ``tests``).
"""

from __future__ import annotations

import argparse
import asyncio
import contextlib
import dataclasses
import os
import re
import statistics
import sys
import tempfile
import threading
import time
import uuid
from collections.abc import Callable, Sequence
from dataclasses import dataclass, field
from datetime import UTC, datetime
from decimal import Decimal
from pathlib import Path
from typing import Any

import httpx
from prometheus_client import REGISTRY
from sqlalchemy import func, select

from syncapp.bus.models import InboundEvent
from syncapp.connectors.emanage import EmanageClient
from syncapp.sync import topics
from syncapp.sync.catalog import Option, Product, Variant
from syncapp.sync.events import RESYNC_REQUESTED
from syncapp.worker import Worker, WorkerOptions
from tests.integration.sync.engine_world import (
    EMANAGE_ID,
    EMANAGE_SECRET,
    SyncWorld,
    admin_set_prices,
    sync_world,
)
from tests.integration.sync.test_engine import (
    shopify_create,
    shopify_state,
    the_emanage_product,
)

# time.monotonic() + OFFSET ≈ time.time(): the inbox's timestamps are wall-clock.
OFFSET = time.time() - time.monotonic()


@dataclass
class Change:
    shop: int
    product: int  # global index over all shops' products
    price: str
    sent: float
    acked: float = 0.0
    arrived: float | None = None
    superseded: bool = False
    stored: float | None = None  # its (or a later change's) notification in the app's inbox
    refused: bool = False
    version: int | None = None  # eManageCRM's version after the edit (its notification's)


@dataclass
class Recorder:
    """Every write a sandbox's counter selects, with its arrival time."""

    writes: list[tuple[float, str]] = field(default_factory=list)
    _lock: threading.Lock = field(default_factory=threading.Lock)

    def wrap(self, is_write: Callable[[Any, bytes], bool]) -> Callable[[Any, bytes], bool]:
        def recording(scope: Any, body: bytes) -> bool:
            selected = is_write(scope, body)
            if selected:
                text = str(scope["path"]) + " " + body.decode(errors="replace")
                with self._lock:
                    self.writes.append((time.monotonic(), text))
            return selected

        return recording


@dataclass
class BenchShop:
    """One shop's products, and its merchant's own HTTP clients (a browser on the Shopify
    admin, an eManageCRM API client): one pool shared by all shops' edits would queue hundreds
    of requests whose connection bookkeeping (httpcore's pool scans every queued request on
    every change) took half of this process's CPU at 100 edits/s, starving the system under
    test."""

    world: SyncWorld
    gids: list[str]
    variants: list[str]
    emanage_ids: list[str]
    admin: httpx.AsyncClient
    emanage: EmanageClient


def out(*parts: Any) -> None:
    """Results go to stderr with a prefix: the app's JSON/console logs share stdout."""
    print("==", *parts, file=sys.stderr, flush=True)


def one_variant(shop: int, n: int) -> Product:
    # Own SKUs: a SKU shared by two products is a recorded conflict, never synced.
    return Product(
        title=f"Latency product {shop}-{n}",
        vendor="Acme",
        product_type="Shirt",
        description="<p>Bench</p>",
        options=(Option("Size", ("S",)),),
        variants=(Variant(sku=f"LAT-{shop}-{n}", options=("S",), price=Decimal("1.00")),),
    )


PRICE = (r"(?<![\d.])(", r")(?!\d)")
VERSION = (r'"version":\s*(', r")(?!\d)")


def first_carrying(
    changes: Sequence[Change],
    records: Sequence[tuple[float, str]],
    key: Sequence[str],
    value: Callable[[Change], str] = lambda c: c.price,
    around: tuple[str, str] = PRICE,
) -> list[tuple[int, bool] | None]:
    """For each change, the first record (time, text) at or after it was sent that names its
    product (``key[product]``) and carries its value (its price; or its eManageCRM version,
    which eManageCRM's thin notifications carry) or a later change's value of the same product:
    (index of the record, superseded), or None."""
    by_product: dict[int, list[int]] = {}
    for i, change in enumerate(changes):
        by_product.setdefault(change.product, []).append(i)
    found: list[tuple[int, bool] | None] = [None] * len(changes)
    for product, mine in by_product.items():
        ident = re.compile(re.escape(key[product]) + r"(?![\w-])")
        relevant = [(j, t, text) for j, (t, text) in enumerate(records) if ident.search(text)]
        for k, i in enumerate(mine):
            change = changes[i]
            later = [value(changes[m]) for m in mine[k:]]
            pattern = re.compile(around[0] + "|".join(map(re.escape, later)) + around[1])
            for j, t, text in relevant:
                if t < change.sent:
                    continue
                hit = pattern.search(text)
                if hit is not None:
                    found[i] = (j, hit.group(1) != value(change))
                    break
    return found


def quantiles(values: list[float]) -> dict[str, float | None]:
    if len(values) < 2:
        return {"p50": None, "p90": None, "p99": None}
    q = statistics.quantiles(values, n=100)
    return {"p50": round(q[49], 1), "p90": round(q[89], 1), "p99": round(q[98], 1)}


def handler_seconds(topic_names: Sequence[str]) -> dict[str, tuple[float, float]]:
    """The consumer's handler time so far per topic: (count, sum of seconds)."""
    result = {}
    for topic in topic_names:
        labels = {"topic": topic}
        count = REGISTRY.get_sample_value("syncapp_bus_handler_seconds_count", labels) or 0.0
        total = REGISTRY.get_sample_value("syncapp_bus_handler_seconds_sum", labels) or 0.0
        result[topic] = (count, total)
    return result


def inbox_records(world: SyncWorld, source: str, since: float) -> list[tuple[float, str]]:
    """Every event of ``source`` stored since ``since`` (monotonic): (stored at, payload)."""
    after = datetime.fromtimestamp(since + OFFSET - 1, UTC)
    with world.runtime.sessions() as session:
        rows = session.execute(
            select(InboundEvent.received_at, InboundEvent.payload)
            .where(InboundEvent.source == source, InboundEvent.received_at >= after)
            .order_by(InboundEvent.id)
        ).all()
    return [(_aware(at).timestamp() - OFFSET, payload) for at, payload in rows]


def _aware(at: datetime) -> datetime:
    return at if at.tzinfo is not None else at.replace(tzinfo=UTC)


def report(
    name: str,
    changes: list[Change],
    elapsed: float,
    writes: list[tuple[float, str]],
    write_key: list[str],
    inbox: list[tuple[float, str]],
    inbox_key: list[str],
    extra: dict[str, Any],
    inbox_value: tuple[Callable[[Change], str], tuple[str, str]] = (lambda c: c.price, PRICE),
) -> dict[str, Any]:
    ok = [c for c in changes if not c.refused]
    for change, hit in zip(ok, first_carrying(ok, writes, write_key), strict=True):
        if hit is not None:
            change.arrived = writes[hit[0]][0]
            change.superseded = hit[1]
    stored = first_carrying(ok, inbox, inbox_key, *inbox_value)
    for change, hit in zip(ok, stored, strict=True):
        if hit is not None:
            change.stored = inbox[hit[0]][0]
    arrived = [c for c in ok if c.arrived is not None]
    latency = sorted((c.arrived - c.acked) * 1000 for c in arrived if c.arrived is not None)
    staged = [c for c in arrived if c.stored is not None]
    first = min((c.sent for c in changes), default=0.0)
    during = [t for t, _ in inbox if first <= t <= first + elapsed]
    line = {
        "direction": name,
        "changes": len(changes),
        "offered_per_s": round(len(changes) / elapsed, 1),
        "refused": len(changes) - len(ok),
        "arrived": len(arrived),
        "superseded": sum(c.superseded for c in arrived),
        "not_arrived_in_tail": len(ok) - len(arrived),
        **{f"{k}_ms": v for k, v in quantiles(latency).items()},
        "max_ms": round(latency[-1], 1) if latency else None,
        "edit_ack_p50_ms": round(statistics.median((c.acked - c.sent) * 1000 for c in ok), 1)
        if ok
        else None,
        # Stages of the arrived changes whose notification was found in the inbox.
        "ack_to_inbox_ms": quantiles(
            sorted((c.stored - c.acked) * 1000 for c in staged if c.stored is not None)
        ),
        # How fast the source's notifications reached the inbox while the edits were offered
        # (every edit is one notification; the engine's echoes add more).
        "inbox_stored_per_s_during": round(len(during) / elapsed, 1) if elapsed else None,
        "inbox_to_write_ms": quantiles(
            sorted(
                (c.arrived - c.stored) * 1000
                for c in staged
                if c.stored is not None and c.arrived is not None
            )
        ),
        **extra,
    }
    out("result", line)
    return line


async def offer(
    rate: float,
    seconds: float,
    shops: list[BenchShop],
    price_base: int,
    edit: Callable[[Change], Any],
) -> tuple[list[Change], float]:
    """Change *n* at ``start + n / rate`` goes to shop ``n mod N``, product ``(n // N) mod P``
    of that shop; one product's edits are made one after the other (a merchant saves a form,
    then the next)."""
    per_shop = len(shops[0].gids)
    locks = [asyncio.Lock() for _ in range(len(shops) * per_shop)]
    changes: list[Change] = []
    tasks = []

    async def one(change: Change) -> None:
        async with locks[change.product]:
            change.sent = time.monotonic()
            await edit(change)
            change.acked = time.monotonic()

    start = time.monotonic()
    n = 0
    while (now := time.monotonic()) - start < seconds:
        due = start + n / rate
        if now < due:
            await asyncio.sleep(due - now)
        s = n % len(shops)
        p = s * per_shop + (n // len(shops)) % per_shop
        change = Change(shop=s, product=p, price=f"{n + price_base}.37", sent=time.monotonic())
        changes.append(change)
        tasks.append(asyncio.create_task(one(change)))
        n += 1
    await asyncio.gather(*tasks)
    return changes, time.monotonic() - start


async def run_shopify_to_emanage(
    shops: list[BenchShop], args: argparse.Namespace, rec: Recorder, topic_names: list[str]
) -> dict[str, Any]:
    per_shop = len(shops[0].gids)

    async def edit(change: Change) -> None:
        shop = shops[change.shop]
        p = change.product - change.shop * per_shop
        try:
            await admin_set_prices(
                shop.world, shop.admin, shop.gids[p], {shop.variants[p]: change.price}
            )
        except AssertionError as exc:  # the admin's form refused the save
            change.refused = True
            out("admin save refused:", str(exc)[:200])

    before = handler_seconds(topic_names)
    writes_before = len(rec.writes)
    cpu = time.process_time()
    changes, elapsed = await offer(args.rate, args.seconds, shops, 2, edit)
    cpu = time.process_time() - cpu
    await asyncio.sleep(args.tail)  # let the tail arrive
    return report(
        "shopify->emanage",
        changes,
        elapsed,
        rec.writes[writes_before:],
        [e for s in shops for e in s.emanage_ids],
        inbox_records(shops[0].world, "shopify", changes[0].sent if changes else 0.0),
        [g for s in shops for g in s.gids],
        {
            "handler_ms_mean": _handler_means(before, handler_seconds(topic_names)),
            "process_cpu_per_wall_s": round(cpu / elapsed, 2),
        },
    )


async def run_emanage_to_shopify(
    shops: list[BenchShop], args: argparse.Namespace, rec: Recorder, topic_names: list[str]
) -> dict[str, Any]:
    per_shop = len(shops[0].gids)
    current = []
    for shop in shops:
        for pid in shop.emanage_ids:
            state = await shop.emanage.get_product(account_id=shop.world.account_id, product_id=pid)
            assert state is not None
            current.append(state)
    failures: dict[str, int] = {}

    async def edit(change: Change) -> None:
        world = shops[change.shop].world
        client = shops[change.shop].emanage
        state = current[change.product]
        body = dict(state.body)
        variant = dict(body["variants"][0])
        prices = dict(variant.get("productPrices") or {})
        prices["DiscountedPrice"] = {
            "Value": float(change.price),
            "FormattedValue": f"${change.price}",
        }
        variant["productPrices"] = prices
        body["variants"] = [variant]
        try:
            saved = await client.update_product(
                account_id=world.account_id,
                product_id=state.product_id,
                body=body,
                version=state.version,
                idempotency_key=str(uuid.uuid4()),
                origin=None,
            )
            current[change.product] = saved
            change.version = saved.version
        except Exception as exc:  # a version conflict with a write of the engine, say
            failures[type(exc).__name__] = failures.get(type(exc).__name__, 0) + 1
            fresh = await client.get_product(
                account_id=world.account_id, product_id=state.product_id
            )
            if fresh is not None:
                current[change.product] = fresh
            change.refused = True

    before = handler_seconds(topic_names)
    writes_before = len(rec.writes)
    cpu = time.process_time()
    changes, elapsed = await offer(args.rate, args.seconds, shops, 100002, edit)
    cpu = time.process_time() - cpu
    await asyncio.sleep(args.tail)
    assert per_shop == len(shops[0].emanage_ids)
    return report(
        "emanage->shopify",
        changes,
        elapsed,
        rec.writes[writes_before:],
        [g for s in shops for g in s.gids],
        inbox_records(shops[0].world, "emanage", changes[0].sent if changes else 0.0),
        # eManageCRM's notifications are thin: the product's id and version, no prices.
        [f'"productId":"{e}"' for s in shops for e in s.emanage_ids],
        {
            "edits_refused_by_kind": failures,
            "handler_ms_mean": _handler_means(before, handler_seconds(topic_names)),
            "process_cpu_per_wall_s": round(cpu / elapsed, 2),
        },
        (lambda c: str(c.version), VERSION),
    )


def _handler_means(
    before: dict[str, tuple[float, float]], after: dict[str, tuple[float, float]]
) -> dict[str, str]:
    means = {}
    for topic, (count, total) in after.items():
        n = count - before[topic][0]
        if n:
            means[topic] = f"{(total - before[topic][1]) / n * 1000:.0f} ms x {n:.0f}"
    return means


async def setup_shop(
    world: SyncWorld, index: int, products: int, stack: contextlib.AsyncExitStack
) -> BenchShop:
    gids = []
    for i in range(products):
        gids.append(await asyncio.to_thread(shopify_create, world, one_variant(index, i)))
    variants = []
    for gid in gids:
        state = await asyncio.to_thread(shopify_state, world, gid)
        assert state is not None
        assert state.variants[0].shopify_id
        variants.append(str(state.variants[0].shopify_id))
    http = await stack.enter_async_context(httpx.AsyncClient(timeout=30))
    return BenchShop(
        world=world,
        gids=gids,
        variants=variants,
        emanage_ids=[],
        admin=await stack.enter_async_context(httpx.AsyncClient(timeout=30)),
        emanage=EmanageClient(http, world.emanage_url, EMANAGE_ID, EMANAGE_SECRET),
    )


async def await_emanage(shops: list[BenchShop], within: float) -> None:
    """Wait until every shop's products were created in its eManageCRM account."""
    deadline = time.monotonic() + within
    for shop in shops:
        while True:
            try:
                shop.emanage_ids = [
                    (await the_emanage_product(shop.world, g)).product_id for g in shop.gids
                ]
                break
            except AssertionError:
                assert time.monotonic() < deadline, "the products did not reach eManageCRM"
                await asyncio.sleep(0.5)


async def batches(worker: Worker, stop: asyncio.Event) -> None:
    """The consumer driven batch after batch, looking again every 10 ms when idle."""
    while not stop.is_set():
        if not await worker.consumer.run_once(stop):
            await asyncio.sleep(0.01)


async def drain(world: SyncWorld, within: float) -> float:
    """Wait until no sync event of any shop is pending or in flight; the seconds it took
    (events of topics nobody consumes here, ``shop/update`` say, stay pending: not counted)."""
    sync_topics = (*topics.SHOPIFY_TOPICS, *topics.EMANAGE_TOPICS, RESYNC_REQUESTED.name)
    started = time.monotonic()
    while time.monotonic() - started < within:
        with world.runtime.sessions() as session:
            left = session.scalar(
                select(func.count()).where(
                    InboundEvent.status.in_(("pending", "processing")),
                    InboundEvent.topic.in_(sync_topics),
                )
            )
        if not left:
            break
        await asyncio.sleep(0.5)
    return time.monotonic() - started


def app_throttled(world: SyncWorld) -> int:
    """THROTTLED answers the engine's Shopify clients (one per shop) received."""
    clients = getattr(world.context, "_clients", {})
    return sum(c.throttled for c in clients.values())


async def main() -> None:
    parser = argparse.ArgumentParser(description=(__doc__ or "").splitlines()[0])
    parser.add_argument("--rate", type=float, default=100.0, help="changes/s over all shops")
    parser.add_argument("--seconds", type=float, default=20.0)
    parser.add_argument("--shops", type=int, default=1)
    parser.add_argument("--products", type=int, default=4, help="products per shop")
    parser.add_argument("--plan", default="Standard", help="the shops' Shopify plan")
    parser.add_argument("--tail", type=float, default=10.0, help="seconds to wait for arrivals")
    parser.add_argument("--direction", choices=("both", "s2e", "e2s"), default="both")
    parser.add_argument(
        "--consumer",
        choices=("run", "run_once"),
        default="run",
        help="run: as syncapp worker consumes (Worker.serve → Consumer.run); run_once: batch "
        "after batch, looking again every 10 ms when idle (the runs before 2026-12-08)",
    )
    parser.add_argument(
        "--poll-seconds",
        type=float,
        default=None,
        help="the worker's idle poll (default: the settings', SYNCAPP_WORKER_POLL_SECONDS)",
    )
    args = parser.parse_args()
    started = time.monotonic()
    out(
        f"{datetime.now(UTC):%Y-%m-%d %H:%M} UTC, load average {os.getloadavg()}, "
        f"rate {args.rate}/s over {args.shops} {args.plan} shops x {args.products} products, "
        f"{args.seconds} s per direction",
    )
    with tempfile.TemporaryDirectory() as tmp:
        async with (
            contextlib.AsyncExitStack() as stack,
            sync_world(Path(tmp), f"latency-{uuid.uuid4()}", deliver=True) as first,
        ):
            settings = first.system.settings
            options = WorkerOptions.from_settings(settings)
            if args.poll_seconds is not None:
                options = dataclasses.replace(options, poll_seconds=args.poll_seconds)
            table = topics.topics(first.context)
            topic_names = sorted({topic for _, topic in table})
            # The consumer as `syncapp worker` runs it: Worker.serve → Consumer.run(stop).
            worker = Worker(first.runtime, options=options, handlers={}, extra=table)
            out("worker options", options, "consumer", args.consumer)
            stop = asyncio.Event()
            consuming = asyncio.create_task(
                worker.serve(stop) if args.consumer == "run" else batches(worker, stop)
            )
            worlds = [first]
            if args.plan != "Standard":
                # The first shop was created on the Standard plan; use only shops of the plan.
                worlds = []
            while len(worlds) < args.shops:
                worlds.append(await first.add_shop(f"{uuid.uuid4()}", plan_name=args.plan))
            out(f"{len(worlds)} shops signed up in {time.monotonic() - started:.0f} s")
            clients = await stack.enter_async_context(contextlib.AsyncExitStack())
            shops = [await setup_shop(w, i, args.products, clients) for i, w in enumerate(worlds)]
            await await_emanage(shops, within=120 + 2 * args.shops * args.products)
            await drain(first, 120)  # the creates and their echoes
            out(
                f"setup done in {time.monotonic() - started:.0f} s, load average",
                os.getloadavg(),
                "app THROTTLED so far",
                app_throttled(first),
            )
            s_rec, e_rec = Recorder(), Recorder()
            first.shopify_writes.is_write = s_rec.wrap(first.shopify_writes.is_write)
            first.emanage_writes.is_write = e_rec.wrap(first.emanage_writes.is_write)
            results = []
            if args.direction in ("both", "s2e"):
                throttled = app_throttled(first)
                out("s2e: load average before", os.getloadavg())
                line = await run_shopify_to_emanage(shops, args, e_rec, topic_names)
                results.append(line)
                out("s2e: app THROTTLED", app_throttled(first) - throttled)
                out("s2e: load average after", os.getloadavg())
                out(f"s2e: backlog drained {await drain(first, 180):.0f} s after the tail")
            if args.direction in ("both", "e2s"):
                throttled = app_throttled(first)
                out("e2s: load average before", os.getloadavg())
                line = await run_emanage_to_shopify(shops, args, s_rec, topic_names)
                results.append(line)
                out("e2s: app THROTTLED", app_throttled(first) - throttled)
                out("e2s: load average after", os.getloadavg())
                out(f"e2s: backlog drained {await drain(first, 180):.0f} s after the tail")
            dead = sum(len(w.events(status="dead")) for w in worlds)
            out("dead letters:", dead, "app THROTTLED in all:", app_throttled(first))
            stop.set()
            await consuming


if __name__ == "__main__":
    sys.exit(asyncio.run(main()))
