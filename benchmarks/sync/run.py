"""Backfill benchmark: the full backfill of a bulk export into eManageCRM, against the bare
download-and-parse of the same file in the same run; and the peak RSS of a large backfill.

The file has the exact line shapes of the catalog export (``bulk_catalog_inner.graphql``: each
product line with ``variantsCount``, then its variants with ``__parentId``; ``--shuffle`` puts
every page's variants first, as Shopify's ungrouped output may), written to disk once and
served by ``python -m http.server`` in a child process, so both passes download it over real
HTTP. The eManageCRM sandbox runs in another child process (uvicorn, its own SQLite file), an
account is created in it through the connector, and the backfill is the production path:
:func:`syncapp.sync.backfill.advance_backfill` on a run whose export is done (state
``streaming``), called from a thread with the event loop the eManageCRM client lives on (as the
worker's handler calls it): the JSONL streamed, products assembled, every batch written with
``POST …/products:batch`` (match, else create) and its links recorded with the cursor in the
app's SQLite database (WAL, ``synchronous=FULL``). The timed span ends when the run is done;
then every product is checked to be linked to exactly one eManageCRM product.

    .venv/bin/python benchmarks/sync/run.py [--products 10000] [--variants 3] [--shuffle]
    .venv/bin/python benchmarks/sync/run.py --products 100000 --rss-only
    .venv/bin/python benchmarks/sync/run.py --publish-only   # the old measurement: events only

Prints both times, their ratio (the issue's target: backfill <= 2x download+parse), the time the
backfill spent waiting for eManageCRM, and the benchmark process's peak RSS (``ru_maxrss``: the
app side, the sandbox is another process).
"""

from __future__ import annotations

import argparse
import asyncio
import os
import resource
import socket
import subprocess
import sys
import tempfile
import threading
import time
import uuid
from collections.abc import Iterator
from contextlib import ExitStack as contextlib_exit
from contextlib import contextmanager
from pathlib import Path
from typing import Any

import httpx
import orjson
from cryptography.fernet import Fernet
from sqlalchemy import func, select

from syncapp.config import ensure_embedded_secrets, load_settings
from syncapp.connectors.emanage import EmanageClient
from syncapp.onboarding.models import EmanageAccount
from syncapp.shops.runtime import ShopsRuntime
from syncapp.store.db import make_engine
from syncapp.store.locking import locked_transaction
from syncapp.store.migrate import upgrade
from syncapp.store.models import Shop
from syncapp.sync import backfill_apply
from syncapp.sync.backfill import CURSOR, advance_backfill, request_backfill
from syncapp.sync.bulk_jsonl import Assembler, Position, parse_line, split_lines
from syncapp.sync.models import PRODUCT, SyncCursor, SyncLink
from syncapp.sync.runtime import SyncOptions, SyncRuntime

SHOP = "bench.myshopify.com"
CLIENT_ID = "syncapp-bench"
CLIENT_SECRET = "bench-system-secret-0123456789abcdef"
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


def _started(child: subprocess.Popen[bytes], probe: str, what: str) -> None:
    deadline = time.monotonic() + 90
    while time.monotonic() < deadline:
        if child.poll() is not None:
            raise RuntimeError(f"{what} exited with {child.returncode}")
        try:
            httpx.get(probe, timeout=1)
            return
        except httpx.HTTPError:
            time.sleep(0.05)
    child.kill()
    raise RuntimeError(f"{what} did not start")


def serve(directory: Path) -> tuple[subprocess.Popen[bytes], str]:
    port = free_port()
    child = subprocess.Popen(
        [sys.executable, "-m", "http.server", str(port), "--bind", "127.0.0.1"],
        cwd=directory,
        stdout=subprocess.DEVNULL,
        stderr=subprocess.DEVNULL,
    )
    base = f"http://127.0.0.1:{port}"
    _started(child, base, "http.server")
    return child, base


def serve_emanage(database: Path) -> tuple[subprocess.Popen[bytes], str]:
    """The eManageCRM sandbox in a child process (this script with ``--serve-emanage``)."""
    port = free_port()
    child = subprocess.Popen(
        [sys.executable, __file__, "--serve-emanage", str(port), str(database)],
        stdout=subprocess.DEVNULL,
        stderr=subprocess.DEVNULL,
    )
    base = f"http://127.0.0.1:{port}"
    _started(child, base + "/healthz", "the eManageCRM sandbox")
    return child, base


def run_emanage(port: int, database: Path) -> None:
    from syncapp.sandbox.emanage import EmanageSandboxConfig, SystemClient, create_app
    from syncapp.serving import serve as serve_app

    config = EmanageSandboxConfig(
        database_path=database,
        public_url=f"http://127.0.0.1:{port}",
        clients=(SystemClient(CLIENT_ID, CLIENT_SECRET),),
    )
    serve_app(create_app(config), host="127.0.0.1", port=port)


@contextmanager
def event_loop() -> Iterator[asyncio.AbstractEventLoop]:
    """An event loop running in a thread: the worker's loop, where the eManageCRM client lives
    (the backfill's step runs in the calling thread and hands its requests to it)."""
    loop = asyncio.new_event_loop()
    thread = threading.Thread(target=loop.run_forever, daemon=True)
    thread.start()
    try:
        yield loop
    finally:
        loop.call_soon_threadsafe(loop.stop)
        thread.join()
        loop.close()


class TimedClient(EmanageClient):
    """The connector, adding up the time its batch requests take (seen from the app)."""

    waited = 0.0
    requests = 0

    async def batch_products(self, **kwargs: Any) -> Any:
        started = time.perf_counter()
        try:
            return await super().batch_products(**kwargs)
        finally:
            TimedClient.waited += time.perf_counter() - started
            TimedClient.requests += 1


CPU: dict[str, float] = {}


def parse_only(url: str) -> tuple[int, float]:
    """Download, split and parse every line, assembling products (no database)."""
    cpu = time.process_time()
    started = time.perf_counter()
    assembler = Assembler()
    products = 0
    with httpx.Client(timeout=120) as client, client.stream("GET", url) as response:
        for position, end, raw in split_lines(response.iter_bytes(), Position(0, 0)):
            products += len(assembler.feed(position, end, parse_line(raw, position)))
    products += len(assembler.finish())
    CPU["parse"] = time.process_time() - cpu
    return products, time.perf_counter() - started


def backfill(
    data_dir: Path, url: str, batch: int, emanage_url: str | None
) -> tuple[int, int, float]:
    """Run the backfill; ``(products linked, events published, seconds)``."""
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
    with contextlib_exit() as stack:
        loop = stack.enter_context(event_loop()) if emanage_url else None
        client: EmanageClient | None = None
        if loop is not None and emanage_url is not None:
            http = httpx.AsyncClient(timeout=httpx.Timeout(120.0, connect=5.0))
            stack.callback(lambda: asyncio.run_coroutine_threadsafe(http.aclose(), loop).result())
            client = TimedClient(http, emanage_url, CLIENT_ID, CLIENT_SECRET)
            account = backfill_apply.emanage_call(
                loop,
                client.create_account(
                    shop_domain=SHOP,
                    name="Bench",
                    email="bench@example.com",
                    currency="USD",
                    idempotency_key=str(uuid.uuid4()),
                ),
            )
        with locked_transaction(shops.sessions) as session:
            shop = Shop(domain=SHOP, currency_code="USD")
            session.add(shop)
            session.flush()
            if client is not None:
                session.add(
                    EmanageAccount(
                        shop_id=shop.id,
                        account_id=str(account.id),
                        kind=account.kind,
                        cid=str(account.cid),
                        websales_api_url=account.websales_api_url,
                    )
                )
            run = request_backfill(session, shop_id=shop.id, shop=SHOP, reason="benchmark")
            cursor = session.get(SyncCursor, (shop.id, CURSOR))
            assert cursor is not None
            cursor.position = {**cursor.position, "state": "streaming", "url": url}
        rt = SyncRuntime(
            shops,
            SyncOptions(backfill_batch=batch, backfill_step_seconds=3600),
            emanage=client,
        )
        cpu = time.process_time()
        started = time.perf_counter()
        while advance_backfill(rt, SHOP, run, loop=loop) is not None:
            pass
        elapsed = time.perf_counter() - started
        CPU["backfill"] = time.process_time() - cpu
        with shops.sessions() as session:
            shop_id = session.scalar(select(Shop.id).where(Shop.domain == SHOP))
            position: dict[str, Any] = dict(session.get(SyncCursor, (shop_id, CURSOR)).position)  # type: ignore[union-attr]
            linked = session.scalar(
                select(func.count(func.distinct(SyncLink.emanage_id))).where(
                    SyncLink.kind == PRODUCT
                )
            )
        rt.close()
    engine.dispose()
    assert int(position.get("linked") or 0) == int(linked or 0), (position, linked)
    return int(linked or 0), int(position["published"]), elapsed


def child_cpu(pid: int) -> float:
    """A child process's CPU seconds so far (user + system, from /proc)."""
    fields = Path(f"/proc/{pid}/stat").read_text().rsplit(")", 1)[1].split()
    return (int(fields[11]) + int(fields[12])) / os.sysconf("SC_CLK_TCK")


def emanage_products(database: Path) -> int:
    import sqlite3

    with sqlite3.connect(database) as conn:
        return int(conn.execute("SELECT COUNT(*) FROM products").fetchone()[0])


def main(argv: list[str] | None = None) -> None:
    args_list = sys.argv[1:] if argv is None else argv
    if args_list[:1] == ["--serve-emanage"]:
        run_emanage(int(args_list[1]), Path(args_list[2]))
        return
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--products", type=int, default=10_000)
    parser.add_argument("--variants", type=int, default=3)
    parser.add_argument("--batch", type=int, default=250)
    parser.add_argument("--shuffle", action="store_true")
    parser.add_argument("--rss-only", action="store_true", help="skip the parse-only pass")
    parser.add_argument(
        "--publish-only", action="store_true", help="no eManageCRM: publish events (the old path)"
    )
    args = parser.parse_args(args_list)
    with tempfile.TemporaryDirectory(prefix="syncapp-bench-sync-") as tmp:
        root = Path(tmp)
        files = root / "files"
        files.mkdir()
        size = write_catalog(
            files / "catalog.jsonl", args.products, args.variants, shuffle=args.shuffle
        )
        children = []
        try:
            child, base = serve(files)
            children.append(child)
            emanage_url = None
            crm_db = root / "emanage.db"
            if not args.publish_only:
                crm, emanage_url = serve_emanage(crm_db)
                children.append(crm)
            url = f"{base}/catalog.jsonl"
            when = time.strftime("%Y-%m-%d %H:%M", time.gmtime())
            print(
                f"{when} UTC, load {os.getloadavg()[0]:.1f};"
                f" {args.products:,} products x {args.variants} variants, {size / 1e6:.1f} MB,"
                f" {'children first' if args.shuffle else 'grouped'}, batch {args.batch},"
                f" {'events only' if args.publish_only else 'into the eManageCRM sandbox'}"
            )
            parse_seconds = None
            if not args.rss_only:
                count, parse_seconds = parse_only(url)
                assert count == args.products, count
                print(
                    f"download+parse: {parse_seconds:.2f} s"
                    f" ({count / parse_seconds:,.0f} products/s)"
                )
            crm_cpu = child_cpu(children[-1].pid) if emanage_url else 0.0
            linked, published, seconds = backfill(root, url, args.batch, emanage_url)
            if emanage_url:
                CPU["eManageCRM sandbox (its process)"] = child_cpu(children[-1].pid) - crm_cpu
            if args.publish_only:
                assert published == args.products, published
            else:
                assert (linked, published) == (args.products, 0), (linked, published)
                assert emanage_products(crm_db) == args.products
            print(
                f"backfill:       {seconds:.2f} s ({args.products / seconds:,.0f} products/s;"
                f" {linked:,} linked, {published:,} events)"
            )
            if TimedClient.requests:
                print(
                    f"  {TimedClient.requests} batch requests, {TimedClient.waited:.2f} s in all"
                    " (one in flight while the next slice is read, so they overlap the rest)"
                )
            if parse_seconds:
                print(f"backfill/parse: {seconds / parse_seconds:.1f}x (target <= 2x)")
            cpu = ", ".join(f"{k} {v:.2f} s" for k, v in CPU.items())
            print(f"CPU time (the app's process, all threads; the sandbox's): {cpu}")
        finally:
            for child in children:
                child.kill()
                child.wait()
    peak_mb = resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024
    print(f"peak RSS of this process: {peak_mb:,.0f} MB")


if __name__ == "__main__":
    main()
