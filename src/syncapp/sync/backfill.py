"""The backfill: export a shop's catalog with a Shopify bulk operation and publish one
``product.resync-requested`` event per product, with the product's snapshot (DESIGN §4).

A backfill is a **run** (a short random id) recorded in the shop's ``backfill`` cursor. The
``backfill.requested`` event of the run is consumed by :func:`advance_backfill`, one step at a
time (the event waits outside the retry budget between steps, like a sign-up):

    requested ──start_catalog_export──▶ running ──COMPLETED──▶ streaming ──EOF──▶ done
        ▲                                  │ FAILED (partial data) ──▶ streaming ─┐
        └────── FAILED, CANCELED, EXPIRED, a result URL that stopped working ◀────┘

Streaming reads the JSONL result with httpx line by line (:mod:`.bulk_jsonl`: a bounded buffer
of incomplete products), and every batch of assembled products is published **in the
transaction that advances the cursor** (the byte offset and line from which nothing is left
unpublished). A restart resumes there (``Range`` request, or skipping the bytes). The event id
is deterministic — ``<shop>/backfill/<run>/<numeric product id>`` — and the outbox's unique
event id makes a second publish of a product within a run impossible, across restarts, reruns
of the bulk operation (a partial file, then a rerun) and concurrent workers alike (ADR 0023).

With an eManageCRM client and the loop it lives on (the worker's), and the shop's eManageCRM
account known, the products are **written** instead (:mod:`.backfill_apply`, ADR 0026): the
unlinked ones go to eManageCRM in batches that match existing products (external reference,
then SKU) or create them, and their links are recorded in the cursor's transaction; only what
needs the engine (linked products, incomplete ones, refusals, matches that differ) becomes a
resync event. Without them (no eManageCRM client configured) every product is an event.
"""

from __future__ import annotations

import asyncio
import time
import uuid
from collections.abc import Iterable, Iterator, Sequence
from concurrent.futures import Future, wait
from dataclasses import dataclass
from datetime import UTC, datetime
from typing import Any

import httpx
import structlog
from sqlalchemy import func, select
from sqlalchemy.orm import Session, sessionmaker

from syncapp.bus.interface import APP
from syncapp.bus.models import InboundEvent
from syncapp.bus.outbox import new_event, publish
from syncapp.connectors.emanage import BatchResult
from syncapp.connectors.shopify.products import ShopifyUserErrors
from syncapp.onboarding.models import EmanageAccount
from syncapp.store.locking import locked_transaction
from syncapp.store.models import Shop
from syncapp.sync import backfill_apply as apply
from syncapp.sync.bulk_jsonl import Assembled, Assembler, Position, parse_line, split_lines
from syncapp.sync.events import BACKFILL_REQUESTED, RESYNC_REQUESTED
from syncapp.sync.events import request_resync as publish_resync
from syncapp.sync.models import PRODUCT, SyncCursor, SyncLink
from syncapp.sync.runtime import SyncRuntime
from syncapp.sync.state import keeps_products_synchronized

__all__ = [
    "CURSOR",
    "BackfillProgress",
    "advance_backfill",
    "backfill_event_prefix",
    "backfill_progress",
    "ensure_backfill",
    "request_backfill",
]

log = structlog.get_logger(__name__)

CURSOR = "backfill"
_RUNNING = ("CREATED", "RUNNING", "CANCELING")


class ResultUnavailable(Exception):
    """The bulk result URL answered 400/403/404/410: expired or withdrawn; rerun the export."""


def _now() -> str:
    return datetime.now(UTC).isoformat().replace("+00:00", "Z")


def backfill_event_prefix(shop: str, run: str) -> str:
    return f"{shop}/backfill/{run}/"


def _event_id(shop: str, run: str, gid: str) -> str:
    return backfill_event_prefix(shop, run) + gid.rsplit("/", 1)[-1]


# ---------------------------------------------------------------- requesting


def request_backfill(session: Session, *, shop_id: int, shop: str, reason: str) -> str:
    """Start a new run in ``session``'s transaction (superseding one in progress); returns its
    id. Its ``backfill.requested`` event is published with it."""
    run = uuid.uuid4().hex[:12]
    cursor = session.get(SyncCursor, (shop_id, CURSOR))
    position: dict[str, object] = {
        "run": run,
        "reason": reason,
        "state": "requested",
        "requested_at": _now(),
        "line": 0,
        "offset": 0,
        "published": 0,
        "restarts": 0,
    }
    if cursor is None:
        session.add(SyncCursor(shop_id=shop_id, name=CURSOR, position=position, done=False))
    else:
        cursor.position = position
        cursor.done = False
    _publish_step(session, shop=shop, run=run, reason=reason)
    log.info("sync.backfill_requested", shop=shop, run=run, reason=reason)
    return run


def _publish_step(
    session: Session, *, shop: str, run: str, reason: str, step: str | None = None
) -> None:
    publish(
        session,
        new_event(
            BACKFILL_REQUESTED,
            shop_domain=shop,
            obj="backfill",
            data={"shop_domain": shop, "run": run, "reason": reason},
            # A resumed run's step events get a random suffix: its first step keeps the run's id.
            event_id=f"{shop}/backfill/{run}" + (f"/step-{step}" if step else ""),
        ),
    )


def _step_waiting(session: Session, shop: str) -> bool:
    """A ``backfill.requested`` of the shop is pending or being processed."""
    waiting = session.scalar(
        select(func.count()).where(
            InboundEvent.source == APP,
            InboundEvent.shop_domain == shop,
            InboundEvent.topic == BACKFILL_REQUESTED.name,
            InboundEvent.status.in_(("pending", "processing")),
        )
    )
    return bool(waiting)


def ensure_backfill(session: Session, *, shop_id: int, shop: str, reason: str) -> tuple[str, bool]:
    """Resume the run in progress (publishing its event again if none is waiting), or start a
    new one; returns ``(run, started)``."""
    cursor = session.get(SyncCursor, (shop_id, CURSOR))
    if cursor is None or cursor.done or not cursor.position.get("run"):
        return request_backfill(session, shop_id=shop_id, shop=shop, reason=reason), True
    run = str(cursor.position["run"])
    if not _step_waiting(session, shop):
        _publish_step(
            session,
            shop=shop,
            run=run,
            reason=str(cursor.position.get("reason") or reason),
            step=uuid.uuid4().hex[:8],
        )
        log.info("sync.backfill_resumed", shop=shop, run=run)
    return run, False


def resume_after_finish(sessions: sessionmaker[Session], shop: str, operation: str) -> bool:
    """``bulk_operations/finish``: when ``operation`` is the shop's running backfill export
    and no step of the run is waiting (its event was dead-lettered, say), publish one. The
    waiting step otherwise notices the end at its next poll. True when a step was published."""
    with locked_transaction(sessions) as session:
        shop_id = session.scalar(select(Shop.id).where(Shop.domain == shop))
        cursor = session.get(SyncCursor, (shop_id, CURSOR)) if shop_id else None
        if cursor is None or cursor.done or cursor.position.get("operation") != operation:
            return False
        if _step_waiting(session, shop):
            return False
        assert shop_id is not None
        ensure_backfill(session, shop_id=shop_id, shop=shop, reason="bulk operation finished")
        return True


def request_due_backfills(sessions: sessionmaker[Session]) -> int:
    """Start the first backfill of every shop whose sign-up is done, that keeps products
    synchronized and never had one (a new shop); returns how many. Run by the worker."""
    from syncapp.onboarding.models import OnboardingJob
    from syncapp.sync.models import SyncSettings

    has_cursor = select(SyncCursor.shop_id).where(SyncCursor.name == CURSOR)
    off = select(SyncSettings.shop_id).where(SyncSettings.keep_products_synchronized.is_(False))
    due = (
        select(Shop.id, Shop.domain)
        .join(OnboardingJob, OnboardingJob.shop_id == Shop.id)
        .where(
            OnboardingJob.kind == "signup",
            OnboardingJob.status == "done",
            Shop.uninstalled_at.is_(None),
            Shop.id.not_in(has_cursor),
            Shop.id.not_in(off),
        )
    )
    # The worker asks every second (a new shop's catalog follows its sign-up at once): a plain
    # read first, so the write lock is only taken when there is a shop to start.
    with sessions() as session:
        if session.execute(due.limit(1)).first() is None:
            return 0
    with locked_transaction(sessions) as session:
        rows = session.execute(due).all()
        for shop_id, domain in rows:
            request_backfill(session, shop_id=shop_id, shop=domain, reason="new shop")
    return len(rows)


# ---------------------------------------------------------------- progress


@dataclass(frozen=True, slots=True)
class BackfillProgress:
    run: str | None
    state: str
    done: bool
    total: int | None
    published: int
    applied: int
    error: str | None
    reason: str | None


def backfill_progress(sessions: sessionmaker[Session], shop: str) -> BackfillProgress:
    """Where the shop's latest backfill stands: products published, and of those the events
    the engine has processed (``applied``)."""
    with sessions() as session:
        shop_id = session.scalar(select(Shop.id).where(Shop.domain == shop))
        cursor = session.get(SyncCursor, (shop_id, CURSOR)) if shop_id else None
        if cursor is None:
            return BackfillProgress(None, "none", False, None, 0, 0, None, None)
        pos = cursor.position
        run = str(pos.get("run") or "")
        counts = dict(
            session.execute(
                select(InboundEvent.status, func.count())
                .where(
                    InboundEvent.source == APP,
                    InboundEvent.topic == RESYNC_REQUESTED.name,
                    InboundEvent.delivery_id.like(backfill_event_prefix(shop, run) + "%"),
                )
                .group_by(InboundEvent.status)
            ).all()
        )
        total = pos.get("total")
        # Products the backfill linked itself count as published and applied at once.
        linked = int(str(pos.get("linked") or 0))
        return BackfillProgress(
            run=run or None,
            state=str(pos.get("state") or "requested"),
            done=cursor.done,
            total=int(str(total)) if total is not None else None,
            published=int(str(pos.get("published") or 0)) + linked,
            applied=int(counts.get("done", 0)) + linked,
            error=str(pos["error"]) if pos.get("error") else None,
            reason=str(pos["reason"]) if pos.get("reason") else None,
        )


# ---------------------------------------------------------------- running


def _read(sessions: sessionmaker[Session], shop: str) -> tuple[int, SyncCursor] | None:
    with sessions() as session:
        shop_id = session.scalar(select(Shop.id).where(Shop.domain == shop))
        if shop_id is None:
            return None
        cursor = session.get(SyncCursor, (shop_id, CURSOR))
        if cursor is None:
            return None
        session.expunge(cursor)
        return shop_id, cursor


def _update(
    sessions: sessionmaker[Session], shop_id: int, run: str, *, done: bool = False, **fields: Any
) -> bool:
    """Merge ``fields`` into the run's cursor; False when another run superseded it."""
    with locked_transaction(sessions) as session:
        cursor = session.get(SyncCursor, (shop_id, CURSOR))
        if cursor is None or cursor.position.get("run") != run:
            return False
        cursor.position = {**cursor.position, **fields}
        cursor.done = done
        return True


def advance_backfill(
    rt: SyncRuntime, shop: str, run: str, *, loop: asyncio.AbstractEventLoop | None = None
) -> float | None:
    """Take the run one step further; returns seconds until the next step, None when over.
    ``loop`` is the one ``rt.emanage`` lives on: with both, products are written in batches
    (called from a thread other than the loop's)."""
    found = _read(rt.shops.sessions, shop)
    if found is None:
        return None
    shop_id, cursor = found
    pos = dict(cursor.position)
    if cursor.done or pos.get("run") != run:
        return None  # finished, or superseded by a newer run
    state = pos.get("state")
    opts = rt.options
    if state == "requested":
        try:
            op = rt.products(shop).start_catalog_export()
        except ShopifyUserErrors as exc:
            # Pitfall 22: too many bulk queries at once is a wait, never fatal.
            log.warning("sync.backfill_export_busy", shop=shop, run=run, error=str(exc))
            return opts.backfill_poll_seconds * 5
        _update(rt.shops.sessions, shop_id, run, state="running", operation=op["id"])
        log.info("sync.backfill_export_started", shop=shop, run=run, operation=op["id"])
        return opts.backfill_poll_seconds
    if state == "running":
        return _poll(rt, shop, shop_id, run, pos)
    if state == "streaming":
        return _stream(rt, shop, shop_id, run, pos, _sink(rt, shop, shop_id, run, loop))
    return None


def _restart(
    rt: SyncRuntime, shop: str, shop_id: int, run: str, pos: dict[str, Any], why: str
) -> float | None:
    restarts = int(pos.get("restarts") or 0) + 1
    if restarts > rt.options.backfill_max_restarts:
        log.error("sync.backfill_gave_up", shop=shop, run=run, reason=why, restarts=restarts - 1)
        _update(rt.shops.sessions, shop_id, run, done=True, state="failed", error=why)
        return None
    log.warning("sync.backfill_export_rerun", shop=shop, run=run, reason=why, restarts=restarts)
    _update(
        rt.shops.sessions,
        shop_id,
        run,
        state="requested",
        restarts=restarts,
        error=why,
        line=0,
        offset=0,
        url=None,
        partial=False,
    )
    return rt.options.backfill_poll_seconds


def _poll(rt: SyncRuntime, shop: str, shop_id: int, run: str, pos: dict[str, Any]) -> float | None:
    op = rt.products(shop).call("bulk_operation", {"id": pos["operation"]}, estimate=2)["node"]
    if op is None:
        return _restart(rt, shop, shop_id, run, pos, "the bulk operation is gone")
    status = op["status"]
    if status in _RUNNING:
        return rt.options.backfill_poll_seconds
    total = op.get("rootObjectCount")
    if status == "COMPLETED":
        if not op.get("url"):  # an empty catalog has no file
            _update(rt.shops.sessions, shop_id, run, done=True, state="done", total=0)
            log.info("sync.backfill_done", shop=shop, run=run, published=0)
            return None
        _update(
            rt.shops.sessions,
            shop_id,
            run,
            state="streaming",
            url=op["url"],
            partial=False,
            total=int(total) if total is not None else None,
            line=0,
            offset=0,
        )
        return 0.0
    why = f"bulk operation {status}" + (f" ({op['errorCode']})" if op.get("errorCode") else "")
    if status == "FAILED" and op.get("partialDataUrl"):
        # Publish what the failed export did write, then rerun it; the run's event ids keep
        # the products of the partial file from being published twice.
        log.warning("sync.backfill_partial_data", shop=shop, run=run, reason=why)
        _update(
            rt.shops.sessions,
            shop_id,
            run,
            state="streaming",
            url=op["partialDataUrl"],
            partial=True,
            error=why,
            line=0,
            offset=0,
        )
        return 0.0
    return _restart(rt, shop, shop_id, run, pos, why)


def _skip(chunks: Iterable[bytes], count: int) -> Iterator[bytes]:
    for chunk in chunks:
        if count >= len(chunk):
            count -= len(chunk)
            continue
        yield chunk[count:]
        count = 0


class _Sink:
    """Where a slice of assembled products goes, with the cursor: ``__call__`` returns how
    many were handled, None when the run was superseded; :meth:`flush` settles what is still
    in flight before the step ends."""

    def __init__(self, rt: SyncRuntime, shop: str, shop_id: int, run: str) -> None:
        self.rt, self.shop, self.shop_id, self.run = rt, shop, shop_id, run

    def __call__(
        self, ready: list[Assembled], resume: Position, *, finished: bool = False
    ) -> int | None:
        return _commit(self.rt, self.shop, self.shop_id, self.run, ready, resume, finished=finished)

    def flush(self) -> None:
        """Nothing is ever in flight here."""


@dataclass(slots=True)
class _Batch:
    """A slice routed and sent, waiting for its results to be recorded with ``resume``."""

    count: int
    routed: list[apply.Routed]
    writes: list[apply.Routed]
    resume: Position
    results: Future[list[BatchResult]] | None


class _Writer(_Sink):
    """Writes the unlinked products into eManageCRM (:mod:`.backfill_apply`). One batch is in
    flight while the next slice is read and routed: slice k is sent, then slice k-1's results
    are recorded with the cursor at k-1's resume position (every line of slice k is at or after
    it, so a crash re-reads k and replays its items by their keys)."""

    def __init__(
        self,
        rt: SyncRuntime,
        shop: str,
        shop_id: int,
        run: str,
        *,
        loop: asyncio.AbstractEventLoop,
        account_id: str,
        currency: str,
    ) -> None:
        super().__init__(rt, shop, shop_id, run)
        self.loop, self.account_id, self.currency = loop, account_id, currency
        self.pending: _Batch | None = None

    def __call__(
        self, ready: list[Assembled], resume: Position, *, finished: bool = False
    ) -> int | None:
        batch = self._send(ready, resume)
        previous, self.pending = self.pending, batch
        try:
            recorded = previous is None or self._record(previous, finished=False) is not None
        except BaseException:
            # The step fails: let the request in flight end first (it is not recorded; its
            # items replay by their keys), so nothing of this step runs on behind it.
            self.pending = None
            if batch.results is not None:
                wait([batch.results])
            raise
        if not recorded:
            self.pending = None  # superseded: what is in flight replays under a new run
            return None
        if finished:
            self.pending = None
            return self._record(batch, finished=True)
        return len(ready)

    def flush(self) -> None:
        pending, self.pending = self.pending, None
        if pending is not None:
            self._record(pending, finished=False)

    def _send(self, ready: list[Assembled], resume: Position) -> _Batch:
        rt, shop, shop_id, run = self.rt, self.shop, self.shop_id, self.run
        gids = [a.gid for a in ready]
        with rt.shops.sessions() as session:
            linked = {
                gid: operation
                for gid, operation in session.execute(
                    select(SyncLink.shopify_gid, SyncLink.last_operation).where(
                        SyncLink.shop_id == shop_id,
                        SyncLink.kind == PRODUCT,
                        SyncLink.shopify_gid.in_(gids),
                    )
                )
                if gid is not None
            }
        routed = apply.route(ready, linked, run)
        writes = [r for r in routed if r.target is apply.Target.WRITE]
        items = apply.batch_writes(shop, self.currency, writes)
        # Network I/O with no transaction held (on the client's loop, not waited for here).
        results = (
            apply.submit_batch(
                self.loop,
                rt.emanage,
                account_id=self.account_id,
                shop=shop,
                run=run,
                items=items,
            )
            if items
            else None
        )
        return _Batch(len(ready), routed, writes, resume, results)

    def _record(self, batch: _Batch, *, finished: bool) -> int | None:
        rt, shop, shop_id, run = self.rt, self.shop, self.shop_id, self.run
        results = batch.results.result() if batch.results is not None else []
        writes = batch.writes
        settled = [
            apply.settle(r.product, r.assembled.gid, result)
            for r, result in zip(writes, results, strict=True)
            if r.product is not None
        ]
        with locked_transaction(rt.shops.sessions) as session:
            cursor = session.get(SyncCursor, (shop_id, CURSOR))
            if cursor is None or cursor.position.get("run") != run:
                return None
            moved = apply.record_links(session, shop_id, settled, run)
            to_engine = {s.gid for s in settled if s.outcome is None} | {m.gid for m in moved}
            handed = [r.assembled for r in batch.routed if r.target is apply.Target.ENGINE]
            handed += [r.assembled for r in writes if r.assembled.gid in to_engine]
            added = _publish(session, shop, run, handed)
            linked_now = len(settled) - len(to_engine & {s.gid for s in settled})
            _advance(cursor, batch.resume, finished, published=added, linked=linked_now)
        if batch.count:
            log.info(
                "sync.backfill_batch",
                shop=shop,
                run=run,
                products=batch.count,
                linked=linked_now,
                to_engine=len(handed),
                why=sorted(
                    {r.reason for r in batch.routed if r.target is apply.Target.ENGINE}
                    | {s.reason for s in settled if s.gid in to_engine}
                ),
            )
        return batch.count


def _sink(
    rt: SyncRuntime, shop: str, shop_id: int, run: str, loop: asyncio.AbstractEventLoop | None
) -> _Sink:
    if rt.emanage is None or loop is None:
        return _Sink(rt, shop, shop_id, run)
    with rt.shops.sessions() as session:
        account = session.scalar(
            select(EmanageAccount.account_id).where(EmanageAccount.shop_id == shop_id)
        )
        currency = session.scalar(select(Shop.currency_code).where(Shop.id == shop_id))
        keep = keeps_products_synchronized(session, shop_id)
    if account is None or not keep:
        # No tenant yet, or the sync is off: the engine's events say so, product by product.
        return _Sink(rt, shop, shop_id, run)
    return _Writer(
        rt, shop, shop_id, run, loop=loop, account_id=account, currency=currency or "USD"
    )


def _stream(
    rt: SyncRuntime, shop: str, shop_id: int, run: str, pos: dict[str, Any], sink: _Sink
) -> float | None:
    start = Position(int(pos.get("line") or 0), int(pos.get("offset") or 0))
    opts = rt.options
    deadline = time.monotonic() + opts.backfill_step_seconds
    assembler = Assembler(opts.backfill_buffer_lines)
    ready: list[Assembled] = []
    published = int(pos.get("published") or 0)
    headers = {"Range": f"bytes={start.offset}-"} if start.offset else {}
    try:
        with rt.download.stream("GET", str(pos["url"]), headers=headers) as response:
            if response.status_code in (400, 401, 403, 404, 410):
                raise ResultUnavailable(f"the bulk result answered HTTP {response.status_code}")
            if response.status_code == 416:  # nothing after the offset: the file is read
                chunks: Iterable[bytes] = ()
            else:
                response.raise_for_status()
                chunks = response.iter_bytes()  # as the network delivers them (<= 64 KiB)
                if response.status_code == 200 and start.offset:
                    chunks = _skip(chunks, start.offset)  # the server ignored Range
            for position, end, raw in split_lines(chunks, start):
                ready += assembler.feed(position, end, parse_line(raw, position))
                if len(ready) >= opts.backfill_batch:
                    added = sink(ready, assembler.resume)
                    if added is None:
                        return None
                    published += added
                    ready = []
                    if time.monotonic() > deadline:
                        # Yield the worker to other shops; the next step resumes here.
                        sink.flush()
                        return 0.0
            ready += assembler.finish()
    except ResultUnavailable as exc:
        if ready:
            sink(ready, assembler.resume)
        sink.flush()
        return _restart(rt, shop, shop_id, run, pos, str(exc))
    except httpx.HTTPError:
        if ready and sink(ready, assembler.resume) is None:
            return None
        sink.flush()
        raise
    partial = bool(pos.get("partial"))
    added = sink(ready, assembler.resume, finished=not partial)
    if added is None:
        return None
    sink.flush()
    published += added
    if partial:
        return _restart(rt, shop, shop_id, run, pos, str(pos.get("error") or "partial data"))
    log.info(
        "sync.backfill_done",
        shop=shop,
        run=run,
        published=published,
        evicted=assembler.evicted,
        peak_buffered_lines=assembler.peak_buffered,
    )
    return None


def _publish(session: Session, shop: str, run: str, ready: Sequence[Assembled]) -> int:
    """Publish a resync event for each of ``ready`` this run has not published yet."""
    ids = {_event_id(shop, run, a.gid): a for a in ready}
    if not ids:
        return 0
    existing = set(
        session.scalars(
            select(InboundEvent.delivery_id).where(
                InboundEvent.source == APP, InboundEvent.delivery_id.in_(list(ids))
            )
        )
    )
    added = 0
    for event_id, product in ids.items():
        if event_id in existing:
            continue
        publish_resync(
            session,
            shop_domain=shop,
            reason="backfill",
            shopify_gid=product.gid,
            snapshot=product.snapshot,
            event_id=event_id,
        )
        added += 1
    return added


def _advance(
    cursor: SyncCursor, resume: Position, finished: bool, *, published: int, linked: int = 0
) -> None:
    pos = cursor.position
    fields: dict[str, object] = {
        "line": resume.line,
        "offset": resume.offset,
        "published": int(str(pos.get("published") or 0)) + published,
    }
    if linked or "linked" in pos:
        fields["linked"] = int(str(pos.get("linked") or 0)) + linked
    if finished:
        fields.update(state="done", finished_at=_now(), error=None)
    cursor.position = {**pos, **fields}
    cursor.done = finished


def _commit(
    rt: SyncRuntime,
    shop: str,
    shop_id: int,
    run: str,
    ready: list[Assembled],
    resume: Position,
    *,
    finished: bool = False,
) -> int | None:
    """Publish ``ready`` (skipping products this run already published) and move the cursor
    to ``resume``, in one transaction; returns how many were published, None if superseded."""
    with locked_transaction(rt.shops.sessions) as session:
        cursor = session.get(SyncCursor, (shop_id, CURSOR))
        if cursor is None or cursor.position.get("run") != run:
            return None
        added = _publish(session, shop, run, ready)
        _advance(cursor, resume, finished, published=added)
    return added
