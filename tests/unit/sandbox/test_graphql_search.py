"""The search ``query`` syntax of the sandbox (pure parsing and date normalisation)."""

from __future__ import annotations

from datetime import UTC, datetime

from hypothesis import given
from hypothesis import strategies as st

from syncapp.sandbox.shopify.graphql_api.search import (
    PRODUCT_FIELDS,
    Term,
    compile_search,
    normalize_datetime,
    parse_search,
)

FIELDS = st.sampled_from(["updated_at", "created_at", "id", "title", "sku", "tag", "status"])
OPS = st.sampled_from([":", ">", ">=", "<", "<="])
BARE = st.text(alphabet="abcdefghijklmnopqrstuvwxyz0123456789-_.", min_size=1, max_size=12)
QUOTED = st.text(alphabet="abcdefghijklmnopqrstuvwxyz0123456789 -:", min_size=1, max_size=20)


def render(field: str, op: str, value: str, quote: str) -> str:
    return f"{field}:{'' if op == ':' else op}{quote}{value}{quote}"


@given(FIELDS, OPS, BARE)
def test_an_unquoted_term_parses_to_its_field_op_and_value(field: str, op: str, value: str) -> None:
    """field:opvalue parses back to exactly that term."""
    parsed = parse_search(render(field, op, value, ""))
    assert parsed.groups == ((Term(field, op, value),),)


@given(FIELDS, OPS, QUOTED, st.sampled_from(["'", '"']))
def test_a_quoted_value_keeps_its_spaces_and_colons(
    field: str, op: str, value: str, quote: str
) -> None:
    """Quotes protect spaces and colons inside a value."""
    parsed = parse_search(render(field, op, value, quote))
    assert parsed.groups == ((Term(field, op, value),),)


@given(
    st.lists(st.tuples(FIELDS, OPS, BARE), min_size=1, max_size=5), st.sampled_from([" ", " AND "])
)
def test_terms_joined_by_space_or_and_form_one_conjunction(
    terms: list[tuple[str, str, str]], joiner: str
) -> None:
    """Whitespace and AND both mean all terms must match."""
    text = joiner.join(render(f, o, v, "") for f, o, v in terms)
    assert parse_search(text).groups == (tuple(Term(f, o, v) for f, o, v in terms),)


def test_or_splits_groups_and_minus_negates() -> None:
    """OR separates alternatives; a leading minus negates a term."""
    parsed = parse_search("tag:a -status:draft OR sku:X")
    assert parsed.groups == (
        (Term("tag", ":", "a"), Term("status", ":", "draft", negated=True)),
        (Term("sku", ":", "X"),),
    )


@given(st.datetimes(min_value=datetime(2000, 1, 1), max_value=datetime(2099, 1, 1)))
def test_datetimes_normalise_to_stored_utc_form(moment: datetime) -> None:
    """Any ISO datetime normalises to the stored Z form, which orders like time."""
    moment = moment.replace(microsecond=0, tzinfo=UTC)
    start, end = normalize_datetime(moment.isoformat())
    assert start == moment.strftime("%Y-%m-%dT%H:%M:%SZ")
    assert end is None


def test_a_bare_date_equality_covers_the_whole_day() -> None:
    """created_at:2026-01-01 means that UTC day."""
    compiled = compile_search("created_at:2026-01-01", PRODUCT_FIELDS)
    assert compiled.params == ["2026-01-01T00:00:00Z", "2026-01-02T00:00:00Z"]


def test_unknown_fields_are_ignored_with_a_warning() -> None:
    """A field Shopify does not search is dropped and reported, as Shopify does."""
    compiled = compile_search("colour:red", PRODUCT_FIELDS)
    assert compiled.sql == "(1)"
    assert compiled.warnings == [
        {"field": "colour", "message": "Invalid search field for this query."}
    ]
