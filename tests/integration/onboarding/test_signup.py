"""The sign-up job against both sandboxes over HTTP: it completes, converges, retries, links
a dedicated subscription and stops for the merchant when only they can unblock it."""

from __future__ import annotations

from datetime import UTC, datetime, timedelta

import pytest
from sqlalchemy import select

from syncapp.onboarding import request_dedicated_link, signup_status
from syncapp.onboarding.models import CtrwowAccount, EmanageAccount, OnboardingStep
from syncapp.onboarding.runtime import OnboardingRuntime
from syncapp.store.models import Connection
from syncapp.store.vault import get_secret
from tests.integration.onboarding.conftest import (
    FAST,
    SHOP,
    SHOP_EMAIL,
    World,
    run_to_end,
    signup_pass,
)

pytestmark = pytest.mark.anyio


async def test_a_job_runs_to_done_with_one_account_in_each_system(
    world: World, runtime: OnboardingRuntime
) -> None:
    """After install the job creates one eManageCRM account with its owner and one CTRwow
    account, and records their ids and tokens."""
    shop_id = world.install()
    assert await run_to_end(runtime, world, shop_id) == "done"

    [emanage] = world.emanage_accounts()
    [ctrwow] = world.ctrwow_accounts()
    assert [u["email"] for u in emanage["users"]] == [SHOP_EMAIL]
    with world.session() as session:
        view = signup_status(session, shop_id=shop_id)
        assert view is not None
        assert view.emanage_account_id == emanage["id"]
        assert view.emanage_kind == "shared"
        assert view.emanage_cid == emanage["cid"]
        assert view.emanage_websales_api_url == emanage["websalesApiUrl"]
        assert view.emanage_owner_user_id == emanage["users"][0]["id"]
        assert view.ctrwow_account_id == ctrwow["id"]
        token = get_secret(
            session, runtime.vault, shop_id=shop_id, provider="ctrwow", name="access_token"
        )
        statuses = dict(session.execute(select(Connection.provider, Connection.status)).all())
    assert token is not None
    assert (await runtime.ctrwow.me(token)).id == ctrwow["id"]
    assert statuses == {"emanage": "active", "ctrwow": "active"}


async def test_running_the_job_again_converges_on_the_existing_accounts(
    world: World, runtime: OnboardingRuntime
) -> None:
    """A reinstall (job pending again, steps sent under new keys) creates nothing new: the
    409s name the existing objects and the job converges on them."""
    shop_id = world.install()
    await run_to_end(runtime, world, shop_id)
    with world.session() as session, session.begin():
        for step in session.scalars(select(OnboardingStep)):
            step.status = "failed"  # so the new run sends every step again, new generation
        world_job = session.merge(world.job(shop_id))
        world_job.status = "pending"
    first_ctrwow = world.ctrwow_accounts()[0]["id"]

    assert await run_to_end(runtime, world, shop_id) == "done"

    assert len(world.emanage_accounts()) == 1
    assert [a["id"] for a in world.ctrwow_accounts()] == [first_ctrwow]
    with world.session() as session:
        steps = session.scalars(select(OnboardingStep)).all()
    assert {s.generation for s in steps} == {1}


async def test_a_failing_emanage_is_retried_with_backoff_and_the_error_is_visible(
    world: World, runtime: OnboardingRuntime
) -> None:
    """503 for the next three requests: the step waits with a merchant-readable last_error,
    then completes; nothing is created twice."""
    response = world.control.post(
        f"{world.emanage_url}/_sandbox/faults", json={"failNext": 3, "status": 503}
    )
    assert response.status_code == 200
    shop_id = world.install()

    before = datetime.now(UTC)
    await signup_pass(runtime, world.engine)
    with world.session() as session:
        step = session.scalar(
            select(OnboardingStep).where(OnboardingStep.step == "emanage_account")
        )
        assert step is not None
        assert step.status == "pending"
        assert step.last_error is not None
        assert "eManageCRM is not available right now" in step.last_error
        assert step.next_attempt_at is not None
        # At least half the first backoff step after the failure ("equal jitter"), however
        # long the attempt took: comparing with the time of this read would race it.
        least = timedelta(seconds=FAST.base_seconds / 2)
        assert step.next_attempt_at.replace(tzinfo=UTC) >= before + least
    assert world.job(shop_id).last_error is not None

    assert await run_to_end(runtime, world, shop_id) == "done"
    assert len(world.emanage_accounts()) == 1
    with world.session() as session:
        step = session.scalar(
            select(OnboardingStep).where(OnboardingStep.step == "emanage_account")
        )
        assert step is not None
        assert step.attempts >= 2
        assert step.last_error is None


async def test_a_ctrwow_that_is_down_for_a_while_is_waited_for(
    world: World, runtime: OnboardingRuntime
) -> None:
    """CTRwow down for one second: the CTRwow step retries until it is back, then finishes."""
    world.control.post(f"{world.ctrwow_url}/_sandbox/faults", json={"down_for": 1})
    shop_id = world.install()

    assert await run_to_end(runtime, world, shop_id) == "done"

    assert len(world.ctrwow_accounts()) == 1
    with world.session() as session:
        step = session.scalar(select(OnboardingStep).where(OnboardingStep.step == "ctrwow_account"))
        assert step is not None
        assert step.attempts > 1


async def test_a_dedicated_subscription_is_linked_instead_of_a_shared_tenant(
    world: World, runtime: OnboardingRuntime
) -> None:
    """With a subscription id and link code on the job, the shop's account is the merchant's
    own subscription and no shared tenant is created."""
    response = world.control.post(
        f"{world.emanage_url}/_sandbox/subscriptions",
        json={"name": "Acme Inc.", "email": SHOP_EMAIL, "currency": "USD"},
    )
    subscription = response.json()
    shop_id = world.install()
    with world.session() as session, session.begin():
        request_dedicated_link(
            session,
            runtime.vault,
            shop_id=shop_id,
            subscription_id=subscription["subscriptionId"],
            link_code=subscription["linkCode"],
        )

    assert await run_to_end(runtime, world, shop_id) == "done"

    [account] = world.emanage_accounts()
    assert account["id"] == subscription["accountId"]
    assert account["shopDomain"] == SHOP
    with world.session() as session:
        row = session.scalar(select(EmanageAccount))
        assert row is not None
        assert (row.account_id, row.kind) == (subscription["accountId"], "dedicated")
        assert row.subscription_id == subscription["subscriptionId"]
        link_code = get_secret(
            session, runtime.vault, shop_id=shop_id, provider="emanage", name="link_code"
        )
    assert link_code is None


async def test_a_wrong_link_code_asks_the_merchant_for_a_new_one(
    world: World, runtime: OnboardingRuntime
) -> None:
    """A refused link code stops the job as needs_merchant, saying how to get a new code."""
    subscription = world.control.post(f"{world.emanage_url}/_sandbox/subscriptions").json()
    shop_id = world.install()
    with world.session() as session, session.begin():
        request_dedicated_link(
            session,
            runtime.vault,
            shop_id=shop_id,
            subscription_id=subscription["subscriptionId"],
            link_code="LNK-WRNG-CODE",
        )

    assert await run_to_end(runtime, world, shop_id) == "needs_merchant"
    assert "Create a new code" in (world.job(shop_id).last_error or "")


async def test_an_email_with_its_own_ctrwow_account_needs_the_merchant(
    world: World, runtime: OnboardingRuntime
) -> None:
    """CTRwow's email_in_use stops the job as needs_merchant with the consent-screen advice;
    the eManageCRM steps are done and the CTRwow connection needs attention."""
    response = world.control.post(
        f"{world.ctrwow_url}/_sandbox/accounts",
        json={"email": SHOP_EMAIL, "name": "Merchant's own", "password": "correct horse"},
    )
    assert response.status_code == 201
    shop_id = world.install()

    assert await run_to_end(runtime, world, shop_id) == "needs_merchant"

    with world.session() as session:
        view = signup_status(session, shop_id=shop_id)
        ctrwow_connection = session.scalar(
            select(Connection).where(Connection.provider == "ctrwow")
        )
        assert session.scalar(select(CtrwowAccount)) is None
    assert view is not None
    assert [s.status for s in view.steps] == ["done", "done", "needs_merchant"]
    assert "consent screen" in (view.steps[2].last_error or "")
    assert ctrwow_connection is not None
    assert ctrwow_connection.status == "needs_attention"
    assert len(world.ctrwow_accounts()) == 1
