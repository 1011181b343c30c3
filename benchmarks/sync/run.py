"""Backfill benchmark: the JSONL of a bulk export streamed into resync events, against the bare
download-and-parse of the same file in the same run; and the peak RSS of a large backfill.

The file has the exact line shapes of the catalog export (``bulk_catalog_inner.graphql``: each
product line with ``variantsCount``, then its variants with ``__parentId``; ``--shuffle`` puts
every page's variants first, as Shopify's ungrouped output may), written to disk once and
served by ``python -m http.server`` in a child process, so the backfill downloads it over real
HTTP. The backfill is the production path: :func:`syncapp.sync.backfill.advance_backfill` on a
run whose export is done (state ``streaming``), publishing into the app's SQLite database (WAL,
``synchronous=FULL``) in batches with the cursor.

    .venv/bin/python benchmarks/sync/run.py [--products 10000] [--variants 3] [--shuffle]
    .venv/bin/python benchmarks/sync/run.py --products 100000 --rss-only

Prints products/s for both, their ratio, and the process's peak RSS (``ru_maxrss``).
"""

from __future__ import annotations

import argparse
import os
import resource
import socket
import subprocess
import sys
import tempfile
import time
from pathlib import Path
from typing import Any

import httpx
import orjson
from cryptography.fernet import Fernet
from sqlalchemy import select

from syncapp.config import ensure_embedded_secrets, load_settings
from syncapp.shops.runtime import ShopsRuntime
from syncapp.store.db import make_engine
from syncapp.store.locking import locked_transaction
from syncapp.store.migrate import upgrade
from syncapp.store.models import Shop
from syncapp.sync.backfill import CURSOR, advance_backfill, request_backfill
from syncapp.sync.bulk_jsonl import Assembler, Position, parse_line, split_lines
from syncapp.sync.models import SyncCursor
from syncapp.sync.runtime import SyncOptions, SyncRuntime

SHOP = "bench.myshopify.com"
PAGE = 250


def product_lines(n: int, variants: int) -> list[bytes]:
    gid = f"gid://shopify/Product/{8100000000000 + n}"
    parent = {
        "id": gid,
        "title": f"Bench product {n}",
        "handle": f"bench-product-{n}",
        "status": "ACTIVE",
        "descriptionHtml": "<p>A product of the benchmark catalog.</p>",
        "vendor": "Acme",
        "productType": "Shirt",
        "updatedAt": "2026-12-07T10:00:00Z",
        "variantsCount": {"count": variants},
        "options": [{"name": "Size", "values": [f"S{v}" for v in range(variants)]}],
        "featuredMedia": None,
        "metafield": None,
    }
    out = [orjson.dumps(parent) + b"\n"]
    for v in range(variants):
        out.append(
            orjson.dumps(
                {
                    "id": f"gid://shopify/ProductVariant/{45000000000000 + n * 100 + v}",
                    "sku": f"BENCH-{n}-{v}",
                    "price": f"{n % 100}.{v}9",
                    "compareAtPrice": None,
                    "selectedOptions": [{"name": "Size", "value": f"S{v}"}],
                    "inventoryItem": {
                        "measurement": {"weight": {"unit": "KILOGRAMS", "value": 0.25}}
                    },
                    "__parentId": gid,
                }
            )
            + b"\n"
        )
    return out


def write_catalog(path: Path, products: int, variants: int, *, shuffle: bool) -> int:
    with path.open("wb") as out:
        for start in range(0, products, PAGE):
            page = [product_lines(n, variants) for n in range(start, min(products, start + PAGE))]
            if shuffle:  # a page's children first, interleaved across parents, then parents
                for v in range(1, variants + 1):
                    out.writelines(lines[v] for lines in page)
                out.writelines(lines[0] for lines in page)
            else:
                for lines in page:
                    out.writelines(lines)
    return path.stat().st_size


def free_port() -> int:
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        return int(sock.getsockname()[1])


def serve(directory: Path) -> tuple[subprocess.Popen[bytes], str]:
    port = free_port()
    child = subprocess.Popen(
        [sys.executable, "-m", "http.server", str(port), "--bind", "127.0.0.1"],
        cwd=directory,
        stdout=subprocess.DEVNULL,
        stderr=subprocess.DEVNULL,
    )
    base = f"http://127.0.0.1:{port}"
    deadline = time.monotonic() + 10
    while time.monotonic() < deadline:
        try:
            httpx.get(base, timeout=1)
            return child, base
        except httpx.HTTPError:
            time.sleep(0.05)
    child.kill()
    raise RuntimeError("http.server did not start")


def parse_only(url: str) -> tuple[int, float]:
    """Download, split and parse every line, assembling products (no database)."""
    started = time.perf_counter()
    assembler = Assembler()
    products = 0
    with httpx.Client(timeout=120) as client, client.stream("GET", url) as response:
        for position, end, raw in split_lines(response.iter_bytes(), Position(0, 0)):
            products += len(assembler.feed(position, end, parse_line(raw, position)))
    products += len(assembler.finish())
    return products, time.perf_counter() - started


def backfill(data_dir: Path, url: str, batch: int) -> tuple[int, float]:
    settings = ensure_embedded_secrets(
        load_settings(
            data_dir=data_dir,
            database_url=f"sqlite:///{data_dir / 'bench.db'}",
            env="test",
            secret_key=Fernet.generate_key().decode(),
            shopify_client_secret="shpss_" + "0" * 32,
            log_level="warning",
        )
    )
    engine = make_engine(settings.database_url)
    upgrade(engine)
    shops = ShopsRuntime.from_settings(settings, engine)
    with locked_transaction(shops.sessions) as session:
        shop = Shop(domain=SHOP)
        session.add(shop)
        session.flush()
        run = request_backfill(session, shop_id=shop.id, shop=SHOP, reason="benchmark")
        cursor = session.get(SyncCursor, (shop.id, CURSOR))
        assert cursor is not None
        cursor.position = {**cursor.position, "state": "streaming", "url": url}
    rt = SyncRuntime(shops, SyncOptions(backfill_batch=batch, backfill_step_seconds=3600))
    started = time.perf_counter()
    while advance_backfill(rt, SHOP, run) is not None:
        pass
    elapsed = time.perf_counter() - started
    with shops.sessions() as session:
        shop_id = session.scalar(select(Shop.id).where(Shop.domain == SHOP))
        position: dict[str, Any] = dict(session.get(SyncCursor, (shop_id, CURSOR)).position)  # type: ignore[union-attr]
    rt.close()
    engine.dispose()
    return int(position["published"]), elapsed


def main(argv: list[str] | None = None) -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--products", type=int, default=10_000)
    parser.add_argument("--variants", type=int, default=3)
    parser.add_argument("--batch", type=int, default=200)
    parser.add_argument("--shuffle", action="store_true")
    parser.add_argument("--rss-only", action="store_true", help="skip the parse-only pass")
    args = parser.parse_args(argv)
    with tempfile.TemporaryDirectory(prefix="syncapp-bench-sync-") as tmp:
        root = Path(tmp)
        files = root / "files"
        files.mkdir()
        size = write_catalog(
            files / "catalog.jsonl", args.products, args.variants, shuffle=args.shuffle
        )
        child, base = serve(files)
        try:
            url = f"{base}/catalog.jsonl"
            when = time.strftime("%Y-%m-%d %H:%M", time.gmtime())
            print(
                f"{when} UTC, load {os.getloadavg()[0]:.1f};"
                f" {args.products:,} products x {args.variants} variants, {size / 1e6:.1f} MB,"
                f" {'children first' if args.shuffle else 'grouped'}, batch {args.batch}"
            )
            parse_rate = None
            if not args.rss_only:
                count, seconds = parse_only(url)
                assert count == args.products, count
                parse_rate = count / seconds
                print(f"download+parse: {parse_rate:,.0f} products/s ({seconds:.2f} s)")
            published, seconds = backfill(root, url, args.batch)
            assert published == args.products, published
            rate = published / seconds
            print(f"backfill:       {rate:,.0f} products/s ({seconds:.2f} s)")
            if parse_rate:
                print(f"backfill/parse: {rate / parse_rate:.2f}")
        finally:
            child.kill()
            child.wait()
    peak_mb = resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024
    print(f"peak RSS of this process: {peak_mb:,.0f} MB")


if __name__ == "__main__":
    main()
