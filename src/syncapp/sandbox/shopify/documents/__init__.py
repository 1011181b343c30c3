"""The Admin GraphQL documents the sandbox sends to itself (its admin pages and seeding).

Each document is a ``<name>.graphql`` file in this package, so a test can validate every one
against the real schema. The sandbox keeps its own loader rather than the app's because the
sandbox imports nothing of the app.
"""

from __future__ import annotations

from functools import cache
from importlib import resources

__all__ = ["load"]


@cache
def load(name: str) -> str:
    """The text of ``<name>.graphql`` in this package (e.g. ``load("seed_product")``)."""
    resource = resources.files(__name__).joinpath(f"{name}.graphql")
    if not resource.is_file():
        available = sorted(
            entry.name.removesuffix(".graphql")
            for entry in resources.files(__name__).iterdir()
            if entry.name.endswith(".graphql")
        )
        raise FileNotFoundError(
            f"no sandbox GraphQL document {name!r}: {__name__.replace('.', '/')}/{name}.graphql"
            f" does not exist; documents here: {', '.join(available)}"
        )
    return resource.read_text(encoding="utf-8")
