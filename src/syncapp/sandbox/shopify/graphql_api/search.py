"""Shopify's search ``query`` syntax, parsed (pure) and compiled to SQL for the sandbox tables.

Supported: ``field:value``, comparators ``field:>v`` ``>=`` ``<`` ``<=``, quoted values
(``'…'`` or ``"…"``), comma lists for ``status``, a trailing ``*`` as prefix match, ``-field:v``
or ``NOT field:v`` to negate, terms joined by whitespace or ``AND`` (all must match) and
``OR`` between groups of terms. Free text matches title, vendor and product type. Unknown
fields are ignored with a warning, as Shopify does. Parentheses are not modelled.
"""

from __future__ import annotations

import re
from collections.abc import Callable
from dataclasses import dataclass, field
from datetime import UTC, datetime, timedelta
from typing import Any

from syncapp.sandbox.shopify.graphql_api.errors import NotImplementedInSandbox
from syncapp.sandbox.shopify.graphql_api.ids import parse_gid

COMPARATORS = (">=", "<=", ">", "<")

_TOKEN = re.compile(
    r"""\s*(?P<neg>-)?(?:(?P<field>[A-Za-z_][A-Za-z0-9_.]*):(?P<op>>=|<=|>|<)?)?"""
    r"""(?P<value>"(?:[^"\\]|\\.)*"|'(?:[^'\\]|\\.)*'|[^\s()]+)"""
)


@dataclass(frozen=True)
class Term:
    """One ``field:op value`` (``field`` None for free text); ``op`` is ``:`` for equality."""

    field: str | None
    op: str
    value: str
    negated: bool = False


@dataclass(frozen=True)
class SearchQuery:
    """Disjunction of conjunctions: any group whose terms all match."""

    groups: tuple[tuple[Term, ...], ...]


def _unquote(raw: str) -> str:
    if len(raw) >= 2 and raw[0] == raw[-1] and raw[0] in "'\"":
        return re.sub(r"\\(.)", r"\1", raw[1:-1])
    return raw


def parse_search(query: str) -> SearchQuery:
    """Parse a search string; raises ``NotImplementedInSandbox`` for parentheses."""
    if "(" in _strip_quoted(query) or ")" in _strip_quoted(query):
        raise NotImplementedInSandbox("Parenthesised search syntax")
    groups: list[tuple[Term, ...]] = []
    current: list[Term] = []
    negate_next = False
    pos = 0
    text = query.strip()
    while pos < len(text):
        match = _TOKEN.match(text, pos)
        if match is None or match.end() == pos:
            break
        pos = match.end()
        raw_value = match.group("value")
        if match.group("field") is None and match.group("neg") is None:
            upper = raw_value.upper()
            if upper == "AND" and raw_value == upper:
                continue
            if upper == "OR" and raw_value == upper:
                if current:
                    groups.append(tuple(current))
                current = []
                continue
            if upper == "NOT" and raw_value == upper:
                negate_next = True
                continue
        term = Term(
            field=match.group("field").lower() if match.group("field") else None,
            op=match.group("op") or ":",
            value=_unquote(raw_value),
            negated=bool(match.group("neg")) or negate_next,
        )
        negate_next = False
        current.append(term)
    if current:
        groups.append(tuple(current))
    return SearchQuery(groups=tuple(groups))


def _strip_quoted(text: str) -> str:
    return re.sub(r"\"(?:[^\"\\]|\\.)*\"|'(?:[^'\\]|\\.)*'", "", text)


def normalize_datetime(value: str) -> tuple[str, str | None]:
    """``(start, end)`` in the stored format; ``end`` is set when ``value`` is a bare date.

    A bare date is its midnight (UTC) in comparisons, and the whole day for equality.
    """
    text = value.strip()
    if text.lower() == "now":
        moment = datetime.now(UTC).replace(microsecond=0)
        return _fmt(moment), None
    if re.fullmatch(r"\d{4}-\d{2}-\d{2}", text):
        day = datetime.fromisoformat(text).replace(tzinfo=UTC)
        return _fmt(day), _fmt(day + timedelta(days=1))
    moment = datetime.fromisoformat(text.replace("z", "Z"))
    if moment.tzinfo is None:
        moment = moment.replace(tzinfo=UTC)
    return _fmt(moment.astimezone(UTC).replace(microsecond=0)), None


def _fmt(moment: datetime) -> str:
    return moment.isoformat().replace("+00:00", "Z")


@dataclass
class Compiled:
    """A SQL boolean expression with its parameters, and warnings for ignored terms."""

    sql: str
    params: list[Any]
    warnings: list[dict[str, str]] = field(default_factory=list)


Handler = Callable[[Term], tuple[str, list[Any]]]


def _like(value: str) -> str:
    escaped = value.replace("\\", "\\\\").replace("%", "\\%").replace("_", "\\_")
    if escaped.endswith("*"):
        return escaped[:-1] + "%"
    return f"%{escaped}%"


def _text_eq(column: str) -> Handler:
    def handler(term: Term) -> tuple[str, list[Any]]:
        if term.value.endswith("*"):
            return f"{column} LIKE ? ESCAPE '\\'", [_like(term.value)]
        return f"{column} = ? COLLATE NOCASE", [term.value]

    return handler


def _text_contains(column: str) -> Handler:
    def handler(term: Term) -> tuple[str, list[Any]]:
        return f"{column} LIKE ? ESCAPE '\\'", [_like(term.value)]

    return handler


def _datetime(column: str) -> Handler:
    def handler(term: Term) -> tuple[str, list[Any]]:
        try:
            start, end = normalize_datetime(term.value)
        except ValueError as exc:
            raise _invalid(term, "is not a date or time") from exc
        if term.op == ":":
            if end is None:
                return f"{column} = ?", [start]
            return f"({column} >= ? AND {column} < ?)", [start, end]
        return f"{column} {term.op} ?", [start]

    return handler


def _numeric_id(column: str) -> Handler:
    def handler(term: Term) -> tuple[str, list[Any]]:
        raw = term.value
        parsed = parse_gid(raw)
        if parsed is not None:
            number = parsed[1]
        elif raw.isdigit():
            number = int(raw)
        else:
            raise _invalid(term, "is not an id")
        op = "=" if term.op == ":" else term.op
        return f"{column} {op} ?", [number]

    return handler


def _invalid(term: Term, why: str) -> NotImplementedInSandbox:
    # Shopify silently matches nothing on garbage values; the sandbox says so loudly instead.
    return NotImplementedInSandbox(f"Search value '{term.value}' for '{term.field}' ({why})")


def _status(term: Term) -> tuple[str, list[Any]]:
    values = [v.strip().upper() for v in term.value.split(",") if v.strip()]
    return f"p.status IN ({','.join('?' * len(values))})", values


def _tag(term: Term) -> tuple[str, list[Any]]:
    return (
        "EXISTS (SELECT 1 FROM json_each(p.tags) WHERE lower(json_each.value) = lower(?))",
        [term.value],
    )


def _product_sku(term: Term) -> tuple[str, list[Any]]:
    inner, params = _text_eq("v.sku")(term)
    sql = f"EXISTS (SELECT 1 FROM sb_variants v WHERE v.product_id = p.id AND {inner})"  # noqa: S608
    return sql, params


def _product_barcode(term: Term) -> tuple[str, list[Any]]:
    inner, params = _text_eq("v.barcode")(term)
    sql = f"EXISTS (SELECT 1 FROM sb_variants v WHERE v.product_id = p.id AND {inner})"  # noqa: S608
    return sql, params


def _product_free_text(term: Term) -> tuple[str, list[Any]]:
    pattern = _like(term.value)
    return (
        "(p.title LIKE ? ESCAPE '\\' OR p.vendor LIKE ? ESCAPE '\\'"
        " OR p.product_type LIKE ? ESCAPE '\\')",
        [pattern, pattern, pattern],
    )


PRODUCT_FIELDS: dict[str | None, Handler] = {
    None: _product_free_text,
    "id": _numeric_id("p.id"),
    "title": _text_contains("p.title"),
    "handle": _text_eq("p.handle"),
    "vendor": _text_eq("p.vendor"),
    "product_type": _text_eq("p.product_type"),
    "status": _status,
    "tag": _tag,
    "sku": _product_sku,
    "barcode": _product_barcode,
    "created_at": _datetime("p.created_at"),
    "updated_at": _datetime("p.updated_at"),
    "published_at": _datetime("p.published_at"),
}


def _variant_free_text(term: Term) -> tuple[str, list[Any]]:
    pattern = _like(term.value)
    return "(v.title LIKE ? ESCAPE '\\' OR v.sku LIKE ? ESCAPE '\\')", [pattern, pattern]


VARIANT_FIELDS: dict[str | None, Handler] = {
    None: _variant_free_text,
    "id": _numeric_id("v.id"),
    "product_id": _numeric_id("v.product_id"),
    "sku": _text_eq("v.sku"),
    "barcode": _text_eq("v.barcode"),
    "title": _text_contains("v.title"),
    "created_at": _datetime("v.created_at"),
    "updated_at": _datetime("v.updated_at"),
}


def compile_search(query: str | None, fields: dict[str | None, Handler]) -> Compiled:
    """SQL for ``query`` over the columns ``fields`` knows; ``1`` (true) when it is empty."""
    if not query or not query.strip():
        return Compiled("1", [])
    parsed = parse_search(query)
    warnings: list[dict[str, str]] = []
    group_sql: list[str] = []
    params: list[Any] = []
    for group in parsed.groups:
        parts: list[str] = []
        for term in group:
            handler = fields.get(term.field)
            if handler is None:
                warnings.append(
                    {"field": str(term.field), "message": "Invalid search field for this query."}
                )
                continue
            sql, term_params = handler(term)
            parts.append(f"NOT ({sql})" if term.negated else sql)
            params.extend(term_params)
        group_sql.append("(" + " AND ".join(parts) + ")" if parts else "1")
    if not group_sql:
        return Compiled("1", [], warnings)
    return Compiled("(" + " OR ".join(group_sql) + ")", params, warnings)
