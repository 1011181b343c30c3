"""Forged-webhook benchmark: unsigned pathological bodies cost a 401, not the event loop.

Starts the app as ``syncapp serve`` does (2 web workers, SQLite), then

1. server time: the app's ASGI stack (middleware and webhook endpoint, built by
   ``create_app``) is called in this process with each unsigned (wrongly signed) body —
   100,000-deep nesting, a million-digit number, a megabyte of JSON — already received, and
   timed until its 401 is sent: the CPU a forged body costs the event loop, without the upload;
2. over HTTP: the same bodies sent to the served app (client time, upload included, and the
   app's own ``syncapp_http_request_seconds`` histogram, which includes reading the body);
3. ``/healthz`` latency alone, then while a separate process sends bursts of 20 such bodies at
   once, to show that they do not stall the server.

    .venv/bin/python benchmarks/forged/run.py [--rounds 10]
"""

from __future__ import annotations

import argparse
import os
import re
import socket
import statistics
import subprocess
import sys
import tempfile
import time
from contextlib import closing
from datetime import UTC, datetime
from pathlib import Path

import httpx

SECRET = "bench-client-secret-0123456789abcdef"
BODIES = {
    "nested_100k": b"[" * 100_000 + b"]" * 100_000,
    "million_digits": b'{"n":' + b"9" * 1_000_000 + b"}",
    "megabyte_json": b'{"k":[' + b",".join([b'"abcdefgh"'] * 90_000) + b"]}",
}
HEADERS = {
    "Content-Type": "application/json",
    "X-Shopify-Topic": "products/update",
    "X-Shopify-Hmac-Sha256": "bm90IHRoZSBzaWduYXR1cmUgb2YgdGhpcyBib2R5IQ==",
    "X-Shopify-Shop-Domain": "demo.myshopify.com",
    "X-Shopify-Webhook-Id": "forged-1",
}


def free_port() -> int:
    with closing(socket.socket()) as sock:
        sock.bind(("127.0.0.1", 0))
        return int(sock.getsockname()[1])


def percentile(values: list[float], q: float) -> float:
    ordered = sorted(values)
    return ordered[min(len(ordered) - 1, int(q * len(ordered)))]


def healthz_latencies(base: str, count: int) -> list[float]:
    out = []
    with httpx.Client(base_url=base, timeout=10) as client:
        for _ in range(count):
            start = time.perf_counter()
            assert client.get("/healthz").status_code == 200
            out.append((time.perf_counter() - start) * 1000)
    return out


def asgi_server_ms(rounds: int) -> dict[str, list[float]]:
    """Milliseconds from calling the app with a received forged body to its 401 being sent."""
    import asyncio

    from syncapp.config import ensure_embedded_secrets, load_settings
    from syncapp.store.db import make_engine
    from syncapp.store.migrate import upgrade
    from syncapp.web.app import create_app

    data_dir = Path(tempfile.mkdtemp(prefix="syncapp-forged-asgi-"))
    settings = ensure_embedded_secrets(
        load_settings(
            data_dir=data_dir, shopify_client_secret=SECRET, sandbox=False, log_level="warning"
        )
    )
    engine = make_engine(settings.database_url)
    upgrade(engine)
    engine.dispose()
    app = create_app(settings)
    headers = [(k.lower().encode(), v.encode()) for k, v in HEADERS.items()]
    out: dict[str, list[float]] = {name: [] for name in BODIES}
    statuses: set[int] = set()

    async def one(body: bytes) -> float:
        scope = {
            "type": "http",
            "method": "POST",
            "path": "/webhooks/shopify",
            "raw_path": b"/webhooks/shopify",
            "query_string": b"",
            "headers": [*headers, (b"content-length", str(len(body)).encode())],
            "client": ("127.0.0.1", 1),
            "server": ("127.0.0.1", 8000),
            "scheme": "http",
            "http_version": "1.1",
            "root_path": "",
        }
        status = 0

        async def receive() -> dict[str, object]:
            return {"type": "http.request", "body": body, "more_body": False}

        async def send(message: dict[str, object]) -> None:
            nonlocal status
            if message["type"] == "http.response.start":
                status = int(message["status"])  # type: ignore[call-overload]

        start = time.perf_counter()
        try:
            await app(scope, receive, send)  # type: ignore[arg-type]
        except Exception:  # the server's error middleware answered 500 and re-raised
            status = status or 500
        elapsed = (time.perf_counter() - start) * 1000
        statuses.add(status)
        return elapsed

    async def run() -> None:
        for _ in range(rounds):
            for name, body in BODIES.items():
                out[name].append(await one(body))

    asyncio.run(run())
    print(f"in-process statuses: {sorted(statuses)}")
    return out


BURST = r"""
import socket, sys, threading
port, rounds = int(sys.argv[1]), int(sys.argv[2])
bodies = [open(p, "rb").read() for p in sys.argv[3:]]
head = ("POST /webhooks/shopify HTTP/1.1\r\nHost: 127.0.0.1\r\n"
        "X-Shopify-Hmac-Sha256: bm90IHRoZSBzaWduYXR1cmU=\r\nX-Shopify-Topic: products/update\r\n"
        "X-Shopify-Shop-Domain: demo.myshopify.com\r\nX-Shopify-Webhook-Id: forged-1\r\n"
        "Content-Type: application/json\r\nConnection: close\r\n")
def send(body):
    with socket.create_connection(("127.0.0.1", port), timeout=30) as s:
        s.sendall((head + "Content-Length: %d\r\n\r\n" % len(body)).encode() + body)
        reply = s.recv(64)
        statuses.append(reply.split(b" ")[1].decode() if reply else "dropped")
statuses = []
for _ in range(rounds):
    threads = [threading.Thread(target=send, args=(bodies[i % len(bodies)],)) for i in range(20)]
    [t.start() for t in threads]
    [t.join() for t in threads]
print("bursts done", sorted(set(statuses)))
"""


def server_side_401s(metrics: str) -> tuple[int, int]:
    """(401s answered within 5 ms, all 401s) of the webhook route, from the app's histogram."""
    labels = r'method="POST",route="/webhooks/shopify",status="401"'

    def value(pattern: str) -> int:
        found = re.findall(pattern, metrics)
        return int(sum(float(v) for v in found))

    within = value(
        r'syncapp_http_request_seconds_bucket\{le="0\.005",' + labels + r"\} ([0-9.e+]+)"
    )
    total = value(r"syncapp_http_request_seconds_count\{" + labels + r"\} ([0-9.e+]+)")
    return within, total


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__)
    parser.add_argument("--rounds", type=int, default=10)
    args = parser.parse_args()
    started = datetime.now(UTC)
    load_before = os.getloadavg()[0]
    asgi_ms = asgi_server_ms(args.rounds)
    data_dir = Path(tempfile.mkdtemp(prefix="syncapp-forged-"))
    port = free_port()
    env = {
        **os.environ,
        "SYNCAPP_DATA_DIR": str(data_dir),
        "SYNCAPP_PORT": str(port),
        "SYNCAPP_SHOPIFY_CLIENT_SECRET": SECRET,
        "SYNCAPP_LOG_LEVEL": "warning",
        "SYNCAPP_SANDBOX": "false",
        "SYNCAPP_WEB_WORKERS": "2",
    }
    python = sys.executable
    subprocess.run([python, "-m", "syncapp.cli", "db", "upgrade"], env=env, check=True)
    log = (data_dir / "server.log").open("wb")
    server = subprocess.Popen(
        [python, "-m", "syncapp.cli", "serve"], env=env, stdout=log, stderr=subprocess.STDOUT
    )
    base = f"http://127.0.0.1:{port}"
    try:
        deadline = time.monotonic() + 180
        while True:
            try:
                if httpx.get(f"{base}/healthz", timeout=1).status_code == 200:
                    break
            except httpx.HTTPError:
                pass
            if time.monotonic() > deadline:
                raise SystemExit("the app did not start")
            time.sleep(0.1)
        # 1. Server time of each forged body's 401.
        client_ms: dict[str, list[float]] = {name: [] for name in BODIES}
        http_statuses: set[int] = set()
        with httpx.Client(base_url=base, timeout=30) as client:
            for _ in range(args.rounds):
                for name, body in BODIES.items():
                    start = time.perf_counter()
                    try:
                        code = client.post(
                            "/webhooks/shopify", content=body, headers=HEADERS
                        ).status_code
                    except httpx.HTTPError:  # the server dropped the connection
                        code = 0
                    client_ms[name].append((time.perf_counter() - start) * 1000)
                    http_statuses.add(code)
        within, total = server_side_401s(httpx.get(f"{base}/metrics", timeout=5).text)
        # 3. /healthz alone, then while another process sends bursts of 20 forged bodies.
        alone = healthz_latencies(base, 300)
        paths = []
        for name, body in BODIES.items():
            path = data_dir / f"{name}.json"
            path.write_bytes(body)
            paths.append(str(path))
        burst = subprocess.Popen(
            [python, "-c", BURST, str(port), str(args.rounds), *paths],
            stdout=subprocess.PIPE,
            text=True,
        )
        during: list[float] = []
        while burst.poll() is None:
            during += healthz_latencies(base, 10)
        bursts_ok = (burst.stdout.read() if burst.stdout else "").strip()
    finally:
        server.terminate()
        server.wait(timeout=30)
        log.close()

    print(f"run at {started:%Y-%m-%d %H:%M} UTC, load average before {load_before:.2f}")
    for name, values in asgi_ms.items():
        print(
            f"server time (ASGI, body received) {name}: p50 {statistics.median(values):.2f}"
            f" ms, max {max(values):.2f} ms"
        )
    for name, values in client_ms.items():
        print(
            f"forged {name} ({len(BODIES[name]):,} bytes): client p50 "
            f"{statistics.median(values):.1f} ms, max {max(values):.1f} ms (incl. upload)"
        )
    print(f"HTTP statuses: {sorted(http_statuses)}")
    print(f"server-side: {within} of {total} forged 401s answered within 5 ms (body read included)")
    p50, p99 = statistics.median(alone), percentile(alone, 0.99)
    print(f"/healthz alone: p50 {p50:.2f} ms, p99 {p99:.2f} ms")
    print(
        f"/healthz during {args.rounds} bursts of 20 forged bodies ({len(during)} probes): p50 "
        f"{statistics.median(during):.2f} ms, p99 {percentile(during, 0.99):.2f} ms, "
        f"max {max(during):.2f} ms; {bursts_ok}"
    )


if __name__ == "__main__":
    main()
