"""The Sync API over real HTTP on the served app: keys, scopes and shop binding; status,
conflicts, settings and dead letters of a shop; its OpenAPI document."""

from __future__ import annotations

from collections.abc import Iterator
from pathlib import Path

import pytest
from sqlalchemy import select
from typer.testing import CliRunner

from syncapp.bus.models import InboundEvent
from syncapp.cli import app as cli
from syncapp.store.models import Shop
from syncapp.sync.events import RESYNC_REQUESTED
from syncapp.sync.models import PRODUCT, VARIANT, SyncConflict, SyncLink
from syncapp.web.sync_api.keys import create_key, revoke_key
from tests.integration.shops.conftest import System, handle_for, running_system
from tests.integration.shops.test_worker import deliver


@pytest.fixture(scope="module")
def system(tmp_path_factory: pytest.TempPathFactory) -> Iterator[System]:
    tmp = tmp_path_factory.mktemp("sync-api")
    with running_system(tmp, f"sqlite:///{tmp / 'app.db'}") as system:
        yield system


@pytest.fixture
def shop(system: System, request: pytest.FixtureRequest) -> str:
    domain = system.create_shop(handle_for(request, "api"))
    system.install(domain)
    return domain


def call(system: System, key: str | None, method: str, path: str, **kw: object):  # type: ignore[no-untyped-def]
    headers = {"Authorization": f"Bearer {key}"} if key else {}
    return system.app.request(method, f"/api/v1{path}", headers=headers, **kw)  # type: ignore[arg-type]


def key(system: System, *scopes: str, shop: str | None = None) -> str:
    return create_key(system.runtime.sessions, name="test", scopes=list(scopes), shop=shop)


def test_every_route_wants_a_live_key(system: System, shop: str) -> None:
    good = key(system, "sync:read")
    assert call(system, good, "GET", f"/shops/{shop}/sync").status_code == 200
    for presented in (None, "nonsense", good[:-2] + "xx", "sak_0123456789abcdef_guess"):
        answer = call(system, presented, "GET", f"/shops/{shop}/sync")
        assert answer.status_code == 401, presented
        assert answer.headers["www-authenticate"] == "Bearer"
    basic = system.app.get(f"/api/v1/shops/{shop}/sync", headers={"Authorization": f"Basic {good}"})
    assert basic.status_code == 401
    revoke_key(system.runtime.sessions, good.split("_")[1])
    assert call(system, good, "GET", f"/shops/{shop}/sync").status_code == 401


def test_a_key_can_do_only_its_scopes_to_its_own_shop(system: System, shop: str) -> None:
    other = system.create_shop(handle_for_other(shop))
    system.install(other)
    mine = key(system, "sync:read", shop=shop)
    assert call(system, mine, "GET", f"/shops/{shop}/sync").status_code == 200
    for path in ("/sync", "/conflicts", "/dead-letters"):
        refused = call(system, mine, "GET", f"/shops/{other}{path}")
        assert refused.status_code == 403, path
        assert refused.json()["detail"] == "this key is for another shop"
    write = call(
        system, mine, "PUT", f"/shops/{shop}/settings", json={"keep_products_synchronized": False}
    )
    assert write.status_code == 403
    assert "sync:write" in write.json()["detail"]
    replay = call(system, mine, "POST", f"/shops/{shop}/dead-letters/replay", json={})
    assert replay.status_code == 403


def handle_for_other(shop: str) -> str:
    return "other-" + shop.split(".")[0][-10:]


def test_status_shows_links_conflicts_and_settings(system: System, shop: str) -> None:
    with system.runtime.sessions.begin() as session:
        shop_id = session.scalar(select(Shop.id).where(Shop.domain == shop))
        assert shop_id is not None
        product = SyncLink(shop_id=shop_id, kind=PRODUCT, shopify_gid="gid://shopify/Product/9")
        session.add(product)
        session.flush()
        for n in range(3):
            session.add(SyncLink(shop_id=shop_id, kind=VARIANT, parent_id=product.id, sku=f"S{n}"))
        session.add(
            SyncConflict(
                shop_id=shop_id,
                link_id=product.id,
                kind="field",
                field="title",
                shopify_value="Mug",
                emanage_value="Cup",
                winner="shopify",
                reason="newest change wins",
            )
        )
    admin = key(system, "sync:read", "sync:write")
    status = call(system, admin, "GET", f"/shops/{shop}/sync").json()
    assert (status["linked_products"], status["linked_variants"]) == (1, 3)
    assert (status["open_conflicts"], status["keep_products_synchronized"]) == (1, True)
    (conflict,) = call(system, admin, "GET", f"/shops/{shop}/conflicts").json()
    assert (conflict["field"], conflict["shopify_value"], conflict["emanage_value"]) == (
        "title",
        "Mug",
        "Cup",
    )
    assert conflict["shopify_gid"] == "gid://shopify/Product/9"
    off = {"keep_products_synchronized": False}
    first = call(system, admin, "PUT", f"/shops/{shop}/settings", json=off).json()
    again = call(system, admin, "PUT", f"/shops/{shop}/settings", json=off).json()
    assert (first["changed"], again["changed"]) == (True, False)
    assert (
        call(system, admin, "GET", f"/shops/{shop}/sync").json()["keep_products_synchronized"]
        is False
    )
    bad = call(system, admin, "PUT", f"/shops/{shop}/settings", json={"keep": "yes"})
    assert bad.status_code == 422


def test_dead_letters_are_listed_and_replayed_once(system: System, shop: str) -> None:
    """An app/uninstalled naming another shop is dead-lettered by the worker; the API lists it
    without its payload and replays it once (a second replay finds nothing)."""
    event_id = deliver(system, "app/uninstalled", shop, {"domain": "someone-else.myshopify.com"})
    system.drain()
    ops = key(system, "sync:read", "dlq:replay")
    (dead,) = call(system, ops, "GET", f"/shops/{shop}/dead-letters").json()
    assert (dead["id"], dead["topic"]) == (event_id, "app/uninstalled")
    assert "payload" not in dead
    assert dead["last_error"]
    before = call(system, ops, "GET", f"/shops/{shop}/sync").json()
    assert before["dead_letters"] == 1
    path = f"/shops/{shop}/dead-letters/replay"
    assert call(system, ops, "POST", path, json={"ids": [event_id]}).json() == {"replayed": 1}
    assert call(system, ops, "POST", path, json={"ids": [event_id]}).json() == {"replayed": 0}
    status = call(system, ops, "GET", f"/shops/{shop}/sync").json()
    assert status["dead_letters"] == 0
    assert status["pending_events"] == before["pending_events"] + 1


def test_unknown_and_malformed_shops(system: System) -> None:
    admin = key(system, "sync:read")
    assert call(system, admin, "GET", "/shops/nobody.myshopify.com/sync").status_code == 404
    assert call(system, admin, "GET", "/shops/not-a-shop.example.com/sync").status_code == 422


def test_the_openapi_document_lists_every_route(system: System) -> None:
    document = system.app.get("/api/openapi.json").json()
    assert set(document["paths"]) == {
        "/v1/shops/{shop}/sync",
        "/v1/shops/{shop}/conflicts",
        "/v1/shops/{shop}/settings",
        "/v1/shops/{shop}/dead-letters",
        "/v1/shops/{shop}/dead-letters/replay",
        "/v1/shops/{shop}/resync",
    }
    resync = document["paths"]["/v1/shops/{shop}/resync"]["post"]
    assert {"202", "401", "403", "404", "422"} <= set(resync["responses"])


def test_the_cli_creates_a_key_the_api_takes(
    system: System, shop: str, monkeypatch: pytest.MonkeyPatch, tmp_path: Path
) -> None:
    monkeypatch.setenv("SYNCAPP_DATABASE_URL", system.settings.database_url)
    monkeypatch.setenv("SYNCAPP_DATA_DIR", str(system.settings.data_dir))
    runner = CliRunner()
    made = runner.invoke(cli, ["apikey", "create", "ops", "--scope", "sync:read", "--shop", shop])
    assert made.exit_code == 0, made.output
    presented = made.output.strip()
    assert call(system, presented, "GET", f"/shops/{shop}/sync").status_code == 200
    listed = runner.invoke(cli, ["apikey", "list"], env={"COLUMNS": "200"})
    assert shop in listed.output
    assert presented.split("_")[2] not in listed.output
    wrong = runner.invoke(cli, ["apikey", "create", "ops", "--scope", "everything"])
    assert wrong.exit_code != 0
    gone = runner.invoke(cli, ["apikey", "revoke", presented.split("_")[1]])
    assert gone.exit_code == 0
    assert call(system, presented, "GET", f"/shops/{shop}/sync").status_code == 401


def resync_events(system: System, shop: str) -> list[InboundEvent]:
    with system.runtime.sessions() as session:
        return list(
            session.scalars(
                select(InboundEvent).where(
                    InboundEvent.shop_domain == shop, InboundEvent.topic == RESYNC_REQUESTED.name
                )
            )
        )


def test_resync_takes_sync_write_on_its_own_shop_only(system: System, shop: str) -> None:
    """The auth matrix of POST …/resync: no key 401; a read-only key 403; a write key bound to
    another shop 403 and publishes nothing there; a write key of the shop (or an unbound one)
    202 with the event published on the product's key."""
    other = system.create_shop(handle_for_other(shop) + "r")
    system.install(other)
    body = {"object": "gid://shopify/Product/77"}
    path = f"/shops/{shop}/resync"
    assert call(system, None, "POST", path, json=body).status_code == 401
    reader = key(system, "sync:read", shop=shop)
    assert call(system, reader, "POST", path, json=body).status_code == 403
    theirs = key(system, "sync:write", shop=other)
    refused = call(system, theirs, "POST", path, json=body)
    assert refused.status_code == 403
    assert refused.json()["detail"] == "this key is for another shop"
    assert resync_events(system, shop) == []
    mine = key(system, "sync:write", shop=shop)
    done = call(system, mine, "POST", path, json=body)
    assert done.status_code == 202, done.text
    assert (done.json()["scope"], done.json()["shopify_gid"]) == ("shopify", body["object"])
    (event,) = resync_events(system, shop)
    assert event.partition_key == f"{shop}/Product/77"
    assert event.delivery_id == done.json()["event_id"]
    assert resync_events(system, other) == []
    unbound = key(system, "sync:write")
    emanage = call(system, unbound, "POST", path, json={"object": "prod_1"}).json()
    assert (emanage["scope"], emanage["emanage_id"]) == ("emanage", "prod_1")


def test_resync_of_the_whole_shop_starts_a_backfill_and_bad_objects_are_refused(
    system: System, shop: str
) -> None:
    """No object (or no body): a new backfill run; an id that names no product: 422; an
    unknown shop: 404."""
    writer = key(system, "sync:write")
    whole = call(system, writer, "POST", f"/shops/{shop}/resync", json={})
    assert whole.status_code == 202
    assert whole.json()["scope"] == "shop"
    assert whole.json()["run"]
    bodiless = system.app.post(
        f"/api/v1/shops/{shop}/resync", headers={"Authorization": f"Bearer {writer}"}
    )
    assert bodiless.status_code == 202
    assert bodiless.json()["run"] != whole.json()["run"]
    for bad in ("gid://shopify/Order/1", "no spaces please", "x" * 200):
        answer = call(system, writer, "POST", f"/shops/{shop}/resync", json={"object": bad})
        assert answer.status_code == 422, bad
    extra = call(system, writer, "POST", f"/shops/{shop}/resync", json={"obj": "1"})
    assert extra.status_code == 422
    missing = call(system, writer, "POST", "/shops/nobody.myshopify.com/resync", json={})
    assert missing.status_code == 404


def test_turning_sync_on_through_the_api_starts_a_backfill(system: System, shop: str) -> None:
    """PUT settings ON after OFF publishes the run's backfill.requested; ON again does not."""
    from syncapp.sync.events import BACKFILL_REQUESTED

    admin = key(system, "sync:write")
    path = f"/shops/{shop}/settings"
    call(system, admin, "PUT", path, json={"keep_products_synchronized": False})
    for _ in range(2):
        answer = call(system, admin, "PUT", path, json={"keep_products_synchronized": True})
        assert answer.status_code == 200
    with system.runtime.sessions() as session:
        steps = session.scalars(
            select(InboundEvent.delivery_id).where(
                InboundEvent.shop_domain == shop, InboundEvent.topic == BACKFILL_REQUESTED.name
            )
        ).all()
    assert len(steps) == 1
    assert steps[0].startswith(f"{shop}/backfill/")
