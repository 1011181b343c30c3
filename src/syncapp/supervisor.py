"""``make run``: the whole system on the embedded default, in child processes.

Migrates the database, starts the Shopify sandbox (seeding ``demo.myshopify.com``), the
eManageCRM (:8200) and CTRwow (:8300) sandboxes, the app and the worker (which also runs the
sign-up), waits until each serving child answers ``/healthz`` (the worker serves no
HTTP: it counts as healthy while it runs), prints every URL, and on Ctrl-C (or SIGTERM)
stops them all: SIGTERM first, SIGKILL for a child that has not exited after 10 s. If any
child dies, the others are stopped too and the exit code says so.
"""

from __future__ import annotations

import contextlib
import ctypes
import os
import signal
import subprocess
import sys
import time
from collections.abc import Callable
from dataclasses import dataclass

import httpx
from rich.console import Console

from syncapp.config import Settings
from syncapp.store.db import make_engine
from syncapp.store.migrate import upgrade

# soft_wrap: a line longer than the terminal (or than rich's 80 columns when the output is a
# pipe or a file) stays one line, so the printed curl command can be copied and run as is.
console = Console(stderr=True, soft_wrap=True)
DEMO_SHOP = "demo.myshopify.com"
_PR_SET_PDEATHSIG = 1


@dataclass
class Child:
    name: str
    health_url: str | None
    process: subprocess.Popen[bytes]


# Five processes start at once; on a loaded 2-core machine (or under coverage) that took up to
# a minute, so the supervisor gives them two before it gives up.
HEALTHY_WITHIN = 120.0


def _die_with_parent() -> None:
    """In the child, before exec: get SIGTERM when the supervisor dies, however it dies.

    Without this a supervisor killed with SIGKILL (or before its handlers are installed)
    would leave the app and the sandboxes running, holding their ports.
    """
    if sys.platform.startswith("linux"):
        libc = ctypes.CDLL(None, use_errno=True)
        libc.prctl(_PR_SET_PDEATHSIG, signal.SIGTERM)


def _spawn(name: str, args: list[str], health_url: str | None, env: dict[str, str]) -> Child:
    process = subprocess.Popen(
        [sys.executable, "-m", "syncapp.cli", *args], env=env, preexec_fn=_die_with_parent
    )
    return Child(name=name, health_url=health_url, process=process)


def admin_graphql_curl(sandbox_url: str, settings: Settings) -> str:
    """The README's curl example against this run's Shopify sandbox (run from the checkout)."""
    return (
        f"curl -s -H 'Host: {DEMO_SHOP}' -H \"X-Shopify-Access-Token: $(make -s token)\" "
        "-H 'Content-Type: application/json' -d '{\"query\":\"{ shop { name } }\"}' "
        f"{sandbox_url}/admin/api/{settings.shopify_api_version}/graphql.json"
    )


def open_demo_app(sandbox_url: str, app_url: str) -> None:
    """Load the App Home for the demo shop as the sandbox admin's frame does: an ID token the
    Shopify sandbox signs, then ``GET /`` with it, which installs the shop (token exchange) and
    queues its sign-up; the sign-up's end starts the catalog's backfill. Idempotent: an
    installed shop just gets its page."""
    with httpx.Client(timeout=60) as http:
        issued = http.post(f"{sandbox_url}/_sandbox/shops/{DEMO_SHOP}/id_token", json={})
        issued.raise_for_status()
        page = http.get(
            f"{app_url}/",
            params={
                "embedded": "1",
                "shop": DEMO_SHOP,
                "host": "YWRtaW4uc2hvcGlmeS5jb20vc3RvcmUvZGVtbw",
                "id_token": issued.json()["id_token"],
            },
        )
        page.raise_for_status()


def _wait_healthy(children: list[Child], timeout: float, stop: Callable[[], bool]) -> bool:
    deadline = time.monotonic() + timeout
    pending = list(children)
    while pending and time.monotonic() < deadline and not stop():
        for child in list(pending):
            if child.process.poll() is not None:
                console.print(f"[red]{child.name} exited with {child.process.returncode}[/red]")
                return False
            if child.health_url is None:
                pending.remove(child)
                continue
            with contextlib.suppress(httpx.HTTPError):
                if httpx.get(child.health_url, timeout=1).status_code == 200:
                    pending.remove(child)
        time.sleep(0.2)
    return not pending


def _stop(children: list[Child]) -> None:
    for child in children:
        if child.process.poll() is None:
            child.process.send_signal(signal.SIGTERM)
    deadline = time.monotonic() + 10
    for child in children:
        remaining = max(0.0, deadline - time.monotonic())
        try:
            child.process.wait(timeout=remaining)
        except subprocess.TimeoutExpired:
            child.process.kill()
            child.process.wait()


def run_embedded(settings: Settings) -> int:
    """Run until interrupted; returns the process exit code."""
    stopping = False

    def on_signal(signum: int, _frame: object) -> None:
        nonlocal stopping
        stopping = True

    signal.signal(signal.SIGTERM, on_signal)
    signal.signal(signal.SIGINT, on_signal)
    engine = make_engine(settings.database_url)
    upgrade(engine)
    engine.dispose()

    env = dict(os.environ)
    # The children read the same generated secrets; pass them explicitly so they never differ.
    assert settings.secret_key is not None
    assert settings.shopify_client_secret is not None
    env["SYNCAPP_SECRET_KEY"] = settings.secret_key.get_secret_value()
    env["SYNCAPP_SHOPIFY_CLIENT_SECRET"] = settings.shopify_client_secret.get_secret_value()
    env["SYNCAPP_DATA_DIR"] = str(settings.data_dir)
    # The eManageCRM/CTRwow system clients the sandboxes register and the worker signs in with.
    for provider in ("emanage", "ctrwow"):
        secret = getattr(settings, f"{provider}_client_secret")
        if secret is not None:
            env[f"SYNCAPP_{provider.upper()}_CLIENT_ID"] = getattr(
                settings, f"{provider}_client_id"
            )
            env[f"SYNCAPP_{provider.upper()}_CLIENT_SECRET"] = secret.get_secret_value()

    sandbox_url = f"http://127.0.0.1:{settings.sandbox_shopify_port}"
    children: list[Child] = []
    try:
        if settings.sandbox:
            children.append(
                _spawn(
                    "shopify sandbox",
                    ["sandbox", "shopify", "serve", "--seed", DEMO_SHOP],
                    f"{sandbox_url}/healthz",
                    env,
                )
            )
            for provider, port in (
                ("emanage", settings.sandbox_emanage_port),
                ("ctrwow", settings.sandbox_ctrwow_port),
            ):
                children.append(
                    _spawn(
                        f"{provider} sandbox",
                        ["sandbox", provider, "serve"],
                        f"http://127.0.0.1:{port}/healthz",
                        env,
                    )
                )
        children.append(_spawn("app", ["serve"], f"{settings.public_url}/healthz", env))
        children.append(_spawn("worker", ["worker"], None, env))
        if not _wait_healthy(children, timeout=HEALTHY_WITHIN, stop=lambda: stopping):
            if stopping:
                return 0
            console.print(
                f"[red]the system did not become healthy within {HEALTHY_WITHIN:g} s; "
                "stopping[/red]"
            )
            return 1
        if settings.sandbox and settings.sandbox_demo_install:
            try:
                open_demo_app(sandbox_url, settings.public_url)
            except (httpx.HTTPError, KeyError) as exc:
                # The system runs anyway: the merchant can still install from the admin.
                console.print(f"[yellow]could not open the app for {DEMO_SHOP}: {exc}[/yellow]")
        console.print("[bold green]Sync App is running[/bold green] — Ctrl-C stops everything")
        console.print(f"  app                 {settings.public_url}/")
        console.print(f"  app health          {settings.public_url}/healthz")
        console.print(f"  app metrics         {settings.public_url}/metrics")
        console.print(f"  Shopify webhooks →  {settings.public_url}/webhooks/shopify")
        console.print("  worker              uninstall/scopes/privacy/billing webhooks, sign-up")
        if settings.sandbox:
            shop = DEMO_SHOP.removesuffix(".myshopify.com")
            console.print(
                f"  [bold]Shopify admin (install and open the app)[/bold] "
                f"{sandbox_url}/store/{shop}/apps/sync-app"
            )
            console.print(f"  Shopify sandbox     {sandbox_url}/healthz")
            console.print(f"  sandbox admin       {sandbox_url}/store/{shop}/products")
            console.print(f"  eManageCRM sandbox  {settings.emanage_base_url}/_sandbox/accounts")
            console.print(f"  CTRwow sandbox      {settings.ctrwow_base_url}/_sandbox/accounts")
            console.print(
                f"  Admin GraphQL       {admin_graphql_curl(sandbox_url, settings)}", markup=False
            )
        while not stopping:
            for child in children:
                if child.process.poll() is not None:
                    console.print(f"[red]{child.name} exited ({child.process.returncode})[/red]")
                    return 1
            time.sleep(0.3)
        console.print("stopping…")
        return 0
    finally:
        _stop(children)
