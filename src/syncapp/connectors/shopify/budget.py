"""A shop's Admin GraphQL cost budget, and the chunking of variant writes: pure arithmetic.

Shopify meters each (app, shop) pair with a leaky bucket of cost points: a query needs its
*requested* cost available, the gap to its *actual* cost is refunded, and the bucket refills at
``restoreRate`` points a second up to ``maximumAvailable``. Every answer reports the bucket in
``extensions.cost.throttleStatus``. :class:`CostBudget` mirrors that bucket from those reports
(never from plan constants, which Shopify may lower at any time) and says how long to wait
before a request of estimated cost C so that it is not THROTTLED; points of requests still in
flight are reserved, so concurrent callers of one shop do not overdraw it together.

Time is passed in (monotonic seconds), never read, so every function is exact to test.
"""

from __future__ import annotations

import math
from collections.abc import Mapping, Sequence
from dataclasses import dataclass, replace
from typing import Any, TypeVar

__all__ = [
    "MAX_QUERY_COST",
    "MAX_VARIANTS_PER_CALL",
    "MAX_VARIANTS_PER_PRODUCT",
    "CostBudget",
    "QueryCost",
    "chunked",
    "parse_cost",
    "variants_bulk_cost",
]

MAX_QUERY_COST = 1000
"""Shopify refuses any single query whose requested cost is above this (MAX_COST_EXCEEDED)."""
MAX_VARIANTS_PER_CALL = 250
"""Input arrays are capped at 250 elements."""
MAX_VARIANTS_PER_PRODUCT = 2048
SAFETY_POINTS = 1.0
"""Waited for on top of a request's cost: Shopify reports whole points rounded down, and the
refill is float arithmetic on both sides, so "exactly enough" may be a hair short."""

T = TypeVar("T")


@dataclass(frozen=True, slots=True)
class QueryCost:
    """``extensions.cost`` of one answer; ``actual`` is None when the query did not run."""

    requested: float
    actual: float | None
    maximum_available: float
    currently_available: float
    restore_rate: float


def parse_cost(body: Mapping[str, Any]) -> QueryCost | None:
    """The cost report of a GraphQL response body, or None when it carries none."""
    cost = (body.get("extensions") or {}).get("cost")
    if not isinstance(cost, Mapping):
        return None
    status = cost.get("throttleStatus")
    if not isinstance(status, Mapping):
        return None
    try:
        actual = cost.get("actualQueryCost")
        return QueryCost(
            requested=float(cost.get("requestedQueryCost") or 0),
            actual=None if actual is None else float(actual),
            maximum_available=float(status["maximumAvailable"]),
            currently_available=float(status["currentlyAvailable"]),
            restore_rate=float(status["restoreRate"]),
        )
    except (KeyError, TypeError, ValueError):
        return None


@dataclass(frozen=True, slots=True)
class CostBudget:
    """What this process believes the shop's bucket holds.

    ``available`` points at ``observed_at``; ``reserved``: points taken by requests sent and
    not answered yet. Before the first answer the budget assumes the smallest bucket Shopify
    has documented (1,000 points, 50/s), so a fresh process cannot start with a burst.
    """

    maximum: float = 1000.0
    restore_rate: float = 50.0
    available: float = 1000.0
    observed_at: float = 0.0
    reserved: float = 0.0

    def level(self, now: float) -> float:
        """Points free for a new request at ``now`` (refilled, minus in-flight reservations)."""
        elapsed = max(0.0, now - self.observed_at)
        return min(self.maximum, self.available + elapsed * self.restore_rate) - self.reserved

    def wait_for(self, cost: float, now: float) -> float:
        """Seconds until a request of requested cost ``cost`` fits: 0 if it does now.

        A cost above the bucket or above :data:`MAX_QUERY_COST` can never fit: ValueError,
        because waiting would not help (the query has to be split).
        """
        if cost > min(self.maximum, MAX_QUERY_COST):
            raise ValueError(
                f"a query of cost {cost} can never run (bucket {self.maximum},"
                f" single-query limit {MAX_QUERY_COST}); request fewer items per page"
            )
        # A micro-point of headroom, and waits rounded up to the millisecond: the bucket's
        # level is a float on both sides, and a residue (999.9999999999999 of 1000) would
        # otherwise send a full-bucket query a hair short, or wait 1e-15 s, which moves no clock.
        missing = min(cost + SAFETY_POINTS, self.maximum) - self.level(now) + 1e-6
        if missing <= 0:
            return 0.0
        return math.ceil(missing / self.restore_rate * 1000) / 1000

    def reserve(self, cost: float, now: float) -> CostBudget:
        """The budget after sending a request of requested cost ``cost`` at ``now``."""
        return replace(self, **self._refilled(now), reserved=self.reserved + cost)

    def observe(self, cost: QueryCost, now: float, *, reserved: float) -> CostBudget:
        """The budget after an answer at ``now`` reported ``cost`` for a request that had
        reserved ``reserved`` points. The report is the truth about the bucket (it already
        includes the refund of requested minus actual and every other client's spending);
        other in-flight reservations stay."""
        return CostBudget(
            maximum=cost.maximum_available,
            restore_rate=cost.restore_rate,
            available=min(cost.maximum_available, cost.currently_available),
            observed_at=now,
            reserved=max(0.0, self.reserved - reserved),
        )

    def release(self, reserved: float, now: float) -> CostBudget:
        """The budget after a request that reserved ``reserved`` failed with no cost report."""
        return replace(self, **self._refilled(now), reserved=max(0.0, self.reserved - reserved))

    def _refilled(self, now: float) -> dict[str, float]:
        if now <= self.observed_at:
            return {}
        elapsed = now - self.observed_at
        return {
            "available": min(self.maximum, self.available + elapsed * self.restore_rate),
            "observed_at": now,
        }


def variants_bulk_cost(variants: int) -> int:
    """Requested cost of ``productVariantsBulkUpdate`` with ``variants`` inputs (Shopify's
    dynamic complexity: 10 + 0.2 a variant, rounded up)."""
    return 10 + math.ceil(variants * 0.2)


def chunked(items: Sequence[T], size: int = MAX_VARIANTS_PER_CALL) -> list[Sequence[T]]:
    """``items`` in order, in consecutive chunks of at most ``size`` (250: the input cap)."""
    if size < 1:
        raise ValueError("chunk size must be at least 1")
    return [items[i : i + size] for i in range(0, len(items), size)]
