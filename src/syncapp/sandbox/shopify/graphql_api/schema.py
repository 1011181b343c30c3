"""The real Admin GraphQL schema the sandbox serves, loaded once per process.

The introspection file is Shopify's own (``../schema/admin_<version>.json.gz``); the sandbox
never edits it, so a document valid here is valid on Shopify and the other way round.
"""

from __future__ import annotations

import gzip
import json
from functools import cache
from pathlib import Path

from graphql import GraphQLSchema, build_client_schema

SCHEMA_DIR = Path(__file__).resolve().parent.parent / "schema"


def schema_path(api_version: str) -> Path:
    """Where the introspection result of ``api_version`` lives in the package."""
    return SCHEMA_DIR / f"admin_{api_version}.json.gz"


def has_schema(api_version: str) -> bool:
    """Whether the sandbox can serve ``api_version`` (it serves what it has a schema for)."""
    return schema_path(api_version).is_file()


@cache
def admin_schema(api_version: str = "2026-10") -> GraphQLSchema:
    """The Admin schema of ``api_version``; loading takes about two seconds, so it is cached."""
    path = schema_path(api_version)
    if not path.is_file():
        raise FileNotFoundError(f"no Admin GraphQL schema for API version {api_version} at {path}")
    with gzip.open(path, "rt", encoding="utf-8") as fh:
        data = json.load(fh)
    # assume_valid: graphql-core rejects Shopify's schema in its own schema check (deprecated
    # fields implementing non-deprecated interface fields); documents still validate normally.
    return build_client_schema(data["data"], assume_valid=True)
