"""Fixtures for the eManageCRM tests: the sandbox (in-process over ``httpx.ASGITransport``, or
served by uvicorn on a free port), an httpx client whose every exchange is checked against
the contract, and the app's connector pointed at the sandbox."""

from __future__ import annotations

import re
import socket
import threading
import time
import uuid
from collections.abc import AsyncIterator, Callable, Iterator
from contextlib import contextmanager
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import httpx
import pytest
import uvicorn
from starlette.applications import Starlette

from syncapp.connectors.emanage import EmanageClient
from syncapp.sandbox.emanage import EmanageSandboxConfig, SystemClient, create_app
from tests.integration.emanage.contract import ContractCheckingTransport

BASE_URL = "http://127.0.0.1:8200"
CLIENT_ID = "shopify-sync-app"
CLIENT_SECRET = "emanage-system-secret-0123456789abcdef"
OTHER_CLIENT_ID = "another-integration"
OTHER_CLIENT_SECRET = "another-integration-secret-0123456789"


def sandbox_config(tmp_path: Path, **overrides: Any) -> EmanageSandboxConfig:
    values: dict[str, Any] = {
        "database_path": tmp_path / "emanage.db",
        "public_url": BASE_URL,
        "clients": (
            SystemClient(CLIENT_ID, CLIENT_SECRET),
            SystemClient(OTHER_CLIENT_ID, OTHER_CLIENT_SECRET),
        ),
    }
    values.update(overrides)
    return EmanageSandboxConfig(**values)


@pytest.fixture
def anyio_backend() -> str:
    return "asyncio"


@pytest.fixture
def app(tmp_path: Path) -> Starlette:
    return create_app(sandbox_config(tmp_path))


@pytest.fixture
def transport(app: Starlette) -> ContractCheckingTransport:
    return ContractCheckingTransport(httpx.ASGITransport(app=app))


@pytest.fixture
async def http(transport: ContractCheckingTransport) -> AsyncIterator[httpx.AsyncClient]:
    async with httpx.AsyncClient(transport=transport, base_url=BASE_URL) as client:
        yield client


@pytest.fixture
def client(http: httpx.AsyncClient) -> EmanageClient:
    return EmanageClient(http, BASE_URL, CLIENT_ID, CLIENT_SECRET)


async def token(
    http: httpx.AsyncClient,
    *,
    account_id: str | None = None,
    client_id: str = CLIENT_ID,
    secret: str = CLIENT_SECRET,
    scope: str | None = None,
) -> str:
    """A bearer token straight from the token endpoint (system, or for ``account_id``)."""
    form = {"grant_type": "client_credentials"}
    if account_id:
        form["account_id"] = account_id
    if scope:
        form["scope"] = scope
    response = await http.post("/iam/oauth/token", data=form, auth=(client_id, secret))
    assert response.status_code == 200, response.text
    return str(response.json()["access_token"])


def bearer(value: str, key: str | None = None) -> dict[str, str]:
    headers = {"Authorization": f"Bearer {value}"}
    if key is not None:
        headers["Idempotency-Key"] = key
    return headers


def shop_body(shop: str = "demo.myshopify.com") -> dict[str, str]:
    return {
        "shopDomain": shop,
        "name": "Demo Store",
        "email": "owner@demo.example",
        "currency": "USD",
    }


@dataclass
class Onboarded:
    """An account with its owner user, and a token for that account."""

    account_id: str
    user_id: str
    account_token: str
    cid: str


async def onboard(
    http: httpx.AsyncClient,
    shop: str = "demo.myshopify.com",
    *,
    client_id: str = CLIENT_ID,
    secret: str = CLIENT_SECRET,
) -> Onboarded:
    system = await token(http, client_id=client_id, secret=secret)
    response = await http.post(
        "/admin/v1/accounts", json=shop_body(shop), headers=bearer(system, str(uuid.uuid4()))
    )
    assert response.status_code == 201, response.text
    account = response.json()
    account_token = await token(http, account_id=account["id"], client_id=client_id, secret=secret)
    response = await http.post(
        f"/admin/v1/accounts/{account['id']}/users",
        json={"email": "merchant@demo.example", "name": "Merchant", "role": "owner"},
        headers=bearer(account_token, str(uuid.uuid4())),
    )
    assert response.status_code == 201, response.text
    return Onboarded(account["id"], response.json()["id"], account_token, account["cid"])


def csrf_token(html: str) -> str:
    match = re.search(r'name="csrf_token" value="([^"]+)"', html)
    assert match is not None, "the page has no CSRF token"
    return match.group(1)


@contextmanager
def serve(make_app: Callable[[str], Starlette], port: int = 0) -> Iterator[str]:
    """Serve ``make_app(base_url)`` with uvicorn on a free 127.0.0.1 port (or ``port``); yields
    the base URL (the app is built once the port is known, since the sandbox puts it in its
    links)."""
    sock = socket.socket(socket.AF_INET, socket.SOCK_STREAM)
    sock.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
    sock.bind(("127.0.0.1", port))
    port = sock.getsockname()[1]
    app = make_app(f"http://127.0.0.1:{port}")
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
