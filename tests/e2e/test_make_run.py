"""`syncapp run` (what `make run` starts): the whole embedded system over real HTTP.

Starts the supervisor as a child process on free ports with a temporary data dir, and checks
what a new user would: both services healthy (within the supervisor's limit), the demo shop
seeded through the real Admin API, a change in the Shopify sandbox reaching the app as a signed,
stored webhook, a clean stop on Ctrl-C, and state surviving a restart.
"""

from __future__ import annotations

import signal
import socket
import sqlite3
import subprocess
import sys
import time
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path

import httpx
import pytest

from syncapp.supervisor import HEALTHY_WITHIN
from tests.subprocesses import child_env

pytestmark = pytest.mark.e2e

PRODUCTS_QUERY = """
query Count($after: String) {
  products(first: 50, after: $after) {
    nodes { id title variants(first: 5) { nodes { id price } } }
    pageInfo { hasNextPage endCursor }
  }
}
"""
UPDATE = """
mutation Rename($product: ProductUpdateInput!) {
  productUpdate(product: $product) { product { id title } userErrors { field message } }
}
"""


def free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return int(s.getsockname()[1])


@dataclass
class System:
    data_dir: Path
    env: dict[str, str]
    app_url: str
    sandbox_url: str
    process: subprocess.Popen[bytes] | None = None

    def start(self) -> float:
        with (self.data_dir / "run.log").open("ab") as log:
            self.process = subprocess.Popen(
                [sys.executable, "-m", "syncapp.cli", "run"],
                env=self.env,
                stdout=log,
                stderr=subprocess.STDOUT,
            )
        started = time.monotonic()
        deadline = started + HEALTHY_WITHIN
        while time.monotonic() < deadline:
            assert self.process.poll() is None, (self.data_dir / "run.log").read_text()
            try:
                if (
                    httpx.get(f"{self.app_url}/healthz", timeout=1).status_code == 200
                    and httpx.get(f"{self.sandbox_url}/healthz", timeout=1).status_code == 200
                ):
                    return time.monotonic() - started
            except httpx.HTTPError:
                pass
            time.sleep(0.25)
        raise AssertionError(
            f"not healthy within {HEALTHY_WITHIN:g} s:\n" + (self.data_dir / "run.log").read_text()
        )

    def interrupt(self) -> int:
        assert self.process is not None
        self.process.send_signal(signal.SIGINT)
        return self.process.wait(timeout=30)

    def token(self) -> str:
        out = subprocess.run(
            [sys.executable, "-m", "syncapp.cli", "sandbox", "shopify", "token", "demo"],
            env=self.env,
            check=True,
            capture_output=True,
            text=True,
        )
        return out.stdout.strip()

    def graphql(self, token: str, query: str, variables: dict[str, object]) -> dict[str, object]:
        response = httpx.post(
            f"{self.sandbox_url}/admin/api/2026-10/graphql.json",
            headers={"Host": "demo.myshopify.com", "X-Shopify-Access-Token": token},
            json={"query": query, "variables": variables},
            timeout=10,
        )
        body: dict[str, object] = response.json()
        assert "errors" not in body, body
        return body

    def stored_topics(self) -> dict[str, int]:
        with sqlite3.connect(self.data_dir / "syncapp.db") as conn:
            return dict(
                conn.execute("SELECT topic, count(*) FROM inbound_events GROUP BY topic").fetchall()
            )


@pytest.fixture
def system(tmp_path: Path) -> Iterator[System]:
    app_port, sandbox_port, emanage_port, ctrwow_port = (free_port() for _ in range(4))
    env = child_env(
        {
            "SYNCAPP_DATA_DIR": str(tmp_path),
            "SYNCAPP_DATABASE_URL": f"sqlite:///{tmp_path / 'syncapp.db'}",
            "SYNCAPP_PORT": str(app_port),
            "SYNCAPP_SANDBOX_SHOPIFY_PORT": str(sandbox_port),
            "SYNCAPP_SANDBOX_EMANAGE_PORT": str(emanage_port),
            "SYNCAPP_SANDBOX_CTRWOW_PORT": str(ctrwow_port),
        }
    )
    sys_ = System(
        data_dir=tmp_path,
        env=env,
        app_url=f"http://127.0.0.1:{app_port}",
        sandbox_url=f"http://127.0.0.1:{sandbox_port}",
    )
    yield sys_
    if sys_.process is not None and sys_.process.poll() is None:
        sys_.process.kill()
        sys_.process.wait()


def all_products(system: System, token: str) -> list[dict[str, object]]:
    products: list[dict[str, object]] = []
    after = None
    while True:
        page = system.graphql(token, PRODUCTS_QUERY, {"after": after})["data"]["products"]  # type: ignore[index]
        products += page["nodes"]
        if not page["pageInfo"]["hasNextPage"]:
            return products
        after = page["pageInfo"]["endCursor"]


def wait_for(predicate: object, timeout: float = 20) -> None:
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        if predicate():  # type: ignore[operator]
            return
        time.sleep(0.2)
    raise AssertionError("condition not met in time")


def test_the_embedded_system_starts_syncs_stops_and_keeps_its_state(system: System) -> None:
    """make run: healthy in 60 s, 50 seeded products, a change arrives, state persists."""
    first_start = system.start()
    print(f"healthy after {first_start:.1f} s")
    token = system.token()
    products = all_products(system, token)
    assert len(products) >= 50
    assert all(p["variants"]["nodes"] for p in products)  # type: ignore[index]

    # The seeding fired products/create; the app verified and stored each one.
    wait_for(lambda: system.stored_topics().get("products/create", 0) >= 50)

    target = products[0]
    result = system.graphql(
        token, UPDATE, {"product": {"id": target["id"], "title": "Renamed by the e2e test"}}
    )
    assert result["data"]["productUpdate"]["userErrors"] == []  # type: ignore[index]
    wait_for(lambda: system.stored_topics().get("products/update", 0) >= 1)

    assert system.interrupt() == 0
    for url in (system.app_url, system.sandbox_url):
        with pytest.raises(httpx.ConnectError):
            httpx.get(f"{url}/healthz", timeout=1)

    print(f"healthy after restart in {system.start():.1f} s")
    after_restart = all_products(system, token)
    assert len(after_restart) == len(products)
    assert any(p["title"] == "Renamed by the e2e test" for p in after_restart)
    assert system.stored_topics()["products/create"] == 50
    assert system.interrupt() == 0
