"""Delivery of the webhook outbox to the app's subscriptions, as Shopify delivers: signed,
at least once, retried with backoff, and on request duplicated, delayed or reordered.

Two steps, both durable in the sandbox's database so a restarted sandbox resumes:

1. *Fan-out.* New ``webhook_outbox`` rows (read past a cursor kept in a row) become one
   ``webhook_deliveries`` row per matching subscription in ``config.subscriptions``. Events of
   shops without the app installed fan out to nothing, except ``app/uninstalled`` and the
   mandatory compliance topics.
2. *Delivery.* Due deliveries are POSTed to ``config.app_url + uri`` with Shopify's headers
   (``X-Shopify-Hmac-Sha256`` = base64 HMAC-SHA256 of the exact body with the client secret;
   ``X-Shopify-Webhook-Id`` the same on every retry of one delivery). A 2xx within 5 s (1 s to
   connect) delivers it; anything else is retried after ``config.webhook_retry_delays[i]``
   and, once they are used up, the delivery is ``failed``. At most ``max_in_flight`` requests
   run at once.

Faults (``POST /_sandbox/webhooks/faults``: duplicates with the same or a new Webhook-Id,
delays, reordering, bursts merged into one products/update, dropped deliveries) live in the
deliverer, not in the database: they are a test knob and a restarted sandbox starts without them.
"""

from __future__ import annotations

import asyncio
import base64
import contextlib
import hashlib
import hmac
import logging
import sqlite3
import time
import uuid
from dataclasses import asdict, dataclass, replace
from datetime import UTC, datetime
from typing import Any

import httpx
from starlette.requests import Request
from starlette.responses import JSONResponse, Response
from starlette.routing import BaseRoute, Route

from syncapp.sandbox.shopify.db import register_column, register_schema
from syncapp.sandbox.shopify.oauth import not_on_shop_host
from syncapp.sandbox.shopify.shops import normalize_domain
from syncapp.sandbox.shopify.state import SandboxState

log = logging.getLogger(__name__)

# Delivered whether or not the app is (still) installed on the shop.
ALWAYS_DELIVERED_TOPICS = frozenset(
    {"app/uninstalled", "customers/data_request", "customers/redact", "shop/redact"}
)
CONNECT_TIMEOUT = 1.0
DELIVERY_TIMEOUT = 5.0
FAN_OUT_BATCH = 1000
# In-flight deliveries get this long to finish when the sandbox stops; the rest stay pending.
STOP_GRACE = 2.0

register_schema(
    """
    CREATE TABLE IF NOT EXISTS webhook_deliveries (
        id TEXT PRIMARY KEY,                  -- X-Shopify-Webhook-Id, same on every retry
        outbox_id INTEGER NOT NULL,
        shop_domain TEXT NOT NULL,
        topic TEXT NOT NULL,
        uri TEXT NOT NULL,
        attempts INTEGER NOT NULL DEFAULT 0,
        next_attempt_at REAL NOT NULL,        -- unix time
        status TEXT NOT NULL DEFAULT 'pending',  -- pending | delivered | failed
        last_status_code INTEGER,
        last_error TEXT,
        created_at REAL NOT NULL,
        delivered_at REAL,
        UNIQUE (outbox_id, uri)
    );
    CREATE INDEX IF NOT EXISTS webhook_deliveries_due
        ON webhook_deliveries (status, next_attempt_at);
    CREATE INDEX IF NOT EXISTS webhook_outbox_by_resource
        ON webhook_outbox (shop_domain, topic, id);
    CREATE TABLE IF NOT EXISTS webhook_fanout_cursor (
        id INTEGER PRIMARY KEY CHECK (id = 1),
        last_outbox_id INTEGER NOT NULL
    );
    """
)


# The subscription's name, sent as X-Shopify-Name.
register_column("webhook_deliveries", "name", "TEXT")

# Topics whose bursts Shopify merges into one delivery, keyed by the resource's ``id``.
COALESCED_TOPICS = frozenset({"products/update"})


@dataclass(frozen=True)
class WebhookFaults:
    """Misbehaviour Shopify is allowed: extra copies (``duplicate``: same Webhook-Id;
    ``redeliver_new_id``: a new Webhook-Id, same Event-Id), late deliveries, shuffled order,
    bursts merged into one ``products/update`` (``coalesce_ms``: changes to one product closer
    than that give one delivery, of the last state), and ``drop_next`` deliveries never sent.
    """

    duplicate: int = 0
    delay_ms: int = 0
    reorder: bool = False
    redeliver_new_id: int = 0
    coalesce_ms: int = 0
    drop_next: int = 0


@dataclass(frozen=True)
class _Due:
    id: str
    outbox_id: int
    shop_domain: str
    topic: str
    uri: str
    attempts: int
    event_id: str
    payload: bytes
    triggered_at: str
    name: str | None = None


def sign(body: bytes, secret: str) -> str:
    """``X-Shopify-Hmac-Sha256`` of a body: base64 HMAC-SHA256 keyed with the client secret."""
    digest = hmac.new(secret.encode(), body, hashlib.sha256).digest()
    return base64.b64encode(digest).decode()


def _iso(ts: float | None) -> str | None:
    if ts is None:
        return None
    return datetime.fromtimestamp(ts, UTC).isoformat().replace("+00:00", "Z")


class WebhookDeliverer:
    """Fans the outbox out to deliveries and sends them, in a background task of the loop."""

    def __init__(
        self,
        state: SandboxState,
        *,
        poll_interval: float = 0.02,
        max_in_flight: int = 16,
    ) -> None:
        self._state = state
        self._poll_interval = poll_interval
        self._max_in_flight = max_in_flight
        self._faults = WebhookFaults()
        self._loop_task: asyncio.Task[None] | None = None
        self._stopping: asyncio.Event | None = None
        self._wake: asyncio.Event | None = None
        self._client: httpx.AsyncClient | None = None
        self._in_flight: dict[asyncio.Task[None], tuple[str, ...]] = {}

    # --- faults ---------------------------------------------------------------------------

    @property
    def faults(self) -> WebhookFaults:
        return self._faults

    def set_faults(self, faults: WebhookFaults) -> None:
        self._faults = faults

    # --- lifecycle ------------------------------------------------------------------------

    async def start(self) -> None:
        """Start delivering in the running event loop; a second call does nothing."""
        if self._loop_task is not None:
            return
        self._stopping = asyncio.Event()
        self._wake = asyncio.Event()
        self._client = httpx.AsyncClient(
            timeout=httpx.Timeout(DELIVERY_TIMEOUT, connect=CONNECT_TIMEOUT),
            limits=httpx.Limits(max_connections=self._max_in_flight),
            follow_redirects=False,
        )
        self._loop_task = asyncio.create_task(self._run(), name="sandbox-webhook-deliverer")

    async def stop(self) -> None:
        """Stop the loop, let in-flight deliveries finish briefly, close the HTTP client."""
        if self._loop_task is None or self._stopping is None:
            return
        self._stopping.set()
        if self._wake is not None:
            self._wake.set()
        await self._loop_task
        if self._in_flight:
            _, still_running = await asyncio.wait(list(self._in_flight), timeout=STOP_GRACE)
            for task in still_running:
                task.cancel()
            await asyncio.gather(*still_running, return_exceptions=True)
        if self._client is not None:
            await self._client.aclose()
        self._loop_task = None
        self._stopping = None
        self._wake = None
        self._client = None
        self._in_flight.clear()

    async def _run(self) -> None:
        assert self._stopping is not None
        assert self._wake is not None
        while not self._stopping.is_set():
            self._wake.clear()
            try:
                await self.step()
            except Exception:
                # The loop must outlive one bad row or a locked database; it retries next tick.
                log.exception("webhook delivery step failed")
            # A finished delivery frees a slot: look for more work at once rather than a tick
            # later, so a backlog drains at the receiver's pace.
            with contextlib.suppress(TimeoutError):
                await asyncio.wait_for(self._wake.wait(), timeout=self._poll_interval)

    async def step(self) -> int:
        """Fan out new outbox rows and dispatch due deliveries; returns how many dispatched."""
        await asyncio.to_thread(self._fan_out)
        free = self._max_in_flight - sum(len(ids) for ids in self._in_flight.values())
        if free <= 0:
            return 0
        busy = {i for ids in self._in_flight.values() for i in ids}
        batch = await asyncio.to_thread(self._claim_due, free, busy)
        if not batch:
            return 0
        if self._faults.reorder:
            # One sequential task so the receiver sees the batch strictly in reverse order.
            self._spawn(self._deliver_in_order(list(reversed(batch))), batch)
        else:
            for due in batch:
                self._spawn(self._deliver(due), [due])
        return len(batch)

    def _spawn(self, coro: Any, batch: list[_Due]) -> None:
        task: asyncio.Task[None] = asyncio.create_task(coro)
        self._in_flight[task] = tuple(d.id for d in batch)
        task.add_done_callback(self._forget)

    def _forget(self, task: asyncio.Task[None]) -> None:
        self._in_flight.pop(task, None)
        if self._wake is not None:
            self._wake.set()
        if not task.cancelled() and task.exception() is not None:
            log.error("webhook delivery task failed", exc_info=task.exception())

    # --- database side (runs in a worker thread) -------------------------------------------

    def _coalesced(self, conn: sqlite3.Connection, event: sqlite3.Row, window: float) -> bool:
        """Whether a later event of the same resource within ``window`` s replaces ``event``.

        Shopify debounces bursts into one products/update, "not necessarily in the order of
        changes made" (changelog webhooks-delivered-from-shopify-are-being-improved-to-send-
        payloads-more-efficiently; pitfalls §4). The last event carries the latest state.
        """
        later = conn.execute(
            "SELECT 1 FROM webhook_outbox WHERE shop_domain = ? AND topic = ? AND id > ?"
            " AND json_extract(payload, '$.id') = ?"
            " AND COALESCE(recorded_at, 0) - ? <= ? LIMIT 1",
            (
                event["shop_domain"],
                event["topic"],
                event["id"],
                event["resource_id"],
                event["recorded_at"] or 0,
                window,
            ),
        ).fetchone()
        return later is not None

    def _fan_out(self) -> int:
        subscriptions = self._state.config.subscriptions
        now = time.time()
        created = 0
        window = self._faults.coalesce_ms / 1000
        with self._state.db.transaction() as conn:
            row = conn.execute(
                "SELECT last_outbox_id FROM webhook_fanout_cursor WHERE id = 1"
            ).fetchone()
            cursor = row["last_outbox_id"] if row else 0
            events = conn.execute(
                # The resource id is read only when coalescing: payloads can be large.
                "SELECT o.id, o.shop_domain, o.topic, o.recorded_at, s.app_installed,"
                " CASE WHEN ? > 0 THEN json_extract(o.payload, '$.id') END AS resource_id"
                " FROM webhook_outbox o"
                " LEFT JOIN shops s ON s.domain = o.shop_domain"
                " WHERE o.id > ? ORDER BY o.id LIMIT ?",
                (window, cursor, FAN_OUT_BATCH),
            ).fetchall()
            if not events:
                return 0
            rows = []
            last_done = cursor
            for event in events:
                coalescing = window > 0 and event["topic"] in COALESCED_TOPICS
                if coalescing and now - (event["recorded_at"] or 0) < window:
                    break  # a later change may still merge into it: this and the rest wait
                last_done = event["id"]
                if not event["app_installed"] and event["topic"] not in ALWAYS_DELIVERED_TOPICS:
                    continue
                if coalescing and self._coalesced(conn, event, window):
                    continue
                for sub in subscriptions:
                    if event["topic"] in sub.topics:
                        rows.append(
                            (
                                str(uuid.uuid4()),
                                event["id"],
                                event["shop_domain"],
                                event["topic"],
                                sub.uri,
                                now,
                                now,
                                sub.name,
                            )
                        )
            conn.executemany(
                "INSERT OR IGNORE INTO webhook_deliveries (id, outbox_id, shop_domain, topic,"
                " uri, next_attempt_at, created_at, name) VALUES (?, ?, ?, ?, ?, ?, ?, ?)",
                rows,
            )
            created = len(rows)
            if last_done != cursor:
                conn.execute(
                    "INSERT INTO webhook_fanout_cursor (id, last_outbox_id) VALUES (1, ?)"
                    " ON CONFLICT (id) DO UPDATE SET last_outbox_id = excluded.last_outbox_id",
                    (last_done,),
                )
        return created

    def _claim_due(self, limit: int, busy: set[str]) -> list[_Due]:
        now = time.time()
        due: list[_Due] = []
        with self._state.db.transaction() as conn:
            rows = conn.execute(
                "SELECT d.id, d.outbox_id, d.shop_domain, d.topic, d.uri, d.attempts, d.name,"
                " o.event_id, o.payload, o.triggered_at, s.app_installed"
                " FROM webhook_deliveries d JOIN webhook_outbox o ON o.id = d.outbox_id"
                " LEFT JOIN shops s ON s.domain = d.shop_domain"
                " WHERE d.status = 'pending' AND d.next_attempt_at <= ?"
                " ORDER BY d.next_attempt_at, d.outbox_id LIMIT ?",
                (now, limit + len(busy)),
            ).fetchall()
            for row in rows:
                if row["id"] in busy:
                    continue
                if not row["app_installed"] and row["topic"] not in ALWAYS_DELIVERED_TOPICS:
                    # Shopify drops the app's subscriptions with the app: nothing left to send.
                    conn.execute(
                        "UPDATE webhook_deliveries SET status = 'failed',"
                        " last_error = 'the app was uninstalled before delivery' WHERE id = ?",
                        (row["id"],),
                    )
                    continue
                due.append(
                    _Due(
                        id=row["id"],
                        outbox_id=row["outbox_id"],
                        shop_domain=row["shop_domain"],
                        topic=row["topic"],
                        uri=row["uri"],
                        attempts=row["attempts"],
                        event_id=row["event_id"],
                        payload=row["payload"].encode("utf-8"),
                        triggered_at=row["triggered_at"],
                        name=row["name"],
                    )
                )
                if len(due) >= limit:
                    break
        return due

    def _take_drop(self) -> bool:
        """True (and one fewer left) when the next delivery is to be dropped."""
        if self._faults.drop_next <= 0:
            return False
        self._faults = replace(self._faults, drop_next=self._faults.drop_next - 1)
        return True

    def _record_dropped(self, due: _Due) -> None:
        with self._state.db.transaction() as conn:
            conn.execute(
                "UPDATE webhook_deliveries SET status = 'dropped', last_error = ? WHERE id = ?",
                ("dropped by the drop_next fault: never sent", due.id),
            )

    def _record(self, due: _Due, status_code: int | None, error: str | None) -> None:
        now = time.time()
        attempts = due.attempts + 1
        delays = self._state.config.webhook_retry_delays
        with self._state.db.transaction() as conn:
            if status_code is not None and 200 <= status_code < 300:
                conn.execute(
                    "UPDATE webhook_deliveries SET status = 'delivered', attempts = ?,"
                    " last_status_code = ?, last_error = NULL, delivered_at = ? WHERE id = ?",
                    (attempts, status_code, now, due.id),
                )
                return
            retry = attempts - 1 < len(delays)
            conn.execute(
                "UPDATE webhook_deliveries SET status = ?, attempts = ?, last_status_code = ?,"
                " last_error = ?, next_attempt_at = ? WHERE id = ?",
                (
                    "pending" if retry else "failed",
                    attempts,
                    status_code,
                    error,
                    now + delays[attempts - 1] if retry else now,
                    due.id,
                ),
            )

    # --- HTTP side ------------------------------------------------------------------------

    def _url(self, uri: str) -> str:
        if uri.startswith(("http://", "https://")):
            return uri
        return self._state.config.app_url.rstrip("/") + "/" + uri.lstrip("/")

    def _headers(self, due: _Due) -> dict[str, str]:
        config = self._state.config
        headers = {
            "Content-Type": "application/json",
            "User-Agent": "Shopify-Captain-Hook",
            "X-Shopify-Topic": due.topic,
            "X-Shopify-Hmac-Sha256": sign(due.payload, config.client_secret),
            "X-Shopify-Shop-Domain": due.shop_domain,
            "X-Shopify-API-Version": config.webhook_api_version,
            "X-Shopify-Webhook-Id": due.id,
            "X-Shopify-Event-Id": due.event_id,
            "X-Shopify-Triggered-At": due.triggered_at,
        }
        if due.name:
            headers["X-Shopify-Name"] = due.name
        return headers

    async def _post(self, due: _Due) -> tuple[int | None, str | None]:
        assert self._client is not None
        try:
            async with asyncio.timeout(DELIVERY_TIMEOUT):
                response = await self._client.post(
                    self._url(due.uri), content=due.payload, headers=self._headers(due)
                )
        except TimeoutError:
            return None, f"no response within {DELIVERY_TIMEOUT:g} s"
        except httpx.HTTPError as exc:
            return None, f"{type(exc).__name__}: {exc}"
        if 200 <= response.status_code < 300:
            return response.status_code, None
        return response.status_code, f"HTTP {response.status_code}"

    async def _deliver(self, due: _Due) -> None:
        faults = self._faults
        if due.attempts == 0 and self._take_drop():
            # Shopify: delivery is "not always guaranteed" (pitfalls §7); reconcile instead.
            await asyncio.to_thread(self._record_dropped, due)
            return
        if faults.delay_ms > 0:
            await asyncio.sleep(faults.delay_ms / 1000)
        status_code, error = await self._post(due)
        for _ in range(faults.duplicate):
            await self._post(due)
        for _ in range(faults.redeliver_new_id):
            # The same event again as a new delivery: a new Webhook-Id, the same Event-Id
            # (Shopify/shopify-app-js PR #3129; ignore-duplicates guide: dedupe on Event-Id).
            await self._post(replace(due, id=str(uuid.uuid4())))
        await asyncio.to_thread(self._record, due, status_code, error)

    async def _deliver_in_order(self, batch: list[_Due]) -> None:
        for due in batch:
            await self._deliver(due)


# --- control routes -------------------------------------------------------------------------


def list_deliveries(
    conn: sqlite3.Connection,
    *,
    shop: str | None = None,
    topic: str | None = None,
    status: str | None = None,
    limit: int = 1000,
) -> list[dict[str, Any]]:
    """Deliveries, oldest first, optionally filtered by shop, topic and status."""
    where, args = [], []
    for column, value in (("d.shop_domain", shop), ("d.topic", topic), ("d.status", status)):
        if value:
            where.append(f"{column} = ?")
            args.append(value)
    clause = f"WHERE {' AND '.join(where)}" if where else ""
    rows = conn.execute(
        "SELECT d.*, o.event_id, o.triggered_at FROM webhook_deliveries d"  # noqa: S608
        f" JOIN webhook_outbox o ON o.id = d.outbox_id {clause}"
        " ORDER BY d.outbox_id, d.created_at LIMIT ?",
        (*args, limit),
    ).fetchall()
    return [
        {
            "webhook_id": row["id"],
            "event_id": row["event_id"],
            "outbox_id": row["outbox_id"],
            "shop": row["shop_domain"],
            "topic": row["topic"],
            "uri": row["uri"],
            "status": row["status"],
            "attempts": row["attempts"],
            "next_attempt_at": _iso(row["next_attempt_at"]) if row["status"] == "pending" else None,
            "last_status_code": row["last_status_code"],
            "last_error": row["last_error"],
            "triggered_at": row["triggered_at"],
            "created_at": _iso(row["created_at"]),
            "delivered_at": _iso(row["delivered_at"]),
        }
        for row in rows
    ]


def _parse_faults(body: Any) -> WebhookFaults:
    if not isinstance(body, dict):
        raise ValueError("the body must be a JSON object")
    known = set(WebhookFaults.__dataclass_fields__)
    unknown = set(body) - known
    if unknown:
        raise ValueError(f"unknown fault(s) {sorted(unknown)}; use {', '.join(sorted(known))}")
    duplicate, delay_ms, reorder = (
        body.get("duplicate", 0),
        body.get("delay_ms", 0),
        body.get("reorder", False),
    )
    if not isinstance(duplicate, int) or isinstance(duplicate, bool) or not 0 <= duplicate <= 10:
        raise ValueError("duplicate must be an integer from 0 to 10")
    if not isinstance(delay_ms, int) or isinstance(delay_ms, bool) or not 0 <= delay_ms <= 60000:
        raise ValueError("delay_ms must be an integer from 0 to 60000")
    if not isinstance(reorder, bool):
        raise ValueError("reorder must be true or false")
    counts = {}
    for name, top in (("redeliver_new_id", 10), ("coalesce_ms", 60000), ("drop_next", 10000)):
        value = body.get(name, 0)
        if not isinstance(value, int) or isinstance(value, bool) or not 0 <= value <= top:
            raise ValueError(f"{name} must be an integer from 0 to {top}")
        counts[name] = value
    return WebhookFaults(duplicate=duplicate, delay_ms=delay_ms, reorder=reorder, **counts)


def routes(state: SandboxState, deliverer: WebhookDeliverer) -> list[BaseRoute]:
    """``/_sandbox/webhooks/faults`` (GET, POST, DELETE) and ``/_sandbox/webhooks/deliveries``."""

    async def faults(request: Request) -> Response:
        if (refused := not_on_shop_host(request)) is not None:
            return refused
        if request.method == "POST":
            try:
                deliverer.set_faults(_parse_faults(await request.json()))
            except ValueError as exc:
                return JSONResponse({"error": str(exc)}, status_code=400)
        elif request.method == "DELETE":
            deliverer.set_faults(WebhookFaults())
        return JSONResponse(asdict(deliverer.faults))

    async def deliveries(request: Request) -> Response:
        if (refused := not_on_shop_host(request)) is not None:
            return refused
        params = request.query_params
        shop = params.get("shop") or None
        if shop is not None:
            try:
                shop = normalize_domain(shop)
            except ValueError as exc:
                return JSONResponse({"error": str(exc)}, status_code=400)
        try:
            limit = int(params.get("limit", "1000"))
        except ValueError:
            return JSONResponse({"error": "limit must be an integer"}, status_code=400)
        with state.db.transaction() as conn:
            found = list_deliveries(
                conn,
                shop=shop,
                topic=params.get("topic") or None,
                status=params.get("status") or None,
                limit=limit,
            )
        return JSONResponse({"deliveries": found})

    return [
        Route("/_sandbox/webhooks/faults", faults, methods=["GET", "POST", "DELETE"]),
        Route("/_sandbox/webhooks/deliveries", deliveries, methods=["GET"]),
    ]
