"""Uninstall, then reinstall, over real HTTP against the served sandboxes: the uninstall
revokes and deletes the shop's CTRwow tokens; the reinstall re-establishes every connection it
cut — partner provisioning of the same CTRwow account with a new grant, the same eManageCRM
tenant — and until it has, the App Home does not call CTRwow connected."""

from __future__ import annotations

import asyncio

import httpx
import pytest
from sqlalchemy import select

from syncapp.billing.models import AppSubscription
from syncapp.onboarding import (
    JobStatus,
    RetryPolicy,
    get_ctrwow_token,
    open_onboarding,
)
from syncapp.onboarding.models import CtrwowAccount, OnboardingJob
from syncapp.onboarding.uninstall import revoke_ctrwow_on_uninstall
from syncapp.store.models import Credential, Shop
from syncapp.worker import Worker, WorkerOptions, default_handlers
from tests.integration.app_home.conftest import Home
from tests.integration.onboarding.conftest import signup_pass
from tests.integration.shops.conftest import handle_for

FAST = RetryPolicy(base_seconds=0.05, cap_seconds=0.3, max_attempts=30)


def _uninstall(home: Home, shop: str) -> None:
    """The merchant removes the app in Shopify; the worker handles ``app/uninstalled``."""
    removed = home.system.control.post(f"/_sandbox/shops/{shop}/uninstall")
    assert removed.status_code == 200, removed.text
    home.system.wait_for_event(shop, "app/uninstalled")
    worker = Worker(
        home.system.runtime,
        options=WorkerOptions(),
        handlers=default_handlers(
            uninstall_hooks=(revoke_ctrwow_on_uninstall(home.system.settings),)
        ),
    )
    while worker.run_once():
        pass


def _reinstall(home: Home, shop: str) -> None:
    added = home.system.control.post(f"/_sandbox/shops/{shop}/install")
    assert added.status_code == 200, added.text
    home.system.install(shop)


def _ctrwow_credentials(home: Home) -> int:
    with home.system.runtime.sessions() as session:
        return len(session.scalars(select(Credential).where(Credential.provider == "ctrwow")).all())


def _run_sign_up(home: Home, shop: str) -> str:
    """Run the sign-up until it is over; then a CTRwow API call with the shop's token."""

    async def run() -> str:
        async with open_onboarding(
            home.system.settings, home.system.runtime.engine, policy=FAST
        ) as rt:
            # Until a deadline, not a count of passes: on a loaded machine (`make test`'s
            # workers) a pass can find the job's next step not yet due, or its call slow.
            deadline = asyncio.get_running_loop().time() + 60
            while asyncio.get_running_loop().time() < deadline:
                await signup_pass(rt, home.system.runtime.engine)
                if home.system.fetch(shop, "/app/api/shop").json()["onboarding"] == "done":
                    token = await get_ctrwow_token(rt, shop=shop)
                    me = await rt.ctrwow.me(token)
                    return me.id
                await asyncio.sleep(0.05)
        raise AssertionError(f"the sign-up of {shop} did not finish")

    return asyncio.run(run())


def test_a_reinstall_reconnects_the_same_ctrwow_account_and_emanage_tenant(
    home: Home, request: pytest.FixtureRequest
) -> None:
    shop = home.system.create_shop(handle_for(request, "r"), name="Comeback Store")
    home.sign_up(shop)
    with home.system.runtime.sessions() as session:
        ctrwow_id = session.scalar(select(CtrwowAccount.account_id))
    emanage_before = home.emanage_account(shop)

    _uninstall(home, shop)
    assert _ctrwow_credentials(home) == 0

    _reinstall(home, shop)
    # Before the sign-up has run again there are no CTRwow tokens: not shown as connected.
    page = home.system.open_app_home(shop).text
    assert 'id="ctrwow-account"' not in page
    assert 'id="ctrwow-setting-up"' in page
    assert "Connect your CTRwow account" not in page

    # The sign-up runs again: a CTRwow API call with the shop's (new) token succeeds, on the
    # same CTRwow account; eManageCRM is the same tenant, and neither system has a second one.
    assert _run_sign_up(home, shop) == ctrwow_id
    assert _ctrwow_credentials(home) == 2
    assert home.emanage_account(shop)["id"] == emanage_before["id"]
    emanage_all = httpx.get(f"{home.emanage_url}/_sandbox/accounts", timeout=10).json()
    assert [a["shopDomain"] for a in emanage_all["accounts"]].count(shop) == 1
    ctrwow_all = httpx.get(f"{home.ctrwow_url}/_sandbox/accounts", timeout=10).json()
    assert len(ctrwow_all["accounts"]) == 1
    page = home.system.open_app_home(shop).text
    name = ctrwow_all["accounts"][0]["name"]
    assert f'<span id="ctrwow-account">{name}</span>' in page  # named, not its id
    assert ctrwow_id not in page
    shopify = page.split('id="shopify-connection"')[1].split("</dd>")[0]
    assert ">Connected</s-badge>" in shopify
    assert 'id="ctrwow-setting-up"' not in page


def test_a_reinstall_after_a_finished_sign_up_queues_it_again(
    home: Home, request: pytest.FixtureRequest
) -> None:
    """The job was ``done`` before the uninstall; the reinstall makes it due again."""
    shop = home.system.create_shop(handle_for(request, "q"))
    home.sign_up(shop)
    _uninstall(home, shop)
    _reinstall(home, shop)
    with home.system.runtime.sessions() as session:
        status = session.scalar(
            select(OnboardingJob.status)
            .join(Shop, Shop.id == OnboardingJob.shop_id)
            .where(Shop.domain == shop)
        )
    assert status == JobStatus.PENDING


def test_a_reinstalled_shop_is_on_the_free_plan(home: Home, request: pytest.FixtureRequest) -> None:
    """Uninstalling cancels the app's charges in Shopify, which sends no subscription webhook
    for them: after a reinstall the shop is on Free, not on its old plan shown as active."""
    shop = home.system.create_shop(handle_for(request, "r"), name="Comeback Store")
    home.sign_up(shop)
    created = home.system.fetch(shop, "/app/api/billing/plan", "POST", json={"plan": "pro"})
    home.approve(created.json()["confirmation_url"])
    home.system.wait_for_event(shop, "app_subscriptions/update")
    home.system.drain()
    assert home.system.fetch(shop, "/app/api/billing").json()["plan"] == "pro"
    _uninstall(home, shop)
    _reinstall(home, shop)
    state = home.system.fetch(shop, "/app/api/billing").json()
    assert (state["plan"], state["features"]["order_sync"]) == ("free", False)
    with home.system.runtime.sessions() as session:
        assert [r.status for r in session.scalars(select(AppSubscription))] == ["CANCELLED"]
