"""Relay cursor pagination over SQL, by keyset: a page costs one indexed range scan.

Cursors are opaque to clients, as Shopify's are (base64 JSON of the last sort value and
id). Order is ``(sort value, id)``, so ties on the sort value never skip or repeat a row.
"""

from __future__ import annotations

import base64
import binascii
import json
import sqlite3
from dataclasses import dataclass
from typing import Any

from syncapp.sandbox.shopify.graphql_api.errors import argument_error

MAX_PAGE = 250


def encode_cursor(sort_value: Any, row_id: int) -> str:
    raw = json.dumps({"last_id": row_id, "last_value": sort_value}, separators=(",", ":"))
    return base64.b64encode(raw.encode()).decode()


def decode_cursor(cursor: str) -> tuple[Any, int]:
    try:
        data = json.loads(base64.b64decode(cursor.encode(), validate=True))
        return data["last_value"], int(data["last_id"])
    except (binascii.Error, ValueError, KeyError, TypeError) as exc:
        raise argument_error(f"Invalid cursor for current pagination sort: {cursor!r}") from exc


@dataclass(frozen=True)
class PageArgs:
    first: int | None
    after: str | None
    last: int | None
    before: str | None
    reverse: bool

    @classmethod
    def from_args(cls, args: dict[str, Any], *, unbounded: bool = False) -> PageArgs:
        """Check ``first``/``last`` as Shopify does; ``unbounded`` (bulk) lifts the page size."""
        first, last = args.get("first"), args.get("last")
        if not unbounded:
            if first is None and last is None:
                raise argument_error("you must provide one of first or last")
            if first is not None and last is not None:
                raise argument_error("providing both first and last is not supported")
            for name, value in (("first", first), ("last", last)):
                if value is not None and not 0 <= value <= MAX_PAGE:
                    raise argument_error(f"The '{name}' argument must be between 0 and {MAX_PAGE}.")
        return cls(
            first=first,
            after=args.get("after"),
            last=last,
            before=args.get("before"),
            reverse=bool(args.get("reverse") or False),
        )


@dataclass(frozen=True)
class Page:
    rows: list[dict[str, Any]]
    cursors: list[str]
    has_next: bool
    has_previous: bool


def fetch_page(
    conn: sqlite3.Connection,
    *,
    table: str,
    where: str,
    params: list[Any],
    sort_expr: str,
    id_expr: str,
    page: PageArgs,
    select: str | None = None,
) -> Page:
    """One page of ``table`` rows matching ``where``, ordered by ``(sort_expr, id_expr)``.

    ``table``, ``where``, ``sort_expr`` and ``id_expr`` are trusted SQL from this package;
    values only ever travel in ``params``.
    """
    select = select or "*"
    base_desc = page.reverse
    backwards = page.last is not None and page.first is None
    limit = page.last if backwards else page.first

    def bound(cursor: str, after: bool) -> tuple[str, list[Any]]:
        value, row_id = decode_cursor(cursor)
        ascending_after = after != base_desc
        op = ">" if ascending_after else "<"
        return f"({sort_expr}, {id_expr}) {op} (?, ?)", [value, row_id]

    conds, cond_params = [where], list(params)
    if page.after:
        sql, p = bound(page.after, after=True)
        conds.append(sql)
        cond_params += p
    if page.before:
        sql, p = bound(page.before, after=False)
        conds.append(sql)
        cond_params += p
    fetch_desc = base_desc != backwards
    direction = "DESC" if fetch_desc else "ASC"
    sql = (
        f"SELECT {select}, {sort_expr} AS _sort, {id_expr} AS _id FROM {table}"  # noqa: S608
        f" WHERE {' AND '.join(conds)} ORDER BY _sort {direction}, _id {direction}"
    )
    query_params: list[Any] = list(cond_params)
    if limit is not None:
        sql += " LIMIT ?"
        query_params.append(limit + 1)
    rows = [dict(row) for row in conn.execute(sql, query_params).fetchall()]
    more = limit is not None and len(rows) > limit
    if limit is not None:
        rows = rows[:limit]
    if backwards:
        rows.reverse()
    cursors = [encode_cursor(row.pop("_sort"), row.pop("_id")) for row in rows]

    def exists_beyond(cursor: str | None, after: bool) -> bool:
        if cursor is None:
            return False
        # Rows on the other side of the cursor the client came from (inclusive of it).
        value, row_id = decode_cursor(cursor)
        ascending_after = after != base_desc
        op = "<=" if ascending_after else ">="
        found = conn.execute(
            f"SELECT 1 FROM {table} WHERE {where}"  # noqa: S608
            f" AND ({sort_expr}, {id_expr}) {op} (?, ?) LIMIT 1",
            [*params, value, row_id],
        ).fetchone()
        return found is not None

    if backwards:
        return Page(
            rows, cursors, has_next=exists_beyond(page.before, after=False), has_previous=more
        )
    return Page(rows, cursors, has_next=more, has_previous=exists_beyond(page.after, after=True))


def connection(type_prefix: str, page: Page, nodes: list[Any]) -> dict[str, Any]:
    """A ``<Type>Connection`` value of already-built nodes, in the order of ``page.rows``."""
    edges = [
        {"__typename": f"{type_prefix}Edge", "cursor": cursor, "node": node}
        for cursor, node in zip(page.cursors, nodes, strict=True)
    ]
    return {
        "__typename": f"{type_prefix}Connection",
        "edges": edges,
        "nodes": nodes,
        "pageInfo": {
            "__typename": "PageInfo",
            "hasNextPage": page.has_next,
            "hasPreviousPage": page.has_previous,
            "startCursor": page.cursors[0] if page.cursors else None,
            "endCursor": page.cursors[-1] if page.cursors else None,
        },
    }
