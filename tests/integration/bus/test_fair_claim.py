"""The embedded claim's round-robin over shops (a backlog larger than a batch)."""

from __future__ import annotations

from collections import Counter

from sqlalchemy import insert

from syncapp.bus.embedded import EmbeddedBus, shops_after
from syncapp.bus.models import InboundEvent
from syncapp.store.db import make_session_factory
from tests.integration.bus.conftest import TOPIC, Medium

SHOPS = ("a.myshopify.com", "b.myshopify.com", "c.myshopify.com")


def test_shops_are_visited_round_robin_from_the_cursor(embedded_medium: Medium) -> None:
    """After the cursor to the end, then from the start up to the cursor itself."""
    medium = embedded_medium
    with medium.engine.begin() as conn:
        for shop in SHOPS:
            conn.execute(insert(InboundEvent), medium.rows(shop, ["Product/1"]))
    with make_session_factory(medium.engine)() as session:
        assert shops_after(session, "", 10) == list(SHOPS)
        assert shops_after(session, SHOPS[1], 10) == [SHOPS[2], SHOPS[0], SHOPS[1]]
        assert shops_after(session, SHOPS[1], 2) == [SHOPS[2], SHOPS[0]]
        assert shops_after(session, "z", 10) == list(SHOPS)


def test_a_backlog_is_claimed_in_equal_shares_per_shop(embedded_medium: Medium) -> None:
    """Three shops with 50 events each, batches of 9: three of each shop per batch."""
    medium = embedded_medium
    with medium.engine.begin() as conn:
        for shop in SHOPS:
            conn.execute(insert(InboundEvent), medium.rows(shop, [f"P/{i}" for i in range(50)]))
    consumer = EmbeddedBus(medium.engine, clock=medium.clock).consumer([TOPIC])
    for _ in range(3):
        claimed = consumer.claim_now(9)
        assert Counter(d.shop_domain for d in claimed) == {shop: 3 for shop in SHOPS}
