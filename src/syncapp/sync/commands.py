"""``syncapp sync status [SHOP]``, ``syncapp sync backfill SHOP``, ``syncapp sync resync SHOP
[OBJECT]`` (rich tables and progress bars).

The commands only read and publish (short transactions); the worker does the work, so
``backfill`` shows its progress by polling the cursor and the bus until the run's events are
published (or, with ``--until applied``, processed by the engine).
"""

from __future__ import annotations

import time
from datetime import UTC, datetime
from typing import Annotated

import typer
from rich.progress import BarColumn, MofNCompleteColumn, Progress, TextColumn, TimeElapsedColumn
from rich.table import Table
from sqlalchemy import select
from sqlalchemy.orm import Session, sessionmaker

from syncapp.store.locking import locked_transaction
from syncapp.store.models import Shop
from syncapp.sync import state
from syncapp.sync.backfill import backfill_progress, ensure_backfill
from syncapp.sync.resync import InvalidObject, request_resync
from syncapp.terminal import err, out

sync_app = typer.Typer(
    no_args_is_help=True, help="The product sync: status, backfill, resync of a shop."
)

ShopArg = Annotated[str, typer.Argument(help="the shop: demo or demo.myshopify.com")]


def _sessions() -> sessionmaker[Session]:
    from syncapp.cli import _settings
    from syncapp.store.db import make_engine, make_session_factory

    return make_session_factory(make_engine(_settings().database_url))


def _domain(shop: str) -> str:
    shop = shop.strip().lower()
    return shop if "." in shop else f"{shop}.myshopify.com"


def _age(since: datetime | None, now: datetime) -> str:
    return "" if since is None else f"{(now - since).total_seconds():,.0f} s"


@sync_app.command("status")
def sync_status(
    shop: Annotated[str | None, typer.Argument(help="one shop (default: every shop)")] = None,
) -> None:
    """Per shop: last change, lag, pending, dead letters, conflicts."""
    sessions = _sessions()
    with sessions() as session:
        domains = (
            [_domain(shop)]
            if shop
            else list(session.scalars(select(Shop.domain).order_by(Shop.domain)))
        )
    now = datetime.now(UTC)
    table = Table(title="syncapp sync")
    for column in ("shop", "products", "last change applied", "lag", "pending", "in flight"):
        table.add_column(column)
    for column in ("dead letters", "conflicts", "backfill"):
        table.add_column(column)
    for domain in domains:
        try:
            s = state.sync_status(sessions, domain)
        except state.UnknownShop as exc:
            err.print(f"[red]error:[/red] {exc} (see `syncapp shops list`)")
            raise typer.Exit(2) from None
        progress = backfill_progress(sessions, domain)
        backfill = progress.state
        if progress.total is not None:
            backfill += f" {progress.published}/{progress.total}"
        table.add_row(
            domain,
            "on" if s.keep_products_synchronized else "off",
            "" if s.last_change_applied_at is None else s.last_change_applied_at.isoformat(),
            _age(s.oldest_pending_at, now),
            str(s.pending_events),
            str(s.in_flight_events),
            str(s.dead_letters),
            str(s.open_conflicts),
            backfill,
        )
    out.print(table)


@sync_app.command("backfill")
def sync_backfill(
    shop: ShopArg,
    wait: Annotated[bool, typer.Option(help="Show progress until it is over.")] = True,
    until: Annotated[
        str, typer.Option(help="published: every event published; applied: processed too.")
    ] = "published",
    timeout: Annotated[float, typer.Option(help="Give up waiting after this many s.")] = 3600.0,
) -> None:
    """Start or resume SHOP's backfill and follow its progress."""
    if until not in ("published", "applied"):
        raise typer.BadParameter("--until is published or applied")
    domain = _domain(shop)
    sessions = _sessions()
    with locked_transaction(sessions) as session:
        shop_id = session.scalar(select(Shop.id).where(Shop.domain == domain))
        if shop_id is None:
            err.print(f"[red]error:[/red] no shop {domain} (see `syncapp shops list`)")
            raise typer.Exit(2)
        run, started = ensure_backfill(session, shop_id=shop_id, shop=domain, reason="operator")
    err.print(f"{domain}: backfill {run} {'started' if started else 'resumed'}")
    if not wait:
        return
    deadline = time.monotonic() + timeout
    with Progress(
        TextColumn("{task.description}"),
        BarColumn(),
        MofNCompleteColumn(),
        TimeElapsedColumn(),
        console=err,
    ) as bar:
        published = bar.add_task("published", total=None)
        applied = bar.add_task("applied", total=None)
        while True:
            p = backfill_progress(sessions, domain)
            if p.run != run:
                err.print(f"{domain}: backfill {run} was superseded by {p.run}")
                raise typer.Exit(1)
            bar.update(published, completed=p.published, total=p.total, description=p.state)
            bar.update(applied, completed=p.applied, total=p.published or None)
            over = p.done and (until == "published" or p.applied >= p.published)
            if over or time.monotonic() > deadline:
                break
            time.sleep(0.5)
    if p.state == "failed":
        err.print(f"[red]{domain}: backfill {run} failed:[/red] {p.error}")
        raise typer.Exit(1)
    if not over:
        err.print(f"{domain}: backfill {run} still {p.state} after {timeout:,.0f} s")
        raise typer.Exit(1)
    err.print(f"{domain}: backfill {run} {p.state}: {p.published} products published")


@sync_app.command("resync")
def sync_resync(
    shop: ShopArg,
    obj: Annotated[
        str | None,
        typer.Argument(
            metavar="[OBJECT]",
            help="a Shopify product gid or numeric id, or an eManageCRM product id "
            "(default: the whole shop)",
        ),
    ] = None,
) -> None:
    """Bring one product (or the whole shop) to agreement again."""
    domain = _domain(shop)
    try:
        done = request_resync(_sessions(), domain, obj)
    except InvalidObject as exc:
        err.print(f"[red]error:[/red] {exc}")
        raise typer.Exit(2) from None
    except state.UnknownShop as exc:
        err.print(f"[red]error:[/red] {exc} (see `syncapp shops list`)")
        raise typer.Exit(2) from None
    if done.scope == "shop":
        err.print(f"{domain}: resync of the whole shop requested (backfill {done.run})")
    else:
        err.print(f"{domain}: resync of {done.shopify_gid or done.emanage_id} requested")
