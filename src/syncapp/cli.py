"""``syncapp``: the operator's command line (typer).

syncapp run                          everything, embedded: migrations, app, sandboxes, demo data
syncapp serve                        the web service only
syncapp worker                       the worker: uninstall and privacy webhooks (more later)
syncapp db upgrade | check           migrations
syncapp vault new-key | rotate       encryption keys of the credential vault
syncapp sandbox shopify serve        the local Shopify
syncapp sandbox shopify token SHOP   an Admin API token of the sandbox, for scripts
syncapp sandbox emanage serve        the local eManageCRM
syncapp sandbox ctrwow serve         the local CTRwow
syncapp onboarding run               the sign-up runner alone (the worker also runs it)
syncapp onboarding ctrwow-token SHOP a valid CTRwow access token of SHOP (refreshed if due)
"""

from __future__ import annotations

import os
import shutil
import sys
from typing import Annotated

import typer
from cryptography.fernet import Fernet
from rich.console import Console

from syncapp.config import Settings, ensure_embedded_secrets, load_settings
from syncapp.errors import SyncAppError

app = typer.Typer(no_args_is_help=True, add_completion=False, help=__doc__)
db_app = typer.Typer(no_args_is_help=True, help="Database migrations.")
vault_app = typer.Typer(no_args_is_help=True, help="Keys of the credential vault.")
sandbox_app = typer.Typer(no_args_is_help=True, help="Local stand-ins for external systems.")
shopify_sandbox_app = typer.Typer(no_args_is_help=True, help="The local Shopify.")
app.add_typer(db_app, name="db")
app.add_typer(vault_app, name="vault")
app.add_typer(sandbox_app, name="sandbox")
sandbox_app.add_typer(shopify_sandbox_app, name="shopify")
emanage_sandbox_app = typer.Typer(no_args_is_help=True, help="The local eManageCRM.")
ctrwow_sandbox_app = typer.Typer(no_args_is_help=True, help="The local CTRwow.")
onboarding_app = typer.Typer(no_args_is_help=True, help="The automatic eManageCRM/CTRwow sign-up.")
sandbox_app.add_typer(emanage_sandbox_app, name="emanage")
sandbox_app.add_typer(ctrwow_sandbox_app, name="ctrwow")
app.add_typer(onboarding_app, name="onboarding")

err = Console(stderr=True)


def _settings() -> Settings:
    return ensure_embedded_secrets(load_settings())


@db_app.command("upgrade")
def db_upgrade() -> None:
    """Apply all migrations to SYNCAPP_DATABASE_URL."""
    from syncapp.store.db import make_engine
    from syncapp.store.migrate import upgrade

    settings = _settings()
    engine = make_engine(settings.database_url)
    upgrade(engine)
    engine.dispose()
    err.print(f"database at {settings.masked_database_url} is up to date")


@db_app.command("check")
def db_check() -> None:
    """Fail when the models and the migrations disagree."""
    from syncapp.store.db import make_engine
    from syncapp.store.migrate import model_differences

    engine = make_engine(_settings().database_url)
    diffs = model_differences(engine)
    engine.dispose()
    if diffs:
        err.print("models and migrations disagree:", *diffs, sep="\n  ")
        raise typer.Exit(1)
    err.print("models and migrations agree")


@vault_app.command("new-key")
def vault_new_key() -> None:
    """Print a new key; put it first in SYNCAPP_SECRET_KEY, then run `syncapp vault rotate`."""
    print(Fernet.generate_key().decode())


@vault_app.command("rotate")
def vault_rotate() -> None:
    """Re-encrypt every stored credential and sealed webhook payload under the newest key."""
    from syncapp.store.db import make_engine, make_session_factory
    from syncapp.store.sealed import rotate_sealed_payloads
    from syncapp.store.vault import Vault, rotate_all

    settings = _settings()
    assert settings.secret_key is not None
    vault = Vault(settings.secret_key.get_secret_value())
    engine = make_engine(settings.database_url)
    with make_session_factory(engine).begin() as session:
        changed = rotate_all(session, vault)
        payloads = rotate_sealed_payloads(session, vault)
    engine.dispose()
    err.print(
        f"re-encrypted {changed} credential(s) and {payloads} webhook payload(s)"
        " under the newest key"
    )


@app.command("serve")
def serve() -> None:
    """Run the web service (migrations must be applied)."""
    import uvicorn

    from syncapp.serving import uvicorn_options

    settings = _settings()
    if settings.web_workers > 1:
        # Each worker process keeps its own counters; prometheus_client sums them from files
        # in this directory, which must start empty and be set before any worker imports it.
        metrics_dir = settings.data_dir / "prometheus"
        shutil.rmtree(metrics_dir, ignore_errors=True)
        metrics_dir.mkdir(parents=True)
        os.environ["PROMETHEUS_MULTIPROC_DIR"] = str(metrics_dir.resolve())
    uvicorn.run(
        "syncapp.web.app:app_from_env",
        factory=True,
        host=settings.host,
        port=settings.port,
        workers=settings.web_workers,
        loop="uvloop",
        **uvicorn_options(),
    )


@app.command("worker")
def worker() -> None:
    """Run the worker: process stored webhooks (app/uninstalled, privacy requests)."""
    from syncapp.logging import configure_logging
    from syncapp.worker import run_worker

    settings = _settings()
    configure_logging(settings.log_level, settings.log_format)
    run_worker(settings)


@shopify_sandbox_app.command("serve")
def sandbox_shopify_serve(
    seed: Annotated[
        list[str] | None, typer.Option(help="shop to create and seed with demo products")
    ] = None,
) -> None:
    """Run the local Shopify on SYNCAPP_SANDBOX_SHOPIFY_PORT."""
    from syncapp.sandbox_runner import serve_shopify_sandbox

    serve_shopify_sandbox(_settings(), seed_shops=seed or [])


@shopify_sandbox_app.command("token")
def sandbox_shopify_token(shop: str) -> None:
    """Print an Admin API access token for SHOP (`demo` or `demo.myshopify.com`)."""
    from syncapp.sandbox_runner import sandbox_custom_token

    print(sandbox_custom_token(_settings(), shop))


@emanage_sandbox_app.command("serve")
def sandbox_emanage_serve() -> None:
    """Run the local eManageCRM on SYNCAPP_SANDBOX_EMANAGE_PORT (the app's client registered)."""
    from syncapp.sandbox_runner import serve_emanage_sandbox

    serve_emanage_sandbox(_settings())


@ctrwow_sandbox_app.command("serve")
def sandbox_ctrwow_serve() -> None:
    """Run the local CTRwow on SYNCAPP_SANDBOX_CTRWOW_PORT (the app as a partner client)."""
    from syncapp.sandbox_runner import serve_ctrwow_sandbox

    serve_ctrwow_sandbox(_settings())


@onboarding_app.command("run")
def onboarding_run(
    once: Annotated[bool, typer.Option(help="exit when no sign-up job is left to do")] = False,
    poll_seconds: Annotated[float, typer.Option(min=0.01)] = 1.0,
    lease_seconds: Annotated[float, typer.Option(min=0.1)] = 60.0,
    retry_base_seconds: Annotated[float, typer.Option(min=0.0)] = 2.0,
    retry_cap_seconds: Annotated[float, typer.Option(min=0.0)] = 900.0,
) -> None:
    """Advance due sign-up jobs until SIGINT/SIGTERM (or, with --once, until none is left)."""
    import asyncio
    import signal

    from syncapp.logging import configure_logging
    from syncapp.onboarding import RetryPolicy, open_onboarding, run_onboarding_loop
    from syncapp.store.db import make_engine

    settings = _settings()
    configure_logging(settings.log_level, settings.log_format)
    policy = RetryPolicy(base_seconds=retry_base_seconds, cap_seconds=retry_cap_seconds)

    async def main() -> None:
        stop = asyncio.Event()
        loop = asyncio.get_running_loop()
        for signum in (signal.SIGINT, signal.SIGTERM):
            loop.add_signal_handler(signum, stop.set)
        engine = make_engine(settings.database_url)
        try:
            async with open_onboarding(
                settings, engine, policy=policy, lease_seconds=lease_seconds
            ) as rt:
                await run_onboarding_loop(rt, poll_seconds=poll_seconds, stop=stop, once=once)
        finally:
            engine.dispose()

    asyncio.run(main())


@onboarding_app.command("ctrwow-token")
def onboarding_ctrwow_token(shop: str) -> None:
    """Print a valid CTRwow access token of SHOP, refreshing it (once, across processes) if due."""
    import asyncio

    from syncapp.onboarding import get_ctrwow_token, open_onboarding
    from syncapp.store.db import make_engine

    settings = _settings()
    domain = shop if "." in shop else f"{shop}.myshopify.com"

    async def main() -> str:
        engine = make_engine(settings.database_url)
        try:
            async with open_onboarding(settings, engine) as rt:
                return await get_ctrwow_token(rt, shop=domain)
        finally:
            engine.dispose()

    print(asyncio.run(main()))


@app.command("run")
def run() -> None:
    """Start the whole system on the embedded default and stop it all on Ctrl-C."""
    from syncapp.supervisor import run_embedded

    sys.exit(run_embedded(_settings()))


def main() -> None:
    try:
        app()
    except SyncAppError as exc:
        err.print(f"[red]error:[/red] {exc}")
        sys.exit(2)


__all__ = ["app", "main"]


if __name__ == "__main__":
    main()
