"""The sandbox's leaky bucket: Shopify's per (app, shop) GraphQL rate limit, with time passed in."""

from __future__ import annotations

import math
import threading

import pytest
from hypothesis import given
from hypothesis import strategies as st

from syncapp.sandbox.shopify.throttle import BucketRegistry, LeakyBucket, ThrottleStatus

STANDARD = (2000.0, 100.0)  # Shopify Standard plan: 2,000 points, 100 points/second

capacities = st.integers(1, 100_000).map(float)
rates = st.integers(1, 10_000).map(float)
costs = st.integers(0, 5_000).map(float)


def level(bucket: LeakyBucket, now: float) -> float:
    return bucket.status(now).currently_available


# --- ThrottleStatus -------------------------------------------------------------------------------


def test_throttle_status_is_reported_in_shopify_shape() -> None:
    """Shopify sends ``maximumAvailable: 2000.0, currentlyAvailable: 1990, restoreRate: 100.0``."""
    payload = ThrottleStatus(2000, 1990, 100).to_json()
    assert payload == {"maximumAvailable": 2000.0, "currentlyAvailable": 1990, "restoreRate": 100.0}
    assert [type(payload[k]) for k in payload] == [float, int, float]


def test_throttle_status_never_reports_a_partial_point_as_available() -> None:
    """1989.7 points available are reported as 1989."""
    assert ThrottleStatus(2000.0, 1989.7, 100.0).to_json()["currentlyAvailable"] == 1989


# --- LeakyBucket ----------------------------------------------------------------------------------


def test_a_new_bucket_is_full() -> None:
    """A bucket starts with its whole capacity available."""
    assert LeakyBucket(*STANDARD, now=50.0).status(50.0) == ThrottleStatus(2000.0, 2000.0, 100.0)


def test_taking_within_the_level_succeeds_and_lowers_it() -> None:
    """Taking 752 of 2000 points leaves 1248."""
    bucket = LeakyBucket(*STANDARD, now=0.0)
    assert (bucket.try_take(752, 0.0), level(bucket, 0.0)) == (True, 1248.0)


def test_taking_more_than_the_level_fails_and_takes_nothing() -> None:
    """A refused request leaves the bucket as it was."""
    bucket = LeakyBucket(*STANDARD, now=0.0)
    bucket.try_take(1900, 0.0)
    assert (bucket.try_take(101, 0.0), level(bucket, 0.0)) == (False, 100.0)


def test_the_bucket_refills_at_the_restore_rate() -> None:
    """Emptied at t=0, it holds 250 points at t=2.5 with 100 points/second."""
    bucket = LeakyBucket(*STANDARD, now=0.0)
    bucket.try_take(2000, 0.0)
    assert level(bucket, 2.5) == 250.0


def test_the_bucket_never_refills_beyond_capacity() -> None:
    """An hour of idling leaves a full bucket, not more."""
    bucket = LeakyBucket(*STANDARD, now=0.0)
    bucket.try_take(10, 0.0)
    assert level(bucket, 3600.0) == 2000.0


def test_a_refund_is_capped_at_capacity() -> None:
    """Refunding more than was taken fills the bucket and no further."""
    bucket = LeakyBucket(*STANDARD, now=0.0)
    bucket.try_take(100, 0.0)
    bucket.refund(500, 0.0)
    assert level(bucket, 0.0) == 2000.0


def test_a_refund_returns_unused_points() -> None:
    """Requested 252, actual 12: the 240 difference comes back."""
    bucket = LeakyBucket(*STANDARD, now=0.0)
    bucket.try_take(252, 0.0)
    bucket.refund(252 - 12, 0.0)
    assert level(bucket, 0.0) == 1988.0


def test_seconds_until_is_zero_when_the_cost_fits_now() -> None:
    """A cost within the level needs no wait."""
    assert LeakyBucket(*STANDARD, now=0.0).seconds_until(2000, 0.0) == 0.0


def test_seconds_until_is_the_missing_points_over_the_restore_rate() -> None:
    """Missing 300 points at 100 points/second is a 3 second wait."""
    bucket = LeakyBucket(*STANDARD, now=0.0)
    bucket.try_take(1900, 0.0)
    assert bucket.seconds_until(400, 0.0) == 3.0


def test_a_cost_above_capacity_never_fits() -> None:
    """1001 points never fit a 1000 point bucket."""
    assert LeakyBucket(1000.0, 50.0, now=0.0).seconds_until(1001, 0.0) == math.inf


def test_a_request_just_before_the_wait_is_over_is_refused() -> None:
    """Asking a moment before ``seconds_until`` has elapsed fails; at that time it succeeds."""
    bucket = LeakyBucket(*STANDARD, now=0.0)
    bucket.try_take(2000, 0.0)
    wait = bucket.seconds_until(500, 0.0)
    assert (bucket.try_take(500, wait - 0.01), bucket.try_take(500, wait)) == (False, True)


def test_a_clock_read_earlier_neither_drains_nor_refills_the_bucket() -> None:
    """A ``now`` older than the last update (another thread's clock) changes nothing."""
    bucket = LeakyBucket(*STANDARD, now=0.0)
    bucket.try_take(1000, 10.0)
    assert level(bucket, 9.0) == 1000.0


def test_the_bucket_is_safe_to_share_between_threads() -> None:
    """8 threads taking 1 point 500 times each get exactly the 2000 points there are."""
    bucket = LeakyBucket(*STANDARD, now=0.0)
    granted: list[int] = []

    def worker() -> None:
        granted.append(sum(bucket.try_take(1, 0.0) for _ in range(500)))

    threads = [threading.Thread(target=worker) for _ in range(8)]
    for thread in threads:
        thread.start()
    for thread in threads:
        thread.join()
    assert (sum(granted), level(bucket, 0.0)) == (2000, 0.0)


@pytest.mark.parametrize(
    ("capacity", "restore_rate", "message"),
    [(0, 100, "capacity"), (2000, 0, "Restore rate"), (math.nan, 100, "capacity")],
)
def test_impossible_limits_are_refused(capacity: float, restore_rate: float, message: str) -> None:
    """A bucket needs a positive capacity and a positive restore rate."""
    with pytest.raises(ValueError, match=message):
        LeakyBucket(capacity, restore_rate, now=0.0)


def test_a_negative_cost_is_refused() -> None:
    """Taking negative points would be a refund in disguise."""
    with pytest.raises(ValueError, match="cost"):
        LeakyBucket(*STANDARD, now=0.0).try_take(-1, 0.0)


def test_a_negative_refund_is_refused() -> None:
    """Refunding negative points would be a charge in disguise."""
    with pytest.raises(ValueError, match="amount"):
        LeakyBucket(*STANDARD, now=0.0).refund(-1, 0.0)


# --- properties -----------------------------------------------------------------------------------

operations = st.lists(
    st.tuples(st.sampled_from(["take", "refund", "wait"]), st.floats(0, 10_000)), max_size=40
)


@given(capacity=capacities, restore_rate=rates, steps=operations)
def test_the_level_always_stays_within_zero_and_capacity(
    capacity: float, restore_rate: float, steps: list[tuple[str, float]]
) -> None:
    """Whatever is taken, refunded or waited for, 0 <= level <= capacity."""
    bucket = LeakyBucket(capacity, restore_rate, now=0.0)
    now = 0.0
    for operation, amount in steps:
        if operation == "take":
            bucket.try_take(amount, now)
        elif operation == "refund":
            bucket.refund(amount, now)
        else:
            now += amount / 100
        assert 0.0 <= level(bucket, now) <= capacity


@given(
    capacity=capacities, restore_rate=rates, cost=st.integers(1, 5_000), count=st.integers(0, 200)
)
def test_a_burst_fails_exactly_when_its_total_exceeds_capacity(
    capacity: float, restore_rate: float, cost: int, count: int
) -> None:
    """At one instant, the k-th take of ``cost`` succeeds iff k x cost <= capacity."""
    bucket = LeakyBucket(capacity, restore_rate, now=0.0)
    outcomes = [bucket.try_take(cost, 0.0) for _ in range(count)]
    assert outcomes == [(k + 1) * cost <= capacity for k in range(count)]


@given(capacity=capacities, restore_rate=rates, elapsed=st.floats(0, 1_000))
def test_an_empty_bucket_refills_linearly_up_to_capacity(
    capacity: float, restore_rate: float, elapsed: float
) -> None:
    """Emptied at t=0, the level at t is min(capacity, t x restore rate)."""
    bucket = LeakyBucket(capacity, restore_rate, now=0.0)
    bucket.try_take(capacity, 0.0)
    assert level(bucket, elapsed) == pytest.approx(min(capacity, elapsed * restore_rate))


@given(capacity=capacities, restore_rate=rates, taken=costs, refunded=costs)
def test_a_refund_adds_back_up_to_capacity(
    capacity: float, restore_rate: float, taken: float, refunded: float
) -> None:
    """After a refund the level is min(capacity, level before + refund)."""
    bucket = LeakyBucket(capacity, restore_rate, now=0.0)
    bucket.try_take(taken, 0.0)
    before = level(bucket, 0.0)
    bucket.refund(refunded, 0.0)
    assert level(bucket, 0.0) == min(capacity, before + refunded)


@given(
    capacity=capacities,
    restore_rate=rates,
    taken=costs,
    wanted=costs,
    now=st.floats(0, 1e9),
)
def test_a_request_fits_once_seconds_until_has_elapsed(
    capacity: float, restore_rate: float, taken: float, wanted: float, now: float
) -> None:
    """``try_take(cost, now + seconds_until(cost, now))`` succeeds for any cost up to capacity."""
    bucket = LeakyBucket(capacity, restore_rate, now=now)
    bucket.try_take(taken, now)
    wanted = min(wanted, capacity)
    assert bucket.try_take(wanted, now + bucket.seconds_until(wanted, now))


# --- BucketRegistry -------------------------------------------------------------------------------


def test_the_registry_hands_out_one_bucket_per_key() -> None:
    """The same (app, shop) gets the same bucket; another shop gets its own."""
    registry = BucketRegistry()
    first = registry.bucket(("app", "a.myshopify.com"), *STANDARD, now=0.0)
    first.try_take(500, 0.0)
    again = registry.bucket(("app", "a.myshopify.com"), *STANDARD, now=0.0)
    other = registry.bucket(("app", "b.myshopify.com"), *STANDARD, now=0.0)
    assert (again is first, level(again, 0.0), level(other, 0.0)) == (True, 1500.0, 2000.0)


def test_a_plan_upgrade_keeps_the_level_and_raises_the_limits() -> None:
    """Standard to Plus: same points now, 20,000 capacity and 1,000 points/second from then on."""
    registry = BucketRegistry()
    key = ("app", "a.myshopify.com")
    registry.bucket(key, *STANDARD, now=0.0).try_take(1500, 0.0)
    upgraded = registry.bucket(key, 20_000.0, 1_000.0, now=1.0)
    assert (upgraded.status(1.0), level(upgraded, 2.0)) == (
        ThrottleStatus(20_000.0, 600.0, 1_000.0),
        1600.0,
    )


def test_a_plan_downgrade_caps_the_level_at_the_new_capacity() -> None:
    """A full Plus bucket moved to Standard holds 2,000 points."""
    registry = BucketRegistry()
    key = ("app", "a.myshopify.com")
    registry.bucket(key, 20_000.0, 1_000.0, now=0.0)
    assert registry.bucket(key, *STANDARD, now=0.0).status(0.0) == ThrottleStatus(
        2000.0, 2000.0, 100.0
    )
