"""The sign-up runner as a background thread of a synchronous process (``syncapp worker``):
its own event loop calling :func:`run_due_onboarding` until a ``threading.Event`` is set, and
the loop of ``syncapp onboarding run``."""

from __future__ import annotations

import asyncio
import threading

import structlog
from sqlalchemy import Engine

from syncapp.bus.retry import RetryPolicy
from syncapp.config import Settings
from syncapp.onboarding.runner import run_due_onboarding
from syncapp.onboarding.runtime import DEFAULT_LEASE_SECONDS, OnboardingRuntime, open_onboarding

log = structlog.get_logger("syncapp.onboarding")


async def _loop(rt: OnboardingRuntime, stop: threading.Event, poll_seconds: float) -> None:
    while not stop.is_set():
        try:
            advanced = await run_due_onboarding(rt)
        except Exception as exc:  # the database or a connector is away: wait and try again
            log.error("onboarding.batch_failed", error=f"{type(exc).__name__}: {exc}")
            advanced = 0
        if advanced == 0:
            # A threading.Event cannot be awaited; short sleeps keep the stop prompt.
            for _ in range(max(1, round(poll_seconds / 0.1))):
                if stop.is_set():
                    return
                await asyncio.sleep(0.1)


async def run_until_stopped(
    settings: Settings,
    engine: Engine,
    stop: threading.Event,
    *,
    poll_seconds: float = 1.0,
    policy: RetryPolicy | None = None,
    lease_seconds: float = DEFAULT_LEASE_SECONDS,
) -> None:
    """Advance due sign-up jobs until ``stop`` is set."""
    async with open_onboarding(settings, engine, policy=policy, lease_seconds=lease_seconds) as rt:
        log.info("onboarding.started", runner=rt.runner_id)
        await _loop(rt, stop, poll_seconds)
    log.info("onboarding.stopped")


def start_onboarding_thread(
    settings: Settings, engine: Engine, stop: threading.Event, *, poll_seconds: float = 1.0
) -> threading.Thread | None:
    """Run the sign-up in a daemon thread of this process; None (logged) when the eManageCRM
    or CTRwow system credentials are not configured, so the rest of the worker still runs."""
    if settings.emanage_client_secret is None or settings.ctrwow_client_secret is None:
        log.warning(
            "onboarding.disabled",
            reason="SYNCAPP_EMANAGE_CLIENT_SECRET / SYNCAPP_CTRWOW_CLIENT_SECRET not set",
        )
        return None

    def target() -> None:
        asyncio.run(run_until_stopped(settings, engine, stop, poll_seconds=poll_seconds))

    thread = threading.Thread(target=target, name="onboarding", daemon=True)
    thread.start()
    return thread
