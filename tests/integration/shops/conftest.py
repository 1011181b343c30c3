"""A running system for the shop tests: the Shopify sandbox and the app, each served by
uvicorn on its own free 127.0.0.1 port, the sandbox delivering webhooks to the app — plus
helpers to open the App Home as the Shopify admin would and to run the worker."""

from __future__ import annotations

import hashlib
import socket
import threading
import time
from collections.abc import Iterator
from contextlib import contextmanager
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import httpx
import pytest
import uvicorn
from sqlalchemy import select
from starlette.types import ASGIApp

from syncapp.bus.models import InboundEvent
from syncapp.config import Settings
from syncapp.sandbox.shopify.app import create_app as create_sandbox
from syncapp.shops.runtime import ShopsRuntime
from syncapp.store.db import make_engine
from syncapp.store.migrate import upgrade
from syncapp.web.app import create_app
from syncapp.worker import Worker, WorkerOptions
from tests.conftest import make_settings
from tests.integration.sandbox.conftest import CLIENT_ID, CLIENT_SECRET, make_config

API_VERSION = "2026-10"


def _bound_socket() -> socket.socket:
    sock = socket.socket(socket.AF_INET, socket.SOCK_STREAM)
    sock.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
    sock.bind(("127.0.0.1", 0))
    return sock


@contextmanager
def serve_on(app: ASGIApp, sock: socket.socket) -> Iterator[None]:
    """Serve ``app`` with uvicorn on the already bound ``sock`` until the block ends."""
    server = uvicorn.Server(
        uvicorn.Config(app, log_level="warning", lifespan="on", ws="none", access_log=False)
    )
    thread = threading.Thread(target=server.run, kwargs={"sockets": [sock]}, daemon=True)
    thread.start()
    deadline = time.monotonic() + 10
    while not server.started:
        if not thread.is_alive() or time.monotonic() > deadline:
            raise RuntimeError("uvicorn did not start; see the log above")
        time.sleep(0.01)
    try:
        yield
    finally:
        server.should_exit = True
        thread.join(timeout=15)
        sock.close()


@dataclass
class System:
    """The app and the sandbox, served; ``app`` talks to the app, ``control`` to the sandbox."""

    settings: Settings
    app_url: str
    sandbox_url: str
    app: httpx.Client
    control: httpx.Client
    runtime: ShopsRuntime

    def create_shop(self, handle: str, **fields: Any) -> str:
        response = self.control.post("/_sandbox/shops", json={"domain": handle, **fields})
        assert response.status_code in (200, 201), response.text
        return str(response.json()["domain"])

    def id_token(self, shop: str, **body: Any) -> str:
        response = self.control.post(f"/_sandbox/shops/{shop}/id_token", json=body)
        assert response.status_code == 200, response.text
        return str(response.json()["id_token"])

    def open_app_home(self, shop: str, token: str | None = None) -> httpx.Response:
        """``GET /`` as the admin loads the app's iframe: a document load with id_token."""
        params = {"embedded": "1", "shop": shop, "host": "YWRtaW4uc2hvcGlmeS5jb20vc3RvcmUvZGVtbw"}
        params["id_token"] = token if token is not None else self.id_token(shop)
        return self.app.get("/", params=params)

    def fetch(self, shop: str, path: str, method: str = "GET", **kwargs: Any) -> httpx.Response:
        """An App Bridge fetch: ``Authorization: Bearer <fresh ID token>``; a POST without a
        body sends ``{}`` as the page does (the JSON routes take JSON only)."""
        token = kwargs.pop("token", None) or self.id_token(shop)
        headers = {"Authorization": f"Bearer {token}", **kwargs.pop("headers", {})}
        if method != "GET" and not {"json", "content", "data"} & kwargs.keys():
            kwargs["json"] = {}
        return self.app.request(method, path, headers=headers, **kwargs)

    def install(self, shop: str) -> None:
        response = self.open_app_home(shop)
        assert response.status_code == 200, response.text

    def worker(self, **options: Any) -> Worker:
        defaults: dict[str, Any] = {"backoff_base_seconds": 0.0, "max_attempts": 3}
        return Worker(self.runtime, options=WorkerOptions(**{**defaults, **options}))

    def wait_for_event(self, shop: str, topic: str, timeout: float = 10) -> InboundEvent:
        """The first stored event of ``topic`` for ``shop``, waiting for its delivery."""
        deadline = time.monotonic() + timeout
        while time.monotonic() < deadline:
            with self.runtime.sessions() as session:
                event = session.scalar(
                    select(InboundEvent).where(
                        InboundEvent.shop_domain == shop, InboundEvent.topic == topic
                    )
                )
            if event is not None:
                return event
            time.sleep(0.05)
        raise AssertionError(f"no {topic} webhook for {shop} arrived within {timeout} s")

    def drain(self, **options: Any) -> None:
        """Run the worker until it finds nothing to claim."""
        worker = self.worker(**options)
        while worker.run_once():
            pass


def handle_for(request: pytest.FixtureRequest, prefix: str = "s") -> str:
    """A shop handle unique to the test."""
    return prefix + hashlib.sha1(request.node.nodeid.encode()).hexdigest()[:12]  # noqa: S324


@contextmanager
def running_system(
    tmp_path: Path, database_url: str, *, sandbox_public_url: bool = False, **overrides: Any
) -> Iterator[System]:
    """The served system; with ``sandbox_public_url`` the sandbox's own links (bulk result
    files) name its real address, as ``make run`` configures it."""
    app_sock, sandbox_sock = _bound_socket(), _bound_socket()
    app_url = f"http://127.0.0.1:{app_sock.getsockname()[1]}"
    sandbox_url = f"http://127.0.0.1:{sandbox_sock.getsockname()[1]}"
    values: dict[str, Any] = {
        "database_url": database_url,
        "shopify_client_id": CLIENT_ID,
        "shopify_client_secret": CLIENT_SECRET,
        "shopify_base_url": sandbox_url,
        "public_url": app_url,
    }
    settings = make_settings(tmp_path, **{**values, **overrides})
    engine = make_engine(settings.database_url)
    upgrade(engine)
    extra = {"public_url": sandbox_url} if sandbox_public_url else {}
    sandbox = create_sandbox(make_config(tmp_path, app_url, **extra))
    app = create_app(settings)
    try:
        with (
            serve_on(sandbox, sandbox_sock),
            serve_on(app, app_sock),
            httpx.Client(base_url=app_url, timeout=20) as app_client,
            httpx.Client(base_url=sandbox_url, timeout=20) as control,
        ):
            yield System(
                settings=settings,
                app_url=app_url,
                sandbox_url=sandbox_url,
                app=app_client,
                control=control,
                runtime=ShopsRuntime.from_settings(settings, engine),
            )
    finally:
        engine.dispose()


@pytest.fixture
def system(tmp_path: Path, database_url: str) -> Iterator[System]:
    """The served system on SQLite and on PostgreSQL."""
    with running_system(tmp_path, database_url) as running:
        yield running


@pytest.fixture
def sqlite_system(tmp_path: Path) -> Iterator[System]:
    """The served system on SQLite only (for behaviour that does not depend on the database)."""
    with running_system(tmp_path, f"sqlite:///{tmp_path / 'app.db'}") as running:
        yield running
