"""`syncapp run` (what `make run` starts): the whole embedded system over real HTTP.

Starts the supervisor as a child process on free ports with a temporary data dir, and checks
what a new user would: both services healthy (within the supervisor's limit), the demo shop
seeded through the real Admin API, a change in the Shopify sandbox reaching the app as a signed,
stored webhook, the demo catalog synchronized to the shop's eManageCRM tenant and an edit on
either side reaching the other, a clean stop on Ctrl-C, and state surviving a restart.
"""

from __future__ import annotations

import signal
import socket
import sqlite3
import subprocess
import sys
import time
import uuid
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import httpx
import pytest

from syncapp.supervisor import HEALTHY_WITHIN
from tests.subprocesses import child_env

# Whole systems in child processes: two groups, so `make test` (pytest-xdist, --dist
# loadgroup) runs at most two of them at once on two cores; minutes each under that load.
pytestmark = [pytest.mark.e2e, pytest.mark.xdist_group("e2e-b"), pytest.mark.timeout(900)]

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
PRICE = """
mutation Price($productId: ID!, $variants: [ProductVariantsBulkInput!]!) {
  productVariantsBulkUpdate(productId: $productId, variants: $variants) {
    productVariants { id price }
    userErrors { field message }
  }
}
"""
PRODUCT = """
query One($id: ID!) { product(id: $id) { id title } }
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
    emanage_url: str
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
                    httpx.get(f"{self.app_url}/healthz", timeout=5).status_code == 200
                    and httpx.get(f"{self.sandbox_url}/healthz", timeout=5).status_code == 200
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

    def emanage(self) -> httpx.Client:
        """The demo shop's eManageCRM tenant with an account token of its own (the merchant,
        not the app: its writes carry no origin marker)."""
        out = subprocess.run(
            [sys.executable, "-m", "syncapp.cli", "sandbox", "emanage", "token", "demo"],
            env=self.env,
            check=True,
            capture_output=True,
            text=True,
        )
        accounts = httpx.get(f"{self.emanage_url}/_sandbox/accounts", timeout=10).json()
        (account,) = (
            a
            for a in (accounts["accounts"] if isinstance(accounts, dict) else accounts)
            if a["shopDomain"] == "demo.myshopify.com"
        )
        return httpx.Client(
            base_url=f"{self.emanage_url}/admin/v1/accounts/{account['id']}",
            headers={"Authorization": f"Bearer {out.stdout.strip()}"},
            timeout=10,
        )

    def unsettled_sync_events(self) -> int:
        with sqlite3.connect(self.data_dir / "syncapp.db") as conn:
            (count,) = conn.execute(
                "SELECT count(*) FROM inbound_events WHERE status IN ('pending', 'processing')"
                " AND (topic LIKE 'product%' OR topic LIKE '%resync_requested%'"
                " OR topic LIKE '%backfill%')"
            ).fetchone()
            return int(count)

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
        emanage_url=f"http://127.0.0.1:{emanage_port}",
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


def wait_for(predicate: object, timeout: float = 20, every: float = 0.2) -> float:
    """Seconds until ``predicate()`` holds."""
    started = time.monotonic()
    while time.monotonic() < started + timeout:
        if predicate():  # type: ignore[operator]
            return time.monotonic() - started
        time.sleep(every)
    raise AssertionError("condition not met in time")


def emanage_products(crm: httpx.Client) -> list[dict[str, Any]]:
    items: list[dict[str, Any]] = []
    after: str | None = None
    while True:
        page = crm.get("/products", params={"limit": "100", **({"after": after} if after else {})})
        if page.status_code == 404:  # the tenant's sign-up is still under way
            return items
        assert page.status_code == 200, page.text
        body = page.json()
        items += body["items"]
        if not body["next"]:
            return items
        after = body["next"]


def emanage_product(crm: httpx.Client, gid: str) -> dict[str, Any] | None:
    page = crm.get("/products", params={"shopifyProductId": gid}).json()["items"]
    return dict(page[0]) if page else None


def the_demo_catalog_syncs_both_ways(system: System, token: str, products: list[Any]) -> None:
    """The demo shop was installed and signed up by `syncapp run` itself: its catalog reaches
    eManageCRM, a price edit in Shopify reaches eManageCRM, an edit there reaches Shopify."""
    wait_for(lambda: any(a["shopDomain"] == "demo.myshopify.com" for a in _accounts(system)), 60)
    with system.emanage() as crm:
        gids = {p["id"] for p in products}
        took = wait_for(
            lambda: (
                gids
                <= {
                    (p.get("externalRefs") or {}).get("shopifyProductId")
                    for p in emanage_products(crm)
                }
            ),
            60,
            every=0.5,
        )
        print(f"demo catalog in eManageCRM {took:.1f} s after the sign-up")
        # The seeding's 100 webhooks, the backfill's resyncs and their echoes are all read back
        # from Shopify within its rate limit (the sandbox's cost budget): a few seconds more.
        took = wait_for(lambda: system.unsettled_sync_events() == 0, 90, every=0.5)
        print(f"catalog's sync events settled {took:.1f} s later")

        priced, edited = products[1], products[2]
        variant = priced["variants"]["nodes"][0]
        result = system.graphql(
            token,
            PRICE,
            {"productId": priced["id"], "variants": [{"id": variant["id"], "price": "123.45"}]},
        )
        assert result["data"]["productVariantsBulkUpdate"]["userErrors"] == []  # type: ignore[index]

        def price_synced() -> bool:
            found = emanage_product(crm, str(priced["id"]))
            return found is not None and any(
                v["productPrices"]["DiscountedPrice"]["Value"] == 123.45 for v in found["variants"]
            )

        print(f"Shopify price edit in eManageCRM after {wait_for(price_synced, 5, 0.05):.2f} s")

        current = emanage_product(crm, str(edited["id"]))
        assert current is not None
        body = {**current, "name": "Renamed in eManageCRM"}  # the whole product, as read
        put = crm.put(
            f"/products/{current['productId']}",
            json=body,
            headers={"If-Match": f'"{current["version"]}"', "Idempotency-Key": str(uuid.uuid4())},
        )
        assert put.status_code == 200, put.text

        def title_synced() -> bool:
            found = system.graphql(token, PRODUCT, {"id": edited["id"]})["data"]["product"]  # type: ignore[index]
            return bool(found["title"] == "Renamed in eManageCRM")

        print(f"eManageCRM edit in Shopify after {wait_for(title_synced, 5, 0.05):.2f} s")


def _accounts(system: System) -> list[dict[str, Any]]:
    body = httpx.get(f"{system.emanage_url}/_sandbox/accounts", timeout=10).json()
    return list(body["accounts"] if isinstance(body, dict) else body)


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
    the_demo_catalog_syncs_both_ways(system, token, products)

    target = products[0]
    result = system.graphql(
        token, UPDATE, {"product": {"id": target["id"], "title": "Renamed by the e2e test"}}
    )
    assert result["data"]["productUpdate"]["userErrors"] == []  # type: ignore[index]
    wait_for(lambda: system.stored_topics().get("products/update", 0) >= 1)

    assert system.interrupt() == 0
    for url in (system.app_url, system.sandbox_url):
        with pytest.raises(httpx.ConnectError):
            httpx.get(f"{url}/healthz", timeout=5)

    print(f"healthy after restart in {system.start():.1f} s")
    after_restart = all_products(system, token)
    assert len(after_restart) == len(products)
    assert any(p["title"] == "Renamed by the e2e test" for p in after_restart)
    assert system.stored_topics()["products/create"] == 50
    assert system.interrupt() == 0
