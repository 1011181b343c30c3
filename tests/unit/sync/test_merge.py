"""The field-level three-way merge and its conflict policy."""

from __future__ import annotations

from datetime import UTC, datetime, timedelta
from typing import Any

from hypothesis import given
from hypothesis import strategies as st

from syncapp.sync.merge import MISSING, MergePolicy, Side, merge

paths = st.sampled_from(["title", "status", "variant/a/price", "variant/a/sku", "variant/b/price"])
values = st.one_of(st.integers(0, 3), st.sampled_from(["x", "y", None]))
states = st.dictionaries(paths, values, max_size=5)
clocks = st.none() | st.datetimes(timezones=st.just(UTC))


@given(states, states)
def test_only_shopify_changed_gives_shopify(base: dict[str, Any], x: dict[str, Any]) -> None:
    """merge(base, x, base) == x, with no conflict and nothing to write to Shopify."""
    result = merge(base, x, base)
    assert result.merged == x
    assert result.conflicts == ()
    assert result.to_shopify == frozenset()


@given(states, states)
def test_only_emanage_changed_gives_emanage(base: dict[str, Any], x: dict[str, Any]) -> None:
    """merge(base, base, x) == x, with nothing to write to eManageCRM."""
    result = merge(base, base, x)
    assert result.merged == x
    assert result.conflicts == ()
    assert result.to_emanage == frozenset()


@given(states, states)
def test_the_same_change_on_both_sides_is_no_conflict(
    base: dict[str, Any], x: dict[str, Any]
) -> None:
    """merge(base, x, x) == x and nothing is written anywhere."""
    result = merge(base, x, x)
    assert result.merged == x
    assert not result.conflicts
    assert result.to_shopify == result.to_emanage == frozenset()


@given(states, states, states, clocks, clocks)
def test_merged_values_come_from_a_side_and_conflicts_are_exact(
    base: dict[str, Any],
    s: dict[str, Any],
    e: dict[str, Any],
    s_at: datetime | None,
    e_at: datetime | None,
) -> None:
    """Each merged value is one side's; a conflict is exactly a path both changed differently."""
    result = merge(base, s, e, shopify_updated_at=s_at, emanage_updated_at=e_at)
    for path, value in result.merged.items():
        assert value in (s.get(path, MISSING), e.get(path, MISSING))
    expected = {
        p
        for p in set(base) | set(s) | set(e)
        if len({repr(d.get(p, MISSING)) for d in (base, s, e)}) == 3
    }
    assert {c.field for c in result.conflicts} == expected
    for c in result.conflicts:
        assert result.merged.get(c.field) == (s if c.winner is Side.SHOPIFY else e).get(c.field)
    after_s = {**s, **{p: result.merged[p] for p in result.to_shopify if p in result.merged}}
    after_s = {p: v for p, v in after_s.items() if p in result.merged}
    assert after_s == result.merged


def test_newest_change_wins_a_conflict() -> None:
    """Both changed the price: the later eManageCRM edit wins, recorded with both values."""
    now = datetime(2026, 12, 7, tzinfo=UTC)
    result = merge(
        {"variant/a/price": "10.00"},
        {"variant/a/price": "11.00"},
        {"variant/a/price": "12.00"},
        shopify_updated_at=now,
        emanage_updated_at=now + timedelta(seconds=1),
    )
    assert result.merged == {"variant/a/price": "12.00"}
    (conflict,) = result.conflicts
    assert (conflict.shopify_value, conflict.emanage_value, conflict.winner) == (
        "11.00",
        "12.00",
        Side.EMANAGE,
    )
    assert "newest" in conflict.reason
    assert result.to_shopify == {"variant/a/price"}
    assert result.to_emanage == frozenset()


def test_a_field_owner_beats_the_newest_change() -> None:
    """With eManageCRM owning price, its older edit wins over Shopify's newer one."""
    now = datetime(2026, 12, 7, tzinfo=UTC)
    result = merge(
        {"variant/a/price": "10.00", "title": "A"},
        {"variant/a/price": "11.00", "title": "B"},
        {"variant/a/price": "12.00", "title": "C"},
        shopify_updated_at=now + timedelta(hours=1),
        emanage_updated_at=now,
        policy=MergePolicy(owners={"price": Side.EMANAGE}),
    )
    assert result.merged == {"variant/a/price": "12.00", "title": "B"}
    reasons = {c.field: c.reason for c in result.conflicts}
    assert reasons["variant/a/price"] == "emanage owns price"


def test_a_tie_goes_to_shopify() -> None:
    """Two edits in the same second: Shopify wins by the documented tie rule."""
    now = datetime(2026, 12, 7, tzinfo=UTC)
    result = merge(
        {"title": "A"},
        {"title": "B"},
        {"title": "C"},
        shopify_updated_at=now,
        emanage_updated_at=now,
    )
    assert result.merged == {"title": "B"}
    assert result.conflicts[0].winner is Side.SHOPIFY
