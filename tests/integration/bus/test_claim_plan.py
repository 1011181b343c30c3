"""The embedded claim's queries use the unfinished-key index even before any statistics exist
(a fresh, fast-churning table: measured ~700 ms per claim on PostgreSQL when they did not)."""

from __future__ import annotations

from typing import Any

from sqlalchemy import event, insert

from syncapp.bus.embedded import EmbeddedBus
from syncapp.bus.models import InboundEvent
from tests.integration.bus.conftest import TOPIC, Medium


def test_the_head_of_key_probe_goes_by_the_unfinished_key_index(embedded_medium: Medium) -> None:
    """2,000 pending events, never analysed: the statements a claim sends that ask for a key's
    earlier unfinished event are planned through ix_inbound_events_unfinished_key."""
    medium, engine = embedded_medium, embedded_medium.engine
    rows = medium.rows("a.myshopify.com", [f"Product/{i}" for i in range(2_000)])
    with engine.begin() as conn:
        conn.execute(insert(InboundEvent), rows)
    sent: list[tuple[str, Any]] = []

    def capture(conn: Any, cursor: Any, statement: str, params: Any, *_: Any) -> None:
        if "EXISTS" in statement and not statement.startswith("EXPLAIN"):
            sent.append((statement, params))

    event.listen(engine, "before_cursor_execute", capture)
    try:
        claimed = EmbeddedBus(engine, clock=medium.clock).consumer([TOPIC]).claim_now(32)
    finally:
        event.remove(engine, "before_cursor_execute", capture)
    assert len(claimed) == 32
    assert sent, "the claim sent no head-of-key probe"
    explain = "EXPLAIN " if engine.dialect.name == "postgresql" else "EXPLAIN QUERY PLAN "
    with engine.connect() as conn:
        for statement, params in sent:
            plan = "\n".join(str(r[-1]) for r in conn.exec_driver_sql(explain + statement, params))
            assert "ix_inbound_events_unfinished_key" in plan, plan
