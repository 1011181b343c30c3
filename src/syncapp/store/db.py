"""Engines and sessions for SQLite (embedded default) and PostgreSQL (production).

SQLite runs in WAL mode with ``synchronous=FULL``: a commit is on disk when it returns, which
is what "durably recorded" means for a webhook we have acknowledged. Writers wait on a busy
timeout rather than failing when another process holds the write lock.

SQLite's busy handler polls (sleeping up to 100 ms between tries), so a writer that keeps coming
back — the worker, one short transaction after another — can starve one that polls. The busiest
writers (webhook ingest, and every ``locked_transaction``: the worker, install, token storage)
therefore first take an exclusive ``flock`` on ``<database>.write-lock``
(:func:`sqlite_write_lock`): the kernel wakes a waiter the moment the holder lets go.
"""

from __future__ import annotations

import fcntl
import threading
from collections.abc import Iterator
from contextlib import contextmanager
from pathlib import Path
from typing import Any

from sqlalchemy import Engine, create_engine, event, text
from sqlalchemy.engine import make_url
from sqlalchemy.orm import Session, sessionmaker

from syncapp.store.files import private_file


def normalize_url(url: str) -> str:
    """Use the psycopg 3 driver for ``postgresql://`` URLs."""
    parsed = make_url(url)
    if parsed.drivername == "postgresql":
        parsed = parsed.set(drivername="postgresql+psycopg")
    return parsed.render_as_string(hide_password=False)


SQLITE_BUSY_TIMEOUT_MS = 10_000


def _sqlite_pragmas(dbapi_conn: Any, _record: Any) -> None:
    cur = dbapi_conn.cursor()
    cur.execute("PRAGMA journal_mode=WAL")
    cur.execute("PRAGMA synchronous=FULL")
    cur.execute(f"PRAGMA busy_timeout={SQLITE_BUSY_TIMEOUT_MS}")
    cur.execute("PRAGMA foreign_keys=ON")
    cur.close()


def make_engine(url: str, **kwargs: Any) -> Engine:
    """Create the engine for ``url`` with the settings each backend needs."""
    url = normalize_url(url)
    parsed = make_url(url)
    if parsed.get_backend_name() == "sqlite":
        if parsed.database and parsed.database != ":memory:":
            # 0600 before SQLite opens it: its -wal and -shm files take the database's mode.
            database = Path(parsed.database)
            private_file(database)
            private_file(Path(f"{database}.write-lock"))
        engine = create_engine(url, **kwargs)
        event.listen(engine, "connect", _sqlite_pragmas)
        return engine
    kwargs.setdefault("pool_pre_ping", True)
    kwargs.setdefault("pool_size", 10)
    return create_engine(url, **kwargs)


def make_session_factory(engine: Engine) -> sessionmaker[Session]:
    return sessionmaker(engine, expire_on_commit=False)


def ping(engine: Engine) -> None:
    """Raise if the database does not answer a trivial query."""
    with engine.connect() as conn:
        conn.execute(text("SELECT 1"))


def sqlite_write_lock_path(engine: Engine) -> Path | None:
    """``<database>.write-lock`` for a file-backed SQLite engine, else None."""
    if engine.dialect.name != "sqlite" or engine.url.database in (None, "", ":memory:"):
        return None
    return Path(f"{engine.url.database}.write-lock")


_held = threading.local()


@contextmanager
def sqlite_write_lock(engine: Engine) -> Iterator[None]:
    """Hold the writers' ``flock`` of ``engine``'s SQLite file (blocking); a no-op elsewhere.

    Re-entrant within a thread: flock is per open file, so a nested acquisition on a second
    descriptor would wait for the thread itself.
    """
    path = sqlite_write_lock_path(engine)
    if path is None:
        yield
        return
    depth: dict[Path, int] = _held.__dict__.setdefault("depth", {})
    if depth.get(path, 0):
        depth[path] += 1
        try:
            yield
        finally:
            depth[path] -= 1
        return
    with path.open("a") as handle:
        fcntl.flock(handle, fcntl.LOCK_EX)
        depth[path] = 1
        try:
            yield
        finally:
            depth[path] = 0
            fcntl.flock(handle, fcntl.LOCK_UN)
