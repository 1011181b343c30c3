"""Forged-webhook benchmark: unsigned pathological bodies cost a 401, not the event loop.

Starts the app as ``syncapp serve`` does (2 web workers, SQLite), then

1. sends unsigned (wrongly signed) bodies — 100,000-deep nesting, a million-digit number, a
   megabyte of JSON — and reads the server-side latency of their 401s from the app's own
   ``syncapp_http_request_seconds`` histogram (and the client-side one);
2. measures ``/healthz`` latency alone, then while 20 such bodies arrive at once, again and
   again, to show that they do not stall the server.

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
import threading
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


def forged_burst(base: str, n: int) -> list[int]:
    statuses: list[int] = []
    names = sorted(BODIES)

    def send(i: int) -> None:
        with httpx.Client(base_url=base, timeout=30) as client:
            body = BODIES[names[i % len(names)]]
            statuses.append(
                client.post("/webhooks/shopify", content=body, headers=HEADERS).status_code
            )

    threads = [threading.Thread(target=send, args=(i,)) for i in range(n)]
    for t in threads:
        t.start()
    for t in threads:
        t.join()
    return statuses


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
        with httpx.Client(base_url=base, timeout=30) as client:
            for _ in range(args.rounds):
                for name, body in BODIES.items():
                    start = time.perf_counter()
                    status = client.post("/webhooks/shopify", content=body, headers=HEADERS)
                    client_ms[name].append((time.perf_counter() - start) * 1000)
                    assert status.status_code == 401, status.status_code
        within, total = server_side_401s(httpx.get(f"{base}/metrics", timeout=5).text)
        # 2. /healthz alone, then during bursts of 20 forged bodies.
        alone = healthz_latencies(base, 200)
        during: list[float] = []
        statuses: list[int] = []
        for _ in range(args.rounds):
            burst = threading.Thread(target=lambda: statuses.extend(forged_burst(base, 20)))
            burst.start()
            during += healthz_latencies(base, 20)
            burst.join()
    finally:
        server.terminate()
        server.wait(timeout=30)
        log.close()

    print(f"run at {started:%Y-%m-%d %H:%M} UTC, load average before {load_before:.2f}")
    for name, values in client_ms.items():
        print(
            f"forged {name} ({len(BODIES[name]):,} bytes): 401, client p50 "
            f"{statistics.median(values):.1f} ms, max {max(values):.1f} ms (incl. upload)"
        )
    print(f"server-side: {within} of {total} forged 401s answered within 5 ms")
    p50, p99 = statistics.median(alone), percentile(alone, 0.99)
    print(f"/healthz alone: p50 {p50:.2f} ms, p99 {p99:.2f} ms")
    print(
        f"/healthz during {args.rounds} bursts of 20 forged bodies: p50 "
        f"{statistics.median(during):.2f} ms, p99 {percentile(during, 0.99):.2f} ms, "
        f"max {max(during):.2f} ms; burst statuses {sorted(set(statuses))}"
    )


if __name__ == "__main__":
    main()
