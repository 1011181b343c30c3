"""A write transaction that holds the shop's lock, on SQLite and PostgreSQL alike.

PostgreSQL: the caller's ``SELECT … FOR UPDATE`` of the shop's row (see :func:`lock_row`)
serialises per shop, so refreshes of different shops run in parallel. SQLite has one writer
at a time: ``BEGIN IMMEDIATE`` takes the database's write lock before the first read, which
serialises every locked section of every process (waiting up to the busy timeout). Either
way, whatever is read after the lock is taken is what the last holder committed.
"""

from __future__ import annotations

from collections.abc import Iterator
from contextlib import contextmanager
from typing import Any

from sqlalchemy import Select
from sqlalchemy.orm import Session, sessionmaker


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


def lock_row(statement: Select[Any]) -> Select[Any]:
    """``statement … FOR UPDATE`` (a no-op on SQLite, which is already locked as a whole)."""
    return statement.with_for_update()
