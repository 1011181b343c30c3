"""The App Bridge and Polaris stand-ins in a real browser (Chromium through Playwright): an app
page framed by the sandbox admin gets ID tokens by postMessage, its fetches are authenticated
and retried once on Shopify's retry header, ``open(url, "_top")`` leaves the iframe, and
``s-button type=submit`` submits its form."""

from __future__ import annotations

import json
import socket
import threading
import time
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import jwt
import playwright.sync_api as playwright_sync
import pytest
import uvicorn
from starlette.applications import Starlette
from starlette.requests import Request
from starlette.responses import HTMLResponse, JSONResponse, Response
from starlette.routing import Route

from syncapp.sandbox.shopify.oauth import load_access_scopes

from .conftest import (
    APP_TOML,
    CLIENT_ID,
    CLIENT_SECRET,
    RunningSandbox,
    make_config,
    running_sandbox,
)

# A missing browser is a failure, never a skip: .ci/run installs Debian's chromium.
CHROMIUM = Path("/usr/bin/chromium")

PAGE = """<!doctype html><html><head>
<meta name="shopify-api-key" content="{client_id}">
<script src="{admin}/shopifycloud/app-bridge.js"></script>
<script src="{admin}/shopifycloud/polaris.js"></script></head>
<body><s-page heading="Home"><s-section heading="Settings">
<form method="post" action="/submitted"><s-button id="save" variant="primary" type="submit">Save
</s-button></form></s-section></s-page></body></html>"""


class FakeApp:
    """The app's side: a page using the stand-ins, an API that refuses its first call."""

    def __init__(self) -> None:
        self.api_calls: list[str] = []
        self.submitted = threading.Event()
        self.admin = ""

    def asgi(self) -> Starlette:
        async def home(request: Request) -> Response:
            return HTMLResponse(PAGE.format(admin=self.admin, client_id=CLIENT_ID))

        async def api(request: Request) -> Response:
            self.api_calls.append(request.headers.get("authorization", ""))
            if len(self.api_calls) == 1:
                # As shopifyapp answers a stale token: App Bridge must retry once.
                headers = {"X-Shopify-Retry-Invalid-Session-Request": "1"}
                return Response("Unauthorized", status_code=401, headers=headers)
            return JSONResponse({"ok": True})

        async def submitted(request: Request) -> Response:
            self.submitted.set()
            return HTMLResponse("<p id='done'>saved</p>")

        return Starlette(
            routes=[
                Route("/", home),
                Route("/api/ping", api),
                Route("/submitted", submitted, methods=["POST"]),
            ]
        )


def _free_port() -> int:
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        return int(sock.getsockname()[1])


@pytest.fixture(scope="module")
def world(tmp_path_factory: pytest.TempPathFactory) -> Iterator[tuple[RunningSandbox, FakeApp]]:
    """The sandbox admin framing a fake app served on its own port."""
    port = _free_port()
    app = FakeApp()
    config = make_config(
        tmp_path_factory.mktemp("browser"),
        f"http://127.0.0.1:{port}",
        deliver_webhooks=False,
        extra={"scopes": load_access_scopes(APP_TOML), "app_toml": str(APP_TOML)},
    )
    with running_sandbox(config) as sandbox:
        app.admin = sandbox.base_url
        server = uvicorn.Server(
            uvicorn.Config(app.asgi(), host="127.0.0.1", port=port, log_level="warning")
        )
        thread = threading.Thread(target=server.run, daemon=True)
        thread.start()
        while not server.started:
            time.sleep(0.01)
        try:
            yield sandbox, app
        finally:
            server.should_exit = True
            thread.join(timeout=10)


@pytest.fixture
def page(world: tuple[RunningSandbox, FakeApp]) -> Iterator[Any]:
    """A Chromium page on the app's admin frame, with the app loaded in the iframe."""
    sandbox, _ = world
    shop = sandbox.create_shop(f"browser{time.monotonic_ns()}")["domain"]
    with playwright_sync.sync_playwright() as pw:
        browser = pw.chromium.launch(executable_path=str(CHROMIUM), args=["--no-sandbox"])
        try:
            tab = browser.new_page()
            tab.goto(
                f"{sandbox.base_url}/store/{shop.removesuffix('.myshopify.com')}/apps/sync-app"
            )
            tab.frame_locator("#app-frame").locator("s-page").wait_for()
            yield tab
        finally:
            browser.close()


def app_frame(page: Any) -> Any:
    frame = page.frame(name=None, url=lambda url: "127.0.0.1" in url and "/store/" not in url)
    assert frame is not None
    return frame


def test_id_token_comes_from_the_admin_frame(page: Any) -> None:
    """shopify.idToken() resolves to a token for this app and shop."""
    token = app_frame(page).evaluate("shopify.idToken()")
    claims = jwt.decode(token, CLIENT_SECRET, algorithms=["HS256"], audience=CLIENT_ID)
    assert claims["dest"].startswith("https://browser")


def test_fetch_is_authenticated_and_retried_once_on_the_retry_header(
    page: Any, world: tuple[RunningSandbox, FakeApp]
) -> None:
    """A same-origin fetch carries a Bearer token and survives one 401 with the retry header."""
    _, app = world
    app.api_calls.clear()
    status = app_frame(page).evaluate("fetch('/api/ping').then(r => r.status)")
    assert status == 200
    assert len(app.api_calls) == 2
    assert all(call.startswith("Bearer ey") for call in app.api_calls)


def test_open_top_navigates_the_whole_admin_window(page: Any) -> None:
    """open(url, '_top') from the app replaces the admin page, not the iframe."""
    admin = page.url.split("/store/")[0]
    app_frame(page).evaluate(f"open({json.dumps(admin + '/healthz')}, '_top')")
    page.wait_for_url(f"{admin}/healthz")
    assert "ok" in page.content()


def test_an_s_button_of_type_submit_submits_its_form(
    page: Any, world: tuple[RunningSandbox, FakeApp]
) -> None:
    """Clicking the Polaris button posts the form it sits in."""
    _, app = world
    app.submitted.clear()
    page.frame_locator("#app-frame").locator("#save").click()
    assert app.submitted.wait(5)
