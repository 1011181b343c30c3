"""The App Home over HTTP: the Shopify, eManageCRM and CTRwow sandboxes and the app, each
served by uvicorn on a free 127.0.0.1 port, with helpers to sign a shop up and to approve a
charge as the merchant does on Shopify's confirmation page."""

from __future__ import annotations

import asyncio
import re
from collections.abc import Callable, Iterator
from contextlib import ExitStack, contextmanager
from dataclasses import dataclass
from pathlib import Path
from typing import TypeVar
from urllib.parse import urlparse

import httpx
import pytest
from starlette.applications import Starlette

from syncapp.onboarding import RetryPolicy, open_onboarding
from syncapp.sandbox.ctrwow import CtrwowClientRegistration, CtrwowSandboxConfig
from syncapp.sandbox.ctrwow import create_app as create_ctrwow
from syncapp.sandbox.emanage import EmanageSandboxConfig, SystemClient
from syncapp.sandbox.emanage import create_app as create_emanage
from tests.integration.emanage.conftest import serve
from tests.integration.onboarding.conftest import signup_pass
from tests.integration.shops.conftest import System, running_system
from tests.waiting import wait_until

EMANAGE_ID = "syncapp-emanage-home"
EMANAGE_SECRET = "emanage-system-secret-home-0123456789"
CTRWOW_ID = "syncapp-ctrwow-home"
CTRWOW_SECRET = "ctw_secret_home_0123456789abcdef0123"
REDIRECT = "http://127.0.0.1:8000/ctrwow/callback"
_CSRF = re.compile(r'name="csrf_token" value="([^"]+)"')
T = TypeVar("T")


def wait_for(check: Callable[[], T | None], timeout: float = 15) -> T:
    """``check()``'s first true value, asked again until ``timeout`` seconds have passed."""
    found: list[T] = []

    def ready() -> bool:
        value = check()
        if value:
            found.append(value)
        return bool(value)

    wait_until(ready, timeout=timeout)
    return found[-1]


@dataclass
class Home:
    """The served system plus the two sign-up sandboxes."""

    system: System
    emanage_url: str
    ctrwow_url: str

    def sign_up(self, shop: str) -> None:
        """Install ``shop`` and run its sign-up to the end (eManageCRM and CTRwow accounts)."""
        self.system.install(shop)

        async def run() -> None:
            fast = RetryPolicy(base_seconds=0.05, cap_seconds=0.3, max_attempts=30)
            engine = self.system.runtime.engine
            async with open_onboarding(self.system.settings, engine, policy=fast) as rt:
                # Until a deadline, not a count of passes: on a loaded machine (`make test`'s
                # workers) a pass can find the job's next step not yet due, or its call slow.
                deadline = asyncio.get_running_loop().time() + 60
                while asyncio.get_running_loop().time() < deadline:
                    await signup_pass(rt, engine)
                    status = self.system.fetch(shop, "/app/api/shop").json()["onboarding"]
                    if status == "done":
                        return
                    await asyncio.sleep(0.05)
            raise AssertionError(f"the sign-up of {shop} did not finish")

        asyncio.run(run())

    def emanage_account(self, shop: str) -> dict[str, object]:
        accounts = httpx.get(f"{self.emanage_url}/_sandbox/accounts", timeout=10).json()
        [account] = [a for a in accounts["accounts"] if a["shopDomain"] == shop]
        return dict(account)

    def on_sandbox(self, url: str) -> str:
        """``url`` on the served Shopify sandbox (its configured public URL is a placeholder)."""
        parts = urlparse(url)
        return self.system.sandbox_url + parts.path + (f"?{parts.query}" if parts.query else "")

    def approve(self, confirmation_url: str, decision: str = "approve") -> str:
        """Approve (or decline) the charge on Shopify's page; where it redirects to."""
        confirmation_url = self.on_sandbox(confirmation_url)
        with httpx.Client(timeout=10) as browser:
            page = browser.get(confirmation_url)
            assert page.status_code == 200, page.text
            match = _CSRF.search(page.text)
            assert match is not None
            response = browser.post(
                confirmation_url.removesuffix("/confirm") + f"/{decision}",
                data={"csrf_token": match.group(1)},
            )
        assert response.status_code == 303, response.text
        return response.headers["location"]


@contextmanager
def running_home(tmp_path: Path, database_url: str) -> Iterator[Home]:
    """Everything served, the app on ``database_url``."""
    with ExitStack() as stack:

        def emanage_app(base_url: str) -> Starlette:
            return create_emanage(
                EmanageSandboxConfig(
                    database_path=tmp_path / "emanage.db",
                    public_url=base_url,
                    clients=(SystemClient(EMANAGE_ID, EMANAGE_SECRET),),
                )
            )

        def ctrwow_app(base_url: str) -> Starlette:
            registration = CtrwowClientRegistration(
                CTRWOW_ID, CTRWOW_SECRET, (REDIRECT,), partner=True, name="Sync App"
            )
            return create_ctrwow(
                CtrwowSandboxConfig(
                    database_path=tmp_path / "ctrwow.db",
                    clients=(registration,),
                    public_url=base_url,
                    password_rounds=1000,
                )
            )

        emanage_url = stack.enter_context(serve(emanage_app))
        ctrwow_url = stack.enter_context(serve(ctrwow_app))
        system = stack.enter_context(
            running_system(
                tmp_path,
                database_url,
                emanage_base_url=emanage_url,
                emanage_client_id=EMANAGE_ID,
                emanage_client_secret=EMANAGE_SECRET,
                ctrwow_base_url=ctrwow_url,
                ctrwow_client_id=CTRWOW_ID,
                ctrwow_client_secret=CTRWOW_SECRET,
                ctrwow_redirect_uri=REDIRECT,
            )
        )
        yield Home(system, emanage_url, ctrwow_url)


@pytest.fixture
def home(tmp_path: Path) -> Iterator[Home]:
    """Everything served, on SQLite."""
    with running_home(tmp_path, f"sqlite:///{tmp_path / 'app.db'}") as running:
        yield running
