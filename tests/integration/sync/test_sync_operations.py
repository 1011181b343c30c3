"""The reconcile sweep against the Shopify sandbox (inclusive watermark, fingerprint dedupe,
two edits in one second) and the operators' commands: ``syncapp sync status``, ``backfill``
(with its progress until published) and ``resync``."""

from __future__ import annotations

import threading
import time
from collections.abc import Iterator
from datetime import datetime
from decimal import Decimal
from pathlib import Path
from typing import Any

import pytest
from sqlalchemy import select
from typer.testing import CliRunner

from syncapp.cli import app as cli
from syncapp.store.models import Shop
from syncapp.sync.backfill import advance_backfill
from syncapp.sync.fingerprint import fingerprint
from syncapp.sync.mapping import product_from_shopify, product_set_input
from syncapp.sync.models import PRODUCT, SyncCursor, SyncLink
from syncapp.sync.reconcile import SHOPIFY_CURSOR, request_due_reconciles, sweep_shopify
from tests.integration.shops.conftest import System, handle_for, running_system
from tests.integration.sync.test_backfill import (
    _OPEN,
    cursor,
    product,
    resyncs,
    runtime,
    shop_with_products,
)


@pytest.fixture(scope="module")
def system(tmp_path_factory: pytest.TempPathFactory) -> Iterator[System]:
    tmp = tmp_path_factory.mktemp("sync-ops")
    with running_system(tmp, f"sqlite:///{tmp / 'app.db'}", sandbox_public_url=True) as running:
        yield running


@pytest.fixture(autouse=True)
def _close_runtimes() -> Iterator[None]:
    yield
    while _OPEN:
        _OPEN.pop().close()


def shop_id_of(system: System, shop: str) -> int:
    with system.runtime.sessions() as session:
        found = session.scalar(select(Shop.id).where(Shop.domain == shop))
        assert found is not None
        return found


def agree(system: System, shop: str, gid: str) -> str:
    """Record the product's current state as agreed (what the engine does after a sync);
    returns its updatedAt."""
    read = runtime(system).products(shop).read_product(gid)
    assert read is not None
    node, variants = read
    with system.runtime.sessions.begin() as session:
        session.add(
            SyncLink(
                shop_id=shop_id_of(system, shop),
                kind=PRODUCT,
                shopify_gid=gid,
                emanage_id=f"em-{gid.rsplit('/', 1)[1]}",
                shopify_fingerprint=fingerprint(product_from_shopify(node, variants)),
                shopify_updated_at=datetime.fromisoformat(node["updatedAt"].replace("Z", "+00:00")),
            )
        )
    return str(node["updatedAt"])


def set_watermark(system: System, shop: str, watermark: str) -> None:
    with system.runtime.sessions.begin() as session:
        session.merge(
            SyncCursor(
                shop_id=shop_id_of(system, shop),
                name=SHOPIFY_CURSOR,
                position={"watermark": watermark},
                done=False,
            )
        )


def reprice(system: System, shop: str, gid: str, price: str) -> str:
    client = runtime(system).products(shop)
    read = client.read_product(gid)
    assert read is not None
    variant = read[1][0]["id"]
    client.update_variants(gid, [{"id": variant, "price": price}])
    after = client.read_product(gid)
    assert after is not None
    return str(after[0]["updatedAt"])


def published_gids(system: System, shop: str) -> list[str]:
    return [e["data"]["shopifyProductId"] for e in resyncs(system, shop)]


def test_the_sweep_catches_two_edits_in_one_second_and_skips_agreed_products(
    system: System, request: pytest.FixtureRequest
) -> None:
    """Re-read products whose fingerprint equals the agreed one publish nothing; an edit is
    published once; a second product edited in the same second as the watermark is caught by
    the next sweep (the watermark is inclusive)."""
    rt = runtime(system)
    for attempt in range(5):
        shop = system.create_shop(handle_for(request, f"rc{attempt}"), plan_name="Shopify Plus")
        system.install(shop)
        client = rt.products(shop)
        a = client.set_product(product_set_input(product(1)))["id"]
        b = client.set_product(product_set_input(product(2)))["id"]
        set_watermark(system, shop, min(agree(system, shop, a), agree(system, shop, b)))
        assert sweep_shopify(rt, shop) == 0  # re-read, but both as agreed
        first_edit = reprice(system, shop, a, "50.00")
        assert sweep_shopify(rt, shop) == 1
        assert published_gids(system, shop) == [a]
        watermark = cursor_position(system, shop)["watermark"]
        assert watermark == first_edit
        second_edit = reprice(system, shop, b, "60.00")
        if second_edit == first_edit:
            break  # B changed in the very second the watermark names
    else:
        pytest.fail("could not edit two products within one second in five attempts")
    assert sweep_shopify(rt, shop) == 1
    assert sorted(published_gids(system, shop)) == sorted([a, b])  # A waits once, B caught
    (event,) = [e for e in resyncs(system, shop) if e["data"]["shopifyProductId"] == b]
    assert event["data"]["reason"] == "reconcile"
    assert product_from_shopify(event["data"]["snapshot"]).variants[0].price == Decimal("60")


def cursor_position(system: System, shop: str) -> dict[str, Any]:
    with system.runtime.sessions() as session:
        row = session.get(SyncCursor, (shop_id_of(system, shop), SHOPIFY_CURSOR))
        assert row is not None
        return dict(row.position)


def test_sweeps_are_requested_once_per_interval_for_shops_whose_backfill_is_done(
    system: System, request: pytest.FixtureRequest
) -> None:
    """Two workers ticking in the same interval publish one reconcile.requested per shop."""
    shop = shop_with_products(system, request, 1)
    run = cursor_run_after_cli(system, shop)
    rt = runtime(system)
    while advance_backfill(rt, shop, run) is not None:
        time.sleep(0.05)
    now = time.time()
    first = request_due_reconciles(system.runtime.sessions, interval=60, now=now)
    again = request_due_reconciles(system.runtime.sessions, interval=60, now=now)
    later = request_due_reconciles(system.runtime.sessions, interval=60, now=now + 60)
    assert first >= 1
    assert again == 0
    assert later == first


def cursor_run_after_cli(system: System, shop: str) -> str:
    result = invoke(system, ["sync", "backfill", shop, "--no-wait"])
    assert result.exit_code == 0, result.output
    assert "started" in result.output
    return str(cursor(system, shop)["run"])


@pytest.fixture(autouse=True)
def _cli_env(system: System, monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("SYNCAPP_DATABASE_URL", system.settings.database_url)
    monkeypatch.setenv("SYNCAPP_DATA_DIR", str(Path(system.settings.data_dir)))


def invoke(system: System, args: list[str]) -> Any:
    return CliRunner().invoke(cli, args, env={"COLUMNS": "200"})


def test_sync_backfill_starts_or_resumes_and_follows_until_published(
    system: System, request: pytest.FixtureRequest
) -> None:
    """`sync backfill` starts a run, a second call resumes the same run, and with the worker
    running it follows the run to the end and reports what was published."""
    shop = shop_with_products(system, request, 4)
    run = cursor_run_after_cli(system, shop)
    resumed = invoke(system, ["sync", "backfill", shop, "--no-wait"])
    assert resumed.exit_code == 0
    assert f"backfill {run} resumed" in resumed.output
    rt = runtime(system)

    def work() -> None:
        while advance_backfill(rt, shop, run) is not None:
            time.sleep(0.05)

    worker = threading.Thread(target=work)
    worker.start()
    followed = invoke(system, ["sync", "backfill", shop, "--timeout", "60"])
    worker.join(timeout=60)
    assert followed.exit_code == 0, followed.output
    assert f"backfill {run} done: 4 products published" in followed.output
    assert len(resyncs(system, shop)) == 4


def test_sync_status_and_resync_of_one_product_or_the_whole_shop(
    system: System, request: pytest.FixtureRequest
) -> None:
    """`sync status` shows the shop's row; `sync resync` publishes one product's event
    (gid, numeric id or eManageCRM id) or starts a new backfill for the whole shop; unknown
    shops and malformed ids are refused."""
    shop = system.create_shop(handle_for(request, "cli"))
    system.install(shop)
    status = invoke(system, ["sync", "status", shop])
    assert status.exit_code == 0, status.output
    assert shop in status.output
    assert "dead letters" in status.output
    everyone = invoke(system, ["sync", "status"])
    assert everyone.exit_code == 0
    assert shop in everyone.output
    for obj, key in (
        ("gid://shopify/Product/42", "Product/42"),
        ("43", "Product/43"),
        ("prod_9f8e", "EmanageProduct/prod_9f8e"),
    ):
        done = invoke(system, ["sync", "resync", shop, obj])
        assert done.exit_code == 0, done.output
        assert any(e["_key"] == f"{shop}/{key}" for e in resyncs(system, shop)), key
    whole = invoke(system, ["sync", "resync", shop])
    assert whole.exit_code == 0
    assert "whole shop" in whole.output
    assert cursor(system, shop)["reason"] == "resync"
    assert invoke(system, ["sync", "resync", shop, "gid://shopify/Order/1"]).exit_code == 2
    assert invoke(system, ["sync", "resync", "nobody", "42"]).exit_code == 2
    assert invoke(system, ["sync", "status", "nobody"]).exit_code == 2
