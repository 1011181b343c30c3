"""The operator's command line, run for real: ``python -m syncapp.cli`` subprocesses against a
migrated SQLite database and the served eManageCRM and CTRwow sandboxes."""

from __future__ import annotations

import re
import subprocess
from typing import Any

import pytest
import typer
from sqlalchemy import select, update

from syncapp.cli import app as cli_app
from syncapp.onboarding.models import OnboardingJob, OnboardingStep
from syncapp.onboarding.runtime import OnboardingRuntime
from syncapp.store.models import Credential
from tests.integration.onboarding.conftest import SHOP, World, run_to_end


def syncapp(world: World, *args: str) -> subprocess.CompletedProcess[str]:
    return subprocess.run(
        world.syncapp(*args),
        env={**world.env(), "COLUMNS": "80"},
        capture_output=True,
        text=True,
        timeout=60,
        check=False,
    )


def _commands(group: Any, path: str = "syncapp") -> list[tuple[str, Any]]:
    """Every command and group under ``group`` (typer's own click), with its full name."""
    found: list[tuple[str, Any]] = []
    for name, command in sorted(group.commands.items()):
        found.append((f"{path} {name}", command))
        if hasattr(command, "commands"):
            found += _commands(command, f"{path} {name}")
    return found


def test_every_command_says_what_it_does_in_one_line() -> None:
    commands = _commands(typer.main.get_group(cli_app))
    names = {name for name, _ in commands}
    assert {
        "syncapp shops list",
        "syncapp shops show",
        "syncapp onboarding retry",
        "syncapp connections reset",
    } <= names
    for name, command in commands:
        text = (command.help or "").strip()
        assert text, f"{name} has no help"
        assert "\n" not in text, f"{name}: {text!r} is more than one line"
        assert "``" not in text, name
        assert len(text) <= 64, f"{name}: {text!r} does not fit the help's column"


def test_help_has_no_raw_markup_and_describes_the_worker_once(world: World) -> None:
    done = syncapp(world, "--help")
    assert done.returncode == 0, done.stderr
    assert "``" not in done.stdout
    assert "(typer)" not in done.stdout
    assert "…" not in done.stdout  # nothing cut short
    assert "..." not in done.stdout.replace("COMMAND [ARGS]...", "")
    # What the worker does is said once, on its own line (it used to be said twice, and wrong).
    [worker] = [line for line in done.stdout.splitlines() if "webhook" in line]
    assert re.search(r"\bworker\s+Run the worker: stored webhooks and the sign-up jobs", worker)
    version = syncapp(world, "--version")
    assert version.returncode == 0, version.stderr
    assert re.fullmatch(r"syncapp \d+\.\d+\.\d+\S*\n", version.stdout), version.stdout


@pytest.mark.anyio
async def test_shops_list_show_and_a_connection_reset(
    world: World, runtime: OnboardingRuntime
) -> None:
    shop_id = world.install()
    assert await run_to_end(runtime, world, shop_id) == "done"

    listed = syncapp(world, "shops", "list")
    assert listed.returncode == 0, listed.stderr
    [row] = [line for line in listed.stdout.splitlines() if SHOP in line]
    # Shopify has no token here (the test installs without an exchange): not connected.
    assert re.search(r"not connected.*connected.*connected.*done", row), listed.stdout

    shown = syncapp(world, "shops", "show", "demo")
    assert shown.returncode == 0, shown.stderr
    assert "Connections" in shown.stdout
    assert "CTRwow account" in shown.stdout
    assert "owner@demo.example" in shown.stdout

    reset = syncapp(world, "connections", "reset", "demo", "ctrwow")
    assert reset.returncode == 0, reset.stderr
    assert "sets CTRwow up again" in reset.stderr
    with world.session() as session:
        assert not session.scalars(select(Credential).where(Credential.provider == "ctrwow")).all()
    assert world.job(shop_id).status == "pending"
    shown = syncapp(world, "shops", "show", SHOP)
    assert re.search(r"CTRwow\s.*setting up", shown.stdout), shown.stdout

    # The worker's run re-establishes it: the same account, a new grant that works.
    assert await run_to_end(runtime, world, shop_id) == "done"
    token = syncapp(world, "onboarding", "ctrwow-token", "demo")
    assert token.returncode == 0, token.stderr
    assert (await runtime.ctrwow.me(token.stdout.strip())).external_ref == SHOP
    listed = syncapp(world, "shops", "list")
    [row] = [line for line in listed.stdout.splitlines() if SHOP in line]
    assert re.search(r"not connected.*connected.*connected.*done", row), listed.stdout


def test_onboarding_retry_starts_a_failed_sign_up_again(world: World) -> None:
    shop_id = world.install()
    with world.session() as session, session.begin():
        job = session.scalar(select(OnboardingJob).where(OnboardingJob.shop_id == shop_id))
        assert job is not None
        session.add(
            OnboardingStep(
                job_id=job.id, step="emanage_account", status="failed", last_error="refused"
            )
        )
        session.execute(
            update(OnboardingJob).where(OnboardingJob.id == job.id).values(status="failed")
        )
    done = syncapp(world, "onboarding", "retry", "demo")
    assert done.returncode == 0, done.stderr
    assert "failed -> pending" in done.stderr
    assert world.job(shop_id).status == "pending"
    again = syncapp(world, "onboarding", "retry", "demo")
    assert "already pending" in again.stderr


def test_an_unknown_shop_or_provider_is_refused_with_what_to_do(world: World) -> None:
    world.install()
    unknown = syncapp(world, "shops", "show", "nosuch")
    assert unknown.returncode == 2
    assert "no shop nosuch.myshopify.com" in unknown.stderr
    assert "syncapp shops list" in unknown.stderr
    provider = syncapp(world, "connections", "reset", "demo", "paypal")
    assert provider.returncode == 2
    assert "shopify, emanage, ctrwow" in provider.stderr
