"""What the sync of one shop looks like from outside, and the settings that steer it: read and
written in short transactions, for the Sync API and the CLI. No network I/O here.

The status joins the sync tables (links, conflicts, settings) with the bus's view of the
shop's events (pending, in flight, dead letters, oldest pending), so an operator sees in one
answer whether changes flow, lag, or pile up.
"""

from __future__ import annotations

from dataclasses import dataclass
from datetime import UTC, datetime

from sqlalchemy import func, select
from sqlalchemy.orm import Session, sessionmaker

from syncapp.bus.operators import status as bus_status
from syncapp.store.locking import locked_transaction
from syncapp.store.models import Shop
from syncapp.sync.models import PRODUCT, VARIANT, SyncConflict, SyncLink, SyncSettings


class UnknownShop(LookupError):
    """No shop of that domain has installed the app."""


@dataclass(frozen=True, slots=True)
class SyncStatus:
    shop: str
    keep_products_synchronized: bool
    linked_products: int
    linked_variants: int
    open_conflicts: int
    last_change_applied_at: datetime | None
    pending_events: int
    in_flight_events: int
    dead_letters: int
    oldest_pending_at: datetime | None


@dataclass(frozen=True, slots=True)
class Conflict:
    id: int
    kind: str
    field: str | None
    shopify_value: object
    emanage_value: object
    winner: str | None
    reason: str
    created_at: datetime
    resolved_at: datetime | None
    shopify_gid: str | None
    emanage_id: str | None


def _aware(value: datetime) -> datetime:
    # SQLite hands back naive datetimes (stored as UTC); PostgreSQL aware ones.
    return value if value.tzinfo is not None else value.replace(tzinfo=UTC)


def _shop_id(session: Session, shop: str) -> int:
    shop_id = session.scalar(select(Shop.id).where(Shop.domain == shop))
    if shop_id is None:
        raise UnknownShop(f"no shop {shop!r} has installed the app")
    return shop_id


def require_shop(sessions: sessionmaker[Session], shop: str) -> None:
    """Raise :class:`UnknownShop` unless ``shop`` has installed the app."""
    with sessions() as session:
        _shop_id(session, shop)


def keeps_products_synchronized(session: Session, shop_id: int) -> bool:
    """The shop's *Keep Products Synchronized* (ON without a settings row)."""
    settings = session.get(SyncSettings, shop_id)
    return True if settings is None else settings.keep_products_synchronized


def sync_status(sessions: sessionmaker[Session], shop: str) -> SyncStatus:
    with sessions() as session:
        shop_id = _shop_id(session, shop)
        links = dict(
            session.execute(
                select(SyncLink.kind, func.count())
                .where(SyncLink.shop_id == shop_id, SyncLink.archived.is_(False))
                .group_by(SyncLink.kind)
            ).all()
        )
        last = session.scalar(
            select(func.max(SyncLink.updated_at)).where(SyncLink.shop_id == shop_id)
        )
        conflicts = session.scalar(
            select(func.count()).where(
                SyncConflict.shop_id == shop_id, SyncConflict.resolved_at.is_(None)
            )
        )
        keep = keeps_products_synchronized(session, shop_id)
    events = bus_status(sessions, per_shop=True, shop=shop)
    oldest = [_aware(s.oldest_pending) for s in events if s.oldest_pending is not None]
    return SyncStatus(
        shop=shop,
        keep_products_synchronized=keep,
        linked_products=int(links.get(PRODUCT, 0)),
        linked_variants=int(links.get(VARIANT, 0)),
        open_conflicts=int(conflicts or 0),
        last_change_applied_at=_aware(last) if last is not None else None,
        pending_events=sum(s.pending for s in events),
        in_flight_events=sum(s.in_flight for s in events),
        dead_letters=sum(s.dead for s in events),
        oldest_pending_at=min(oldest) if oldest else None,
    )


def conflicts(
    sessions: sessionmaker[Session], shop: str, *, open_only: bool = True, limit: int = 100
) -> list[Conflict]:
    """The shop's recorded conflicts, newest first, with the ids of the pair they concern."""
    with sessions() as session:
        shop_id = _shop_id(session, shop)
        query = (
            select(SyncConflict, SyncLink.shopify_gid, SyncLink.emanage_id)
            .outerjoin(SyncLink, SyncLink.id == SyncConflict.link_id)
            .where(SyncConflict.shop_id == shop_id)
            .order_by(SyncConflict.created_at.desc(), SyncConflict.id.desc())
            .limit(limit)
        )
        if open_only:
            query = query.where(SyncConflict.resolved_at.is_(None))
        return [
            Conflict(
                id=c.id,
                kind=c.kind,
                field=c.field,
                shopify_value=c.shopify_value,
                emanage_value=c.emanage_value,
                winner=c.winner,
                reason=c.reason,
                created_at=c.created_at,
                resolved_at=c.resolved_at,
                shopify_gid=gid,
                emanage_id=emanage_id,
            )
            for c, gid, emanage_id in session.execute(query).all()
        ]


def set_keep_products_synchronized(sessions: sessionmaker[Session], shop: str, value: bool) -> bool:
    """Store the setting; True when it changed. Turning it ON starts a backfill (or resumes the
    one in progress), in the same transaction."""
    # Imported here: the backfill reads this module's setting (and the engine's helpers).
    from syncapp.sync.backfill import ensure_backfill

    with locked_transaction(sessions) as session:
        shop_id = _shop_id(session, shop)
        settings = session.get(SyncSettings, shop_id)
        if settings is None:
            settings = SyncSettings(shop_id=shop_id, keep_products_synchronized=True)
            session.add(settings)
        changed = settings.keep_products_synchronized != value
        settings.keep_products_synchronized = value
        if changed and value:
            ensure_backfill(
                session, shop_id=shop_id, shop=shop, reason="keep products synchronized"
            )
        return changed
