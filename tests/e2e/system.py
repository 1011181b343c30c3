"""``syncapp run`` (the app and the three sandboxes) on free ports with its own data directory,
for the browser tests and the App Home browser benchmark."""

from __future__ import annotations

import signal
import socket
import subprocess
import sys
import time
from collections.abc import Iterator
from contextlib import contextmanager
from dataclasses import dataclass
from pathlib import Path

import httpx

from tests.subprocesses import child_env


def free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return int(s.getsockname()[1])


@dataclass
class Running:
    app_url: str
    shopify_url: str
    emanage_url: str
    ctrwow_url: str
    env: dict[str, str]  # the system's environment, for the operator's commands against it


@contextmanager
def syncapp_run(
    data_dir: Path, *, healthy_within: float = 120, demo_install: bool = False
) -> Iterator[Running]:
    """``syncapp run`` until the block ends (then SIGINT, as Ctrl-C); its four base URLs once
    all four answer ``/healthz`` (a loaded machine starts four servers slowly)."""
    ports = {name: free_port() for name in ("app", "shopify", "emanage", "ctrwow")}
    env = child_env(
        {
            "SYNCAPP_DATA_DIR": str(data_dir),
            "SYNCAPP_DATABASE_URL": f"sqlite:///{data_dir / 'syncapp.db'}",
            "SYNCAPP_PORT": str(ports["app"]),
            "SYNCAPP_SANDBOX_SHOPIFY_PORT": str(ports["shopify"]),
            "SYNCAPP_SANDBOX_EMANAGE_PORT": str(ports["emanage"]),
            "SYNCAPP_SANDBOX_CTRWOW_PORT": str(ports["ctrwow"]),
            "SYNCAPP_WEB_WORKERS": "1",
            "SYNCAPP_LOG_LEVEL": "warning",
            # The browser tests install the app from the admin themselves.
            "SYNCAPP_SANDBOX_DEMO_INSTALL": "1" if demo_install else "0",
        }
    )
    urls = Running(
        *(f"http://127.0.0.1:{ports[n]}" for n in ("app", "shopify", "emanage", "ctrwow")),
        env=env,
    )
    log_path = data_dir / "run.log"
    with log_path.open("ab") as log:
        process = subprocess.Popen(
            [sys.executable, "-m", "syncapp.cli", "run"], env=env, stdout=log, stderr=log
        )
    try:
        deadline = time.monotonic() + healthy_within
        while True:
            assert process.poll() is None, log_path.read_text()
            try:
                if all(
                    httpx.get(f"{u}/healthz", timeout=5).status_code == 200
                    for u in (urls.app_url, urls.shopify_url, urls.emanage_url, urls.ctrwow_url)
                ):
                    break
            except httpx.HTTPError:
                pass
            assert time.monotonic() < deadline, (
                f"not healthy in {healthy_within:g} s:\n" + log_path.read_text()
            )
            time.sleep(0.25)
        yield urls
    finally:
        process.send_signal(signal.SIGINT)
        try:
            process.wait(timeout=20)
        except subprocess.TimeoutExpired:
            process.kill()
            process.wait()
