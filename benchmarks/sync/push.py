"""Push benchmark: N products created in eManageCRM → N products in an empty Shopify store,
through the real path, against what the store's cost bucket allows.

The system is the sync engine's integration harness (``tests/integration/sync/engine_world.py``,
``sync_world(..., deliver=True)``): the eManageCRM sandbox delivers its signed
``product.created`` notifications to the app's ``/webhooks/emanage``, one bus consumer of the
sync topics (run here) makes each product in the Shopify sandbox, whose leaky bucket is the
Standard plan's (2,000 points, 100 restored per second) for the (app, shop) pair.

The N products are created first, while no consumer runs, so their notifications wait in the
app's inbox; the clock starts when the consumer starts and stops when the last product's link
has its Shopify GID. The bound is the bucket: in T seconds the app can spend at most what the
bucket held at the start plus T * the restore rate. Read off the sandbox (one 1-point query with
the app's token before and after), the points the app spent are ``start + T * rate - end``:

    bound used = points spent / (points at start + T * rate)      (target ≥ 90 %)
    points per product = points spent / N                          (what one push costs)

and THROTTLED answers are counted by the app's own Shopify clients (target 0).

    .venv/bin/python -m benchmarks.sync.push [--products 1000]

Run from the repository root (it imports the harness from ``tests``).
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
from decimal import Decimal
from pathlib import Path
from typing import Any

from sqlalchemy import func, select

from syncapp.bus.models import InboundEvent
from syncapp.shops.tokens import get_admin_token
from syncapp.sync.catalog import Option, Product, Variant
from syncapp.sync.mapping import emanage_product
from syncapp.sync.models import PRODUCT, SyncLink
from tests.integration.sync.engine_world import API_VERSION, SyncWorld, sync_world

BUCKET_QUERY = "{ shop { id } }"


def one_variant(n: int) -> Product:
    return Product(
        title=f"Pushed {n}",
        vendor="Bench",
        product_type="Shirt",
        description="",
        options=(Option("Size", ("S",)),),
        variants=(Variant(sku=f"PUSH-{n}", options=("S",), price=Decimal("9.90")),),
    )


def bucket(world: SyncWorld) -> dict[str, float]:
    """The app's (app, shop) bucket now, as Shopify reports it (costs the query's 1 point)."""
    token = get_admin_token(world.runtime, shop=world.shop)
    response = world.merchant().http.post(
        f"https://{world.shop}/admin/api/{API_VERSION}/graphql.json",
        headers={"X-Shopify-Access-Token": token},
        json={"query": BUCKET_QUERY},
    )
    response.raise_for_status()
    status: dict[str, float] = response.json()["extensions"]["cost"]["throttleStatus"]
    return status


def count(world: SyncWorld, statement: Any) -> int:
    with world.runtime.sessions() as session:
        return int(session.scalar(statement) or 0)


def _app_throttled(world: SyncWorld) -> int:
    # The engine's ProductsClient per shop, as the context caches them.
    found = 0
    for value in vars(world.context).values():
        values = value.values() if isinstance(value, dict) else [value]
        found += sum(int(getattr(v, "throttled", 0)) for v in values if hasattr(v, "throttled"))
    return found


async def run(n: int) -> dict[str, Any]:
    with tempfile.TemporaryDirectory() as tmp:
        async with sync_world(Path(tmp), "bench-push", deliver=True) as world:
            shop_id_links = (
                select(func.count())
                .select_from(SyncLink)
                .where(SyncLink.kind == PRODUCT, SyncLink.shopify_gid.is_not(None))
            )
            created_events = (
                select(func.count())
                .select_from(InboundEvent)
                .where(InboundEvent.source == "emanage", InboundEvent.topic == "product.created")
            )
            started = time.perf_counter()
            for i in range(n):
                await world.merchant_emanage.create_product(
                    account_id=world.account_id,
                    body=emanage_product(one_variant(i), currency="USD"),
                    idempotency_key=str(uuid.uuid4()),
                    origin=None,
                )
            # The deliverer catches up; the inbox is written by the app's ingest, no event to await.
            while count(world, created_events) < n:  # noqa: ASYNC110
                await asyncio.sleep(0.05)
            setup = time.perf_counter() - started
            load = os.getloadavg()[0]
            before = bucket(world)
            consumer = world.consumer()
            t0 = time.perf_counter()
            while count(world, shop_id_links) < n:
                if not await consumer.run_once():
                    await asyncio.sleep(0.01)
            elapsed = time.perf_counter() - t0
            after = bucket(world)
            rate = before["restoreRate"]
            # The two bucket reads cost a point each; the first is before t0, the second after.
            offered = before["currentlyAvailable"] + elapsed * rate
            spent = offered - after["currentlyAvailable"] - 1
            return {
                "when": datetime.now(UTC).strftime("%Y-%m-%d %H:%M UTC"),
                "load": load,
                "products": n,
                "setup_s": setup,
                "seconds": elapsed,
                "per_second": n / elapsed,
                "bucket": f"{before['maximumAvailable']:.0f} points, {rate:.0f}/s",
                "start_points": before["currentlyAvailable"],
                "spent": spent,
                "points_per_product": spent / n,
                "bound_used": spent / offered,
                "bound_products_per_s": rate / (spent / n),
                "throttled": _app_throttled(world),
            }


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--products", type=int, default=1000)
    args = parser.parse_args()
    result = asyncio.run(run(args.products))
    for key, value in result.items():
        print(f"{key:>22}: {value:.3f}" if isinstance(value, float) else f"{key:>22}: {value}")
    ok = result["bound_used"] >= 0.9 and result["throttled"] == 0
    print("target (≥ 90 % of the bound, 0 THROTTLED):", "met" if ok else "NOT met")
    return 0


if __name__ == "__main__":
    sys.exit(main())
