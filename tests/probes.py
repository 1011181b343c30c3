"""Probes of the database from outside the code under test."""

from __future__ import annotations

from dataclasses import dataclass, field, fields

import httpx
from sqlalchemy import Engine, update
from sqlalchemy.exc import DBAPIError

from syncapp.shops.runtime import ShopsRuntime
from syncapp.store.models import Connection


def write_without_waiting(engine: Engine) -> str:
    """``'written'`` when a write transaction gets its locks at once, else why it could not.

    SQLite: ``BEGIN IMMEDIATE`` with no busy timeout fails while any other connection holds
    the write lock. PostgreSQL: an UPDATE of every ``connections`` row with a 1 ms lock
    timeout fails while any of them is locked. Rolled back either way.
    """
    try:
        with engine.connect() as conn:
            if conn.dialect.name == "sqlite":
                conn.exec_driver_sql("PRAGMA busy_timeout=0")
                conn.exec_driver_sql("BEGIN IMMEDIATE")
            else:
                conn.exec_driver_sql("SET lock_timeout = '1ms'")
            conn.execute(update(Connection).values(detail=Connection.detail))
            conn.rollback()
    except DBAPIError as exc:
        return f"blocked: {exc.orig}"
    return "written"


@dataclass(frozen=True)
class WriteProbingRuntime(ShopsRuntime):
    """A ShopsRuntime whose Shopify clients, just before each request to a path ending in
    ``probe_path``, try :func:`write_without_waiting` and append the outcome to ``probes``."""

    probe_path: str = ""
    probes: list[str] = field(default_factory=list)

    def http(self) -> httpx.Client:
        client = super().http()

        def probe(request: httpx.Request) -> None:
            if request.url.path.endswith(self.probe_path):
                self.probes.append(write_without_waiting(self.engine))

        client.event_hooks["request"].append(probe)
        return client


def probing(runtime: ShopsRuntime, probe_path: str) -> WriteProbingRuntime:
    """``runtime`` with a write probe before each Shopify request to ``probe_path``."""
    same = {f.name: getattr(runtime, f.name) for f in fields(ShopsRuntime)}
    return WriteProbingRuntime(**same, probe_path=probe_path)
