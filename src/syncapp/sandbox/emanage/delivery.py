"""Delivery of the notification outbox to the webhook subscriptions: signed, in order, at
least once, retried with exponential backoff and jitter, durable across restarts.

Per subscription, the deliverer walks ``notification_outbox`` in ``seq`` order from the
subscription's cursor (``delivered_seq``), taking the events of accounts its client owns and of
its event types, and POSTs each as JSON ``{id, type, occurredAt, accountId, data}`` with

* ``Emanage-Event-Id``: the event's id (the same on every retry: receivers dedupe on it);
* ``Emanage-Signature: t=<unix seconds>,v1=<hex HMAC-SHA256(secret, f"{t}.{body}")>``, signed
  at each attempt with the subscription's secret (Stripe's scheme: the timestamp is signed
  with the body, so a receiver refusing old timestamps refuses replays of a captured request).

A 2xx within 5 s moves the cursor past the event. Anything else (another status, a timeout, a
refused connection) is retried after ``backoff_delay`` (base doubling to the cap, equal jitter;
a ``Retry-After`` is a floor), and the subscription's later events wait: a subscriber sees one
subscription's events in order. After ``notification_max_attempts`` the event is given up
(``webhook_failed_events``) and the cursor moves on. The cursor, attempts and last error are
columns of ``webhook_subscriptions``, so a restarted sandbox resumes where it stopped (an event
in flight at the stop is sent again: at least once).

Test knobs (``/_sandbox/notifications/faults``, in memory like every sandbox fault): pause
deliveries, send the next N deliveries twice, deliver windows of N events in reverse order;
``/_sandbox/notifications/replay`` sends an old event again now, optionally signed as if long ago.
"""

from __future__ import annotations

import asyncio
import contextlib
import functools
import hashlib
import hmac
import json
import logging
import random
import sqlite3
from collections.abc import Callable
from dataclasses import asdict, dataclass, replace
from typing import Any

import httpx
from starlette.requests import Request
from starlette.responses import JSONResponse, Response
from starlette.routing import BaseRoute, Route

from syncapp.bus.retry import RetryPolicy, backoff_delay
from syncapp.sandbox.emanage.common import UUID_RE, read_json_object
from syncapp.sandbox.emanage.control import local_only
from syncapp.sandbox.emanage.events import EVENT_TYPES, record_event
from syncapp.sandbox.emanage.state import EmanageState, iso

log = logging.getLogger(__name__)

CONNECT_TIMEOUT = 1.0
DELIVERY_TIMEOUT = 5.0
BATCH = 50
STOP_GRACE = 2.0
KEPT_ATTEMPTS = 5000
USER_AGENT = "eManageCRM-Webhooks/1.0"


def signature(secret: str, timestamp: int, body: bytes) -> str:
    """The ``Emanage-Signature`` header of ``body`` signed at ``timestamp`` (unix seconds)."""
    mac = hmac.new(secret.encode(), f"{timestamp}.".encode() + body, hashlib.sha256)
    return f"t={timestamp},v1={mac.hexdigest()}"


@dataclass(frozen=True)
class DeliveryFaults:
    """``paused``: nothing is sent (events queue up); ``duplicate``: the next N deliveries are
    sent twice (same event id, like a retry after a lost answer); ``reorder``: pending events
    are delivered in windows of this many, each window in reverse order (0 or 1: in order)."""

    paused: bool = False
    duplicate: int = 0
    reorder: int = 0


@dataclass(frozen=True)
class _Event:
    seq: int
    event_id: str
    account_id: str
    type: str
    occurred_at: str
    data: str

    def body(self) -> bytes:
        return json.dumps(
            {
                "id": self.event_id,
                "type": self.type,
                "occurredAt": self.occurred_at,
                "accountId": self.account_id,
                "data": json.loads(self.data),
            },
            separators=(",", ":"),
        ).encode()


@dataclass(frozen=True)
class _Target:
    id: str
    url: str
    secret: str
    attempts: int


@dataclass(frozen=True)
class _Result:
    status_code: int | None
    error: str | None
    retry_after: float | None = None

    @property
    def ok(self) -> bool:
        return self.status_code is not None and 200 <= self.status_code < 300


_EVENT_COLUMNS = "o.seq, o.event_id, o.account_id, o.type, o.occurred_at, o.data"


def _event(row: sqlite3.Row) -> _Event:
    return _Event(
        row["seq"], row["event_id"], row["account_id"], row["type"], row["occurred_at"], row["data"]
    )


# The events subscription ``s`` hears after its cursor: of accounts its client owns (now, so a
# linked account counts from its link on), of its types, in order.
_PENDING = (
    " FROM webhook_subscriptions s"
    " JOIN notification_outbox o ON o.seq > s.delivered_seq"
    " JOIN accounts a ON a.id = o.account_id AND a.owner_client_id = s.client_id"
    " WHERE o.type IN (SELECT value FROM json_each(s.event_types))"
)
# The same, as a subquery of an outer ``s`` (EXISTS stops at the first).
_HEARD = (
    " FROM notification_outbox o JOIN accounts a ON a.id = o.account_id"
    " WHERE o.seq > s.delivered_seq AND a.owner_client_id = s.client_id"
    " AND o.type IN (SELECT value FROM json_each(s.event_types))"
)


class NotificationDeliverer:
    """Sends every subscription's pending events, one subscription per task, in the loop."""

    def __init__(self, state: EmanageState, *, jitter: Callable[[], float] = random.random) -> None:
        self._state = state
        self._jitter = jitter
        config = state.config
        self._policy = RetryPolicy(
            max_attempts=config.notification_max_attempts,
            base_seconds=config.notification_retry_base_seconds,
            cap_seconds=max(
                config.notification_retry_cap_seconds, config.notification_retry_base_seconds
            ),
        )
        self._faults = DeliveryFaults()
        self._task: asyncio.Task[None] | None = None
        self._stopping: asyncio.Event | None = None
        self._wake: asyncio.Event | None = None
        self._client: httpx.AsyncClient | None = None
        self._in_flight: dict[str, asyncio.Task[None]] = {}

    # --- knobs ----------------------------------------------------------------------------

    @property
    def faults(self) -> DeliveryFaults:
        return self._faults

    def set_faults(self, faults: DeliveryFaults) -> None:
        self._faults = faults
        if self._wake is not None:
            self._wake.set()

    # --- lifecycle ------------------------------------------------------------------------

    async def start(self) -> None:
        if self._task is not None:
            return
        self._stopping = asyncio.Event()
        self._wake = asyncio.Event()
        self._client = httpx.AsyncClient(
            timeout=httpx.Timeout(DELIVERY_TIMEOUT, connect=CONNECT_TIMEOUT),
            follow_redirects=False,
        )
        self._task = asyncio.create_task(self._run(), name="emanage-notification-deliverer")

    async def stop(self) -> None:
        """Stop looking for work, give in-flight deliveries a moment, close the client. What
        was not settled stays pending in the database for the next start."""
        if self._task is None or self._stopping is None or self._wake is None:
            return
        self._stopping.set()
        self._wake.set()
        await self._task
        running = list(self._in_flight.values())
        if running:
            _, still = await asyncio.wait(running, timeout=STOP_GRACE)
            for task in still:
                task.cancel()
            await asyncio.gather(*still, return_exceptions=True)
        if self._client is not None:
            await self._client.aclose()
        self._task = self._stopping = self._wake = self._client = None
        self._in_flight.clear()

    async def _run(self) -> None:
        assert self._stopping is not None
        assert self._wake is not None
        poll = self._state.config.notification_poll_seconds
        while not self._stopping.is_set():
            self._wake.clear()
            try:
                await self.step()
            except Exception:
                # One bad row or a busy database must not end delivery; next tick retries.
                log.exception("notification delivery step failed")
            with contextlib.suppress(TimeoutError):
                await asyncio.wait_for(self._wake.wait(), timeout=poll)

    async def step(self) -> int:
        """Start a delivery task for every due subscription not already being served."""
        if self._faults.paused:
            return 0
        due = await asyncio.to_thread(self._due)
        started = 0
        for subscription_id in due:
            if subscription_id in self._in_flight:
                continue
            task = asyncio.create_task(self._serve(subscription_id))
            self._in_flight[subscription_id] = task
            task.add_done_callback(functools.partial(self._forget, subscription_id))
            started += 1
        return started

    def _forget(self, subscription_id: str, task: asyncio.Task[None]) -> None:
        self._in_flight.pop(subscription_id, None)
        if not task.cancelled() and task.exception() is not None:
            log.error("notification delivery task failed", exc_info=task.exception())

    # --- one subscription -----------------------------------------------------------------

    async def _serve(self, subscription_id: str) -> None:
        found = await asyncio.to_thread(self._next, subscription_id)
        if found is None:
            return
        target, events = found
        window = self._faults.reorder
        if window >= 2 and len(events) >= 2:
            batch = events[:window]
            results = [await self._send(target, e, "delivery") for e in reversed(batch)]
            failed = next((r for r in results if not r.ok), None)
            if failed is None:
                await asyncio.to_thread(self._settled, target.id, batch[-1].seq, len(batch))
            else:
                # The window is retried whole: a receiver sees its delivered events again.
                await asyncio.to_thread(self._failed, target, batch[0], failed)
            return
        for event in events:
            if self._faults.paused or (self._stopping is not None and self._stopping.is_set()):
                return
            signed_at = int(self._state.clock.now())
            result = await self.post(target, event, "delivery", signed_at=signed_at, record=False)
            # Taken before the event settles: a knob set once a test saw it settled is the
            # next event's.
            duplicate = result.ok and self._take_duplicate()
            # The attempt and its outcome in one commit: delivery is sequential per
            # subscription, so each commit is on the path of every later event.
            await asyncio.to_thread(self._settle, target, event, signed_at, result)
            if not result.ok:
                return
            if duplicate:
                await self._send(target, event, "duplicate")
            target = replace(target, attempts=0)

    def _take_duplicate(self) -> bool:
        if self._faults.duplicate <= 0:
            return False
        self._faults = replace(self._faults, duplicate=self._faults.duplicate - 1)
        return True

    async def _send(self, target: _Target, event: _Event, kind: str) -> _Result:
        return await self.post(target, event, kind, signed_at=int(self._state.clock.now()))

    async def post(
        self, target: _Target, event: _Event, kind: str, *, signed_at: int, record: bool = True
    ) -> _Result:
        """POST ``event`` to ``target`` signed at ``signed_at``; the attempt is recorded
        (unless the caller records it with its outcome)."""
        client = self._client
        if client is None:
            return _Result(None, "the deliverer is stopped")
        body = event.body()
        headers = {
            "Content-Type": "application/json",
            "User-Agent": USER_AGENT,
            "Emanage-Event-Id": event.event_id,
            "Emanage-Event-Type": event.type,
            "Emanage-Signature": signature(target.secret, signed_at, body),
        }
        try:
            async with asyncio.timeout(DELIVERY_TIMEOUT):
                response = await client.post(target.url, content=body, headers=headers)
        except TimeoutError:
            result = _Result(None, f"no answer within {DELIVERY_TIMEOUT:g} s")
        except httpx.HTTPError as exc:
            result = _Result(None, f"{type(exc).__name__}: {exc}")
        else:
            retry_after = response.headers.get("retry-after", "")
            result = _Result(
                response.status_code,
                None if response.is_success else f"HTTP {response.status_code}",
                float(retry_after) if retry_after.isdigit() else None,
            )
        if record:
            await asyncio.to_thread(self._record_attempt, target.id, event, kind, signed_at, result)
        return result

    # --- database side (worker threads) ---------------------------------------------------

    def _due(self) -> list[str]:
        now = self._state.clock.now()
        with self._state.db.transaction() as conn:
            rows = conn.execute(
                "SELECT s.id FROM webhook_subscriptions s WHERE s.next_attempt_at <= ?"  # noqa: S608
                f" AND EXISTS (SELECT 1{_HEARD}) ORDER BY s.created_at",
                (now,),
            ).fetchall()
        return [r["id"] for r in rows]

    def _next(self, subscription_id: str) -> tuple[_Target, list[_Event]] | None:
        with self._state.db.transaction() as conn:
            sub = conn.execute(
                "SELECT * FROM webhook_subscriptions WHERE id = ? AND next_attempt_at <= ?",
                (subscription_id, self._state.clock.now()),
            ).fetchone()
            if sub is None:
                return None
            rows = conn.execute(
                f"SELECT {_EVENT_COLUMNS}{_PENDING} AND s.id = ? ORDER BY o.seq LIMIT ?",
                (subscription_id, BATCH),
            ).fetchall()
        target = _Target(sub["id"], sub["url"], sub["secret"], sub["attempts"])
        return target, [_event(r) for r in rows]

    def _record_attempt(
        self, subscription_id: str, event: _Event, kind: str, signed_at: int, result: _Result
    ) -> None:
        with self._state.db.transaction() as conn:
            cursor = conn.execute(
                "INSERT INTO webhook_attempts (subscription_id, seq, event_id, kind, signed_at,"
                " status_code, error, at) VALUES (?, ?, ?, ?, ?, ?, ?, ?)",
                (
                    subscription_id,
                    event.seq,
                    event.event_id,
                    kind,
                    signed_at,
                    result.status_code,
                    result.error,
                    self._state.clock.now(),
                ),
            )
            if cursor.lastrowid is not None and cursor.lastrowid % 500 == 0:
                conn.execute(
                    "DELETE FROM webhook_attempts WHERE id <= ?",
                    (cursor.lastrowid - KEPT_ATTEMPTS,),
                )

    def _settle(self, target: _Target, event: _Event, signed_at: int, result: _Result) -> None:
        with self._state.db.transaction():  # the calls below join this one transaction
            self._record_attempt(target.id, event, "delivery", signed_at, result)
            if result.ok:
                self._settled(target.id, event.seq, 1)
            else:
                self._failed(target, event, result)

    def _settled(self, subscription_id: str, seq: int, count: int) -> None:
        now = self._state.clock.now()
        with self._state.db.transaction() as conn:
            conn.execute(
                "UPDATE webhook_subscriptions SET delivered_seq = max(delivered_seq, ?),"
                " attempts = 0, next_attempt_at = 0, last_attempt_at = ?, last_status_code = 200,"
                " last_error = NULL, delivered_count = delivered_count + ? WHERE id = ?",
                (seq, now, count, subscription_id),
            )

    def _failed(self, target: _Target, event: _Event, result: _Result) -> None:
        now = self._state.clock.now()
        attempts = target.attempts + 1
        with self._state.db.transaction() as conn:
            if self._policy.exhausted(attempts):
                conn.execute(
                    "INSERT OR REPLACE INTO webhook_failed_events VALUES (?, ?, ?, ?, ?, ?)",
                    (target.id, event.seq, event.event_id, attempts, result.error, now),
                )
                conn.execute(
                    "UPDATE webhook_subscriptions SET delivered_seq = max(delivered_seq, ?),"
                    " attempts = 0, next_attempt_at = 0, last_attempt_at = ?,"
                    " last_status_code = ?, last_error = ?, failed_count = failed_count + 1"
                    " WHERE id = ?",
                    (event.seq, now, result.status_code, result.error, target.id),
                )
                log.warning(
                    "notification %s to %s given up: %s", event.event_id, target.url, result.error
                )
                return
            delay = backoff_delay(
                attempts, policy=self._policy, jitter=self._jitter(), retry_after=result.retry_after
            )
            conn.execute(
                "UPDATE webhook_subscriptions SET attempts = ?, next_attempt_at = ?,"
                " last_attempt_at = ?, last_status_code = ?, last_error = ? WHERE id = ?",
                (
                    attempts,
                    now + min(delay, self._policy.cap_seconds),
                    now,
                    result.status_code,
                    result.error,
                    target.id,
                ),
            )


# --- control routes (/_sandbox/notifications...) -----------------------------------------------


def _subscription_state(conn: sqlite3.Connection, row: sqlite3.Row) -> dict[str, Any]:
    (pending,) = conn.execute(
        f"SELECT count(*){_PENDING} AND s.id = ?",
        (row["id"],),
    ).fetchone()
    failed = conn.execute(
        "SELECT seq, event_id, attempts, last_error, failed_at FROM webhook_failed_events"
        " WHERE subscription_id = ? ORDER BY seq",
        (row["id"],),
    ).fetchall()
    return {
        "id": row["id"],
        "clientId": row["client_id"],
        "url": row["url"],
        "eventTypes": json.loads(row["event_types"]),
        "deliveredSeq": row["delivered_seq"],
        "pending": pending,
        "attempts": row["attempts"],
        "nextAttemptAt": iso(row["next_attempt_at"]) if row["attempts"] else None,
        "lastAttemptAt": iso(row["last_attempt_at"]) if row["last_attempt_at"] else None,
        "lastStatusCode": row["last_status_code"],
        "lastError": row["last_error"],
        "deliveredCount": row["delivered_count"],
        "failedCount": row["failed_count"],
        "failedEvents": [
            {
                "seq": f["seq"],
                "eventId": f["event_id"],
                "attempts": f["attempts"],
                "lastError": f["last_error"],
                "failedAt": iso(f["failed_at"]),
            }
            for f in failed
        ],
    }


def _parse_faults(body: dict[str, Any], current: DeliveryFaults) -> DeliveryFaults:
    known = set(DeliveryFaults.__dataclass_fields__)
    if unknown := sorted(set(body) - known):
        raise ValueError(f"unknown knob(s) {unknown}; use {', '.join(sorted(known))}")
    paused = body.get("paused", current.paused)
    if not isinstance(paused, bool):
        raise ValueError("paused must be true or false")
    counts = {}
    for name, top in (("duplicate", 1000), ("reorder", BATCH)):
        value = body.get(name, getattr(current, name))
        if not isinstance(value, int) or isinstance(value, bool) or not 0 <= value <= top:
            raise ValueError(f"{name} must be an integer from 0 to {top}")
        counts[name] = value
    return DeliveryFaults(paused=paused, **counts)


def _error(status: int, message: str) -> JSONResponse:
    return JSONResponse({"error": message}, status_code=status)


def routes(state: EmanageState, deliverer: NotificationDeliverer) -> list[BaseRoute]:
    """Delivery state, the knobs, replays, and recording an event as a change would."""

    async def overview(request: Request) -> Response:
        if (refused := local_only(request)) is not None:
            return refused
        with state.db.transaction() as conn:
            subs = conn.execute(
                "SELECT * FROM webhook_subscriptions ORDER BY created_at, rowid"
            ).fetchall()
            (max_seq,) = conn.execute(
                "SELECT coalesce(max(seq), 0) FROM notification_outbox"
            ).fetchone()
            out = [_subscription_state(conn, s) for s in subs]
        return JSONResponse(
            {"faults": asdict(deliverer.faults), "maxSeq": max_seq, "subscriptions": out}
        )

    async def faults(request: Request) -> Response:
        if (refused := local_only(request)) is not None:
            return refused
        if request.method == "DELETE":
            deliverer.set_faults(DeliveryFaults())
        elif request.method == "POST":
            body = await read_json_object(request)
            if isinstance(body, Response):
                return body
            try:
                deliverer.set_faults(_parse_faults(body, deliverer.faults))
            except ValueError as exc:
                return _error(400, str(exc))
        return JSONResponse(asdict(deliverer.faults))

    async def events(request: Request) -> Response:
        if (refused := local_only(request)) is not None:
            return refused
        if request.method == "GET":
            try:
                limit = min(int(request.query_params.get("limit", "1000")), 10000)
            except ValueError:
                return _error(400, "limit must be an integer")
            with state.db.transaction() as conn:
                rows = conn.execute(
                    f"SELECT {_EVENT_COLUMNS} FROM notification_outbox o"  # noqa: S608
                    " ORDER BY o.seq DESC LIMIT ?",
                    (limit,),
                ).fetchall()
            return JSONResponse(
                {
                    "events": [
                        {"seq": e.seq, **json.loads(e.body())}
                        for e in reversed([_event(r) for r in rows])
                    ]
                }
            )
        body = await read_json_object(request)
        if isinstance(body, Response):
            return body
        account_id = str(body.get("accountId", "")).lower()
        event_type = body.get("type")
        data = body.get("data", {})
        if event_type not in EVENT_TYPES or not isinstance(data, dict):
            return _error(400, f"type must be one of {sorted(EVENT_TYPES)} and data an object")
        with state.db.transaction() as conn:
            account = None
            if UUID_RE.match(account_id):
                account = conn.execute(
                    "SELECT id FROM accounts WHERE id = ?", (account_id,)
                ).fetchone()
            if account is None:
                return _error(404, f"no account {account_id}")
            event_id = record_event(
                conn,
                account_id=account_id,
                event_type=str(event_type),
                data=data,
                occurred_at=iso(state.clock.now()),
            )
            (seq,) = conn.execute(
                "SELECT seq FROM notification_outbox WHERE event_id = ?", (event_id,)
            ).fetchone()
        return JSONResponse({"id": event_id, "seq": seq}, status_code=201)

    async def attempts(request: Request) -> Response:
        if (refused := local_only(request)) is not None:
            return refused
        params = request.query_params
        try:
            limit = min(int(params.get("limit", "1000")), KEPT_ATTEMPTS)
        except ValueError:
            return _error(400, "limit must be an integer")
        where, args = "", []
        if params.get("subscriptionId"):
            where = "WHERE subscription_id = ?"
            args.append(params["subscriptionId"].lower())
        with state.db.transaction() as conn:
            rows = conn.execute(
                f"SELECT * FROM webhook_attempts {where} ORDER BY id DESC LIMIT ?",  # noqa: S608
                (*args, limit),
            ).fetchall()
        return JSONResponse(
            {
                "attempts": [
                    {
                        "subscriptionId": r["subscription_id"],
                        "seq": r["seq"],
                        "eventId": r["event_id"],
                        "kind": r["kind"],
                        "signedAt": r["signed_at"],
                        "statusCode": r["status_code"],
                        "error": r["error"],
                        "at": iso(r["at"]),
                    }
                    for r in reversed(rows)
                ]
            }
        )

    async def replay(request: Request) -> Response:
        """Send an event again now to its subscriptions (or one), signed ``signedAgeSeconds``
        ago: the receiver should dedupe it, or refuse its stale signature."""
        if (refused := local_only(request)) is not None:
            return refused
        body = await read_json_object(request)
        if isinstance(body, Response):
            return body
        age = body.get("signedAgeSeconds", 0)
        if not isinstance(age, int) or isinstance(age, bool) or age < 0:
            return _error(400, "signedAgeSeconds must be an integer >= 0")
        only = str(body.get("subscriptionId", "")).lower()
        with state.db.transaction() as conn:
            row = conn.execute(
                f"SELECT {_EVENT_COLUMNS} FROM notification_outbox o"  # noqa: S608
                " WHERE o.event_id = ?",
                (str(body.get("eventId", "")).lower(),),
            ).fetchone()
            if row is None:
                return _error(404, "no such event (send eventId)")
            event = _event(row)
            targets = [
                _Target(s["id"], s["url"], s["secret"], s["attempts"])
                for s in conn.execute(
                    "SELECT s.* FROM webhook_subscriptions s JOIN accounts a ON a.id = ?"
                    " WHERE a.owner_client_id = s.client_id AND EXISTS"
                    " (SELECT 1 FROM json_each(s.event_types) WHERE value = ?)",
                    (event.account_id, event.type),
                )
                if not only or s["id"] == only
            ]
        signed_at = int(state.clock.now()) - age
        sent = []
        for target in targets:
            result = await deliverer.post(target, event, "replay", signed_at=signed_at)
            sent.append(
                {
                    "subscriptionId": target.id,
                    "statusCode": result.status_code,
                    "error": result.error,
                }
            )
        return JSONResponse({"eventId": event.event_id, "signedAt": signed_at, "sent": sent})

    return [
        Route("/_sandbox/notifications", overview, methods=["GET"]),
        Route("/_sandbox/notifications/faults", faults, methods=["GET", "POST", "DELETE"]),
        Route("/_sandbox/notifications/events", events, methods=["GET", "POST"]),
        Route("/_sandbox/notifications/attempts", attempts, methods=["GET"]),
        Route("/_sandbox/notifications/replay", replay, methods=["POST"]),
    ]
