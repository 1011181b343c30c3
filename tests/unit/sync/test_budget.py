"""The per-shop Shopify cost budget and variant chunking (pitfalls 15, 25)."""

from __future__ import annotations

import pytest
from hypothesis import given
from hypothesis import strategies as st

from syncapp.connectors.shopify.budget import (
    MAX_VARIANTS_PER_PRODUCT,
    CostBudget,
    QueryCost,
    chunked,
    parse_cost,
    variants_bulk_cost,
)
from syncapp.sandbox.shopify.throttle import LeakyBucket

costs = st.lists(st.tuples(st.integers(1, 1000), st.floats(0, 1)), min_size=1, max_size=60)


@given(costs, st.sampled_from([(2000, 100), (4000, 200), (1000, 50)]))
def test_pacing_by_the_budget_is_never_throttled(
    requests: list[tuple[int, float]], plan: tuple[int, int]
) -> None:
    """A burst paced by wait_for against Shopify's bucket (the sandbox's) is never refused,
    whatever the plan, learning the limits from each answer's throttleStatus."""
    capacity, rate = plan
    bucket = LeakyBucket(capacity, rate, now=0.0)
    budget, now = CostBudget(), 0.0
    for requested, actual_share in requests:
        now += budget.wait_for(requested, now)
        budget = budget.reserve(requested, now)
        assert bucket.try_take(requested, now), (requested, bucket.status(now), budget)
        actual = int(requested * actual_share)
        bucket.refund(requested - actual, now)
        status = bucket.status(now)
        report = QueryCost(
            requested,
            actual,
            status.maximum_available,
            status.currently_available,
            status.restore_rate,
        )
        budget = budget.observe(report, now, reserved=requested)


@given(st.integers(1, 1000), st.floats(0, 1000), st.floats(0, 100))
def test_waiting_as_told_makes_room(cost: int, available: float, at: float) -> None:
    """After wait_for(cost) seconds the budget holds at least cost points."""
    budget = CostBudget(maximum=2000, restore_rate=100, available=available, observed_at=at)
    assert budget.level(at + budget.wait_for(cost, at)) >= cost - 1e-9


def test_a_query_above_the_single_query_limit_never_fits() -> None:
    """Cost 1,001 can never run: wait_for says so instead of waiting forever."""
    with pytest.raises(ValueError, match="fewer items"):
        CostBudget(maximum=2000).wait_for(1001, 0)


def test_in_flight_reservations_count_against_the_budget() -> None:
    """Two callers of one shop reserve: the second waits for what the first took."""
    budget = CostBudget(maximum=1000, restore_rate=50, available=1000).reserve(800, 0)
    # 401 points at 50/s, rounded up to the millisecond
    assert budget.wait_for(400, 0) == pytest.approx(4.02, abs=0.002)
    assert budget.release(800, 0).wait_for(400, 0) == 0


def test_parse_cost_reads_extensions_cost() -> None:
    """The throttleStatus and both costs of a response body are read; no report gives None."""
    body = {
        "data": {},
        "extensions": {
            "cost": {
                "requestedQueryCost": 52,
                "actualQueryCost": 12,
                "throttleStatus": {
                    "maximumAvailable": 2000.0,
                    "currentlyAvailable": 1988,
                    "restoreRate": 100.0,
                },
            }
        },
    }
    assert parse_cost(body) == QueryCost(52, 12, 2000.0, 1988, 100.0)
    assert parse_cost({"data": {}}) is None


@given(st.integers(0, MAX_VARIANTS_PER_PRODUCT))
def test_variant_writes_are_chunked_within_the_input_cap(count: int) -> None:
    """Up to 2,048 variants split into consecutive chunks of at most 250, each < 1,000 points."""
    items = list(range(count))
    chunks = chunked(items)
    assert [i for c in chunks for i in c] == items
    assert all(0 < len(c) <= 250 and variants_bulk_cost(len(c)) <= 1000 for c in chunks)
    assert len(chunks) == -(-count // 250)
