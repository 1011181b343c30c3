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

import os
import uuid
from collections.abc import Callable, Iterator
from contextlib import contextmanager
from dataclasses import dataclass
from datetime import UTC, datetime, timedelta
from typing import Any, cast

import structlog
from sqlalchemy import ColumnElement, CursorResult, Engine, Select, or_, update
from sqlalchemy.orm import InstrumentedAttribute, Session, sessionmaker

from syncapp.store.db import sqlite_write_lock

log = structlog.get_logger("syncapp.store.locking")

_AFTER_COMMIT = "syncapp.after_commit"


def call_after_commit(session: Session, action: Callable[[], None]) -> None:
    """Run ``action`` after ``session``'s :func:`locked_transaction` commits (never if it rolls
    back). The committed work cannot be undone, so an action handles its own failures: one
    that raises anyway is logged and does not fail the caller."""
    session.info.setdefault(_AFTER_COMMIT, []).append(action)


@contextmanager
def locked_transaction(sessions: sessionmaker[Session]) -> Iterator[Session]:
    """A session in a write transaction (SQLite: ``BEGIN IMMEDIATE`` under the writers' flock,
    see :func:`syncapp.store.db.sqlite_write_lock`); commits on success, then runs the actions
    registered with :func:`call_after_commit`, with no lock held."""
    with sessions() as session:
        engine = session.get_bind()
        assert isinstance(engine, Engine)
        with sqlite_write_lock(engine):
            if engine.dialect.name == "sqlite":
                # pysqlite opens transactions lazily (at the first write); begin ourselves so
                # the write lock is held before the reads that decide what to write.
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


@dataclass(frozen=True, slots=True)
class Lease:
    """A compare-and-set lease on one row, held in two of its columns (owner, expiry).

    The way to single-flight work that includes a network call across processes without a lock
    held during the call: take the lease in a short transaction, do the work, store the result
    and release. A holder that dies leaves a lease that simply runs out.
    """

    owner: InstrumentedAttribute[str | None]
    until: InstrumentedAttribute[datetime | None]
    duration: timedelta
    # How often a caller that found the lease taken looks again.
    poll_seconds: float = 0.05

    def take(
        self,
        sessions: sessionmaker[Session],
        row: ColumnElement[bool],
        owner: str,
        *,
        now: datetime | None = None,
    ) -> bool:
        """True when ``owner`` now holds the lease of the row ``row`` selects (``now``: the
        caller's clock, by default the real one)."""
        now = now or datetime.now(UTC)
        with sessions.begin() as session:
            result = session.execute(
                update(self.owner.class_)
                .where(row, or_(self.until.is_(None), self.until < now))
                .values({self.owner: owner, self.until: now + self.duration})
                .execution_options(synchronize_session=False)
            )
            return cast(CursorResult[Any], result).rowcount == 1

    def release(
        self, sessions: sessionmaker[Session], row: ColumnElement[bool], owner: str
    ) -> None:
        """Give the lease up, if ``owner`` still holds it."""
        with sessions.begin() as session:
            session.execute(
                update(self.owner.class_)
                .where(row, self.owner == owner)
                .values({self.owner: None, self.until: None})
                .execution_options(synchronize_session=False)
            )


def lease_owner() -> str:
    """A lease owner id unique to one call: process id and a random part (for operators)."""
    return f"{os.getpid()}-{uuid.uuid4().hex[:16]}"


def lock_row(statement: Select[Any]) -> Select[Any]:
    """``statement … FOR UPDATE`` (a no-op on SQLite, which is already locked as a whole)."""
    return statement.with_for_update()
