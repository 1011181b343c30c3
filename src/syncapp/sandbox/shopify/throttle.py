"""The leaky bucket behind the sandbox's GraphQL rate limit, one bucket per (app, shop) pair.

Shopify gives each app-and-store pair a bucket of cost points that refills continuously at the
plan's restore rate: a query runs only if the bucket holds its requested cost, which is taken up
front; the difference to the actual cost is refunded after execution
(https://shopify.dev/docs/apps/build/apis/graphql-admin/rate-limits). This module owns that
arithmetic and the ``throttleStatus`` it reports. Time is always passed in (seconds, any monotonic
origin), never read, so the maths is exact to test and the caller decides which clock to trust.

A bucket is thread safe: the sandbox may price and charge requests from worker threads.
"""

from __future__ import annotations

import math
import threading
from dataclasses import dataclass

__all__ = ["BucketRegistry", "LeakyBucket", "ThrottleStatus"]


@dataclass(frozen=True)
class ThrottleStatus:
    """A bucket's state as Shopify reports it in ``extensions.cost.throttleStatus``."""

    maximum_available: float
    currently_available: float
    restore_rate: float

    def to_json(self) -> dict[str, int | float]:
        """Shopify's shape: ``{"maximumAvailable": 2000.0, "currentlyAvailable": 1990, ...}``.

        Shopify sends the maximum and the rate as floats and the available points as a whole
        number; the points are rounded down so the sandbox never promises a point it lacks.
        """
        return {
            "maximumAvailable": float(self.maximum_available),
            "currentlyAvailable": math.floor(self.currently_available),
            "restoreRate": float(self.restore_rate),
        }


class LeakyBucket:
    """Cost points that refill at ``restore_rate`` per second up to ``capacity``; starts full."""

    def __init__(self, capacity: float, restore_rate: float, now: float) -> None:
        _check_limits(capacity, restore_rate)
        _check_finite("now", now)
        self._capacity = float(capacity)
        self._restore_rate = float(restore_rate)
        self._level = float(capacity)
        self._updated = now
        self._lock = threading.Lock()

    @property
    def capacity(self) -> float:
        return self._capacity

    @property
    def restore_rate(self) -> float:
        return self._restore_rate

    def try_take(self, cost: float, now: float) -> bool:
        """Take ``cost`` points if the bucket holds them now; otherwise take nothing."""
        _check_amount("cost", cost)
        with self._lock:
            self._refill(now)
            if cost > self._level:
                return False
            self._level -= cost
            return True

    def refund(self, amount: float, now: float) -> None:
        """Give back points (requested minus actual cost); the bucket never exceeds capacity."""
        _check_amount("amount", amount)
        with self._lock:
            self._refill(now)
            self._level = min(self._capacity, self._level + amount)

    def status(self, now: float) -> ThrottleStatus:
        """The bucket as it stands at ``now``."""
        with self._lock:
            return ThrottleStatus(self._capacity, self._level_at(now), self._restore_rate)

    def seconds_until(self, cost: float, now: float) -> float:
        """How long until ``cost`` points are available: 0 if they are now, inf if never.

        A cost above capacity can never fit; Shopify refuses such a query outright.
        ``try_take(cost, now + seconds_until(cost, now))`` succeeds if nothing else is taken.
        """
        _check_amount("cost", cost)
        with self._lock:
            level = self._level_at(now)
            if cost <= level:
                return 0.0
            if cost > self._capacity:
                return math.inf
            # Refilling resumes from the last update, which may lie after `now`.
            lag = max(0.0, self._updated - now)
            wait = lag + (cost - level) / self._restore_rate
            # Float rounding may leave the refilled level a hair short of `cost`; step up, one
            # representable instant at a time, until the bucket's own arithmetic says it fits.
            while self._level_at(now + wait) < cost:
                wait += math.ulp(now + wait)
            return wait

    def reconfigure(self, capacity: float, restore_rate: float, now: float) -> None:
        """Adopt new limits (a plan change): points earned so far count, capped at the new size."""
        _check_limits(capacity, restore_rate)
        with self._lock:
            self._refill(now)
            self._capacity = float(capacity)
            self._restore_rate = float(restore_rate)
            self._level = min(self._level, self._capacity)

    def _level_at(self, now: float) -> float:
        _check_finite("now", now)
        # A caller's clock read a moment earlier by another thread must not drain the bucket.
        elapsed = max(0.0, now - self._updated)
        return min(self._capacity, self._level + elapsed * self._restore_rate)

    def _refill(self, now: float) -> None:
        self._level = self._level_at(now)
        self._updated = max(self._updated, now)


class BucketRegistry:
    """One bucket per key (the sandbox uses ``(api_key, shop_domain)``), created full."""

    def __init__(self) -> None:
        self._buckets: dict[tuple[str, str], LeakyBucket] = {}
        self._lock = threading.Lock()

    def bucket(
        self, key: tuple[str, str], capacity: float, restore_rate: float, now: float
    ) -> LeakyBucket:
        """The key's bucket, with these limits: a changed plan resizes it, keeping its level."""
        with self._lock:
            existing = self._buckets.get(key)
            if existing is None:
                created = LeakyBucket(capacity, restore_rate, now)
                self._buckets[key] = created
                return created
            if existing.capacity != capacity or existing.restore_rate != restore_rate:
                existing.reconfigure(capacity, restore_rate, now)
            return existing


def _check_limits(capacity: float, restore_rate: float) -> None:
    if not (math.isfinite(capacity) and capacity > 0):
        raise ValueError(f"Bucket capacity must be a positive number of points, got {capacity!r}.")
    if not (math.isfinite(restore_rate) and restore_rate > 0):
        raise ValueError(
            f"Restore rate must be a positive number of points per second, got {restore_rate!r}."
        )


def _check_amount(name: str, value: float) -> None:
    if not (math.isfinite(value) and value >= 0):
        raise ValueError(f"{name} must be a non-negative number of points, got {value!r}.")


def _check_finite(name: str, value: float) -> None:
    if not math.isfinite(value):
        raise ValueError(f"{name} must be a finite number of seconds, got {value!r}.")
