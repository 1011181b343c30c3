"""Sync latency benchmark: a price change on one side → the engine's write arriving at the other,
p50/p99 at a fixed offered rate, in both directions.

The system is the sync engine's integration harness (``tests/integration/sync/engine_world.py``,
``sync_world(..., deliver=True)``): the Shopify sandbox delivering signed webhooks to the app's
ingest, the eManageCRM sandbox delivering its signed notifications to ``/webhooks/emanage``,
each served by uvicorn over real HTTP; plus one bus consumer of the sync topics, run here.
Everything runs in this one process (servers on threads), so the GIL is shared: a separate-process
deployment (``make run``) would not pay that.

Observation: the harness's write counters see every write the engine sends to a sandbox at the
HTTP level, outside app code; the benchmark records the arrival time of each one (before the
sandbox applies it: add its own few ms) and matches it to the change by product and price.
Every change sets a unique price (``<n>.37``), so a write carrying it is unambiguous. With ~50
products at 100 changes/s each product changes every ~0.5 s, so the engine may coalesce several
changes into one write (it fetches the current state): a change counts as arrived with the first
write for its product that carries its price or a later change's price ("superseded").

    .venv/bin/python -m benchmarks.sync.latency [--rate 100] [--seconds 20] [--products 50] \\
        [--consumer run|run_once]

Run from the repository root (it imports the harness from ``tests``).
"""

from __future__ import annotations

import argparse
import asyncio
import os
import re
import statistics
import sys
import tempfile
import threading
import time
import uuid
from collections.abc import Callable
from dataclasses import dataclass, field
from datetime import UTC, datetime
from decimal import Decimal
from pathlib import Path
from typing import Any

from syncapp.connectors.shopify.products import ShopifyThrottled
from syncapp.sync.catalog import Option, Product, Variant
from syncapp.sync.mapping import variant_bulk_input
from tests.integration.sync.engine_world import SyncWorld, sync_world
from tests.integration.sync.test_engine import (
    emanage_state,
    shopify_create,
    shopify_state,
    the_emanage_product,
)


@dataclass
class Change:
    product: int
    price: str
    sent: float
    acked: float = 0.0
    arrived: float | None = None
    superseded: bool = False


@dataclass
class Recorder:
    """Every write a sandbox's counter selects, with its arrival time."""

    writes: list[tuple[float, str, bytes]] = field(default_factory=list)
    _lock: threading.Lock = field(default_factory=threading.Lock)

    def wrap(self, is_write: Callable[[Any, bytes], bool]) -> Callable[[Any, bytes], bool]:
        def recording(scope: Any, body: bytes) -> bool:
            selected = is_write(scope, body)
            if selected:
                with self._lock:
                    self.writes.append((time.monotonic(), str(scope["path"]), body))
            return selected

        return recording


def out(*parts: Any) -> None:
    """Results go to stderr with a prefix: the app's JSON/console logs share stdout."""
    print("==", *parts, file=sys.stderr, flush=True)


def one_variant(n: int) -> Product:
    # Own SKUs: a SKU shared by two products is a recorded conflict, never synced.
    return Product(
        title=f"Latency product {n}",
        vendor="Acme",
        product_type="Shirt",
        description="<p>Bench</p>",
        options=(Option("Size", ("S",)),),
        variants=(Variant(sku=f"LAT-{n}", options=("S",), price=Decimal("1.00")),),
    )


async def consume(world: SyncWorld, stop: asyncio.Event, how: str = "run") -> None:
    """``run``: as ``syncapp worker`` consumes (``Consumer.run``, its 0.5 s poll); ``run_once``:
    batch after batch, looking again every 10 ms when idle (the runs before 2026-12-08)."""
    consumer = world.consumer()
    if how == "run":
        await consumer.run(stop)
        return
    while not stop.is_set():
        if not await consumer.run_once():
            await asyncio.sleep(0.01)


def match(changes: list[Change], writes: list[tuple[float, str, bytes]], key: list[str]) -> None:
    """Arrival time of each change: the first write for its product carrying its price or a
    later change's price (``key[i]``: the product's id as it appears in the write)."""
    by_product: dict[int, list[Change]] = {}
    for change in changes:
        by_product.setdefault(change.product, []).append(change)
    for product, mine in by_product.items():
        ident = key[product].encode()
        relevant = [(t, body) for t, path, body in writes if ident in path.encode() + body]
        for i, change in enumerate(mine):
            later = [c.price for c in mine[i:]]
            for t, body in relevant:
                if t < change.sent:
                    continue
                text = body.decode(errors="replace")
                hit = next(
                    (p for p in later if re.search(rf"(?<![\d.]){re.escape(p)}(?!\d)", text)), None
                )
                if hit is not None:
                    change.arrived = t
                    change.superseded = hit != change.price
                    break


def report(name: str, changes: list[Change], seconds: float, extra: str) -> dict[str, Any]:
    arrived = [c for c in changes if c.arrived is not None]
    lat = sorted((c.arrived - c.acked) * 1000 for c in arrived if c.arrived is not None)
    q = statistics.quantiles(lat, n=100) if len(lat) >= 2 else [float("nan")] * 99
    offered = len(changes) / seconds
    line = {
        "direction": name,
        "changes": len(changes),
        "offered_per_s": round(offered, 1),
        "arrived": len(arrived),
        "superseded": sum(c.superseded for c in arrived),
        "lost_or_late": len(changes) - len(arrived),
        "p50_ms": round(q[49], 1),
        "p90_ms": round(q[89], 1),
        "p99_ms": round(q[98], 1),
        "max_ms": round(lat[-1], 1) if lat else None,
        "ack_p50_ms": round(statistics.median((c.acked - c.sent) * 1000 for c in changes), 1)
        if changes
        else None,
    }
    out("result", name, line, extra)
    return line


async def run_shopify_to_emanage(
    world: SyncWorld,
    rate: float,
    seconds: float,
    variants: list[str],
    rec: Recorder,
    emanage_ids: list[str],
) -> None:
    changes: list[Change] = []
    merchant = world.merchant()
    before_throttled = merchant.throttled
    tasks = []
    start = time.monotonic()
    n = 0
    locks = [asyncio.Lock() for _ in variants]
    refused = [0]

    async def edit(change: Change, gid: str, vid: str) -> None:
        async with locks[change.product]:
            change.sent = time.monotonic()
            try:
                await asyncio.to_thread(edit_now, gid, vid, change)
            except ShopifyThrottled:
                # The merchant's own (app, shop) bucket: Standard plan restores 100 points/s,
                # a productVariantsBulkUpdate costs 10, so ~10 edits/s is all one token gets.
                refused[0] += 1
                change.acked = change.sent = float("inf")
                return
            change.acked = time.monotonic()

    def edit_now(gid: str, vid: str, change: Change) -> None:
        merchant.update_variants(
            gid,
            [
                variant_bulk_input(
                    Variant(
                        sku=f"LAT-{change.product}",
                        options=("S",),
                        price=Decimal(change.price),
                        shopify_id=vid,
                    ),
                    frozenset({"price"}),
                )
            ],
        )

    while (now := time.monotonic()) - start < seconds:
        due = start + n / rate
        if now < due:
            await asyncio.sleep(due - now)
        p = n % len(variants)
        change = Change(product=p, price=f"{n + 2}.37", sent=time.monotonic())
        changes.append(change)
        tasks.append(asyncio.create_task(edit(change, gids[p], variants[p])))
        n += 1
    await asyncio.gather(*tasks)
    elapsed = time.monotonic() - start
    await asyncio.sleep(5)  # let the tail arrive
    ok = [c for c in changes if c.acked != float("inf")]
    match(ok, list(rec.writes), emanage_ids)
    report(
        "shopify->emanage",
        ok,
        elapsed,
        f"edits refused THROTTLED {refused[0]} of {len(changes)}, merchant THROTTLED answers "
        f"{merchant.throttled - before_throttled}",
    )


async def run_emanage_to_shopify(
    world: SyncWorld,
    rate: float,
    seconds: float,
    emanage_ids: list[str],
    rec: Recorder,
) -> None:
    changes: list[Change] = []
    current = []
    for pid in emanage_ids:
        state = await emanage_state(world, pid)
        assert state is not None
        current.append(state)
    locks = [asyncio.Lock() for _ in emanage_ids]
    failures = 0

    async def edit(change: Change) -> None:
        nonlocal failures
        async with locks[change.product]:
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
            change.sent = time.monotonic()
            try:
                current[change.product] = await world.merchant_emanage.update_product(
                    account_id=world.account_id,
                    product_id=state.product_id,
                    body=body,
                    version=state.version,
                    idempotency_key=str(uuid.uuid4()),
                    origin=None,
                )
            except Exception as exc:  # a version conflict with the engine's echo write, say
                failures += 1
                out("emanage edit failed:", type(exc).__name__, str(exc)[:200])
                fresh = await emanage_state(world, state.product_id)
                if fresh is not None:
                    current[change.product] = fresh
                change.acked = change.sent = float("inf")
                return
            change.acked = time.monotonic()

    tasks = []
    start = time.monotonic()
    n = 0
    while (now := time.monotonic()) - start < seconds:
        due = start + n / rate
        if now < due:
            await asyncio.sleep(due - now)
        p = n % len(emanage_ids)
        change = Change(product=p, price=f"{n + 100002}.37", sent=time.monotonic())
        changes.append(change)
        tasks.append(asyncio.create_task(edit(change)))
        n += 1
    await asyncio.gather(*tasks)
    elapsed = time.monotonic() - start
    await asyncio.sleep(5)
    ok = [c for c in changes if c.acked != float("inf")]
    match(ok, list(rec.writes), gids)
    report("emanage->shopify", ok, elapsed, f"edits refused {failures}")


gids: list[str] = []


async def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--rate", type=float, default=100.0)
    parser.add_argument("--seconds", type=float, default=20.0)
    # The merchant's edits in Shopify go through one token of their own, whose (app, shop) cost
    # bucket on the Standard plan restores 100 points/s: at 10 points per
    # productVariantsBulkUpdate that is 10 edits/s sustained, so 100/s Shopify edits cannot be
    # offered through one token (they are THROTTLED and the offered rate collapses).
    parser.add_argument(
        "--shopify-rate",
        type=float,
        default=None,
        help="offered rate of Shopify edits (default: --rate)",
    )
    parser.add_argument("--products", type=int, default=50)
    parser.add_argument("--direction", choices=("both", "s2e", "e2s"), default="both")
    parser.add_argument("--consumer", choices=("run", "run_once"), default="run")
    args = parser.parse_args()
    out(
        f"{datetime.now(UTC):%Y-%m-%d %H:%M} UTC, load average {os.getloadavg()}, "
        f"rate {args.rate}/s, {args.seconds} s per direction, {args.products} products, "
        f"consumer {args.consumer}",
    )
    with tempfile.TemporaryDirectory() as tmp:
        async with sync_world(Path(tmp), f"latency-{uuid.uuid4()}", deliver=True) as world:
            stop = asyncio.Event()
            consumer = asyncio.create_task(consume(world, stop, args.consumer))
            for i in range(args.products):
                gids.append(await asyncio.to_thread(shopify_create, world, one_variant(i)))
            variants = []
            for gid in gids:
                state = await asyncio.to_thread(shopify_state, world, gid)
                assert state is not None
                assert state.variants[0].shopify_id
                variants.append(str(state.variants[0].shopify_id))
            deadline = time.monotonic() + 90
            emanage_ids: list[str] = []
            while time.monotonic() < deadline:
                try:
                    emanage_ids = [(await the_emanage_product(world, g)).product_id for g in gids]
                    break
                except AssertionError:
                    await asyncio.sleep(0.5)
            assert len(emanage_ids) == len(gids), "the products did not reach eManageCRM"
            await asyncio.sleep(2)  # the creates' echoes
            out("setup done, load average", os.getloadavg())
            s_rec, e_rec = Recorder(), Recorder()
            world.shopify_writes.is_write = s_rec.wrap(world.shopify_writes.is_write)
            world.emanage_writes.is_write = e_rec.wrap(world.emanage_writes.is_write)
            if args.direction in ("both", "s2e"):
                await run_shopify_to_emanage(
                    world, args.rate, args.seconds, variants, e_rec, emanage_ids
                )
            if args.direction in ("both", "e2s"):
                await run_emanage_to_shopify(world, args.rate, args.seconds, emanage_ids, s_rec)
            clients = _app_clients(world)
            out(
                "app's Shopify clients found:",
                len(clients),
                "THROTTLED:",
                sum(getattr(c, "throttled", 0) for c in clients),
            )
            out(
                "dead letters:",
                len(world.events(status="dead")),
                "load average after",
                os.getloadavg(),
            )
            stop.set()
            await consumer


def _app_clients(world: SyncWorld) -> list[Any]:
    # The engine's ProductsClient per shop, if the context caches them (best effort).
    found = []
    for value in vars(world.context).values():
        if isinstance(value, dict):
            found.extend(v for v in value.values() if hasattr(v, "throttled"))
        elif hasattr(value, "throttled"):
            found.append(value)
    return found


if __name__ == "__main__":
    sys.exit(asyncio.run(main()))
