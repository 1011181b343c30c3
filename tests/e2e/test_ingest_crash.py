"""Webhook ingest survives SIGKILL: nothing acknowledged is lost, redelivery duplicates nothing."""

from __future__ import annotations

import asyncio
import os
import signal
import socket
import sqlite3
import subprocess
import sys
import time
from pathlib import Path

import httpx
import pytest

from tests.builders import signed_delivery
from tests.subprocesses import child_env

# Whole systems in child processes: two groups, so `make test` (pytest-xdist, --dist
# loadgroup) runs at most two of them at once on two cores; minutes each under that load.
pytestmark = [pytest.mark.e2e, pytest.mark.xdist_group("e2e-a"), pytest.mark.timeout(900)]

SECRET = "crash-test-client-secret-0123456789abcdef"
TOTAL = 1500


def free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return int(s.getsockname()[1])


def start_server(env: dict[str, str], log: Path) -> subprocess.Popen[bytes]:
    with log.open("ab") as out:
        process = subprocess.Popen(
            [sys.executable, "-m", "syncapp.cli", "serve"],
            env=env,
            stdout=out,
            stderr=out,
            start_new_session=True,  # its own process group: SIGKILL takes every worker at once
        )
    url = f"http://127.0.0.1:{env['SYNCAPP_PORT']}/healthz"
    # A liveness bound, not a measurement: `syncapp serve` beside `make test`'s other workers
    # (or restarted right after a SIGKILL) may need a minute.
    deadline = time.monotonic() + 120
    while time.monotonic() < deadline:
        try:
            if httpx.get(url, timeout=5).status_code == 200:
                return process
        except httpx.HTTPError:
            time.sleep(0.1)
    os.killpg(process.pid, signal.SIGKILL)  # the web workers too, not only their parent
    process.wait()
    raise AssertionError(log.read_text())


async def deliver(url: str, ids: list[str], acked: set[str]) -> None:
    """Send every delivery with 32 in flight; remember which ones were answered 200."""
    queue: asyncio.Queue[str] = asyncio.Queue()
    for webhook_id in ids:
        queue.put_nowait(webhook_id)

    async def sender(client: httpx.AsyncClient) -> None:
        while not queue.empty():
            webhook_id = queue.get_nowait()
            body, headers = signed_delivery(
                SECRET, webhook_id=webhook_id, event_id=f"ev-{webhook_id}"
            )
            try:
                response = await client.post(url, content=body, headers=headers)
            except httpx.HTTPError:
                continue  # the server died under us: Shopify would redeliver later
            if response.status_code == 200:
                acked.add(webhook_id)

    async with httpx.AsyncClient(timeout=5) as client:
        await asyncio.gather(*(sender(client) for _ in range(32)))


def stored_ids(db: Path) -> list[str]:
    with sqlite3.connect(db) as conn:
        return [row[0] for row in conn.execute("SELECT delivery_id FROM inbound_events")]


def test_a_killed_server_loses_no_acknowledged_webhook_and_stores_redeliveries_once(
    tmp_path: Path,
) -> None:
    """SIGKILL mid-load, restart, redeliver everything: every id stored exactly once."""
    port = free_port()
    env = child_env(
        {
            "SYNCAPP_DATA_DIR": str(tmp_path),
            "SYNCAPP_DATABASE_URL": f"sqlite:///{tmp_path / 'syncapp.db'}",
            "SYNCAPP_PORT": str(port),
            "SYNCAPP_SANDBOX": "false",
            "SYNCAPP_SHOPIFY_CLIENT_SECRET": SECRET,
            "SYNCAPP_LOG_LEVEL": "warning",
        }
    )
    subprocess.run([sys.executable, "-m", "syncapp.cli", "db", "upgrade"], env=env, check=True)
    url = f"http://127.0.0.1:{port}/webhooks/shopify"
    ids = [f"crash-{i}" for i in range(TOTAL)]
    acked: set[str] = set()

    server = start_server(env, tmp_path / "server.log")

    async def load_then_kill() -> None:
        task = asyncio.create_task(deliver(url, ids, acked))
        while len(acked) < TOTAL // 3:  # noqa: ASYNC110 - polling a plain set is the point
            await asyncio.sleep(0.01)
        os.killpg(server.pid, signal.SIGKILL)
        await task

    asyncio.run(load_then_kill())
    server.wait()
    # No pause for the workers to die: killed, they cannot commit again, and a reader sees only
    # committed rows — every acknowledged one was committed before its 200 was sent.
    db = tmp_path / "syncapp.db"
    before_restart = set(stored_ids(db))
    assert acked, "the load never got an answer"
    assert len(acked) < TOTAL, "the server was killed only after the load had finished"
    assert acked <= before_restart, f"{len(acked - before_restart)} acknowledged webhooks lost"

    server = start_server(env, tmp_path / "server.log")
    try:
        redelivered: set[str] = set()
        asyncio.run(deliver(url, ids, redelivered))  # Shopify redelivers what it saw fail
        assert redelivered == set(ids)
    finally:
        os.killpg(server.pid, signal.SIGTERM)
        server.wait(timeout=30)
    rows = stored_ids(db)
    assert len(rows) == TOTAL
    assert set(rows) == set(ids)
