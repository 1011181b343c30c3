"""Ingest benchmark: validly signed Shopify deliveries with distinct ids, on loopback, with wrk.

Starts the app (embedded default: SQLite, WAL, synchronous=FULL) in a child process, then runs
wrk at 32 connections against ``/noop`` and ``/webhooks/shopify`` of the same server, one after
the other, and reports requests/s, p50/p99 latency and how many rows were durably stored.

    .venv/bin/python benchmarks/ingest/run.py [--duration 15] [--connections 32] [--workers 1]
        [--drain]     # a consumer drains the stored products/update meanwhile (the backlog)

Needs ``wrk`` (Debian package ``wrk``). Loopback only; the run is bounded by --duration.
"""

from __future__ import annotations

import argparse
import json
import os
import re
import socket
import sqlite3
import subprocess
import sys
import tempfile
import threading
import time
from contextlib import closing
from datetime import UTC, datetime
from pathlib import Path

import httpx
from sqlalchemy import create_engine, func, select, text

from syncapp.bus.models import InboundEvent
from syncapp.config import ensure_embedded_secrets, load_settings
from syncapp.sandbox_runner import seed_shop, shopify_sandbox_config

sys.path.insert(0, str(Path(__file__).resolve().parents[2]))
from tests.builders import shopify_hmac

SECRET = "bench-client-secret-0123456789abcdef"
LUA = """
local counter = 0
local prefix = ""
function setup(thread)
  thread:set("tid", tostring(math.random(1, 1e9)))
end
function init(args)
  prefix = tid .. "-"
end
function request()
  counter = counter + 1
  local id = prefix .. counter
  wrk.headers["X-Shopify-Webhook-Id"] = "wh-" .. id
  wrk.headers["X-Shopify-Event-Id"] = "ev-" .. id
  -- The topic is not signed: every Nth delivery becomes work for the worker (--with-worker N).
  if every > 0 and counter % every == 0 then
    wrk.headers["X-Shopify-Topic"] = "app/uninstalled"
  else
    wrk.headers["X-Shopify-Topic"] = "products/update"
  end
  return wrk.format("POST", wrk.path, wrk.headers, wrk.body)
end
"""


def sandbox_product_body(data_dir: Path) -> bytes:
    """A ``products/create`` body exactly as the Shopify sandbox sends it for demo product 0
    (4 variants, 3 options, about 3.8 KB of REST-shaped JSON): verification, parsing and the
    stored row then cost what a real delivery costs, not what a toy body would."""
    settings = ensure_embedded_secrets(load_settings(data_dir=data_dir / "sandbox"))
    config = shopify_sandbox_config(settings)
    seed_shop(config, "demo.myshopify.com", 1)
    with closing(sqlite3.connect(config.database_path)) as conn:
        (payload,) = conn.execute(
            "SELECT payload FROM webhook_outbox WHERE topic = 'products/create' ORDER BY id"
        ).fetchone()
    return str(payload).encode()


def free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return int(s.getsockname()[1])


def to_ms(value: str) -> float:
    number, unit = re.match(r"([\d.]+)(us|ms|s)", value).groups()  # type: ignore[union-attr]
    return float(number) * {"us": 0.001, "ms": 1.0, "s": 1000.0}[unit]


def sample_backlog(url: str, done: threading.Event, into: list[int]) -> None:
    """Every second until ``done``: how many products/update events are still pending."""
    engine = create_engine(url.replace("postgresql://", "postgresql+psycopg://"))
    try:
        while not done.wait(1.0):
            with engine.connect() as conn:
                into.append(
                    conn.execute(
                        select(func.count())
                        .select_from(InboundEvent)
                        .where(
                            InboundEvent.topic == "products/update",
                            InboundEvent.status == "pending",
                        )
                    ).scalar_one()
                )
    finally:
        engine.dispose()


def run_wrk(url: str, body: bytes, headers: dict[str, str], args: argparse.Namespace) -> dict:
    with tempfile.TemporaryDirectory() as tmp:
        script = Path(tmp) / "bench.lua"
        header_lines = "\n".join(f'wrk.headers["{k}"] = "{v}"' for k, v in headers.items())
        body_lua = json.dumps(body.decode())
        script.write_text(
            f'wrk.method = "POST"\nwrk.body = {body_lua}\n{header_lines}\n'
            f"local every = {args.with_worker}\n{LUA}",
            encoding="utf-8",
        )
        out = subprocess.run(
            [
                "wrk",
                "-t",
                str(args.threads),
                "-c",
                str(args.connections),
                "-d",
                f"{args.duration}s",
                "--latency",
                "-s",
                str(script),
                url,
            ],
            check=True,
            capture_output=True,
            text=True,
        ).stdout
    latency = dict(re.findall(r"^\s+(50|99)%\s+(\S+)", out, re.M))
    non2xx = re.search(r"Non-2xx or 3xx responses: (\d+)", out)
    return {
        "requests": int(re.search(r"(\d+) requests in", out).group(1)),  # type: ignore[union-attr]
        "rps": float(re.search(r"Requests/sec:\s+([\d.]+)", out).group(1)),  # type: ignore[union-attr]
        "p50_ms": to_ms(latency["50"]),
        "p99_ms": to_ms(latency["99"]),
        "non_2xx": int(non2xx.group(1)) if non2xx else 0,
        "raw": out,
    }


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__)
    parser.add_argument("--duration", type=int, default=15)
    parser.add_argument("--connections", type=int, default=32)
    parser.add_argument("--threads", type=int, default=2)
    parser.add_argument("--workers", type=int, default=2)
    parser.add_argument("--database-url", default="")
    parser.add_argument(
        "--log-level",
        default="info",
        help="the app's level; at info (the default) every webhook writes a JSON line to a file",
    )
    parser.add_argument(
        "--with-worker",
        type=int,
        default=0,
        metavar="N",
        help="also run `syncapp worker` and make every Nth webhook an app/uninstalled for it, so"
        " that another process writes to the database during the run",
    )
    parser.add_argument(
        "--drain",
        action="store_true",
        help="also run a consumer (benchmarks/ingest/drain.py) that drains products/update from"
        " the same database during the run; reports how many it settled and the backlog",
    )
    args = parser.parse_args()

    started = datetime.now(UTC)
    load_before = os.getloadavg()[0]
    data_dir = Path(tempfile.mkdtemp(prefix="syncapp-bench-"))
    port = free_port()
    env = {
        **os.environ,
        "SYNCAPP_DATA_DIR": str(data_dir),
        "SYNCAPP_PORT": str(port),
        "SYNCAPP_SHOPIFY_CLIENT_SECRET": SECRET,
        "SYNCAPP_LOG_LEVEL": args.log_level,
        "SYNCAPP_SANDBOX": "false",
    }
    if args.workers > 1:
        metrics_dir = data_dir / "prometheus"
        metrics_dir.mkdir()
        env["PROMETHEUS_MULTIPROC_DIR"] = str(metrics_dir)
    if args.database_url:
        env["SYNCAPP_DATABASE_URL"] = args.database_url
    python = sys.executable
    subprocess.run([python, "-m", "syncapp.cli", "db", "upgrade"], env=env, check=True)
    server_log = (data_dir / "server.log").open("wb")
    server = subprocess.Popen(
        [
            python,
            "-c",
            # As `syncapp serve` runs it: the project's bounded-header httptools protocol.
            "import uvicorn, sys; from syncapp.serving import uvicorn_options;"
            " uvicorn.run('benchmarks.ingest.server:app', factory=True, port=int(sys.argv[1]),"
            " workers=int(sys.argv[2]), loop='uvloop', log_level='warning', **uvicorn_options())",
            str(port),
            str(args.workers),
        ],
        env={**env, "PYTHONPATH": str(Path(__file__).resolve().parents[2])},
        stdout=server_log,
        stderr=subprocess.STDOUT,
    )
    worker = (
        subprocess.Popen(
            [python, "-m", "syncapp.cli", "worker"],
            env=env,
            stdout=server_log,
            stderr=subprocess.STDOUT,
        )
        if args.with_worker
        else None
    )
    url = args.database_url or f"sqlite:///{data_dir / 'syncapp.db'}"
    drainer = (
        subprocess.Popen(
            [python, "-m", "benchmarks.ingest.drain", url],
            env={**env, "PYTHONPATH": str(Path(__file__).resolve().parents[2])},
            stdout=server_log,
            stderr=subprocess.STDOUT,
        )
        if args.drain
        else None
    )
    backlog: list[int] = []
    try:
        base = f"http://127.0.0.1:{port}"
        for _ in range(1800):
            try:
                if httpx.get(f"{base}/healthz", timeout=1).status_code == 200:
                    break
            except httpx.HTTPError:
                time.sleep(0.1)
        body = sandbox_product_body(data_dir)
        headers = {
            "Content-Type": "application/json",
            "X-Shopify-Topic": "products/update",
            "X-Shopify-Hmac-Sha256": shopify_hmac(body, SECRET),
            "X-Shopify-Shop-Domain": "demo.myshopify.com",
            "X-Shopify-API-Version": "2026-10",
            "X-Shopify-Triggered-At": "2026-11-27T09:00:00Z",
        }
        noop = run_wrk(f"{base}/noop", body, headers, args)
        sampling = threading.Event()
        sampler = threading.Thread(target=sample_backlog, args=(url, sampling, backlog))
        sampler.start()
        try:
            ingest = run_wrk(f"{base}/webhooks/shopify", body, headers, args)
        finally:
            sampling.set()
            sampler.join()
        metrics = httpx.get(f"{base}/metrics", timeout=5).text
    finally:
        server.terminate()
        server.wait(timeout=30)
        for child in (worker, drainer):
            if child is not None:
                child.terminate()
                child.wait(timeout=30)
        server_log.close()

    engine = create_engine(url.replace("postgresql://", "postgresql+psycopg://"))
    with engine.connect() as conn:
        stored = conn.execute(select(func.count()).select_from(InboundEvent)).scalar_one()
        handled = dict(
            conn.execute(
                select(InboundEvent.status, func.count())
                .where(InboundEvent.topic == "app/uninstalled")
                .group_by(InboundEvent.status)
            ).all()
        )
        drained = dict(
            conn.execute(
                select(InboundEvent.status, func.count())
                .where(InboundEvent.topic == "products/update")
                .group_by(InboundEvent.status)
            ).all()
        )
        if engine.dialect.name == "sqlite":
            conn.execute(text("PRAGMA wal_checkpoint(TRUNCATE)"))
    engine.dispose()

    print(
        f"at {started:%Y-%m-%d %H:%M} UTC, load average before {load_before:.1f}: "
        f"connections={args.connections} duration={args.duration}s workers={args.workers} "
        f"log level {args.log_level}, database {engine.dialect.name}"
    )
    print(f"{'endpoint':<20}{'req/s':>10}{'p50 ms':>10}{'p99 ms':>10}{'non-2xx':>10}")
    for name, r in (("noop", noop), ("webhooks/shopify", ingest)):
        print(
            f"{name:<20}{r['rps']:>10.0f}{r['p50_ms']:>10.2f}{r['p99_ms']:>10.2f}{r['non_2xx']:>10}"
        )
    print(f"stored rows: {stored} (wrk counted {ingest['requests']} webhook requests)")
    if args.with_worker:
        print(f"app/uninstalled events for the worker, by status: {handled}")
    if args.drain:
        print(f"products/update by status after the run: {drained}")
        print(f"backlog (pending products/update) each second of the ingest run: {backlog}")
    print(f"body: {len(body)} bytes (products/create of the sandbox's demo product 0)")
    print(f"stored webhooks/s: {stored / args.duration:.0f}")
    sums = dict(re.findall(r"^(syncapp_ingest_batch_\w+_(?:sum|count)) ([\d.e+]+)$", metrics, re.M))
    batches = float(sums.get("syncapp_ingest_batch_rows_count", 0)) or 1
    rows = float(sums.get("syncapp_ingest_batch_rows_sum", 0))
    seconds = float(sums.get("syncapp_ingest_batch_seconds_sum", 0))
    print(
        f"group commits: {batches:.0f}, mean rows/commit {rows / batches:.1f}, "
        f"mean commit {seconds / batches * 1000:.2f} ms "
    )
    buckets = re.findall(
        r'^syncapp_ingest_batch_seconds_bucket\{le="([^"]+)"\} ([\d.e+]+)$', metrics, re.M
    )
    print(
        "commit time histogram (cumulative):",
        ", ".join(f"<={le}s: {float(n):.0f}" for le, n in buckets),
    )
    waits = re.search(r"^syncapp_ingest_lock_waits_total ([\d.e+]+)$", metrics, re.M)
    print(f"waits for another process's SQLite write lock: {float(waits[1]) if waits else 0:.0f}")
    print(f"ingest/noop throughput ratio: {ingest['rps'] / noop['rps']:.2f}")


if __name__ == "__main__":
    main()
