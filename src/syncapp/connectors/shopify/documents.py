"""The Admin GraphQL documents the app sends to Shopify, read from ``graphql/*.graphql``.

Documents live in files rather than Python strings so that one test validates every one of
them against the real Admin schema (tests/unit/test_graphql_conformance.py). They are read
with :mod:`importlib.resources`, so they ship inside the wheel and work from a zip import.
"""

from __future__ import annotations

from functools import cache
from importlib import resources
from importlib.resources.abc import Traversable

from syncapp.errors import SyncAppError

__all__ = ["DocumentNotFoundError", "document_names", "load_document"]

_PACKAGE = "syncapp.connectors.shopify"
_FOLDER = "graphql"


class DocumentNotFoundError(SyncAppError, LookupError):
    """No ``graphql/<name>.graphql`` ships with the app: a misspelt name or a missing file."""


def _folder() -> Traversable:
    return resources.files(_PACKAGE).joinpath(_FOLDER)


def document_names() -> list[str]:
    """The names :func:`load_document` accepts, sorted (file names without ``.graphql``)."""
    return sorted(
        entry.name.removesuffix(".graphql")
        for entry in _folder().iterdir()
        if entry.is_file() and entry.name.endswith(".graphql")
    )


@cache
def load_document(name: str) -> str:
    """The text of ``graphql/<name>.graphql``, e.g. ``load_document("product_set")``.

    Raises :class:`DocumentNotFoundError` naming the file looked for and the documents there.
    """
    resource = _folder().joinpath(f"{name}.graphql")
    if not resource.is_file():
        path = f"{_PACKAGE.replace('.', '/')}/{_FOLDER}/{name}.graphql"
        raise DocumentNotFoundError(
            f"Shopify GraphQL document {name!r} not found: {path} does not exist."
            f" Available: {', '.join(document_names()) or '(none)'}."
        )
    return resource.read_text(encoding="utf-8")
