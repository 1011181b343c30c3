"""Shared fixtures for the Shopify sandbox tests: the sandbox and a webhook receiver, each a
real ASGI app served by uvicorn on a free 127.0.0.1 port in a background thread."""

from __future__ import annotations

import asyncio
import hashlib
import socket
import threading
import time
import tomllib
from collections.abc import Iterator
from contextlib import contextmanager
from dataclasses import dataclass, field, replace
from pathlib import Path
from typing import Any

import httpx
import pytest
import uvicorn
from starlette.applications import Starlette
from starlette.requests import Request
from starlette.responses import Response
from starlette.routing import Route
from starlette.types import ASGIApp

from syncapp.connectors.shopify.transport import ShopifyRedirectTransport
from syncapp.sandbox.shopify.app import create_app
from syncapp.sandbox.shopify.config import SandboxConfig, load_subscriptions
from syncapp.sandbox.shopify.oauth import load_access_scopes
from syncapp.sandbox.shopify.state import SandboxState

REPO_ROOT = Path(__file__).resolve().parents[3]
APP_TOML = REPO_ROOT / "shopify.app.toml"
CLIENT_ID = str(tomllib.loads(APP_TOML.read_text(encoding="utf-8"))["client_id"])
CLIENT_SECRET = "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"  # shaped like a real one: >= 32 bytes
SHOP = "demo.myshopify.com"
# Tiny but not zero: retries still run through the scheduler and the due-time query.
FAST_RETRIES = (0.05,) * 8


@contextmanager
def serve(app: ASGIApp) -> Iterator[str]:
    """Serve ``app`` with uvicorn on a free port; yields its base URL, stops it on exit."""
    sock = socket.socket(socket.AF_INET, socket.SOCK_STREAM)
    sock.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
    sock.bind(("127.0.0.1", 0))
    port = sock.getsockname()[1]
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
        yield f"http://127.0.0.1:{port}"
    finally:
        server.should_exit = True
        thread.join(timeout=15)
        sock.close()


@dataclass
class Received:
    """One request the receiver got."""

    path: str
    headers: dict[str, str]
    body: bytes


def _open_gate() -> threading.Event:
    gate = threading.Event()
    gate.set()
    return gate


@dataclass
class WebhookReceiver:
    """The app's webhook endpoint stand-in: records requests, answers with planned statuses."""

    planned_statuses: list[int] = field(default_factory=list)
    requests: list[Received] = field(default_factory=list)
    # Seconds each answer takes, and the most requests seen open at once.
    answer_delay: float = 0.0
    max_concurrent: int = 0
    # Cleared: every request is held open until it is set again.
    gate: threading.Event = field(default_factory=_open_gate)
    _open: int = 0
    _lock: threading.Lock = field(default_factory=threading.Lock)

    @property
    def open_requests(self) -> int:
        with self._lock:
            return self._open

    def app(self) -> Starlette:
        async def receive(request: Request) -> Response:
            body = await request.body()
            with self._lock:
                self._open += 1
                self.max_concurrent = max(self.max_concurrent, self._open)
            try:
                while not self.gate.is_set():  # noqa: ASYNC110 - set from the test thread
                    await asyncio.sleep(0.005)
                if self.answer_delay:
                    await asyncio.sleep(self.answer_delay)
            finally:
                with self._lock:
                    self._open -= 1
            with self._lock:
                self.requests.append(
                    Received(path=request.url.path, headers=dict(request.headers), body=body)
                )
                status = self.planned_statuses.pop(0) if self.planned_statuses else 200
            return Response(status_code=status)

        return Starlette(routes=[Route("/webhooks/{rest:path}", receive, methods=["POST"])])

    def wait_for(self, count: int, timeout: float = 5.0) -> list[Received]:
        """The first ``count`` requests, waiting up to ``timeout`` seconds for them."""
        deadline = time.monotonic() + timeout
        while time.monotonic() < deadline:
            with self._lock:
                if len(self.requests) >= count:
                    return list(self.requests)
            time.sleep(0.01)
        raise AssertionError(f"expected {count} webhook requests, got {len(self.requests)}")

    def topics(self) -> list[str]:
        with self._lock:
            return [r.headers["x-shopify-topic"] for r in self.requests]


def build_sandbox(config: SandboxConfig) -> Starlette:
    """The whole sandbox, as ``make run`` composes it."""
    return create_app(config)


@dataclass
class RunningSandbox:
    """A sandbox served over HTTP, with its state for assertions."""

    base_url: str
    config: SandboxConfig
    state: SandboxState
    control: httpx.Client

    def shop_client(self, timeout: float = 10) -> httpx.Client:
        """A client that talks to ``https://<shop>.myshopify.com`` as the app would."""
        return httpx.Client(transport=ShopifyRedirectTransport(self.base_url), timeout=timeout)

    def create_shop(self, domain: str = SHOP, **fields: Any) -> dict[str, Any]:
        response = self.control.post("/_sandbox/shops", json={"domain": domain, **fields})
        assert response.status_code in (200, 201), response.text
        result: dict[str, Any] = response.json()
        return result

    def id_token(self, domain: str = SHOP, user_id: int = 1) -> str:
        response = self.control.post(
            f"/_sandbox/shops/{domain}/id_token", json={"user_id": user_id}
        )
        assert response.status_code == 200, response.text
        return str(response.json()["id_token"])

    def deliveries(self, **filters: str) -> list[dict[str, Any]]:
        response = self.control.get("/_sandbox/webhooks/deliveries", params=filters)
        assert response.status_code == 200, response.text
        found: list[dict[str, Any]] = response.json()["deliveries"]
        return found

    def wait_for_deliveries(
        self, count: int, timeout: float = 5.0, **filters: str
    ) -> list[dict[str, Any]]:
        """Wait until ``count`` deliveries match ``filters`` (e.g. ``status="delivered"``)."""
        deadline = time.monotonic() + timeout
        found: list[dict[str, Any]] = []
        while time.monotonic() < deadline:
            found = self.deliveries(**filters)
            if len(found) >= count:
                return found
            time.sleep(0.02)
        raise AssertionError(f"expected {count} deliveries matching {filters}, got {found}")


def make_config(tmp_path: Path, app_url: str, **overrides: Any) -> SandboxConfig:
    config = SandboxConfig(
        database_path=tmp_path / "shopify-sandbox.db",
        client_id=CLIENT_ID,
        client_secret=CLIENT_SECRET,
        app_url=app_url,
        subscriptions=load_subscriptions(APP_TOML),
        webhook_retry_delays=FAST_RETRIES,
        extra={"scopes": load_access_scopes(APP_TOML)},
    )
    return replace(config, **overrides)


@contextmanager
def running_sandbox(config: SandboxConfig) -> Iterator[RunningSandbox]:
    app = build_sandbox(config)
    with serve(app) as base_url, httpx.Client(base_url=base_url, timeout=10) as control:
        yield RunningSandbox(
            base_url=base_url, config=config, state=app.state.sandbox, control=control
        )


@pytest.fixture
def receiver() -> Iterator[tuple[WebhookReceiver, str]]:
    """A webhook receiver served on its own port; yields it and its base URL."""
    recv = WebhookReceiver()
    with serve(recv.app()) as url:
        yield recv, url


@pytest.fixture
def sandbox(tmp_path: Path, receiver: tuple[WebhookReceiver, str]) -> Iterator[RunningSandbox]:
    """A sandbox delivering webhooks to ``receiver``, with the shop ``demo`` created."""
    _, url = receiver
    with running_sandbox(make_config(tmp_path, url)) as running:
        running.create_shop(SHOP)
        yield running


@pytest.fixture(scope="module")
def shared_sandbox(tmp_path_factory: pytest.TempPathFactory) -> Iterator[RunningSandbox]:
    """One sandbox for a whole module whose tests each work on their own shop (see ``shop``).

    It delivers no webhooks; tests that watch deliveries use ``sandbox`` and ``receiver``.
    """
    config = make_config(
        tmp_path_factory.mktemp("shared"), "http://127.0.0.1:9", deliver_webhooks=False
    )
    with running_sandbox(config) as running:
        yield running


@pytest.fixture
def shop(shared_sandbox: RunningSandbox, request: pytest.FixtureRequest) -> str:
    """A fresh shop in ``shared_sandbox``, named after the test, with the app installed."""
    handle = "t" + hashlib.sha1(request.node.nodeid.encode()).hexdigest()[:12]  # noqa: S324
    return str(shared_sandbox.create_shop(handle)["domain"])
