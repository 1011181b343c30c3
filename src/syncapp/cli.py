"""``syncapp``: the operator's command line (typer).

syncapp run                              everything, embedded: migrations, app, worker, sandboxes
syncapp serve                            the web service only
syncapp worker                           stored webhooks (uninstall, scopes, privacy, billing)
                                         and the sign-up jobs
syncapp db upgrade | check               migrations
syncapp vault new-key | rotate           encryption keys of the credential vault
syncapp shops list | show SHOP           shops, their connections and sign-up
syncapp connections reset SHOP PROVIDER  forget one connection's credentials and set it up again
syncapp onboarding run | retry SHOP      the sign-up events alone; start a stopped sign-up again
syncapp onboarding ctrwow-token SHOP     a valid CTRwow access token of SHOP (refreshed if due)
syncapp sandbox shopify|emanage|ctrwow   the local stand-ins (serve; shopify|emanage token SHOP)
syncapp bus status [--per-shop]          the bus: pending, in flight, dead, oldest age per topic
syncapp dlq list|show|replay|drop        dead letters by id, --topic, --shop, --since/--until
syncapp sync status [SHOP]               product sync: last change, lag, pending, dead, conflicts
syncapp sync backfill SHOP               start or resume the shop's backfill and follow it
syncapp sync resync SHOP [OBJECT]        resync one product (Shopify or eManageCRM id) or the shop
"""

from __future__ import annotations

import os
import shutil
import sys
from collections.abc import Iterator
from contextlib import contextmanager
from datetime import UTC, datetime
from typing import Annotated

import typer
from cryptography.fernet import Fernet
from sqlalchemy import select
from sqlalchemy.orm import Session, sessionmaker

from syncapp.bus.commands import bus_app, dlq_app
from syncapp.config import Settings, ensure_embedded_secrets, load_settings
from syncapp.errors import SyncAppError
from syncapp.onboarding.models import OnboardingJob
from syncapp.store.models import Shop
from syncapp.sync.commands import sync_app
from syncapp.terminal import err, out
from syncapp.web.sync_api.commands import apikey_app

HELP = (
    "Operate the Sync App: run it, migrate its database, rotate vault keys, and look at and "
    "repair shops, their connections (Shopify, eManageCRM, CTRwow) and their sign-up."
)
app = typer.Typer(no_args_is_help=True, add_completion=False, help=HELP)
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
onboarding_app = typer.Typer(
    no_args_is_help=True, help="The automatic eManageCRM and CTRwow sign-up of each shop."
)
sandbox_app.add_typer(emanage_sandbox_app, name="emanage")
sandbox_app.add_typer(ctrwow_sandbox_app, name="ctrwow")
app.add_typer(onboarding_app, name="onboarding")
app.add_typer(bus_app, name="bus")
app.add_typer(dlq_app, name="dlq")
app.add_typer(apikey_app, name="apikey")
app.add_typer(sync_app, name="sync")
shops_app = typer.Typer(no_args_is_help=True, help="Installed shops and where they stand.")
connections_app = typer.Typer(no_args_is_help=True, help="A shop's connections to other systems.")
app.add_typer(shops_app, name="shops")
app.add_typer(connections_app, name="connections")


def _version(value: bool) -> None:
    if value:
        from importlib.metadata import version

        print(f"syncapp {version('syncapp')}")
        raise typer.Exit


@app.callback()
def _root(
    version: Annotated[
        bool,
        typer.Option(
            "--version", callback=_version, is_eager=True, help="Print the version and exit."
        ),
    ] = False,
) -> None:
    """Operate the Sync App."""


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
    from syncapp.schema import model_differences
    from syncapp.store.db import make_engine

    engine = make_engine(_settings().database_url)
    diffs = model_differences(engine)
    engine.dispose()
    if diffs:
        err.print("models and migrations disagree:", *diffs, sep="\n  ")
        raise typer.Exit(1)
    err.print("models and migrations agree")


@vault_app.command("new-key")
def vault_new_key() -> None:
    """Print a new vault key (put it first in SYNCAPP_SECRET_KEY)."""
    print(Fernet.generate_key().decode())


@vault_app.command("rotate")
def vault_rotate() -> None:
    """Re-encrypt credentials and sealed payloads under the newest key."""
    from syncapp.bus.sealed import rotate_sealed_payloads
    from syncapp.store.db import make_engine, make_session_factory
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
    """Run the web service alone (apply migrations first)."""
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
    """Run the worker: stored webhooks and the sign-up jobs."""
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
    """Print an Admin API token of the local Shopify for SHOP."""
    from syncapp.sandbox_runner import sandbox_custom_token

    print(sandbox_custom_token(_settings(), shop))


@emanage_sandbox_app.command("serve")
def sandbox_emanage_serve() -> None:
    """Run the local eManageCRM on SYNCAPP_SANDBOX_EMANAGE_PORT."""
    from syncapp.sandbox_runner import serve_emanage_sandbox

    serve_emanage_sandbox(_settings())


@emanage_sandbox_app.command("token")
def sandbox_emanage_token(shop: str) -> None:
    """Print an account API token of the local eManageCRM for SHOP."""
    from syncapp.sandbox_runner import sandbox_emanage_token as issue

    try:
        print(issue(_settings(), _domain(shop)))
    except LookupError as exc:
        err.print(f"[red]error:[/red] {exc} (the app's sign-up creates it)")
        raise typer.Exit(2) from exc


@ctrwow_sandbox_app.command("serve")
def sandbox_ctrwow_serve() -> None:
    """Run the local CTRwow on SYNCAPP_SANDBOX_CTRWOW_PORT."""
    from syncapp.sandbox_runner import serve_ctrwow_sandbox

    serve_ctrwow_sandbox(_settings())


@onboarding_app.command("run")
def onboarding_run(
    once: Annotated[bool, typer.Option(help="exit when no sign-up is left to do")] = False,
    poll_seconds: Annotated[
        float, typer.Option(min=0.01, help="how often to look for due sign-ups")
    ] = 1.0,
    lease_seconds: Annotated[
        float, typer.Option(min=0.1, help="how long a claimed sign-up stays this runner's")
    ] = 60.0,
    retry_base_seconds: Annotated[
        float, typer.Option(min=0.0, help="first retry delay of a failed step")
    ] = 2.0,
    retry_cap_seconds: Annotated[
        float, typer.Option(min=0.0, help="longest retry delay of a failed step")
    ] = 900.0,
) -> None:
    """Consume the sign-up events alone (the worker also does)."""
    import asyncio

    from syncapp.bus.consumer import stop_on_signals
    from syncapp.bus.embedded import EmbeddedBus
    from syncapp.logging import configure_logging
    from syncapp.onboarding import RetryPolicy, open_onboarding
    from syncapp.onboarding.topics import consume_signups
    from syncapp.store.db import make_engine
    from syncapp.worker import WorkerOptions

    settings = _settings()
    if settings.bus_url.startswith(("amqp://", "amqps://")):
        err.print(
            "[red]error:[/red] SYNCAPP_BUS_URL names a broker: the sign-up events are consumed "
            "from it by `syncapp worker` (this command consumes the embedded bus only)"
        )
        raise typer.Exit(2)
    configure_logging(settings.log_level, settings.log_format)
    policy = RetryPolicy(base_seconds=retry_base_seconds, cap_seconds=retry_cap_seconds)
    # The events' own budget is the worker's; a step's backoff is a wait, outside it.
    events_policy = WorkerOptions.from_settings(settings).policy

    async def main() -> None:
        stop = asyncio.Event()
        stop_on_signals(stop)
        engine = make_engine(settings.database_url)
        # One lease length for the event's claim and the job's: a killed runner's sign-up is
        # taken over by the next one as soon as both ran out.
        bus = EmbeddedBus(engine, policy=events_policy, lease_seconds=lease_seconds)
        try:
            async with open_onboarding(
                settings, engine, policy=policy, lease_seconds=lease_seconds
            ) as rt:
                await consume_signups(
                    rt, bus, stop=stop, until_idle=once, poll_seconds=poll_seconds
                )
        finally:
            engine.dispose()

    asyncio.run(main())


@onboarding_app.command("ctrwow-token")
def onboarding_ctrwow_token(shop: str) -> None:
    """Print a valid CTRwow access token of SHOP (refreshed if due)."""
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


# --- shops and their connections ---------------------------------------------------------

_STATE_STYLE = {
    "connected": "[green]connected[/green]",
    "setting_up": "[cyan]setting up[/cyan]",
    "needs_you": "[yellow]needs the merchant[/yellow]",
    "not_connected": "[red]not connected[/red]",
}
ShopArg = Annotated[str, typer.Argument(help="the shop: demo or demo.myshopify.com")]


def _domain(shop: str) -> str:
    shop = shop.strip().lower()
    return shop if "." in shop else f"{shop}.myshopify.com"


@contextmanager
def _sessions() -> Iterator[sessionmaker[Session]]:
    from syncapp.store.db import make_engine, make_session_factory

    engine = make_engine(_settings().database_url)
    try:
        yield make_session_factory(engine)
    finally:
        engine.dispose()


def _shop_or_exit(session: Session, shop: str) -> Shop:
    row = session.scalar(select(Shop).where(Shop.domain == _domain(shop)))
    if row is None:
        err.print(f"[red]error:[/red] no shop {_domain(shop)} (see `syncapp shops list`)")
        raise typer.Exit(2)
    return row


@shops_app.command("list")
def shops_list() -> None:
    """List shops with the state of each connection and sign-up."""
    from rich.table import Table

    from syncapp.onboarding.connections import PROVIDERS, TITLES, connection_views

    table = Table("Shop", "Installed", *(TITLES[p] for p in PROVIDERS), "Sign-up")
    with _sessions() as sessions, sessions() as session:
        now = datetime.now(UTC)
        for shop in session.scalars(select(Shop).order_by(Shop.domain)):
            views = connection_views(session, shop_id=shop.id, now=now)
            job = session.scalar(
                select(OnboardingJob.status).where(
                    OnboardingJob.shop_id == shop.id, OnboardingJob.kind == "signup"
                )
            )
            table.add_row(
                shop.domain,
                "no (uninstalled)" if shop.uninstalled_at else "yes" if shop.installed_at else "no",
                *(_STATE_STYLE[views[p].state] for p in PROVIDERS),
                job or "none",
            )
    if table.row_count == 0:
        err.print("no shops yet: a shop appears when its merchant first opens the app")
        return
    out.print(table)


@shops_app.command("show")
def shops_show(shop: ShopArg) -> None:
    """Show one shop: details, connections and sign-up steps."""
    from rich.table import Table

    from syncapp.onboarding import signup_status
    from syncapp.onboarding.connections import PROVIDERS, TITLES, connection_views
    from syncapp.onboarding.plan import STEP_TITLES

    with _sessions() as sessions, sessions() as session:
        row = _shop_or_exit(session, shop)
        views = connection_views(session, shop_id=row.id, now=datetime.now(UTC))
        signup = signup_status(session, shop_id=row.id)
        out.print(f"[bold]{row.domain}[/bold]  {row.name or ''}", soft_wrap=True)
        for label, value in (
            ("email", row.email),
            ("currency", row.currency_code),
            ("Shopify plan", row.plan_name),
            ("installed at", row.installed_at),
            ("uninstalled at", row.uninstalled_at),
        ):
            out.print(f"  {label:<15} {value if value is not None else '-'}", soft_wrap=True)
        connections = Table("Connection", "State", "Account", "Detail", title="Connections")
        for provider in PROVIDERS:
            view = views[provider]
            connections.add_row(
                TITLES[provider], _STATE_STYLE[view.state], view.account or "", view.detail or ""
            )
        out.print(connections)
        if signup is None:
            out.print("sign-up: not started")
            return
        steps = Table("Step", "Status", "Attempts", "Last error", title=f"Sign-up: {signup.status}")
        for step in signup.steps:
            steps.add_row(
                STEP_TITLES[step.step], str(step.status), str(step.attempts), step.last_error or ""
            )
        out.print(steps)


@connections_app.command("reset")
def connections_reset(
    shop: ShopArg,
    provider: Annotated[str, typer.Argument(help="shopify, emanage or ctrwow")],
) -> None:
    """Forget one connection's credentials and set it up again."""
    from syncapp.onboarding.connections import PROVIDERS, ConnectionResetError, reset_connection

    if provider not in PROVIDERS:
        err.print(f"[red]error:[/red] PROVIDER must be one of {', '.join(PROVIDERS)}")
        raise typer.Exit(2)
    with _sessions() as sessions, sessions.begin() as session:
        row = _shop_or_exit(session, shop)
        try:
            outcome = reset_connection(session, shop_id=row.id, provider=provider)
        except ConnectionResetError as exc:
            err.print(f"[red]error:[/red] {exc}")
            raise typer.Exit(2) from None
        domain = row.domain
    err.print(f"{domain}: {provider} reset; {outcome}")


@onboarding_app.command("retry")
def onboarding_retry(shop: ShopArg) -> None:
    """Start a failed, cancelled or blocked sign-up of SHOP again."""
    from syncapp.onboarding import JobStatus, restart_signup

    with _sessions() as sessions, sessions.begin() as session:
        row = _shop_or_exit(session, shop)
        before = session.scalar(
            select(OnboardingJob.status).where(
                OnboardingJob.shop_id == row.id, OnboardingJob.kind == "signup"
            )
        )
        job = restart_signup(session, shop_id=row.id)
        domain, after = row.domain, job.status
    if before == JobStatus.DONE:
        err.print(
            f"{domain}: the sign-up is done, nothing to retry (to set one connection up again: "
            f"syncapp connections reset {domain} PROVIDER)"
        )
    elif before == after:
        err.print(f"{domain}: the sign-up is already {after}; the worker is on it")
    else:
        err.print(f"{domain}: sign-up {before or 'not started'} -> {after}; the worker runs it")


@app.command("run")
def run() -> None:
    """Run app, worker and sandboxes together; Ctrl-C stops all."""
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
