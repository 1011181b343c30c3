"""``syncapp apikey create|list|revoke``: the Sync API's operator keys."""

from __future__ import annotations

from typing import Annotated

import typer
from rich.table import Table

from syncapp.bus.commands import _sessions
from syncapp.terminal import out
from syncapp.web.sync_api.keys import SCOPES, ApiKeyError, create_key, list_keys, revoke_key

apikey_app = typer.Typer(no_args_is_help=True, help="Operator keys of the Sync API (/api).")


@apikey_app.command("create")
def apikey_create(
    name: Annotated[str, typer.Argument(help="Who or what uses the key.")],
    scope: Annotated[list[str], typer.Option("--scope", help=f"Repeatable: {', '.join(SCOPES)}.")],
    shop: Annotated[str | None, typer.Option(help="Bind the key to this shop only.")] = None,
) -> None:
    """Create a key and print it once (only its digest is stored)."""
    try:
        key = create_key(_sessions(), name=name, scopes=scope, shop=shop)
    except ApiKeyError as exc:
        raise typer.BadParameter(str(exc)) from None
    typer.echo(key)


@apikey_app.command("list")
def apikey_list() -> None:
    """Keys with their scopes, shop and state (never their secrets)."""
    table = Table("id", "name", "scopes", "shop", "created", "revoked")
    for key, shop in list_keys(_sessions()):
        table.add_row(
            key.id,
            key.name,
            key.scopes,
            shop or "(all shops)",
            f"{key.created_at:%Y-%m-%d %H:%M}",
            f"{key.revoked_at:%Y-%m-%d %H:%M}" if key.revoked_at else "",
        )
    out.print(table)


@apikey_app.command("revoke")
def apikey_revoke(key_id: Annotated[str, typer.Argument(help="The key's id (from list).")]) -> None:
    """Revoke a key: it is refused from the next request on."""
    if not revoke_key(_sessions(), key_id):
        typer.echo(f"no live key {key_id}", err=True)
        raise typer.Exit(1)
    typer.echo(f"revoked {key_id}")
