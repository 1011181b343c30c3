"""The reconcile sweep: every ``SYNCAPP_SYNC_RECONCILE_INTERVAL_SECONDS``, each synchronized
shop is searched for products changed since the last sweep, so a lost webhook or notification
is caught (pitfall 7). Shopify: ``updated_at:>=<watermark>`` (changed_since); eManageCRM:
``updatedSince`` (``list_products``, when the client has it).

``updated_at`` has second granularity (pitfall 9), so the watermark is **inclusive**: the sweep
re-reads the products of the watermark's second, and two edits in one second are both seen.
What was re-read is deduped: a product whose clock is older than its link's agreed one publishes
nothing; otherwise it is read and publishes a ``product.resync-requested`` only when its
fingerprint differs from the link's agreed one (or it has no link); a product with a resync
already waiting on the bus is left to it. Each page's events and the advanced watermark (the
newest ``updatedAt`` of the page: products come oldest first) commit in one transaction, in the
cursors ``reconcile_shopify`` and ``reconcile_emanage``.
"""

from __future__ import annotations

import asyncio
from collections.abc import Iterator, Sequence
from datetime import UTC, datetime
from typing import Any

import structlog
from sqlalchemy import select
from sqlalchemy.orm import Session, sessionmaker

from syncapp.bus.interface import APP
from syncapp.bus.models import InboundEvent
from syncapp.bus.outbox import new_event, publish
from syncapp.store.locking import locked_transaction
from syncapp.store.models import Shop
from syncapp.sync.events import RECONCILE_REQUESTED, RESYNC_REQUESTED, product_object
from syncapp.sync.events import request_resync as publish_resync
from syncapp.sync.fingerprint import fingerprint
from syncapp.sync.mapping import product_from_emanage, product_from_shopify
from syncapp.sync.models import PRODUCT, SyncCursor, SyncLink, SyncSettings
from syncapp.sync.runtime import SyncRuntime

__all__ = ["EMANAGE_CURSOR", "SHOPIFY_CURSOR", "request_due_reconciles", "sweep"]

log = structlog.get_logger(__name__)

SHOPIFY_CURSOR = "reconcile_shopify"
EMANAGE_CURSOR = "reconcile_emanage"
_PAGE = 50


def _parse(value: str) -> datetime:
    parsed = datetime.fromisoformat(value.replace("Z", "+00:00"))
    return parsed if parsed.tzinfo else parsed.replace(tzinfo=UTC)


def _iso(value: datetime) -> str:
    return value.astimezone(UTC).replace(microsecond=0).isoformat().replace("+00:00", "Z")


def _aware(value: datetime | None) -> datetime | None:
    if value is None:
        return None
    return value if value.tzinfo else value.replace(tzinfo=UTC)


def request_due_reconciles(
    sessions: sessionmaker[Session], *, interval: float, now: float | None = None
) -> int:
    """Publish ``reconcile.requested`` for every shop that keeps products synchronized and
    whose backfill is done, once per interval: the event id names the interval's slot, so two
    workers ticking at once publish it once. Returns how many were published."""
    slot = int((now if now is not None else datetime.now(UTC).timestamp()) // interval)
    with locked_transaction(sessions) as session:
        off = select(SyncSettings.shop_id).where(SyncSettings.keep_products_synchronized.is_(False))
        shops = session.execute(
            select(Shop.id, Shop.domain)
            .join(SyncCursor, SyncCursor.shop_id == Shop.id)
            .where(
                SyncCursor.name == "backfill",
                SyncCursor.done.is_(True),
                Shop.uninstalled_at.is_(None),
                Shop.id.not_in(off),
            )
        ).all()
        ids = {f"{domain}/reconcile/{slot}": domain for _, domain in shops}
        existing = set(
            session.scalars(
                select(InboundEvent.delivery_id).where(
                    InboundEvent.source == APP, InboundEvent.delivery_id.in_(list(ids))
                )
            )
        )
        for event_id, domain in ids.items():
            if event_id in existing:
                continue
            publish(
                session,
                new_event(
                    RECONCILE_REQUESTED,
                    shop_domain=domain,
                    obj="reconcile",
                    data={"shop_domain": domain, "slot": slot},
                    event_id=event_id,
                ),
            )
    return len(ids) - len(existing)


# ---------------------------------------------------------------- shared


def _shop_id(session: Session, shop: str) -> int | None:
    return session.scalar(select(Shop.id).where(Shop.domain == shop))


def _start_watermark(sessions: sessionmaker[Session], shop: str, name: str) -> tuple[int, str]:
    """The cursor's watermark; a first sweep starts when the backfill's export was requested
    (what changed after the export began may be missing from it), else now."""
    with sessions() as session:
        shop_id = _shop_id(session, shop)
        if shop_id is None:
            raise LookupError(shop)
        cursor = session.get(SyncCursor, (shop_id, name))
        if cursor is not None and cursor.position.get("watermark"):
            return shop_id, str(cursor.position["watermark"])
        backfill = session.get(SyncCursor, (shop_id, "backfill"))
        if backfill is not None and backfill.position.get("requested_at"):
            # Whole seconds (the search's granularity), rounded down: still inclusive.
            return shop_id, _iso(_parse(str(backfill.position["requested_at"])))
    return shop_id, _iso(datetime.now(UTC))


def _product_links(
    session: Session, shop_id: int, column: Any, ids: Sequence[str]
) -> dict[str, SyncLink]:
    """The shop's product links whose ``column`` (a side's id) is one of ``ids``, by that id."""
    rows = session.scalars(
        select(SyncLink).where(
            SyncLink.shop_id == shop_id, SyncLink.kind == PRODUCT, column.in_(list(ids))
        )
    )
    return {str(getattr(link, column.key)): link for link in rows}


def _waiting_keys(session: Session, shop: str, keys: Sequence[str]) -> set[str]:
    """Partition keys of ``keys`` that already have a resync waiting on the bus."""
    return set(
        session.scalars(
            select(InboundEvent.partition_key).where(
                InboundEvent.source == APP,
                InboundEvent.topic == RESYNC_REQUESTED.name,
                InboundEvent.status.in_(("pending", "processing")),
                InboundEvent.partition_key.in_([f"{shop}/{k}" for k in keys]),
            )
        )
    )


def _advance(
    session: Session, shop_id: int, name: str, watermark: str, *, swept: int, published: int
) -> None:
    cursor = session.get(SyncCursor, (shop_id, name))
    if cursor is None:
        cursor = SyncCursor(shop_id=shop_id, name=name, position={}, done=False)
        session.add(cursor)
    old = cursor.position or {}
    cursor.position = {
        **old,
        "watermark": watermark,
        "swept_at": _iso(datetime.now(UTC)),
        "swept": int(str(old.get("swept") or 0)) + swept,
        "published": int(str(old.get("published") or 0)) + published,
    }


def _pages(items: Iterator[dict[str, Any]], size: int) -> Iterator[list[dict[str, Any]]]:
    page: list[dict[str, Any]] = []
    for item in items:
        page.append(item)
        if len(page) >= size:
            yield page
            page = []
    if page:
        yield page


# ---------------------------------------------------------------- Shopify


def sweep_shopify(rt: SyncRuntime, shop: str) -> int:
    """One Shopify sweep of ``shop``; returns how many resyncs it published."""
    sessions = rt.shops.sessions
    shop_id, watermark = _start_watermark(sessions, shop, SHOPIFY_CURSOR)
    client = rt.products(shop)
    total = 0
    for page in _pages(client.changed_since(watermark), _PAGE):
        gids = [str(p["id"]) for p in page]
        with sessions() as session:
            links = _product_links(session, shop_id, SyncLink.shopify_gid, gids)
            waiting = _waiting_keys(session, shop, [product_object(shopify_gid=g) for g in gids])
        publish_now: list[tuple[str, dict[str, Any] | None]] = []
        for item in page:
            gid = str(item["id"])
            if f"{shop}/{product_object(shopify_gid=gid)}" in waiting:
                continue
            link = links.get(gid)
            agreed_at = _aware(link.shopify_updated_at) if link is not None else None
            if agreed_at is not None and _parse(str(item["updatedAt"])) < agreed_at:
                continue  # the engine has agreed on a newer state already
            read = client.read_product(gid)
            if read is None:
                continue  # deleted since: its products/delete webhook (or the engine) handles it
            node, variants = read
            if link is not None and link.shopify_fingerprint == fingerprint(
                product_from_shopify(node, variants)
            ):
                continue
            publish_now.append((gid, {**node, "variants": {"nodes": variants}}))
        newest = max((str(p["updatedAt"]) for p in page), key=_parse)
        with locked_transaction(sessions) as session:
            for gid, snapshot in publish_now:
                publish_resync(
                    session,
                    shop_domain=shop,
                    reason="reconcile",
                    shopify_gid=gid,
                    snapshot=snapshot,
                )
            _advance(
                session,
                shop_id,
                SHOPIFY_CURSOR,
                max(newest, watermark, key=_parse),
                swept=len(page),
                published=len(publish_now),
            )
        total += len(publish_now)
    if total:
        log.info("sync.reconcile_published", shop=shop, side="shopify", published=total)
    return total


# ---------------------------------------------------------------- eManageCRM


def _emanage_account(session: Session, shop_id: int) -> str | None:
    from syncapp.onboarding.models import EmanageAccount

    return session.scalar(
        select(EmanageAccount.account_id).where(EmanageAccount.shop_id == shop_id)
    )


def _emanage_page_plan(rt: SyncRuntime, shop: str, shop_id: int, items: Sequence[Any]) -> list[str]:
    """The eManageCRM products of a page that need a resync (short read transaction)."""
    ids = [str(i.product_id) for i in items]
    with rt.shops.sessions() as session:
        links = _product_links(session, shop_id, SyncLink.emanage_id, ids)
        waiting = _waiting_keys(session, shop, [product_object(emanage_id=i) for i in ids])
    out = []
    for item, ident in zip(items, ids, strict=True):
        if f"{shop}/{product_object(emanage_id=ident)}" in waiting:
            continue
        link = links.get(ident)
        version = link.emanage_version if link is not None else None
        if version is not None and item.version <= version:
            continue  # the engine agreed on this version (or a newer one) already
        if link is not None and link.emanage_fingerprint is not None:
            try:
                if fingerprint(product_from_emanage(item.body)) == link.emanage_fingerprint:
                    continue
            except (KeyError, ValueError, TypeError):
                pass  # not mappable here: the engine reads it and says why
        out.append(ident)
    return out


def _emanage_page_commit(
    rt: SyncRuntime, shop: str, shop_id: int, ids: Sequence[str], watermark: str, swept: int
) -> None:
    with locked_transaction(rt.shops.sessions) as session:
        for ident in ids:
            publish_resync(session, shop_domain=shop, reason="reconcile", emanage_id=ident)
        _advance(session, shop_id, EMANAGE_CURSOR, watermark, swept=swept, published=len(ids))


async def sweep_emanage(rt: SyncRuntime, shop: str) -> int:
    """One eManageCRM sweep of ``shop`` through ``EmanageClient.list_products(updated_since=)``
    (inclusive to the second; pages in (updatedAt, productId) order); returns how many
    resyncs it published (0 without an eManageCRM client or account)."""
    if rt.emanage is None:
        return 0
    sessions = rt.shops.sessions
    shop_id, watermark = await asyncio.to_thread(_start_watermark, sessions, shop, EMANAGE_CURSOR)

    def account() -> str | None:
        with sessions() as session:
            return _emanage_account(session, shop_id)

    account_id = await asyncio.to_thread(account)
    if account_id is None:
        return 0
    total = 0
    after: str | None = None
    since = _parse(watermark)
    while True:
        page = await rt.emanage.list_products(
            account_id=account_id, updated_since=since, after=after, limit=100
        )
        if not page.items:
            break
        ids = await asyncio.to_thread(_emanage_page_plan, rt, shop, shop_id, page.items)
        newest = max([watermark, *(_iso(i.updated_at) for i in page.items)], key=_parse)
        await asyncio.to_thread(
            _emanage_page_commit, rt, shop, shop_id, ids, newest, len(page.items)
        )
        watermark = newest
        total += len(ids)
        after = page.next
        if not after:
            break
    if total:
        log.info("sync.reconcile_published", shop=shop, side="emanage", published=total)
    return total


async def sweep(rt: SyncRuntime, shop: str) -> int:
    """Both sides' sweeps of ``shop``; returns how many resyncs were published."""
    shopify = await asyncio.to_thread(sweep_shopify, rt, shop)
    return shopify + await sweep_emanage(rt, shop)
