"""The bus's doorbell: an idle consumer (or relay) hears of a new event at once, not at its next
poll (docs/adr/0024).

Whoever makes an event claimable rings after its commit, in one of two ways: a session that
stored an event is marked with :func:`ring_on_commit` (the outbox's :func:`publish`, a replay, a
hand-back), and the hooks below ring when that session commits; the inbox, which writes with
Core and raw cursors, calls :func:`ring_in` inside its transaction (PostgreSQL) or :func:`ring`
after its commit (SQLite). Domains never ring themselves.

* **PostgreSQL**: ``NOTIFY syncapp_bus`` inside the storing transaction, which the server
  delivers if and only if the transaction commits; each listener holds a ``LISTEN`` connection.
* **SQLite** (a file): each listener binds a Linux *abstract* unix datagram socket (no file, no
  path-length limit, gone with its process) and registers its name as an empty file in
  ``<database>.doorbell/``; a ring sends one empty datagram to every registered name and
  removes the entries nobody is bound to any more (a process that died).

Polling stays the fallback and the only mechanism elsewhere (an in-memory SQLite, a platform
without abstract sockets): a ring lost — a listener reconnecting, a full socket buffer — costs
one poll interval, never an event. A spurious ring costs one empty claim.
"""

from __future__ import annotations

import asyncio
import atexit
import contextlib
import os
import socket
import threading
import uuid
from pathlib import Path

import structlog
from sqlalchemy import Connection, Engine, event
from sqlalchemy.orm import Session

log = structlog.get_logger("syncapp.bus.doorbell")

CHANNEL = "syncapp_bus"
NOTIFY = f"NOTIFY {CHANNEL}"
LISTEN = f"LISTEN {CHANNEL}"
_RING = "syncapp.bus.ring"
_PREFIX = b"\0syncapp-doorbell-"


def doorbell_dir(engine: Engine) -> Path | None:
    """``<database>.doorbell`` for a file-backed SQLite engine, else None."""
    if engine.dialect.name != "sqlite":
        return None
    database = engine.url.database
    if not database or database == ":memory:" or database.startswith("file:"):
        return None
    return Path(f"{database}.doorbell")


# --- ringing --------------------------------------------------------------------------------


def ring_on_commit(session: Session) -> None:
    """Ring when ``session``'s transaction commits (never if it rolls back)."""
    session.info[_RING] = True


def ring_in(connection: Connection) -> None:
    """Ring from inside ``connection``'s transaction: on PostgreSQL a ``NOTIFY`` delivered at
    its commit; on SQLite nothing (the caller calls :func:`ring` once it has committed)."""
    if connection.dialect.name == "postgresql":
        connection.exec_driver_sql(NOTIFY)


@event.listens_for(Session, "before_commit")
def _notify_before_commit(session: Session) -> None:
    if session.info.get(_RING) and _dialect(session) == "postgresql":
        session.connection().exec_driver_sql(NOTIFY)


@event.listens_for(Session, "after_commit")
def _ring_after_commit(session: Session) -> None:
    if session.info.pop(_RING, False):
        bind = session.get_bind()
        if isinstance(bind, Engine) and bind.dialect.name == "sqlite":
            ring(bind)


@event.listens_for(Session, "after_rollback")
def _forget_on_rollback(session: Session) -> None:
    session.info.pop(_RING, None)


def _dialect(session: Session) -> str:
    return session.get_bind().dialect.name


_sender: socket.socket | None = None
_sender_lock = threading.Lock()


def _send_socket() -> socket.socket:
    global _sender
    with _sender_lock:
        if _sender is None:
            sender = socket.socket(socket.AF_UNIX, socket.SOCK_DGRAM)
            sender.setblocking(False)
            atexit.register(sender.close)
            _sender = sender
        return _sender


def ring(engine: Engine) -> None:
    """Ring every listener of ``engine``'s database now (after a commit). Never raises: a ring
    that fails is a ring lost, which polling covers."""
    try:
        if engine.dialect.name == "postgresql":
            with engine.connect() as conn:
                conn.exec_driver_sql(NOTIFY)
                conn.commit()
            return
        directory = doorbell_dir(engine)
        if directory is None:
            return
        try:
            names = os.listdir(directory)
        except FileNotFoundError:
            return  # nobody has ever listened
        sender = _send_socket()
        for name in names:
            try:
                sender.sendto(b"", _PREFIX + name.encode())
            except ConnectionRefusedError:  # its process is gone: forget it
                with contextlib.suppress(FileNotFoundError):
                    (directory / name).unlink()
            except BlockingIOError:
                pass  # its buffer is full of rings it has not read yet: it is awake
    except Exception as exc:
        log.warning("bus.doorbell_ring_failed", error=f"{type(exc).__name__}: {exc}")


# --- listening ------------------------------------------------------------------------------


class Listener:
    """One waiter's end of the doorbell. :meth:`wait` returns at a ring (rings that came
    since the last return included) or after the timeout."""

    def __init__(self) -> None:
        self._rung = asyncio.Event()

    async def wait(self, seconds: float) -> bool:
        """True if rung (the ring is used up), False after ``seconds``."""
        if not self._rung.is_set():
            with contextlib.suppress(TimeoutError):
                await asyncio.wait_for(self._rung.wait(), timeout=seconds)
        rung = self._rung.is_set()
        self._rung.clear()
        return rung

    async def close(self) -> None:
        return None


class SocketListener(Listener):
    """SQLite: an abstract unix datagram socket registered in ``<database>.doorbell/``."""

    def __init__(self, directory: Path) -> None:
        super().__init__()
        self._directory = directory
        self._name = f"{os.getpid()}-{uuid.uuid4().hex}"
        directory.mkdir(mode=0o700, exist_ok=True)
        self._socket = socket.socket(socket.AF_UNIX, socket.SOCK_DGRAM)
        try:
            self._socket.bind(_PREFIX + self._name.encode())
            self._socket.setblocking(False)
            (directory / self._name).touch(mode=0o600)
        except BaseException:
            self._socket.close()
            raise
        self._loop = asyncio.get_running_loop()
        self._loop.add_reader(self._socket.fileno(), self._readable)
        self._rung.set()  # anything stored before it listened: the caller looks once more

    def _readable(self) -> None:
        with contextlib.suppress(BlockingIOError, InterruptedError):
            while True:
                self._socket.recv(64)
        self._rung.set()

    async def close(self) -> None:
        with contextlib.suppress(Exception):
            self._loop.remove_reader(self._socket.fileno())
        self._socket.close()
        with contextlib.suppress(FileNotFoundError):
            (self._directory / self._name).unlink()


class PostgresListener(Listener):
    """PostgreSQL: a ``LISTEN`` connection of its own, reconnected when it fails."""

    def __init__(self, dsn: str) -> None:
        super().__init__()
        self._dsn = dsn
        self._listening = asyncio.Event()
        self._task = asyncio.create_task(self._listen(), name="bus-doorbell")

    async def started(self, seconds: float) -> bool:
        """Wait until the ``LISTEN`` is in place (or ``seconds``); whether it is."""
        with contextlib.suppress(TimeoutError):
            await asyncio.wait_for(self._listening.wait(), timeout=seconds)
        return self._listening.is_set()

    async def _listen(self) -> None:
        import psycopg

        while True:
            try:
                conn = await psycopg.AsyncConnection.connect(
                    self._dsn, autocommit=True, connect_timeout=10
                )
                try:
                    await conn.execute(LISTEN)
                    self._listening.set()
                    self._rung.set()  # rings may have been missed while not listening
                    async for _ in conn.notifies():
                        self._rung.set()
                finally:
                    self._listening.clear()
                    await conn.close()
            except asyncio.CancelledError:
                raise
            except Exception as exc:  # polling covers the gap; try again shortly
                log.warning("bus.doorbell_listen_failed", error=f"{type(exc).__name__}: {exc}")
                await asyncio.sleep(1.0)

    async def close(self) -> None:
        self._task.cancel()
        with contextlib.suppress(asyncio.CancelledError):
            await self._task


async def listen(engine: Engine) -> Listener:
    """A listener on ``engine``'s database (call on the running loop); a plain timer where the
    database has no doorbell, or when it cannot be set up (polling alone)."""
    try:
        if engine.dialect.name == "postgresql":
            url = engine.url.set(drivername="postgresql")
            listener = PostgresListener(url.render_as_string(hide_password=False))
            await listener.started(5.0)
            return listener
        directory = doorbell_dir(engine)
        if directory is not None:
            return SocketListener(directory)
    except Exception as exc:
        log.warning("bus.doorbell_unavailable", error=f"{type(exc).__name__}: {exc}")
    return Listener()
