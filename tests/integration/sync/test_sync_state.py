"""The sync engine's state tables on a real database (SQLite and PostgreSQL): one link per
pair and side, settings that default to syncing products, and everything gone with the shop."""

from __future__ import annotations

from collections.abc import Iterator

import pytest
from sqlalchemy import Engine, delete, select, text
from sqlalchemy.exc import IntegrityError
from sqlalchemy.orm import Session, sessionmaker

from syncapp.store.db import make_engine, make_session_factory
from syncapp.store.migrate import upgrade
from syncapp.store.models import Shop
from syncapp.sync.models import (
    PRODUCT,
    VARIANT,
    SyncConflict,
    SyncCursor,
    SyncLink,
    SyncSettings,
)


@pytest.fixture
def engine(database_url: str) -> Iterator[Engine]:
    engine = make_engine(database_url)
    upgrade(engine)
    yield engine
    engine.dispose()


@pytest.fixture
def sessions(engine: Engine) -> sessionmaker[Session]:
    return make_session_factory(engine)


def _shop(sessions: sessionmaker[Session], domain: str = "links.myshopify.com") -> int:
    with sessions.begin() as session:
        shop = Shop(domain=domain)
        session.add(shop)
        session.flush()
        return shop.id


def test_a_shopify_object_is_linked_once_per_shop(sessions: sessionmaker[Session]) -> None:
    """Two links for one Shopify product of one shop are refused: a retried create finds the
    first; another shop may link the same gid (ids are per shop)."""
    shop, other = _shop(sessions), _shop(sessions, "other.myshopify.com")
    gid = "gid://shopify/Product/1"
    with sessions.begin() as session:
        session.add(SyncLink(shop_id=shop, kind=PRODUCT, shopify_gid=gid, emanage_id="P1"))
        session.add(SyncLink(shop_id=other, kind=PRODUCT, shopify_gid=gid, emanage_id="P1"))
    with pytest.raises(IntegrityError), sessions.begin() as session:
        session.add(SyncLink(shop_id=shop, kind=PRODUCT, shopify_gid=gid, emanage_id="P2"))
    with pytest.raises(IntegrityError), sessions.begin() as session:
        session.add(SyncLink(shop_id=shop, kind=PRODUCT, shopify_gid="gid://x/2", emanage_id="P1"))
    with sessions() as session:
        assert session.scalar(select(SyncLink.emanage_id).where(SyncLink.shop_id == shop)) == "P1"


def test_links_in_flight_on_one_side_do_not_collide(sessions: sessionmaker[Session]) -> None:
    """While creates are in flight the other side's id is empty: many such links may exist."""
    shop = _shop(sessions)
    with sessions.begin() as session:
        for n in range(3):
            session.add(SyncLink(shop_id=shop, kind=PRODUCT, shopify_gid=f"gid://p/{n}"))
            session.add(SyncLink(shop_id=shop, kind=PRODUCT, emanage_id=f"E{n}"))
    with sessions() as session:
        assert len(session.scalars(select(SyncLink)).all()) == 6


def test_settings_default_to_keeping_products_synchronized(
    sessions: sessionmaker[Session], engine: Engine
) -> None:
    """A row written without the flag (as a plain SQL insert would) has it ON."""
    shop = _shop(sessions)
    with engine.begin() as conn:
        conn.execute(
            text("INSERT INTO sync_settings (shop_id, updated_at) VALUES (:id, :now)"),
            {"id": shop, "now": "2026-12-07 00:00:00+00:00"},
        )
    with sessions() as session:
        assert session.get(SyncSettings, shop).keep_products_synchronized is True  # type: ignore[union-attr]


def test_everything_of_a_shop_goes_with_it(sessions: sessionmaker[Session]) -> None:
    """shop/redact deletes the shop row; its links, conflicts, cursors and settings follow."""
    shop, other = _shop(sessions), _shop(sessions, "stays.myshopify.com")
    for owner in (shop, other):
        with sessions.begin() as session:
            product = SyncLink(shop_id=owner, kind=PRODUCT, shopify_gid="gid://p/1")
            session.add(product)
            session.flush()
            variant = SyncLink(
                shop_id=owner, kind=VARIANT, parent_id=product.id, shopify_gid="gid://v/1"
            )
            session.add(variant)
            session.flush()
            session.add(SyncConflict(shop_id=owner, link_id=variant.id, kind="field", reason="x"))
            session.add(SyncCursor(shop_id=owner, name="backfill", position={"line": 7}))
            session.add(SyncSettings(shop_id=owner, keep_products_synchronized=False))
    with sessions.begin() as session:
        session.execute(delete(Shop).where(Shop.id == shop))
    with sessions() as session:
        for model in (SyncLink, SyncConflict, SyncCursor, SyncSettings):
            owners = set(session.scalars(select(model.shop_id)))
            assert owners == {other}, model.__tablename__
        cursor = session.get(SyncCursor, (other, "backfill"))
        assert cursor is not None
        assert cursor.position == {"line": 7}
