"""A write transaction that holds the shop's lock, on SQLite and PostgreSQL alike.

PostgreSQL: the caller's ``SELECT … FOR UPDATE`` of the shop's row (see :func:`lock_row`)
serialises per shop, so refreshes of different shops run in parallel. SQLite has one writer
at a time: ``BEGIN IMMEDIATE`` takes the database's write lock before the first read, which
serialises every locked section of every process (waiting up to the busy timeout). Either
way, whatever is read after the lock is taken is what the last holder committed.

Network calls do not belong inside: on SQLite the lock stalls every writer of every process
(the webhook ingest included) for as long as it is held. Work that must follow the commit —
revoking a grant at a provider, say — is registered with :func:`call_after_commit` and runs once
the transaction has committed, with no lock held.
"""

from __future__ import annotations

from collections.abc import Callable, Iterator
from contextlib import contextmanager
from typing import Any

import structlog
from sqlalchemy import Select
from sqlalchemy.orm import Session, sessionmaker

log = structlog.get_logger("syncapp.shops.locking")

_AFTER_COMMIT = "syncapp.after_commit"


def call_after_commit(session: Session, action: Callable[[], None]) -> None:
    """Run ``action`` after ``session``'s :func:`locked_transaction` commits (never if it rolls
    back). The committed work cannot be undone, so an action handles its own failures: one
    that raises anyway is logged and does not fail the caller."""
    session.info.setdefault(_AFTER_COMMIT, []).append(action)


@contextmanager
def locked_transaction(sessions: sessionmaker[Session]) -> Iterator[Session]:
    """A session in a write transaction (SQLite: ``BEGIN IMMEDIATE``); commits on success."""
    with sessions() as session:
        if session.get_bind().dialect.name == "sqlite":
            # pysqlite opens transactions lazily (at the first write); begin ourselves so the
            # write lock is held before the reads that decide what to write.
            session.connection().exec_driver_sql("BEGIN IMMEDIATE")
        try:
            yield session
            session.commit()
        except BaseException:
            session.rollback()
            raise
        for action in session.info.pop(_AFTER_COMMIT, []):
            try:
                action()
            except Exception as exc:
                log.error("transaction.after_commit_failed", error=f"{type(exc).__name__}: {exc}")


def lock_row(statement: Select[Any]) -> Select[Any]:
    """``statement … FOR UPDATE`` (a no-op on SQLite, which is already locked as a whole)."""
    return statement.with_for_update()
