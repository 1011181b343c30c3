"""The backfill against the Shopify sandbox over HTTP: Keep Products Synchronized turned on
exports the catalog with a bulk operation, streams its (children-first) JSONL, and publishes
one resync-requested event per product with its snapshot — exactly once, across a connection
cut mid-stream, a failed export with partial data and an expired result URL."""

from __future__ import annotations

import time
import uuid
from collections.abc import Iterator
from contextlib import ExitStack, contextmanager
from decimal import Decimal
from pathlib import Path
from typing import Any
from urllib.parse import urlparse

import httpx
import jsonschema
import orjson
import psycopg
import pytest
import yaml
from sqlalchemy import make_url, select

from syncapp.bus.interface import APP
from syncapp.bus.models import InboundEvent
from syncapp.events import message_schema
from syncapp.store.models import Shop
from syncapp.sync import state
from syncapp.sync.backfill import CURSOR, advance_backfill, backfill_progress
from syncapp.sync.catalog import Option, Product, Variant
from syncapp.sync.events import BACKFILL_REQUESTED, RESYNC_REQUESTED
from syncapp.sync.jobs import topics
from syncapp.sync.mapping import product_from_shopify, product_set_input
from syncapp.sync.models import SyncCursor
from syncapp.sync.runtime import SyncOptions, SyncRuntime
from syncapp.worker import Worker, WorkerOptions
from tests.conftest import POSTGRES_URL
from tests.integration.shops.conftest import System, handle_for, running_system

FAULTS = "/_sandbox/graphql/faults"
ASYNCAPI = yaml.safe_load(
    (Path(__file__).resolve().parents[3] / "docs" / "asyncapi.yaml").read_text(encoding="utf-8")
)


@contextmanager
def fresh_postgres() -> Iterator[str]:
    """A new, empty PostgreSQL database for the module, dropped after it."""
    admin = make_url(POSTGRES_URL)
    name = f"syncapp_backfill_{uuid.uuid4().hex[:12]}"
    dsn = admin.set(drivername="postgresql").render_as_string(hide_password=False)
    with psycopg.connect(dsn, autocommit=True, connect_timeout=5) as conn:
        conn.execute(f'CREATE DATABASE "{name}"')
    try:
        yield admin.set(database=name).render_as_string(hide_password=False)
    finally:
        with psycopg.connect(dsn, autocommit=True, connect_timeout=5) as conn:
            conn.execute(f'DROP DATABASE IF EXISTS "{name}" WITH (FORCE)')


@pytest.fixture(scope="module", params=["sqlite", "postgresql"])
def system(
    tmp_path_factory: pytest.TempPathFactory, request: pytest.FixtureRequest
) -> Iterator[System]:
    """The served system on SQLite and on PostgreSQL (the cursor and the outbox's unique
    event ids are what make the backfill exactly-once: both databases are tested)."""
    tmp = tmp_path_factory.mktemp("backfill")
    with ExitStack() as stack:
        url = (
            f"sqlite:///{tmp / 'app.db'}"
            if request.param == "sqlite"
            else stack.enter_context(fresh_postgres())
        )
        running = stack.enter_context(running_system(tmp, url, sandbox_public_url=True))
        yield running


_OPEN: list[SyncRuntime] = []


@pytest.fixture(autouse=True)
def _cleanup(system: System) -> Iterator[None]:
    """Faults are cleared and every runtime's HTTP clients closed after each test."""
    yield
    system.control.delete(FAULTS)
    while _OPEN:
        _OPEN.pop().close()


def runtime(system: System, download: httpx.Client | None = None, **options: Any) -> SyncRuntime:
    opts = SyncOptions(**{"backfill_poll_seconds": 0.05, **options})
    rt = (
        SyncRuntime(system.runtime, opts)
        if download is None
        else SyncRuntime(system.runtime, opts, download=download)
    )
    _OPEN.append(rt)
    return rt


def product(index: int) -> Product:
    sizes = ("S", "M", "L")
    return Product(
        title=f"Backfilled {index}",
        vendor="Acme",
        options=(Option("Size", sizes),),
        variants=tuple(
            Variant(sku=f"BF-{index}-{s}", options=(s,), price=Decimal(f"{index}.{n}5"))
            for n, s in enumerate(sizes)
        ),
    )


def shop_with_products(system: System, request: pytest.FixtureRequest, count: int) -> str:
    domain = system.create_shop(handle_for(request, "bf"), plan_name="Shopify Plus")
    system.install(domain)
    client = runtime(system).products(domain)
    for index in range(count):
        client.set_product(product_set_input(product(index)))
    return domain


def turn_sync_on(system: System, shop: str) -> str:
    """Keep Products Synchronized OFF then ON (it is ON by default); returns the run."""
    state.set_keep_products_synchronized(system.runtime.sessions, shop, False)
    assert state.set_keep_products_synchronized(system.runtime.sessions, shop, True)
    return cursor(system, shop)["run"]


def cursor(system: System, shop: str) -> dict[str, Any]:
    with system.runtime.sessions() as session:
        shop_id = session.scalar(select(Shop.id).where(Shop.domain == shop))
        row = session.get(SyncCursor, (shop_id, CURSOR))
        assert row is not None
        return {**row.position, "done": row.done}


def drive(rt: SyncRuntime, shop: str, run: str, *, until: Any = None, steps: int = 400) -> None:
    """Call the handler's step until the run is over (or ``until()`` holds)."""
    for _ in range(steps):
        wait = advance_backfill(rt, shop, run)
        if wait is None or (until is not None and until()):
            return
        time.sleep(min(wait, 0.05))
    raise AssertionError(f"the backfill of {shop} did not end in {steps} steps")


def resyncs(system: System, shop: str) -> list[dict[str, Any]]:
    with system.runtime.sessions() as session:
        rows = session.scalars(
            select(InboundEvent).where(
                InboundEvent.source == APP,
                InboundEvent.shop_domain == shop,
                InboundEvent.topic == RESYNC_REQUESTED.name,
            )
        ).all()
        return [
            {**orjson.loads(r.payload), "_key": r.partition_key, "_status": r.status} for r in rows
        ]


def assert_each_product_once(system: System, shop: str, count: int) -> list[dict[str, Any]]:
    events = resyncs(system, shop)
    gids = [e["data"]["shopifyProductId"] for e in events]
    assert len(gids) == len(set(gids)) == count, sorted(gids)
    return events


def test_turning_sync_on_publishes_every_product_once_with_its_snapshot(
    system: System, request: pytest.FixtureRequest
) -> None:
    """Through the bus: the setting's backfill event runs on the worker, the export's JSONL
    (children before parents) becomes one event per product whose snapshot maps to the
    product as written, on the product's partition key, valid for the published schema."""
    shop = shop_with_products(system, request, 12)
    run = turn_sync_on(system, shop)
    rt = runtime(system)
    worker = Worker(
        system.runtime,
        options=WorkerOptions(poll_seconds=0.05, backoff_base_seconds=0.0),
        handlers={},
        extra=topics(rt),
    )
    deadline = time.monotonic() + 60
    while not cursor(system, shop)["done"]:
        assert time.monotonic() < deadline, cursor(system, shop)
        if not worker.run_once():
            time.sleep(0.05)
    position = cursor(system, shop)
    assert (position["state"], position["published"], position["total"]) == ("done", 12, 12)
    first = system.control.get(urlparse(position["url"]).path).text.splitlines()[0]
    assert "__parentId" in orjson.loads(first)  # the sandbox writes children first
    events = assert_each_product_once(system, shop, 12)
    schema = message_schema(ASYNCAPI, RESYNC_REQUESTED.name)
    by_title = {product(i).title: product(i) for i in range(12)}
    for event in events:
        jsonschema.validate({k: v for k, v in event.items() if not k.startswith("_")}, schema)
        data = event["data"]
        assert data["reason"] == "backfill"
        numeric = data["shopifyProductId"].rsplit("/", 1)[1]
        assert event["_key"] == f"{shop}/Product/{numeric}"
        assert event["id"] == f"{shop}/backfill/{run}/{numeric}"
        got = product_from_shopify(data["snapshot"])
        assert got == product_from_shopify(data["snapshot"], data["snapshot"]["variants"]["nodes"])
        want = by_title[got.title]
        assert [(v.sku, v.options, v.price) for v in got.variants] == [
            (v.sku, v.options, v.price) for v in want.variants
        ]
    progress = backfill_progress(system.runtime.sessions, shop)
    assert (progress.done, progress.published, progress.total) == (True, 12, 12)
    with system.runtime.sessions() as session:
        steps = session.scalars(
            select(InboundEvent.status).where(
                InboundEvent.shop_domain == shop, InboundEvent.topic == BACKFILL_REQUESTED.name
            )
        ).all()
    assert steps == ["done"]


class _CutStream(httpx.SyncByteStream):
    def __init__(self, inner: httpx.SyncByteStream, after: int) -> None:
        self.inner, self.after = inner, after

    def __iter__(self) -> Iterator[bytes]:
        sent = 0
        for chunk in self.inner:
            if sent + len(chunk) >= self.after:
                yield chunk[: self.after - sent]
                raise httpx.ReadError("connection reset by peer")
            sent += len(chunk)
            yield chunk

    def close(self) -> None:
        self.inner.close()


class CutOnce(httpx.BaseTransport):
    """Real HTTP whose first response body breaks off after ``fraction`` of its bytes."""

    def __init__(self, fraction: float) -> None:
        self.inner = httpx.HTTPTransport()
        self.fraction = fraction
        self.size = 0
        self.ranges: list[str | None] = []

    def close(self) -> None:
        self.inner.close()

    def handle_request(self, request: httpx.Request) -> httpx.Response:
        self.ranges.append(request.headers.get("range"))
        response = self.inner.handle_request(request)
        if len(self.ranges) > 1:
            return response
        assert isinstance(response.stream, httpx.SyncByteStream)
        self.size = int(response.headers["content-length"])
        return httpx.Response(
            response.status_code,
            headers=response.headers,
            stream=_CutStream(response.stream, int(self.size * self.fraction)),
            request=request,
        )


def test_a_cut_mid_stream_resumes_at_the_cursor_and_publishes_each_product_once(
    system: System, request: pytest.FixtureRequest
) -> None:
    """The connection drops halfway through the file: what was committed stays published,
    a new process resumes with a Range request from the cursor's offset, and every product
    ends up published exactly once."""
    shop = shop_with_products(system, request, 30)
    run = turn_sync_on(system, shop)
    cut = CutOnce(fraction=0.9)  # past the children: the sandbox writes parents last
    first = runtime(system, httpx.Client(transport=cut), backfill_batch=3)
    with pytest.raises(httpx.ReadError):
        drive(first, shop, run)
    stopped = cursor(system, shop)
    assert stopped["state"] == "streaming"
    assert 0 < stopped["published"] < 30
    assert 0 < stopped["offset"] < cut.size * 0.9
    second = runtime(system, httpx.Client(transport=cut), backfill_batch=3)  # a restart
    drive(second, shop, run)
    assert cut.ranges == [None, f"bytes={stopped['offset']}-"]
    assert cursor(system, shop)["published"] == 30
    assert_each_product_once(system, shop, 30)


def test_a_failed_export_publishes_its_partial_data_then_reruns_without_duplicates(
    system: System, request: pytest.FixtureRequest
) -> None:
    """FAILED with partialDataUrl: the partial file's products are published (those it has
    only some lines of without a snapshot: the engine reads them), the export is rerun, and
    the rerun publishes only the others (the run's event ids dedupe)."""
    shop = shop_with_products(system, request, 8)
    run = turn_sync_on(system, shop)
    failing = system.control.post(FAULTS, json={"bulk_outcome": "FAILED_INTERNAL_SERVER_ERROR"})
    assert failing.status_code == 200, failing.text
    rt = runtime(system)
    drive(rt, shop, run, until=lambda: cursor(system, shop).get("restarts") == 1)
    partial = resyncs(system, shop)
    assert partial
    # Half the lines, children first: no product is whole, none has a snapshot that lies.
    assert all("snapshot" not in e["data"] for e in partial)
    assert "INTERNAL_SERVER_ERROR" in cursor(system, shop)["error"]
    system.control.delete(FAULTS)
    drive(rt, shop, run)
    position = cursor(system, shop)
    assert (position["state"], position["restarts"], position["published"]) == ("done", 1, 8)
    assert_each_product_once(system, shop, 8)


def test_an_expired_result_url_reruns_the_export(
    system: System, request: pytest.FixtureRequest
) -> None:
    """A result URL that answers 400 ExpiredToken starts a new export instead of crashing."""
    shop = shop_with_products(system, request, 3)
    run = turn_sync_on(system, shop)
    system.control.post(FAULTS, json={"bulk_url_ttl_s": 0})
    rt = runtime(system)
    drive(rt, shop, run, until=lambda: cursor(system, shop).get("restarts") == 1)
    assert any(w in cursor(system, shop)["error"] for w in ("EXPIRED", "HTTP 400"))
    system.control.delete(FAULTS)
    drive(rt, shop, run)
    assert cursor(system, shop)["state"] == "done"
    assert_each_product_once(system, shop, 3)


def generated_catalog(products: int) -> Iterator[bytes]:
    """A bulk result of ``products`` products with three variants each, grouped."""
    for n in range(1, products + 1):
        gid = f"gid://shopify/Product/{n}"
        parent = {"id": gid, "title": f"Generated {n}", "variantsCount": {"count": 3}}
        yield orjson.dumps(parent) + b"\n"
        for v in range(3):
            variant = {
                "id": f"gid://shopify/ProductVariant/{n * 10 + v}",
                "sku": f"G-{n}-{v}",
                "price": f"{n}.{v}0",
                "selectedOptions": [{"name": "Size", "value": "SML"[v]}],
                "__parentId": gid,
            }
            yield orjson.dumps(variant) + b"\n"


def streamed_backfill_peak(system: System, shop: str, count: int, *, traced: bool) -> int:
    """Backfill ``shop`` from a served stream of ``count`` generated products; the peak of
    the memory traced meanwhile (0 untraced)."""
    import tracemalloc

    from starlette.applications import Starlette
    from starlette.responses import StreamingResponse
    from starlette.routing import Route

    from tests.integration.sandbox.conftest import serve

    async def result(_: Any) -> StreamingResponse:
        return StreamingResponse(generated_catalog(count), media_type="application/jsonl")

    run = turn_sync_on(system, shop)
    with serve(Starlette(routes=[Route("/result.jsonl", result)])) as base:
        with system.runtime.sessions.begin() as session:
            shop_id = session.scalar(select(Shop.id).where(Shop.domain == shop))
            row = session.get(SyncCursor, (shop_id, CURSOR))
            assert row is not None
            row.position = {**row.position, "state": "streaming", "url": f"{base}/result.jsonl"}
        rt = runtime(system, backfill_buffer_lines=100, backfill_batch=50)
        peak = 0
        if traced:
            tracemalloc.start()
        try:
            drive(rt, shop, run)
            if traced:
                peak = tracemalloc.get_traced_memory()[1]
        finally:
            if traced:
                tracemalloc.stop()
    assert cursor(system, shop)["published"] == count
    return peak


def test_a_large_result_streams_in_bounded_memory(
    system: System, request: pytest.FixtureRequest
) -> None:
    """Results served as streams: four times the products do not take more memory at the
    peak (a batch of events and a network chunk, never the file), and the reader never asks
    for a whole body. (benchmarks/sync: 102 MB peak RSS for a 125 MB result.)"""
    shop = system.create_shop(handle_for(request, "big"))
    system.install(shop)
    streamed_backfill_peak(system, shop, 100, traced=False)  # warm the process's caches
    small = streamed_backfill_peak(system, shop, 300, traced=True)
    large = streamed_backfill_peak(system, shop, 1_200, traced=True)
    assert large < small * 1.5, (small, large)
    source = (Path(__file__).resolve().parents[3] / "src/syncapp/sync/backfill.py").read_text()
    for whole_body in (".read()", ".content", ".text", ".json()"):
        assert whole_body not in source, whole_body


def test_the_finish_webhook_revives_a_backfill_whose_step_was_dead_lettered(
    system: System, request: pytest.FixtureRequest
) -> None:
    """The export started, then its step event died (retries exhausted): Shopify's signed
    bulk_operations/finish for that operation publishes a new step and the run completes; a
    finish naming another operation changes nothing."""
    from syncapp.sync.backfill import resume_after_finish

    shop = shop_with_products(system, request, 2)
    run = turn_sync_on(system, shop)
    rt = runtime(system)
    assert advance_backfill(rt, shop, run) is not None  # the export is started
    operation = cursor(system, shop)["operation"]
    with system.runtime.sessions.begin() as session:
        step = session.scalars(
            select(InboundEvent).where(
                InboundEvent.shop_domain == shop, InboundEvent.topic == BACKFILL_REQUESTED.name
            )
        ).one()
        step.status = "dead"
    assert not resume_after_finish(system.runtime.sessions, shop, "gid://shopify/BulkOperation/1")
    assert operation.startswith("gid://shopify/BulkOperation/")
    system.wait_for_event(shop, "bulk_operations/finish")  # delivered, signed, to the app
    worker = Worker(
        system.runtime,
        options=WorkerOptions(poll_seconds=0.05, backoff_base_seconds=0.0),
        handlers={},
        extra=topics(rt),
    )
    deadline = time.monotonic() + 30
    while not cursor(system, shop)["done"]:
        assert time.monotonic() < deadline, cursor(system, shop)
        if not worker.run_once():
            time.sleep(0.05)
    assert cursor(system, shop)["published"] == 2
    assert_each_product_once(system, shop, 2)


def test_a_stream_sliced_into_steps_resumes_each_slice_through_the_bus(
    system: System, request: pytest.FixtureRequest
) -> None:
    """With no time budget per step, every batch ends the step (the worker goes to other
    shops) and the next step resumes at the cursor: still each product exactly once."""
    shop = shop_with_products(system, request, 6)
    turn_sync_on(system, shop)
    rt = runtime(system, backfill_batch=2, backfill_step_seconds=0.0)
    worker = Worker(
        system.runtime,
        options=WorkerOptions(poll_seconds=0.05, backoff_base_seconds=0.0),
        handlers={},
        extra=topics(rt),
    )
    offsets: set[int] = set()
    deadline = time.monotonic() + 30
    while not cursor(system, shop)["done"]:
        assert time.monotonic() < deadline, cursor(system, shop)
        offsets.add(int(cursor(system, shop)["offset"]))
        if not worker.run_once():
            time.sleep(0.02)
    assert len(offsets) > 2  # it did stop and resume mid-file
    assert_each_product_once(system, shop, 6)
