"""Real processes: a runner killed (SIGKILL) between "written in the other system" and
"recorded here" is resumed without creating anything twice, and two processes that need a
fresh CTRwow token at once send one refresh between them."""

from __future__ import annotations

import asyncio
import subprocess
import threading
from datetime import UTC, datetime, timedelta

import pytest
from sqlalchemy import select, update

from syncapp.onboarding import CtrwowReconnectRequired, get_ctrwow_token, signup_status
from syncapp.onboarding.models import EmanageAccount, OnboardingStep
from syncapp.onboarding.runtime import OnboardingRuntime
from syncapp.store.models import Connection, Credential
from syncapp.store.vault import get_secret
from tests.integration.onboarding.conftest import SHOP, World, run_to_end

RUNNER = ("onboarding", "run", "--poll-seconds", "0.05", "--lease-seconds", "1.5")
RUNNER_FAST_RETRY = ("--retry-base-seconds", "0.05", "--retry-cap-seconds", "0.3")


def _start_runner(world: World, *extra: str) -> subprocess.Popen[bytes]:
    return subprocess.Popen(
        world.syncapp(*RUNNER, *RUNNER_FAST_RETRY, *extra),
        env=world.env(),
        stdout=subprocess.DEVNULL,
        stderr=subprocess.PIPE,
    )


def _kill_when_held(process: subprocess.Popen[bytes], reached: threading.Event) -> None:
    if not reached.wait(30):
        process.kill()
        _, stderr = process.communicate()
        pytest.fail(f"the runner never reached the held request: {stderr.decode()[-2000:]}")
    process.kill()
    process.communicate(timeout=10)  # reaps it and closes its pipe


def test_a_runner_killed_mid_sign_up_resumes_with_exactly_one_account_each(
    world: World,
) -> None:
    """SIGKILL after eManageCRM created the account but before it was recorded, then again
    after CTRwow provisioned but before that was recorded: the third runner finishes, and
    each system holds exactly one account — the one recorded here."""
    shop_id = world.install()
    world.emanage_hold.armed = True
    first = _start_runner(world)
    _kill_when_held(first, world.emanage_hold.reached)
    assert len(world.emanage_accounts()) == 1
    with world.session() as session:
        assert session.scalar(select(EmanageAccount)) is None
        step = session.scalar(
            select(OnboardingStep).where(OnboardingStep.step == "emanage_account")
        )
        assert step is not None
        assert step.status == "running"
    world.emanage_hold.release.set()

    world.ctrwow_hold.armed = True
    second = _start_runner(world)
    _kill_when_held(second, world.ctrwow_hold.reached)
    assert len(world.ctrwow_accounts()) == 1
    world.ctrwow_hold.release.set()

    third = _start_runner(world, "--once")
    _, stderr = third.communicate(timeout=60)
    assert third.returncode == 0, stderr.decode()[-2000:]

    [emanage] = world.emanage_accounts()
    [ctrwow] = world.ctrwow_accounts()
    with world.session() as session:
        view = signup_status(session, shop_id=shop_id)
    assert view is not None
    assert view.status == "done"
    assert view.emanage_account_id == emanage["id"]
    assert len(emanage["users"]) == 1
    assert view.ctrwow_account_id == ctrwow["id"]


def _expire_access_token(world: World, shop_id: int) -> None:
    """As if the hour had passed: the stored access token is past its expiry."""
    with world.session() as session, session.begin():
        session.execute(
            update(Credential)
            .where(Credential.shop_id == shop_id, Credential.name == "access_token")
            .values(expires_at=datetime.now(UTC) - timedelta(minutes=1))
        )


def _two_token_processes(world: World) -> list[tuple[int, str, str]]:
    """Start two `syncapp onboarding ctrwow-token` at once; their exit codes and outputs."""
    processes = [
        subprocess.Popen(
            world.syncapp("onboarding", "ctrwow-token", SHOP),
            env=world.env(),
            stdout=subprocess.PIPE,
            stderr=subprocess.PIPE,
        )
        for _ in range(2)
    ]
    outputs = [p.communicate(timeout=60) for p in processes]
    return [
        (p.returncode, out.decode(), err.decode())
        for p, (out, err) in zip(processes, outputs, strict=True)
    ]


@pytest.mark.anyio
async def test_two_processes_needing_a_token_send_one_refresh(
    world: World, runtime: OnboardingRuntime
) -> None:
    """Two `ctrwow-token` processes race on an expired token: CTRwow sees one refresh, both
    print the same new token, and it works."""
    shop_id = world.install()
    await run_to_end(runtime, world, shop_id)
    with world.session() as session:
        old = get_secret(
            session, runtime.vault, shop_id=shop_id, provider="ctrwow", name="access_token"
        )
    _expire_access_token(world, shop_id)

    results = await asyncio.to_thread(_two_token_processes, world)

    assert [code for code, _, _ in results] == [0, 0], [e[-1500:] for _, _, e in results]
    tokens = {out.strip() for _, out, _ in results}
    assert len(tokens) == 1
    [token] = tokens
    assert token != old
    assert world.refresh.refreshes == 1
    assert (await runtime.ctrwow.me(token)).external_ref == SHOP


@pytest.mark.anyio
async def test_a_refused_refresh_marks_the_ctrwow_connection_as_needing_attention(
    world: World, runtime: OnboardingRuntime
) -> None:
    """When CTRwow answers invalid_grant (the grant was revoked), the token helper raises
    CtrwowReconnectRequired and the connection becomes needs_attention."""
    shop_id = world.install()
    await run_to_end(runtime, world, shop_id)
    with world.session() as session:
        refresh = get_secret(
            session, runtime.vault, shop_id=shop_id, provider="ctrwow", name="refresh_token"
        )
    assert refresh is not None
    await runtime.ctrwow.revoke(refresh, "refresh_token")
    _expire_access_token(world, shop_id)

    with pytest.raises(CtrwowReconnectRequired):
        await get_ctrwow_token(runtime, shop=SHOP)

    with world.session() as session:
        connection = session.scalar(select(Connection).where(Connection.provider == "ctrwow"))
    assert connection is not None
    assert connection.status == "needs_attention"
    assert "sets CTRwow up again" in (connection.detail or "")

    # The sign-up was queued again: partner provisioning gives the same account a new grant.
    assert world.job(shop_id).status == "pending"
    assert await run_to_end(runtime, world, shop_id) == "done"
    token = await get_ctrwow_token(runtime, shop=SHOP)
    assert (await runtime.ctrwow.me(token)).external_ref == SHOP


@pytest.mark.anyio
async def test_a_valid_token_is_returned_without_a_refresh(
    world: World, runtime: OnboardingRuntime
) -> None:
    """A token with time left is the stored one; CTRwow is not asked."""
    shop_id = world.install()
    await run_to_end(runtime, world, shop_id)
    with world.session() as session:
        stored = get_secret(
            session, runtime.vault, shop_id=shop_id, provider="ctrwow", name="access_token"
        )

    assert await get_ctrwow_token(runtime, shop=SHOP) == stored
    assert world.refresh.refreshes == 0
