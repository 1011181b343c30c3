"""The doorbell (docs/adr/0025): rung by the outbox's commit, heard by every listener, and on
SQLite a listener that died is forgotten by the next ring."""

from __future__ import annotations

import os
from pathlib import Path

import pytest

from syncapp.bus.doorbell import doorbell_dir, listen, ring
from syncapp.bus.envelope import EventType
from syncapp.bus.outbox import new_event, publish
from syncapp.store.db import make_engine, make_session_factory
from syncapp.store.migrate import upgrade

pytestmark = pytest.mark.anyio

HAPPENED = EventType("com.emanagecrm.syncapp.test.rang.v1", "A test event.", {"type": "object"})


async def test_a_publish_rings_every_listener_when_it_commits(database_url: str) -> None:
    """Two listeners (two consumers' doorbells); a session publishes and commits: both hear
    it. ``wait``'s 10 s is an upper bound, it returns at the ring."""
    engine = make_engine(database_url)
    upgrade(engine)
    listeners = [await listen(engine) for _ in range(2)]
    try:
        for listener in listeners:
            await listener.wait(0)  # a fresh listener starts rung (look once more): used up
        with make_session_factory(engine).begin() as session:
            publish(session, new_event(HAPPENED, shop_domain="a.myshopify.com", obj="T/1", data={}))
        for listener in listeners:
            assert await listener.wait(10.0)
    finally:
        for listener in listeners:
            await listener.close()
        engine.dispose()


async def test_a_ring_forgets_sqlite_listeners_whose_process_is_gone(tmp_path: Path) -> None:
    """A name registered by a process that died (nothing bound to it) is removed by the next
    ring; a closed listener removes its own; the living one still hears the ring."""
    engine = make_engine(f"sqlite:///{tmp_path / 'bus.db'}")
    directory = doorbell_dir(engine)
    assert directory is not None
    living, closing = await listen(engine), await listen(engine)
    assert len(os.listdir(directory)) == 2
    dead = directory / "999999-0123456789abcdef"
    dead.touch()
    await closing.close()
    try:
        await living.wait(0)
        ring(engine)
        assert await living.wait(10.0)
        assert not dead.exists()
        assert len(os.listdir(directory)) == 1
    finally:
        await living.close()
        engine.dispose()
    assert os.listdir(directory) == []
