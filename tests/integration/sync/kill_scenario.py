"""Changes flowing both ways while ``syncapp worker`` is SIGKILLed at random points and restarted:
the scenario of ``test_worker_kill.py`` and of ``benchmarks/sync/kill.py`` (which runs it at
10,000 changes).

The world is the sync harness (:func:`~tests.integration.sync.engine_world.sync_world` with
``deliver=True``): the Shopify sandbox delivers its signed webhooks and the eManageCRM sandbox
its signed notifications to the app's ingest, served in this process. The consumer is the real
thing: ``python -m syncapp.cli worker`` in a process of its own, configured as production
configures it (``SYNCAPP_*`` variables: the embedded bus in the app's database, or RabbitMQ with
``SYNCAPP_BUS_URL``, the worker then relaying the inbox to the broker too).

Half of the products are the merchant's in Shopify (created and edited there through a token of
their own), half in eManageCRM (created and edited through its API without the app's origin
marker). Each change is one field (the title, the variant's price or its compare-at price) set to
a value it never had, so each is exactly one write on the other side; a product's next change is
made once the previous one has arrived there, many products at once. The engine's writes are
observed at each sandbox's door, outside app code (:class:`Effects` wraps the sandbox's ASGI app
inside the harness's write counter), and attributed to their product by the ids they carry.

Meanwhile a killer picks a random point of the run (a random number of applied changes, then a
random fraction of a second), SIGKILLs the worker's process group and starts a new worker; its
seed is printed with every result. At the end, after the last worker has settled everything:

* **lost**: changes that did not arrive (within ``change_timeout``), and products whose final
  state on the other side is not the last edit of each field;
* **duplicated**: effective writes beyond one per change, Idempotency-Key replays (a write sent
  twice), and any write back to the side a product is edited on (an echo);
* no dead letters, nothing left pending, and each eManageCRM product's version (which only a
  write that changes something moves) equal to its number of real changes.
"""

from __future__ import annotations

import asyncio
import functools
import os
import random
import re
import signal
import subprocess
import sys
import threading
import time
import uuid
from collections.abc import Awaitable, Callable
from dataclasses import dataclass, field, replace
from decimal import Decimal
from pathlib import Path
from typing import Any

import orjson
from pydantic import SecretStr
from sqlalchemy import func, select
from starlette.types import ASGIApp, Message, Receive, Scope, Send

from syncapp.bus.models import InboundEvent
from syncapp.config import Settings
from syncapp.connectors.emanage.errors import EmanageVersionConflict
from syncapp.connectors.errors import TransientConnectorError
from syncapp.connectors.shopify.products import ShopifyThrottled
from syncapp.sync import topics
from syncapp.sync.catalog import Option, Product, Variant
from syncapp.sync.events import RESYNC_REQUESTED
from syncapp.sync.mapping import (
    emanage_product,
    product_from_emanage,
    product_from_shopify,
    product_set_input,
    variant_bulk_input,
)
from tests.integration.sync.engine_world import SyncWorld, WriteCounter
from tests.subprocesses import child_env

ROOT = Path(__file__).resolve().parents[3]
SHOPIFY, EMANAGE = "shopify", "emanage"
FIELDS = ("title", "price", "compare_at_price")
SYNC_TOPICS = (*topics.SHOPIFY_TOPICS, *topics.EMANAGE_TOPICS, RESYNC_REQUESTED.name)
_GID = re.compile(rb"gid://shopify/Product/\d+")
_EMANAGE_PATH = re.compile(r"/products/([^/]+)")
# Engine writes a product gets on the side it is edited on: one, the external references of a
# product made in eManageCRM (the Shopify ids written into it).
_LINK_WRITES = {SHOPIFY: 0, EMANAGE: 1}

__all__ = ["Effects", "Report", "Scenario", "WorkerProcess", "run_scenario", "worker_env"]


@dataclass(frozen=True, slots=True)
class Scenario:
    """``changes`` in all (a create counts as one), over ``products`` products, half edited in
    each system; ``kills`` SIGKILLs at random points chosen with ``seed``."""

    changes: int
    products: int
    kills: int
    seed: int
    change_timeout: float = 60.0
    # After the kill's point in the run (applied changes) is reached, up to this long more.
    jitter_seconds: float = 0.3

    @property
    def per_product(self) -> int:
        return max(1, self.changes // self.products)


# ---------------------------------------------------------------- the worker process


def _text(value: object) -> str:
    if isinstance(value, SecretStr):
        return value.get_secret_value()
    if isinstance(value, bool):
        return "true" if value else "false"
    return str(value)


def worker_env(settings: Settings, **overrides: str) -> dict[str, str]:
    """``SYNCAPP_*`` for a worker of the app ``settings`` describe (the same database, vault
    key, sandboxes and secrets), plus ``overrides`` (full names)."""
    values = {
        f"SYNCAPP_{name.upper()}": _text(value)
        for name, value in settings
        if value is not None and value != ""
    }
    return child_env({**values, **overrides})


class WorkerProcess:
    """``syncapp worker`` in its own process group (its log appended to ``log``)."""

    def __init__(self, env: dict[str, str], log: Path) -> None:
        self.env = env
        self.log = log
        self.process: subprocess.Popen[bytes] | None = None
        self.started = 0

    def start(self) -> None:
        assert self.process is None or self.process.poll() is not None
        with self.log.open("ab") as out:
            self.process = subprocess.Popen(
                [sys.executable, "-m", "syncapp.cli", "worker"],
                cwd=ROOT,
                env=self.env,
                stdout=out,
                stderr=out,
                start_new_session=True,
            )
        self.started += 1

    def check(self) -> None:
        assert self.process is not None
        code = self.process.poll()
        if code is not None:
            raise AssertionError(f"the worker exited ({code}): {self.tail()}")

    def kill(self) -> None:
        assert self.process is not None
        os.killpg(self.process.pid, signal.SIGKILL)
        self.process.wait(timeout=10)

    def stop(self) -> None:
        if self.process is None or self.process.poll() is not None:
            return
        os.killpg(self.process.pid, signal.SIGTERM)
        try:
            self.process.wait(timeout=20)
        except subprocess.TimeoutExpired:
            self.kill()

    def tail(self, lines: int = 30) -> str:
        try:
            return "\n".join(self.log.read_text(errors="replace").splitlines()[-lines:])
        except OSError:
            return ""


# ---------------------------------------------------------------- observing the writes


@dataclass
class Tracked:
    """One product of the scenario, as the driver knows it."""

    key: str
    home: str  # where the merchant edits it: SHOPIFY or EMANAGE
    sku: str
    gid: str | None = None
    eid: str | None = None
    vid: str | None = None
    title: str = ""
    price: Decimal = Decimal("5.00")
    compare_at_price: Decimal | None = None
    changes: int = 0  # real changes made (the create included)
    arrived: int = 0  # engine writes on the other side that brought a change there
    redundant: int = 0  # engine writes on the other side that brought none
    # Per field, the latest change whose value an engine write carried to the other side.
    reached: dict[str, int] = field(default_factory=lambda: dict.fromkeys(FIELDS, -1))
    echoes: int = 0  # engine writes back to the home side
    replays: int = 0  # Idempotency-Key replays (a write sent again)
    lost: list[int] = field(default_factory=list)


@dataclass
class Effects:
    """ASGI middleware around a sandbox: records each engine write that completed (the
    harness's ``is_write`` selects them), attributes it to its product and counts it as an
    effect when it succeeded."""

    app: ASGIApp
    side: str
    is_write: Any
    index: dict[str, Tracked] = field(default_factory=dict)
    unattributed: list[str] = field(default_factory=list)
    _lock: threading.Lock = field(default_factory=threading.Lock)

    async def __call__(self, scope: Scope, receive: Receive, send: Send) -> None:
        if scope["type"] != "http":
            await self.app(scope, receive, send)
            return
        chunks: list[Message] = []
        while True:
            message = await receive()
            chunks.append(message)
            if message["type"] != "http.request" or not message.get("more_body"):
                break
        body = b"".join(m.get("body", b"") for m in chunks)
        replay = iter(chunks)

        async def again() -> Message:
            message = next(replay, None)
            return message if message is not None else await receive()

        if not self.is_write(scope, body):
            await self.app(scope, again, send)
            return
        status = [0]
        headers: list[tuple[bytes, bytes]] = []
        answer: list[bytes] = []

        async def sending(message: Message) -> None:
            if message["type"] == "http.response.start":
                status[0] = int(message["status"])
                headers.extend((bytes(k).lower(), bytes(v)) for k, v in message.get("headers", ()))
            elif message["type"] == "http.response.body":
                answer.append(bytes(message.get("body", b"")))
            await send(message)

        await self.app(scope, again, sending)
        self.record(str(scope["path"]), body, status[0], dict(headers), b"".join(answer))

    def record(
        self, path: str, body: bytes, status: int, headers: dict[bytes, bytes], answer: bytes
    ) -> None:
        request = _json(body)
        response = _json(answer)
        replayed = headers.get(b"idempotent-replayed") == b"true"
        ok = 200 <= status < 300 and _succeeded(response)
        with self._lock:
            tracked = self._attribute(path, body, request, answer, response)
            if tracked is None:
                self.unattributed.append(f"{status} {path} {body[:300]!r}")
                return
            if not ok:
                return
            if replayed:
                tracked.replays += 1
            elif tracked.home == self.side:
                tracked.echoes += 1
            else:
                # A change arrives with the first write carrying its value or a later one
                # of the field (one write may carry several: the engine fetches the current
                # state); a write carrying nothing newer is redundant.
                carried = _carried(self.side, request)
                new = {f: n for f, n in carried.items() if n > tracked.reached[f]}
                tracked.reached.update(new)
                if new:
                    tracked.arrived += 1
                else:
                    tracked.redundant += 1

    def _attribute(
        self, path: str, body: bytes, request: Any, answer: bytes, response: Any
    ) -> Tracked | None:
        ids: list[str] = []
        if self.side == EMANAGE:
            found = _EMANAGE_PATH.search(path)
            if found:
                ids.append(found.group(1))
            if isinstance(response, dict) and response.get("productId"):
                ids.append(str(response["productId"]))
            refs = request.get("externalRefs") if isinstance(request, dict) else None
            if isinstance(refs, dict) and refs.get("shopifyProductId"):
                ids.append(str(refs["shopifyProductId"]))
        else:
            ids.extend(g.decode() for g in _GID.findall(body + b" " + answer))
            variables = request.get("variables") if isinstance(request, dict) else None
            custom = ((variables or {}).get("identifier") or {}).get("customId") or {}
            if custom.get("value"):
                ids.append(str(custom["value"]))
        tracked = next((self.index[i] for i in ids if i in self.index), None)
        if tracked is not None:
            for i in ids:  # learn the other side's id from the create's answer
                self.index.setdefault(i, tracked)
                if self.side == EMANAGE and tracked.eid is None and not i.startswith("gid:"):
                    tracked.eid = i
                if self.side == SHOPIFY and tracked.gid is None and i.startswith("gid:"):
                    tracked.gid = i
        return tracked


_EDIT = re.compile(r" edit (\d+)$")


def _change_of(name: str, value: Any) -> int | None:
    """The change whose value ``value`` of field ``name`` is (0: the create's), else None."""
    if value is None:
        return None
    if name == "title":
        found = _EDIT.search(str(value))
        return int(found.group(1)) if found else (0 if str(value).endswith(" created") else None)
    amount = Decimal(str(value))
    if name == "price":
        return 0 if amount == Decimal("5.00") else int(amount - Decimal("10.25"))
    return int(amount - Decimal("1000.75"))


def _carried(side: str, request: Any) -> dict[str, int]:
    """The changes (per field) an engine write's request body carries."""
    values: dict[str, Any] = {}
    if not isinstance(request, dict):
        return {}
    if side == EMANAGE:
        values["title"] = request.get("name")
        variants = request.get("variants") or [{}]
        prices = variants[0].get("productPrices") or {}
        values["price"] = (prices.get("DiscountedPrice") or {}).get("Value")
        values["compare_at_price"] = (prices.get("FullRetailPrice") or {}).get("Value")
    else:
        variables = request.get("variables") or {}
        product = variables.get("input") or {}
        values["title"] = product.get("title")
        variants = product.get("variants") or variables.get("variants") or [{}]
        values["price"] = variants[0].get("price")
        values["compare_at_price"] = variants[0].get("compareAtPrice")
    found = {name: _change_of(name, value) for name, value in values.items()}
    return {name: n for name, n in found.items() if n is not None}


def _json(raw: bytes) -> Any:
    try:
        return orjson.loads(raw) if raw else None
    except orjson.JSONDecodeError:
        return None


def _succeeded(response: Any) -> bool:
    """A JSON answer with no top-level errors and no mutation userErrors."""
    if not isinstance(response, dict):
        return True
    if response.get("errors"):
        return False
    data = response.get("data")
    if isinstance(data, dict):
        for payload in data.values():
            if isinstance(payload, dict) and payload.get("userErrors"):
                return False
    return True


def install_effects(world: SyncWorld) -> tuple[Effects, Effects]:
    """Wrap each sandbox (inside the harness's counters) in an :class:`Effects`."""
    pair = []
    for counter, side in ((world.shopify_writes, SHOPIFY), (world.emanage_writes, EMANAGE)):
        assert isinstance(counter, WriteCounter)
        effects = Effects(counter.app, side, counter.is_write)
        counter.app = effects
        pair.append(effects)
    return pair[0], pair[1]


# ---------------------------------------------------------------- the merchant's changes


def _product(tracked: Tracked) -> Product:
    return Product(
        title=tracked.title,
        vendor="Acme",
        product_type="Shirt",
        description="<p>Kill test</p>",
        options=(Option("Size", ("S",)),),
        variants=(
            Variant(
                sku=tracked.sku,
                options=("S",),
                price=tracked.price,
                compare_at_price=tracked.compare_at_price,
                shopify_id=tracked.vid,
            ),
        ),
    )


def _next_value(tracked: Tracked, n: int) -> str:
    """Change ``n`` (1-based after the create) of the product: its field, set to a new value."""
    name = FIELDS[(n - 1) % len(FIELDS)]
    if name == "title":
        tracked.title = f"{tracked.key} edit {n}"
    elif name == "price":
        tracked.price = Decimal(10 + n) + Decimal("0.25")
    else:
        tracked.compare_at_price = Decimal(1000 + n) + Decimal("0.75")
    return name


class Merchant:
    """The merchant's edits in both systems (never with the app's token or origin marker)."""

    def __init__(self, world: SyncWorld, effects: tuple[Effects, Effects]) -> None:
        self.world = world
        self.effects = effects
        self.throttled = 0
        self.transient = 0
        self.conflicts = 0

    def _index(self, tracked: Tracked, *ids: str | None) -> None:
        for effects in self.effects:
            with effects._lock:
                for i in ids:
                    if i:
                        effects.index[i] = tracked

    async def _shopify(self, call: Any, *args: Any, **kwargs: Any) -> Any:
        return await self._again(lambda: asyncio.to_thread(call, *args, **kwargs))

    async def _again(self, attempt: Callable[[], Awaitable[Any]]) -> Any:
        """``attempt()`` until it is not refused for a passing reason (the merchant's own
        Shopify bucket, a sandbox busy serving the engine): each edit is idempotent."""
        for tries in range(1, 31):
            try:
                return await attempt()
            except ShopifyThrottled as exc:
                self.throttled += 1
                await asyncio.sleep(max(0.2, exc.retry_after))
            except TransientConnectorError:
                self.transient += 1
                if tries == 30:
                    raise
                await asyncio.sleep(0.2)
        raise AssertionError("unreachable")

    async def create(self, tracked: Tracked) -> None:
        tracked.title = f"{tracked.key} created"
        tracked.changes = 1
        if tracked.home == SHOPIFY:
            merchant = self.world.merchant()
            created = await self._shopify(
                merchant.set_product, product_set_input(_product(tracked))
            )
            tracked.gid = str(created["id"])
            tracked.vid = str(created["variants"]["nodes"][0]["id"])
            self._index(tracked, tracked.gid)
        else:
            key = str(uuid.uuid4())  # one key for every attempt: a retry creates nothing more
            made = await self._again(
                lambda: self.world.merchant_emanage.create_product(
                    account_id=self.world.account_id,
                    body=emanage_product(_product(tracked), currency="USD"),
                    idempotency_key=key,
                    origin=None,
                )
            )
            tracked.eid = made.product_id
            self._index(tracked, tracked.eid)

    async def edit(self, tracked: Tracked) -> None:
        n = tracked.changes
        name = _next_value(tracked, n)
        tracked.changes += 1
        if tracked.home == SHOPIFY:
            merchant = self.world.merchant()
            assert tracked.gid is not None
            if name == "title":
                await self._shopify(
                    merchant.set_product, {"title": tracked.title}, identifier={"id": tracked.gid}
                )
            else:
                variant = _product(tracked).variants[0]
                await self._shopify(
                    merchant.update_variants,
                    tracked.gid,
                    [variant_bulk_input(variant, frozenset({name}))],
                )
            return
        assert tracked.eid is not None
        client = self.world.merchant_emanage
        eid = tracked.eid
        while True:
            current = await self._again(
                lambda: client.get_product(account_id=self.world.account_id, product_id=eid)
            )
            assert current is not None
            now = product_from_emanage(current.body)
            variant = replace(
                now.variants[0],
                price=tracked.price,
                compare_at_price=tracked.compare_at_price,
            )
            wanted = replace(now, title=tracked.title, variants=(variant,))
            write = functools.partial(
                client.update_product,
                account_id=self.world.account_id,
                product_id=eid,
                body=emanage_product(wanted, currency="USD"),
                version=current.version,
                idempotency_key=str(uuid.uuid4()),
                origin=None,
            )
            try:
                # A retry of a write that was applied meets 412 and is read again: the same
                # body then changes nothing (the version stays).
                await self._again(write)
                return
            except EmanageVersionConflict:  # an engine write moved the version: read again
                self.conflicts += 1


# ---------------------------------------------------------------- the run


@dataclass
class Report:
    scenario: Scenario
    bus: str
    changes: int = 0
    applied: int = 0
    lost: int = 0
    duplicated: int = 0
    echoes: int = 0
    replays: int = 0
    mismatched: list[str] = field(default_factory=list)
    version_mismatches: list[str] = field(default_factory=list)
    late: list[str] = field(default_factory=list)
    duplicates: list[str] = field(default_factory=list)
    dead: int = 0
    unsettled: int = 0
    kills: int = 0
    kills_at: list[int] = field(default_factory=list)
    # Sync events claimed (embedded) or in the broker unsettled (RabbitMQ) as each kill came.
    in_flight_at_kills: list[int] = field(default_factory=list)
    redelivered: int = 0
    unattributed: list[str] = field(default_factory=list)
    seconds: float = 0.0
    settle_seconds: float = 0.0
    merchant_throttled: int = 0

    def line(self) -> str:
        return (
            f"bus={self.bus} seed={self.scenario.seed} changes={self.changes} "
            f"products={self.scenario.products} kills={self.kills} (at applied changes "
            f"{self.kills_at}, events in flight {self.in_flight_at_kills}) "
            f"lost={self.lost} duplicated={self.duplicated} "
            f"(echo writes {self.echoes}, replays {self.replays}) dead={self.dead} "
            f"unsettled={self.unsettled} redelivered_events={self.redelivered} "
            f"seconds={self.seconds:.1f} (settling {self.settle_seconds:.1f})"
        )

    @property
    def clean(self) -> bool:
        return (
            self.lost == 0
            and self.duplicated == 0
            and self.dead == 0
            and self.unsettled == 0
            and not self.version_mismatches
            and not self.unattributed
        )


def _sync_events(world: SyncWorld, *statuses: str, negate: bool = False) -> int:
    with world.runtime.sessions() as session:
        status = InboundEvent.status.in_(statuses)
        return int(
            session.scalar(
                select(func.count()).where(
                    InboundEvent.shop_domain == world.shop,
                    InboundEvent.topic.in_(SYNC_TOPICS),
                    ~status if negate else status,
                )
            )
            or 0
        )


def _redelivered(world: SyncWorld) -> int:
    with world.runtime.sessions() as session:
        return int(
            session.scalar(
                select(func.count()).where(
                    InboundEvent.shop_domain == world.shop,
                    InboundEvent.topic.in_(SYNC_TOPICS),
                    InboundEvent.attempts > 1,
                )
            )
            or 0
        )


async def run_scenario(
    world: SyncWorld,
    scenario: Scenario,
    *,
    bus_url: str = "",
    log: Path,
    progress: Any = None,
) -> Report:
    """Run ``scenario`` in ``world`` with ``syncapp worker`` on ``bus_url`` (empty: the
    embedded bus); the report of what was lost and duplicated."""
    bus = "rabbitmq" if bus_url.startswith("amqp") else "embedded"
    report = Report(scenario=scenario, bus=bus)
    effects = install_effects(world)
    merchant = Merchant(world, effects)
    rng = random.Random(scenario.seed)
    settings = world.system.settings
    env = worker_env(
        settings,
        SYNCAPP_BUS_URL=bus_url,
        SYNCAPP_WORKER_POLL_SECONDS="0.05",
        SYNCAPP_WORKER_LEASE_SECONDS="3",
        SYNCAPP_BUS_RELAY_LEASE_SECONDS="3",
        SYNCAPP_WORKER_BACKOFF_BASE_SECONDS="0.1",
        SYNCAPP_WORKER_BACKOFF_CAP_SECONDS="2",
        SYNCAPP_LOG_LEVEL=os.environ.get("KILL_WORKER_LOG_LEVEL", "warning"),
    )
    worker = WorkerProcess(env, log)
    products = [
        Tracked(
            key=f"{'S' if n % 2 == 0 else 'E'}{n}",
            home=SHOPIFY if n % 2 == 0 else EMANAGE,
            sku=f"KILL-{scenario.seed}-{n}",
        )
        for n in range(scenario.products)
    ]
    total = scenario.per_product * len(products)
    # The kills' points: a random applied-change count in each of ``kills`` equal segments.
    segment = total / (scenario.kills + 1)
    points = sorted(
        rng.randint(int(segment * i) + 1, int(segment * (i + 1))) for i in range(scenario.kills)
    )
    jitters = [rng.uniform(0.0, scenario.jitter_seconds) for _ in points]

    def applied() -> int:
        return sum(max(t.reached.values()) + 1 for t in products)

    async def chain(tracked: Tracked) -> None:
        for n in range(scenario.per_product):
            if n == 0:
                await merchant.create(tracked)
            else:
                await merchant.edit(tracked)
            name = FIELDS[(n - 1) % len(FIELDS)] if n else "title"
            deadline = time.monotonic() + scenario.change_timeout
            while tracked.reached[name] < n:
                if time.monotonic() > deadline:
                    tracked.lost.append(n)
                    break
                await asyncio.sleep(0.02)

    async def killer() -> None:
        for point, jitter in zip(points, jitters, strict=True):
            while applied() < point:
                worker.check()
                await asyncio.sleep(0.01)
            await asyncio.sleep(jitter)
            flying = await asyncio.to_thread(
                _sync_events, world, "processing", "relaying", "relayed"
            )
            worker.kill()
            report.kills += 1
            report.kills_at.append(applied())
            report.in_flight_at_kills.append(flying)
            worker.start()

    start = time.monotonic()
    worker.start()
    try:
        kills = asyncio.create_task(killer())
        chains = asyncio.gather(*(chain(t) for t in products))
        if progress is not None:

            async def reporting() -> None:
                while not chains.done():
                    progress(applied(), total, report.kills)
                    await asyncio.sleep(5)

            reporter = asyncio.create_task(reporting())
        await chains
        report.seconds = time.monotonic() - start
        if not kills.done():
            kills.cancel()  # the run ended before the last point (changes lost): stop killing
        with_errors = await asyncio.gather(kills, return_exceptions=True)
        if isinstance(with_errors[0], BaseException) and not isinstance(
            with_errors[0], asyncio.CancelledError
        ):
            raise with_errors[0]
        if progress is not None:
            await reporter
        # Every echo (the engine's own writes coming back as webhooks and notifications)
        # settled, and nothing new for a while.
        settling = time.monotonic()
        quiet_since: float | None = None
        deadline = settling + 120
        while time.monotonic() < deadline:
            worker.check()
            if _sync_events(world, "done", "dead", negate=True) == 0:
                quiet_since = quiet_since or time.monotonic()
                if time.monotonic() - quiet_since > 1.5:
                    break
            else:
                quiet_since = None
            await asyncio.sleep(0.1)
        report.settle_seconds = time.monotonic() - settling
    finally:
        worker.stop()
    await _verify(world, products, report)
    report.unattributed = [u for e in effects for u in e.unattributed]
    report.merchant_throttled = merchant.throttled
    return report


async def _verify(world: SyncWorld, products: list[Tracked], report: Report) -> None:
    report.dead = _sync_events(world, "dead")
    report.unsettled = _sync_events(world, "done", "dead", negate=True)
    report.redelivered = _redelivered(world)
    merchant = world.merchant()
    for t in products:
        report.changes += t.changes
        # Change n reached the other side when a write carried its value or a later one.
        reached = sum(
            1
            for n in range(t.changes)
            if t.reached[FIELDS[(n - 1) % len(FIELDS)] if n else "title"] >= n
        )
        report.applied += reached
        report.replays += t.replays
        # A product made in eManageCRM gets one engine write there: the Shopify ids into its
        # external references. Any other write back to the home side is an echo. A replay
        # (the same Idempotency-Key again) is answered from the stored result: sent twice,
        # applied once; counted, not a duplicated effect.
        echoes = abs(t.echoes - _LINK_WRITES[t.home])
        report.echoes += echoes
        report.duplicated += t.redundant + echoes
        if t.redundant or echoes:
            report.duplicates.append(
                f"{t.key}: {t.changes} changes, {t.arrived} writes that brought one,"
                f" {t.redundant} that brought none, {t.echoes} on its own side,"
                f" {t.replays} replays"
            )
        if t.lost:
            report.late.append(f"{t.key}: changes {t.lost} not arrived in time")
        wanted = _product(replace(t, vid=None))
        if t.gid is None or t.eid is None:
            report.mismatched.append(f"{t.key}: never linked (gid {t.gid}, eid {t.eid})")
            report.lost += t.changes
            continue
        found = await asyncio.to_thread(merchant.read_product, t.gid)
        in_shopify = None if found is None else product_from_shopify(*found)
        in_emanage = await world.merchant_emanage.get_product(
            account_id=world.account_id, product_id=t.eid
        )
        states = {
            SHOPIFY: in_shopify,
            EMANAGE: None if in_emanage is None else product_from_emanage(in_emanage.body),
        }
        wrong = [
            f"{side}: {None if state is None else _fields(state)}"
            for side, state in states.items()
            if state is None or _fields(state) != _fields(wanted)
        ]
        if wrong:
            report.mismatched.append(f"{t.key} wanted {_fields(wanted)}; " + "; ".join(wrong))
        # Changes no write carried are lost; a wrong final state is at least one more.
        report.lost += max(0, t.changes - reached) or (1 if wrong else 0)
        if in_emanage is not None:
            # Only writes that change something move the version: the merchant's (for
            # products edited there) or the engine's that brought a change (for the others;
            # a redundant write that changed something, a regression, shows here too).
            writes = t.changes if t.home == EMANAGE else t.arrived
            if in_emanage.version != writes + (t.echoes if t.home == EMANAGE else 0):
                report.version_mismatches.append(
                    f"{t.key}: version {in_emanage.version}, {t.changes} changes,"
                    f" {t.arrived} arrived, {t.echoes} echoes"
                )


def _fields(product: Product) -> tuple[str, str, str | None]:
    variant = product.variants[0]
    compare = variant.compare_at_price
    return (
        product.title,
        f"{variant.price:.2f}",
        None if compare is None else f"{compare:.2f}",
    )
