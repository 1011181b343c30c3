"""locked_transaction's after-commit actions, on a real SQLite database."""

from __future__ import annotations

from collections.abc import Iterator
from pathlib import Path

import pytest
from sqlalchemy import Engine, select
from sqlalchemy.orm import Session, sessionmaker
from structlog.testing import capture_logs

from syncapp.store.db import make_engine, make_session_factory
from syncapp.store.locking import call_after_commit, locked_transaction
from syncapp.store.migrate import upgrade
from syncapp.store.models import Shop
from tests.probes import write_without_waiting


@pytest.fixture
def engine(tmp_path: Path) -> Iterator[Engine]:
    engine = make_engine(f"sqlite:///{tmp_path / 'x.db'}")
    upgrade(engine)
    yield engine
    engine.dispose()


@pytest.fixture
def sessions(engine: Engine) -> sessionmaker[Session]:
    return make_session_factory(engine)


def test_an_action_runs_after_the_commit_with_no_lock_held(
    engine: Engine, sessions: sessionmaker[Session]
) -> None:
    seen: list[object] = []

    def action() -> None:
        with sessions() as other:
            seen.append(other.scalar(select(Shop.domain)))
        seen.append(write_without_waiting(engine))

    with locked_transaction(sessions) as session:
        session.add(Shop(domain="a.myshopify.com"))
        call_after_commit(session, action)
        assert seen == []
    assert seen == ["a.myshopify.com", "written"]


def test_an_action_does_not_run_when_the_transaction_rolls_back(
    sessions: sessionmaker[Session],
) -> None:
    ran: list[bool] = []

    def failing_work() -> None:
        with locked_transaction(sessions) as session:
            session.add(Shop(domain="a.myshopify.com"))
            call_after_commit(session, lambda: ran.append(True))
            raise RuntimeError("the work failed")

    with pytest.raises(RuntimeError):
        failing_work()
    assert ran == []
    with sessions() as session:
        assert session.scalar(select(Shop.domain)) is None


def test_a_failing_action_is_logged_and_the_rest_still_run(
    sessions: sessionmaker[Session],
) -> None:
    ran: list[str] = []

    def broken() -> None:
        raise ConnectionError("provider unreachable")

    with capture_logs() as logs, locked_transaction(sessions) as session:
        call_after_commit(session, broken)
        call_after_commit(session, lambda: ran.append("second"))
    assert ran == ["second"]
    failed = [e for e in logs if e["event"] == "transaction.after_commit_failed"]
    assert failed
    assert failed[0]["error"] == "ConnectionError: provider unreachable"
