"""The sync's jobs on the bus, beside the engine's :mod:`.topics`: ``backfill.requested``
advances a backfill one step (waiting outside the retry budget while the bulk export runs,
and between streaming slices so other shops get the worker); ``reconcile.requested`` sweeps
the shop once.

The blocking work (Shopify calls, the JSONL download, short transactions) runs in a thread,
so the consumer keeps renewing leases meanwhile. :func:`tick` is what the worker runs
periodically: first backfills of new shops and each interval's sweeps.
"""

from __future__ import annotations

import asyncio

import structlog

from syncapp.bus.interface import (
    APP,
    Ack,
    DeadLetter,
    Delivery,
    Outcome,
    Retry,
    TopicTable,
)
from syncapp.sync.backfill import advance_backfill, request_due_backfills, resume_after_finish
from syncapp.sync.events import BACKFILL_REQUESTED, RECONCILE_REQUESTED
from syncapp.sync.reconcile import request_due_reconciles, sweep
from syncapp.sync.runtime import SyncRuntime

log = structlog.get_logger(__name__)


def topics(rt: SyncRuntime) -> TopicTable:
    async def backfill_requested(delivery: Delivery) -> Outcome:
        data = delivery.data()
        # In a thread, with the loop the eManageCRM client lives on for its batch writes.
        wait = await asyncio.to_thread(
            advance_backfill,
            rt,
            str(data["shop_domain"]),
            str(data["run"]),
            loop=asyncio.get_running_loop(),
        )
        if wait is None:
            return Ack(note="backfill over")
        return Retry("the backfill waits for its next step", after=wait, counts=False)

    async def reconcile_requested(delivery: Delivery) -> Outcome:
        published = await sweep(rt, str(delivery.data()["shop_domain"]))
        return Ack(note=f"swept: {published} resyncs")

    async def bulk_operation_finished(delivery: Delivery) -> Outcome:
        # Shopify signs the body only: the operation it names must be the one this shop's
        # running backfill recorded, else nothing changes.
        body = delivery.data()
        gid = body.get("admin_graphql_api_id") if isinstance(body, dict) else None
        if not isinstance(gid, str) or not gid.startswith("gid://shopify/BulkOperation/"):
            return DeadLetter("refused: a bulk_operations/finish payload that names no operation")
        resumed = await asyncio.to_thread(
            resume_after_finish, rt.shops.sessions, delivery.shop_domain, gid
        )
        return Ack(note="backfill resumed" if resumed else "no backfill waits for it")

    return {
        (APP, BACKFILL_REQUESTED.name): backfill_requested,
        (APP, RECONCILE_REQUESTED.name): reconcile_requested,
        ("shopify", "bulk_operations/finish"): bulk_operation_finished,
    }


def tick(rt: SyncRuntime) -> None:
    """Publish due first backfills and this interval's sweeps (idempotent per interval)."""
    started = request_due_backfills(rt.shops.sessions)
    swept = request_due_reconciles(
        rt.shops.sessions, interval=rt.options.reconcile_interval_seconds
    )
    if started or swept:
        log.info("sync.tick", backfills=started, sweeps=swept)


def start_backfills(rt: SyncRuntime) -> None:
    """Publish the first backfill of each shop whose sign-up just finished (cheap when none)."""
    started = request_due_backfills(rt.shops.sessions)
    if started:
        log.info("sync.tick", backfills=started, sweeps=0)
