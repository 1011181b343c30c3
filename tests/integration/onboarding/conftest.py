"""Fixtures for the sign-up tests: both sandboxes served by uvicorn on free ports, a migrated
SQLite file database, settings pointing at all of them, a shop installed as install leaves it
(shop row + ``pending`` job), and helpers to drive the sign-up on the bus and to read both
sandboxes.

``Hold`` and ``SlowRefresh`` wrap a served sandbox at the HTTP level (they never touch app
code): the first holds a matching answer after the sandbox has committed it, so a test can
kill the client in exactly the window between "written over there" and "recorded here".
"""

from __future__ import annotations

import asyncio
import sys
import threading
from collections.abc import AsyncIterator, Iterator
from contextlib import ExitStack
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import httpx
import pytest
from cryptography.fernet import Fernet
from sqlalchemy import Engine, select
from sqlalchemy.orm import Session
from starlette.types import ASGIApp, Message, Receive, Scope, Send

from syncapp.bus.consumer import Consumer
from syncapp.bus.embedded import EmbeddedBus
from syncapp.bus.interface import subscriptions
from syncapp.config import Settings
from syncapp.onboarding import JobStatus, RetryPolicy, open_onboarding, topics
from syncapp.onboarding.events import request_due_signups
from syncapp.onboarding.models import OnboardingJob
from syncapp.onboarding.runtime import OnboardingRuntime
from syncapp.sandbox.ctrwow import CtrwowClientRegistration, CtrwowSandboxConfig
from syncapp.sandbox.ctrwow import create_app as create_ctrwow
from syncapp.sandbox.emanage import EmanageSandboxConfig, SystemClient
from syncapp.sandbox.emanage import create_app as create_emanage
from syncapp.store.db import make_engine, make_session_factory
from syncapp.store.migrate import upgrade
from syncapp.store.models import Shop
from tests.conftest import make_settings
from tests.integration.emanage.conftest import serve
from tests.subprocesses import child_env

EMANAGE_ID = "syncapp-emanage-test"
EMANAGE_SECRET = "emanage-system-secret-0123456789abcdef"
CTRWOW_ID = "syncapp-ctrwow-test"
CTRWOW_SECRET = "ctw_secret_7c1f0a9d3e5b48f2a6c0d9e1b3f5a7c9"
SHOP = "demo.myshopify.com"
SHOP_EMAIL = "owner@demo.example"
FAST = RetryPolicy(base_seconds=0.05, cap_seconds=0.3, max_attempts=30)


class Hold:
    """Lets the sandbox answer ``method path`` once, then holds that answer until released."""

    def __init__(self, app: ASGIApp, method: str, path: str) -> None:
        self.app = app
        self.method = method
        self.path = path
        self.armed = False
        self.reached = threading.Event()
        self.release = threading.Event()

    async def __call__(self, scope: Scope, receive: Receive, send: Send) -> None:
        if (
            not self.armed
            or scope["type"] != "http"
            or scope["method"] != self.method
            or scope["path"] != self.path
        ):
            await self.app(scope, receive, send)
            return
        self.armed = False
        answer: list[Message] = []

        async def keep(message: Message) -> None:
            answer.append(message)

        await self.app(scope, receive, keep)
        self.reached.set()
        await asyncio.to_thread(self.release.wait, 60)
        try:
            for message in answer:
                await send(message)
        except OSError:
            pass  # the client is gone (killed); that is the point


class SlowRefresh:
    """Delays CTRwow's refresh-token grant and counts it, to make refreshes race."""

    def __init__(self, app: ASGIApp, delay: float) -> None:
        self.app = app
        self.delay = delay
        self.refreshes = 0

    async def __call__(self, scope: Scope, receive: Receive, send: Send) -> None:
        if scope["type"] != "http" or scope["path"] != "/oauth/token":
            await self.app(scope, receive, send)
            return
        chunks: list[Message] = []
        while True:
            message = await receive()
            chunks.append(message)
            if not message.get("more_body"):
                break
        body = b"".join(m.get("body", b"") for m in chunks)
        if b"grant_type=refresh_token" in body:
            self.refreshes += 1
            await asyncio.sleep(self.delay)
        replay = iter(chunks)

        async def again() -> Message:
            return next(replay, {"type": "http.disconnect"})

        await self.app(scope, again, send)


@dataclass
class World:
    """The sandboxes, the database and settings of one test."""

    tmp_path: Path
    emanage_url: str
    ctrwow_url: str
    settings: Settings
    engine: Engine
    emanage_hold: Hold
    ctrwow_hold: Hold
    refresh: SlowRefresh
    control: httpx.Client = field(default_factory=lambda: httpx.Client(timeout=10))

    def session(self) -> Session:
        return make_session_factory(self.engine)()

    def emanage_accounts(self) -> list[dict[str, Any]]:
        response = self.control.get(f"{self.emanage_url}/_sandbox/accounts")
        assert response.status_code == 200, response.text
        accounts: list[dict[str, Any]] = response.json()["accounts"]
        return accounts

    def ctrwow_accounts(self) -> list[dict[str, Any]]:
        response = self.control.get(f"{self.ctrwow_url}/_sandbox/accounts")
        assert response.status_code == 200, response.text
        accounts: list[dict[str, Any]] = response.json()["accounts"]
        return accounts

    def install(self, domain: str = SHOP, email: str = SHOP_EMAIL) -> int:
        """What install leaves behind: the shop's row and a pending sign-up job."""
        with self.session() as session, session.begin():
            shop = Shop(domain=domain, name="Demo Store", email=email, currency_code="USD")
            session.add(shop)
            session.flush()
            session.add(OnboardingJob(shop_id=shop.id, kind="signup", status="pending"))
            return shop.id

    def job(self, shop_id: int) -> OnboardingJob:
        with self.session() as session:
            job = session.scalar(select(OnboardingJob).where(OnboardingJob.shop_id == shop_id))
            assert job is not None
            return job

    def env(self) -> dict[str, str]:
        """The environment of a ``syncapp`` subprocess using this world."""
        s = self.settings
        assert s.secret_key is not None
        assert s.shopify_client_secret is not None
        return child_env(
            {
                "SYNCAPP_ENV": "test",
                "SYNCAPP_DATA_DIR": str(self.tmp_path),
                "SYNCAPP_DATABASE_URL": s.database_url,
                "SYNCAPP_SECRET_KEY": s.secret_key.get_secret_value(),
                "SYNCAPP_SHOPIFY_CLIENT_SECRET": s.shopify_client_secret.get_secret_value(),
                "SYNCAPP_EMANAGE_BASE_URL": self.emanage_url,
                "SYNCAPP_EMANAGE_CLIENT_ID": EMANAGE_ID,
                "SYNCAPP_EMANAGE_CLIENT_SECRET": EMANAGE_SECRET,
                "SYNCAPP_CTRWOW_BASE_URL": self.ctrwow_url,
                "SYNCAPP_CTRWOW_CLIENT_ID": CTRWOW_ID,
                "SYNCAPP_CTRWOW_CLIENT_SECRET": CTRWOW_SECRET,
                "SYNCAPP_LOG_LEVEL": "warning",
            }
        )

    def syncapp(self, *args: str) -> list[str]:
        return [sys.executable, "-m", "syncapp.cli", *args]


def build_world(tmp_path: Path, *, refresh_grace_seconds: int = 30) -> Iterator[World]:
    with ExitStack() as stack:
        holds: dict[str, Hold] = {}
        refresh: list[SlowRefresh] = []

        def emanage_app(base_url: str) -> ASGIApp:
            app = create_emanage(
                EmanageSandboxConfig(
                    database_path=tmp_path / "emanage.db",
                    public_url=base_url,
                    clients=(SystemClient(EMANAGE_ID, EMANAGE_SECRET),),
                )
            )
            holds["emanage"] = Hold(app, "POST", "/admin/v1/accounts")
            return holds["emanage"]

        def ctrwow_app(base_url: str) -> ASGIApp:
            app = create_ctrwow(
                CtrwowSandboxConfig(
                    database_path=tmp_path / "ctrwow.db",
                    clients=(
                        CtrwowClientRegistration(
                            CTRWOW_ID,
                            CTRWOW_SECRET,
                            ("http://127.0.0.1:8000/ctrwow/callback",),
                            partner=True,
                            name="Sync App",
                        ),
                    ),
                    public_url=base_url,
                    password_rounds=1000,
                    refresh_grace_seconds=refresh_grace_seconds,
                )
            )
            refresh.append(SlowRefresh(app, delay=0.5))
            holds["ctrwow"] = Hold(refresh[0], "POST", "/partner/v1/accounts")
            return holds["ctrwow"]

        emanage_url = stack.enter_context(serve(emanage_app))
        ctrwow_url = stack.enter_context(serve(ctrwow_app))
        settings = make_settings(
            tmp_path,
            database_url=f"sqlite:///{tmp_path / 'app.db'}",
            secret_key=Fernet.generate_key().decode(),
            emanage_base_url=emanage_url,
            emanage_client_id=EMANAGE_ID,
            emanage_client_secret=EMANAGE_SECRET,
            ctrwow_base_url=ctrwow_url,
            ctrwow_client_id=CTRWOW_ID,
            ctrwow_client_secret=CTRWOW_SECRET,
        )
        engine = make_engine(settings.database_url)
        upgrade(engine)
        stack.callback(engine.dispose)
        world = World(
            tmp_path=tmp_path,
            emanage_url=emanage_url,
            ctrwow_url=ctrwow_url,
            settings=settings,
            engine=engine,
            emanage_hold=holds["emanage"],
            ctrwow_hold=holds["ctrwow"],
            refresh=refresh[0],
        )
        stack.callback(world.control.close)
        for hold in holds.values():
            stack.callback(hold.release.set)
        yield world


@pytest.fixture
def world(tmp_path: Path) -> Iterator[World]:
    yield from build_world(tmp_path)


@pytest.fixture
def anyio_backend() -> str:
    return "asyncio"


@pytest.fixture
async def runtime(world: World) -> AsyncIterator[OnboardingRuntime]:
    async with open_onboarding(world.settings, world.engine, policy=FAST, lease_seconds=5) as rt:
        yield rt


FINAL = {JobStatus.DONE, JobStatus.FAILED, JobStatus.NEEDS_MERCHANT, JobStatus.CANCELLED}


async def signup_pass(rt: OnboardingRuntime, engine: Engine) -> int:
    """One turn of the sign-up on the bus, as the worker takes it: due jobs without an event
    get one, and a consumer of the onboarding topics handles every sign-up event due now (each
    job as far as it goes now). Returns how many events it settled."""
    request_due_signups(rt.sessions)
    table = topics.topics(rt)
    bus = EmbeddedBus(engine, lease_seconds=rt.lease_seconds)
    return len(await Consumer(bus.consumer(sorted(table)), subscriptions(table)).run_once())


async def run_to_end(rt: OnboardingRuntime, world: World, shop_id: int, within: float = 20) -> str:
    """Consume the sign-up events until the shop's job is over; returns its final status."""
    deadline = asyncio.get_running_loop().time() + within
    while True:
        await signup_pass(rt, world.engine)
        status = world.job(shop_id).status
        if status in FINAL:
            return status
        assert asyncio.get_running_loop().time() < deadline, f"job still {status}"
        await asyncio.sleep(0.02)
