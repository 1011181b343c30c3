"""``syncapp bus status`` and ``syncapp dlq list|show|replay|drop`` (rich tables).

Dead letters are selected by id, topic, shop or time range (when they were dead-lettered); the
selection shown by ``list`` is exactly what ``replay`` and ``drop`` touch. Replay is idempotent.
"""

from __future__ import annotations

from datetime import UTC, datetime
from typing import Annotated

import orjson
import typer
from rich.progress import Progress
from rich.table import Table
from sqlalchemy import func, select
from sqlalchemy.orm import Session, sessionmaker

from syncapp.bus import operators
from syncapp.bus.models import InboundEvent
from syncapp.bus.operators import Selection
from syncapp.terminal import out

bus_app = typer.Typer(no_args_is_help=True, help="The service bus: depth, age, in flight.")
dlq_app = typer.Typer(no_args_is_help=True, help="Dead letters: list, show, replay, drop.")


def _sessions() -> sessionmaker[Session]:
    from syncapp.cli import _settings
    from syncapp.store.db import make_engine, make_session_factory

    return make_session_factory(make_engine(_settings().database_url))


def _when(value: str | None) -> datetime | None:
    if value is None:
        return None
    try:
        parsed = datetime.fromisoformat(value)
    except ValueError:
        raise typer.BadParameter(f"not an ISO 8601 time: {value!r}") from None
    return parsed if parsed.tzinfo else parsed.replace(tzinfo=UTC)


Ids = Annotated[list[int] | None, typer.Argument(help="Event ids (default: all selected).")]
Topic = Annotated[str | None, typer.Option(help="Only this topic.")]
Shop = Annotated[str | None, typer.Option(help="Only this shop domain.")]
Since = Annotated[str | None, typer.Option(help="Dead-lettered at or after (ISO 8601).")]
Until = Annotated[str | None, typer.Option(help="Dead-lettered before (ISO 8601).")]


def _selection(
    ids: list[int] | None, topic: str | None, shop: str | None, since: str | None, until: str | None
) -> Selection:
    return Selection(ids=ids or (), topic=topic, shop=shop, since=_when(since), until=_when(until))


@bus_app.command("status")
def bus_status(
    per_shop: Annotated[
        bool, typer.Option("--per-shop", help="One row per topic and shop.")
    ] = False,
) -> None:
    """Depth, in flight, dead letters and oldest age, per topic."""
    now = datetime.now(UTC)
    rows = operators.status(_sessions(), per_shop=per_shop)
    table = Table(title="syncapp bus")
    for column in ("source", "topic", *(["shop"] if per_shop else []), "pending", "in flight"):
        table.add_column(column, justify="right" if column in ("pending", "in flight") else "left")
    table.add_column("dead", justify="right")
    table.add_column("oldest pending", justify="right")
    for row in rows:
        age = row.oldest_age(now)
        table.add_row(
            row.source,
            row.topic,
            *([row.shop or ""] if per_shop else []),
            str(row.pending),
            str(row.in_flight),
            str(row.dead),
            "" if age is None else f"{age:,.0f} s",
        )
    out.print(table)


@dlq_app.command("list")
def dlq_list(
    ids: Ids = None,
    topic: Topic = None,
    shop: Shop = None,
    since: Since = None,
    until: Until = None,
    limit: Annotated[int, typer.Option(help="At most this many rows.")] = 100,
) -> None:
    """The selected dead letters with their reason."""
    letters = operators.dead_letters(
        _sessions(), _selection(ids, topic, shop, since, until), limit=limit
    )
    table = Table(title=f"dead letters ({len(letters)})")
    for column in ("id", "topic", "shop", "attempts", "dead since", "reason"):
        table.add_column(column)
    for e in letters:
        table.add_row(
            str(e.id),
            e.topic,
            e.shop_domain,
            str(e.attempts),
            str(e.processed_at or ""),
            (e.last_error or "")[:120],
        )
    out.print(table)


@dlq_app.command("show")
def dlq_show(event_id: int) -> None:
    """One dead letter: its envelope fields and every failed attempt."""
    event = operators.dead_letter(_sessions(), event_id)
    if event is None:
        out.print(f"[red]no event {event_id}[/red]")
        raise typer.Exit(1)
    table = Table(title=f"event {event.id} ({event.status})", show_header=False)
    for name in ("source", "topic", "shop_domain", "partition_key", "delivery_id", "event_id",
                 "received_at", "processed_at", "attempts", "last_error"):  # fmt: skip
        table.add_row(name, str(getattr(event, name)))
    sealed = not event.payload.lstrip().startswith(("{", "["))
    table.add_row("payload", f"(sealed, {len(event.payload)} bytes)" if sealed else event.payload)
    out.print(table)
    history = Table(title="attempts")
    for column in ("attempt", "at", "error"):
        history.add_column(column)
    for entry in orjson.loads(event.history or "[]"):
        history.add_row(str(entry.get("attempt")), str(entry.get("at")), str(entry.get("error")))
    out.print(history)


@dlq_app.command("replay")
def dlq_replay(
    ids: Ids = None,
    topic: Topic = None,
    shop: Shop = None,
    since: Since = None,
    until: Until = None,
) -> None:
    """Put the selected dead letters back on the bus (idempotent)."""
    sessions = _sessions()
    selection = _selection(ids, topic, shop, since, until)
    with sessions() as session:
        total = session.scalar(
            select(func.count()).select_from(InboundEvent).where(selection.where())
        )
    with Progress(console=out) as progress:
        task = progress.add_task("replaying", total=total or 0)
        replayed = operators.replay(
            sessions, selection, progress=lambda n: progress.advance(task, n)
        )
    out.print(f"replayed {replayed} dead letter(s)")


@dlq_app.command("drop")
def dlq_drop(
    ids: Ids = None,
    topic: Topic = None,
    shop: Shop = None,
    since: Since = None,
    until: Until = None,
    yes: Annotated[bool, typer.Option("--yes", help="Do not ask.")] = False,
) -> None:
    """Delete the selected dead letters."""
    selection = _selection(ids, topic, shop, since, until)
    if not (ids or topic or shop or since or until) and not yes:
        typer.confirm("Drop EVERY dead letter?", abort=True)
    out.print(f"dropped {operators.drop(_sessions(), selection)} dead letter(s)")


@bus_app.command("asyncapi")
def bus_asyncapi() -> None:
    """Print the AsyncAPI document of every event type."""
    import yaml

    from syncapp.events import asyncapi

    typer.echo(yaml.safe_dump(asyncapi(), sort_keys=False, width=100), nl=False)
