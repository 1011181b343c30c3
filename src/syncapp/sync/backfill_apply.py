"""The backfill's write path: products of the bulk export written into eManageCRM in batches
(``POST …/products:batch``), their links recorded in the transaction that moves the cursor
(ADR 0026).

The export is Shopify's state at export time, so its snapshots stand in for the per-product
Shopify read. Each batch of assembled products is **routed** (:func:`route`, pure):

- a product with no link goes into the batch as a create with ``match``: eManageCRM answers
  ``created``, or ``matched`` with the product that already stands for it (its external
  reference, then one of its SKUs: the engine's order), never a duplicate;
- everything else is handed to the engine as today, as a ``product.resync_requested`` event
  with its snapshot: a product already linked (the engine compares both sides with the link and
  merges; a snapshot older than the link's state is not used, so an edit made after the export
  began is never regressed), a product the file did not give whole, one the mapping refuses or
  whose SKUs repeat (the engine records why).

The results are **settled** (:func:`settle`, pure): a created product, or a matched one whose
synced fields already equal Shopify's and whose external references already name the Shopify
ids, gets its link with the agreed state's fingerprint,
version and both clocks (:func:`syncapp.sync.engine.link_columns`, what the engine records),
so the ``product.created`` notification and any later webhook of the same state find nothing
new: no echo write. A matched product that differs or lacks its references, a conflict or a
refused item goes to the engine (the merge, the references, the dead letter with its reason
are the engine's).

Crash safety: every item's key is the engine's own create key (``create_key`` of the Shopify
product), so a batch re-sent after a crash — whole (the batch key) or cut differently — replays
what was created; the links, the events and the cursor commit together. A link that appeared
meanwhile (the engine handled a webhook of the product) is kept, never overwritten.
"""

from __future__ import annotations

import asyncio
import enum
from collections.abc import Coroutine, Mapping, Sequence
from concurrent.futures import Future
from dataclasses import dataclass, replace
from typing import Any, TypeVar

import structlog
from sqlalchemy import insert, select
from sqlalchemy.orm import Session

from syncapp.connectors.emanage import BatchResult, BatchWrite, EmanageClient
from syncapp.sync.bulk_jsonl import Assembled
from syncapp.sync.catalog import Product, ProductStatus
from syncapp.sync.engine import ORIGIN, Outcomes, link_columns, variant_link_columns
from syncapp.sync.fingerprint import fingerprint
from syncapp.sync.links import batch_key, create_key, fill_ids, with_shopify_refs
from syncapp.sync.mapping import (
    UnmappableProduct,
    emanage_product,
    product_from_emanage,
    product_from_shopify,
)
from syncapp.sync.merge import Side
from syncapp.sync.models import PRODUCT, SyncLink
from syncapp.sync.plan import shared_skus

__all__ = [
    "MAX_BATCH",
    "Routed",
    "Target",
    "batch_writes",
    "emanage_call",
    "record_links",
    "route",
    "run_marker",
    "settle",
    "submit_batch",
]

log = structlog.get_logger(__name__)

MAX_BATCH = 250
"""eManageCRM's limit of items per batch request."""
T = TypeVar("T")


class Target(enum.StrEnum):
    WRITE = "write"  # into the batch
    ENGINE = "engine"  # a resync event for the engine
    DONE = "done"  # linked by this run already (the lines were read again after a restart)


def run_marker(run: str) -> str:
    """The ``last_operation`` of the links a backfill run records itself."""
    return f"backfill/{run}"


@dataclass(frozen=True, slots=True)
class Routed:
    assembled: Assembled
    target: Target
    product: Product | None
    reason: str


def route(ready: Sequence[Assembled], linked: Mapping[str, str | None], run: str) -> list[Routed]:
    """Where each product goes (pure); ``linked`` maps the Shopify gids that have a link to
    the link's ``last_operation``."""
    out: list[Routed] = []
    for a in ready:
        if a.gid in linked:
            if linked[a.gid] == run_marker(run):
                out.append(Routed(a, Target.DONE, None, "linked by this run"))
            else:
                out.append(Routed(a, Target.ENGINE, None, "linked: the engine merges"))
            continue
        if a.snapshot is None:
            out.append(Routed(a, Target.ENGINE, None, "not whole in the export"))
            continue
        try:
            variants = (a.snapshot.get("variants") or {}).get("nodes") or []
            product = product_from_shopify(a.snapshot, variants)
        except (UnmappableProduct, KeyError, TypeError, ValueError):
            out.append(Routed(a, Target.ENGINE, None, "not mappable here"))
            continue
        if shared_skus(product, Side.SHOPIFY):
            out.append(Routed(a, Target.ENGINE, product, "a SKU repeats"))
            continue
        out.append(Routed(a, Target.WRITE, product, "new"))
    return out


def batch_writes(shop: str, currency: str, routed: Sequence[Routed]) -> list[BatchWrite]:
    """The batch items of the routed-to-write products, keyed as the engine's creates."""
    items = []
    for r in routed:
        assert r.product is not None
        items.append(
            BatchWrite(
                idempotency_key=create_key(shop=shop, target="emanage", source_id=r.assembled.gid),
                body=emanage_product(replace(r.product, emanage_id=None), currency=currency),
                match=True,
            )
        )
    return items


def batch_idempotency_key(shop: str, run: str, items: Sequence[BatchWrite]) -> str:
    return batch_key(
        shop=shop, target="emanage", scope=run, item_keys=[i.idempotency_key for i in items]
    )


@dataclass(frozen=True, slots=True)
class Settled:
    """A product to link (``outcome``) or to hand to the engine (``outcome`` None)."""

    gid: str
    outcome: Outcomes | None
    archived: bool
    reason: str


def settle(product: Product, gid: str, result: BatchResult) -> Settled:
    """What a batch result means for the product (pure)."""
    found = result.product
    if result.status not in ("created", "matched") or found is None:
        return Settled(gid, None, False, f"{result.status}: {result.code or ''}")
    there = product_from_emanage(found.body)
    if result.status == "matched" and fingerprint(there) != fingerprint(product):
        return Settled(gid, None, False, f"matched by {result.matched_by}: sides differ")
    agreed = fill_ids(product, shopify=product, emanage=there)
    if result.status == "matched" and with_shopify_refs(there, agreed) != there:
        # Its external references are missing or stale: the engine writes them, once
        # (ADR 0024), and records the link with the version of that write.
        return Settled(gid, None, False, f"matched by {result.matched_by}: references to write")
    outcome = Outcomes(
        shopify_gid=gid,
        emanage_id=found.product_id,
        emanage_version=found.version,
        shopify_updated_at=product.updated_at,
        emanage_updated_at=found.updated_at,
        agreed=agreed,
    )
    # As the engine records it: a create of an archived product leaves the pair archived; a
    # match is two products that exist and agree.
    archived = result.status == "created" and agreed.status is ProductStatus.ARCHIVED
    return Settled(gid, outcome, archived, str(result.status))


def record_links(
    session: Session, shop_id: int, settled: Sequence[Settled], run: str
) -> list[Settled]:
    """Insert the links of ``settled`` products (in the caller's transaction); returns those
    that must go to the engine instead: a link of the product or of its eManageCRM product
    that appeared since the batch was routed (it is the newer truth and is kept)."""
    wanted = [s for s in settled if s.outcome is not None]
    if not wanted:
        return []
    gids = [s.gid for s in wanted]
    eids = [s.outcome.emanage_id for s in wanted if s.outcome and s.outcome.emanage_id]
    taken = session.execute(
        select(SyncLink.shopify_gid, SyncLink.emanage_id).where(
            SyncLink.shop_id == shop_id,
            SyncLink.kind == PRODUCT,
            (SyncLink.shopify_gid.in_(gids)) | (SyncLink.emanage_id.in_(eids)),
        )
    ).all()
    taken_gids = {g for g, _ in taken}
    taken_eids = {e for _, e in taken}
    fresh: list[Settled] = []
    moved: list[Settled] = []
    seen: set[str] = set()
    for s in wanted:
        assert s.outcome is not None
        eid = s.outcome.emanage_id
        if s.gid in taken_gids or eid in taken_eids or eid is None or eid in seen:
            moved.append(replace(s, outcome=None, reason="linked meanwhile"))
            continue
        seen.add(eid)
        fresh.append(s)
    if fresh:
        rows = [
            {
                "shop_id": shop_id,
                "kind": PRODUCT,
                "shopify_gid": s.gid,
                "emanage_id": s.outcome.emanage_id,
                **link_columns(s.outcome, archived=s.archived, operation=run_marker(run)),
            }
            for s in fresh
            if s.outcome is not None
        ]
        # Core inserts (the ORM's bulk path costs more than the rest of a product's record).
        table = SyncLink.metadata.tables[SyncLink.__tablename__]
        connection = session.connection()
        ids = connection.execute(
            insert(table).returning(table.c.id, sort_by_parameter_order=True), rows
        ).scalars()
        variants = []
        for link_id, s in zip(ids, fresh, strict=True):
            assert s.outcome is not None
            assert s.outcome.agreed is not None
            for columns in variant_link_columns(s.outcome.agreed):
                variants.append({"shop_id": shop_id, "parent_id": link_id, **columns})
        if variants:
            connection.execute(insert(table), variants)
    return moved


def _not_on(loop: asyncio.AbstractEventLoop) -> None:
    try:
        running = asyncio.get_running_loop()
    except RuntimeError:
        return
    if running is loop:
        raise RuntimeError("the backfill's step runs in a thread, never on the client's loop")


def emanage_call(loop: asyncio.AbstractEventLoop, call: Coroutine[Any, Any, T]) -> T:
    """Run an eManageCRM client coroutine on ``loop`` (the worker's, where the client lives)
    from the backfill's thread, and wait for it."""
    try:
        _not_on(loop)
    except RuntimeError:
        call.close()
        raise
    return asyncio.run_coroutine_threadsafe(call, loop).result()


async def _send_all(
    client: EmanageClient, *, account_id: str, shop: str, run: str, items: Sequence[BatchWrite]
) -> list[BatchResult]:
    results: list[BatchResult] = []
    for start in range(0, len(items), MAX_BATCH):
        chunk = items[start : start + MAX_BATCH]
        results += await client.batch_products(
            account_id=account_id,
            items=chunk,
            idempotency_key=batch_idempotency_key(shop, run, chunk),
            origin=ORIGIN,
        )
    return results


def submit_batch(
    loop: asyncio.AbstractEventLoop,
    client: EmanageClient,
    *,
    account_id: str,
    shop: str,
    run: str,
    items: Sequence[BatchWrite],
) -> Future[list[BatchResult]]:
    """Send the items (in requests of at most :data:`MAX_BATCH`) on ``loop`` without waiting;
    the future's result is one result per item, in order."""
    _not_on(loop)
    return asyncio.run_coroutine_threadsafe(
        _send_all(client, account_id=account_id, shop=shop, run=run, items=items), loop
    )
