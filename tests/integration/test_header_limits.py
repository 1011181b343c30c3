"""Issue 7 item 3: every server the project runs bounds request headers (431).

Each server is started the way ``make run`` starts it (``syncapp serve`` and ``syncapp sandbox
<name> serve`` as child processes) and probed over a raw socket: one header line over 16 KiB,
more than 100 headers, over 64 KiB in total, and a 64 MiB header streamed at it — which is
cut off with a 431 long before it is all sent. Ordinary requests still work afterwards.
"""

from __future__ import annotations

import contextlib
import os
import socket
import subprocess
import sys
import time
from collections.abc import Iterator

import httpx
import pytest

from syncapp.store.db import make_engine
from syncapp.store.migrate import upgrade
from tests.conftest import CLIENT_SECRET

SERVERS = {
    "app": (["serve"], "SYNCAPP_PORT"),
    "shopify sandbox": (["sandbox", "shopify", "serve"], "SYNCAPP_SANDBOX_SHOPIFY_PORT"),
    "emanage sandbox": (["sandbox", "emanage", "serve"], "SYNCAPP_SANDBOX_EMANAGE_PORT"),
    "ctrwow sandbox": (["sandbox", "ctrwow", "serve"], "SYNCAPP_SANDBOX_CTRWOW_PORT"),
}


def _free_port() -> int:
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        return int(sock.getsockname()[1])


@pytest.fixture(scope="module", params=sorted(SERVERS))
def server(
    request: pytest.FixtureRequest, tmp_path_factory: pytest.TempPathFactory
) -> Iterator[int]:
    args, port_variable = SERVERS[request.param]
    tmp_path = tmp_path_factory.mktemp("headers")
    port = _free_port()
    upgrade_engine = make_engine(f"sqlite:///{tmp_path / 'syncapp.db'}")
    upgrade(upgrade_engine)
    upgrade_engine.dispose()
    env = {
        **os.environ,
        "SYNCAPP_DATA_DIR": str(tmp_path),
        "SYNCAPP_SHOPIFY_CLIENT_SECRET": CLIENT_SECRET,
        "SYNCAPP_LOG_LEVEL": "warning",
        "SYNCAPP_WEB_WORKERS": "1",
        port_variable: str(port),
    }
    process = subprocess.Popen(
        [sys.executable, "-m", "syncapp.cli", *args],
        env=env,
        stdout=subprocess.DEVNULL,
        stderr=subprocess.DEVNULL,
    )
    try:
        deadline = time.monotonic() + 60
        while True:
            assert process.poll() is None, f"{request.param} exited with {process.returncode}"
            with contextlib.suppress(httpx.HTTPError):
                if httpx.get(f"http://127.0.0.1:{port}/healthz", timeout=5).status_code == 200:
                    break
            assert time.monotonic() < deadline, f"{request.param} did not start"
            time.sleep(0.1)
        yield port
    finally:
        process.terminate()
        try:
            process.wait(timeout=15)
        except subprocess.TimeoutExpired:
            process.kill()
            process.wait()


def _request(port: int, headers: list[tuple[str, str]]) -> int:
    head = "GET /healthz HTTP/1.1\r\nHost: 127.0.0.1\r\n"
    head += "".join(f"{name}: {value}\r\n" for name, value in headers)
    with socket.create_connection(("127.0.0.1", port), timeout=10) as sock:
        sock.sendall((head + "Connection: close\r\n\r\n").encode())
        return _status(sock)


def _status(sock: socket.socket) -> int:
    data = b""
    while b"\r\n" not in data:
        chunk = sock.recv(4096)
        if not chunk:
            break
        data += chunk
    return int(data.split(b" ", 2)[1])


def test_a_header_line_over_16_kib_is_431(server: int) -> None:
    assert _request(server, [("X-Big", "a" * 17 * 1024)]) == 431
    assert _request(server, [("X-Fine", "a" * 15 * 1024)]) == 200


def test_more_than_100_headers_is_431(server: int) -> None:
    assert _request(server, [(f"X-H{i}", "v") for i in range(101)]) == 431
    assert _request(server, [(f"X-H{i}", "v") for i in range(90)]) == 200


def test_over_64_kib_of_headers_in_total_is_431(server: int) -> None:
    assert _request(server, [(f"X-H{i}", "a" * 8 * 1024) for i in range(9)]) == 431
    assert _request(server, [(f"X-H{i}", "a" * 8 * 1024) for i in range(6)]) == 200


def test_a_64_mib_header_is_cut_off_with_431_before_it_is_read(server: int) -> None:
    """The server answers and closes after about 64 KiB; the client cannot send the rest."""
    chunk = b"a" * 64 * 1024
    sent = 0
    with socket.create_connection(("127.0.0.1", server), timeout=10) as sock:
        sock.sendall(b"POST /webhooks/shopify HTTP/1.1\r\nHost: 127.0.0.1\r\nX-Huge: ")
        with contextlib.suppress(BrokenPipeError, ConnectionResetError):
            while sent < 64 * 1024 * 1024:
                sock.sendall(chunk)
                sent += len(chunk)
        assert sent < 64 * 1024 * 1024
        assert _status(sock) == 431
    assert httpx.get(f"http://127.0.0.1:{server}/healthz", timeout=5).status_code == 200
