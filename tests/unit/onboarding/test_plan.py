"""The pure core of the sign-up: step order, failure outcomes, backoff and idempotency keys."""

from __future__ import annotations

from datetime import UTC, datetime, timedelta

import pytest
from hypothesis import given
from hypothesis import strategies as st

from syncapp.bus.retry import RetryPolicy, backoff_delay
from syncapp.connectors.ctrwow import CtrwowConflict, CtrwowTransientError
from syncapp.connectors.emanage import (
    EmanageAuthError,
    EmanageConflict,
    EmanageIdempotencyMismatch,
    EmanageTransientError,
    EmanageValidationError,
)
from syncapp.onboarding.plan import (
    STEPS,
    AskMerchant,
    Finish,
    JobStatus,
    NewRequest,
    Retry,
    Run,
    Step,
    StepState,
    StepStatus,
    Stop,
    Wait,
    after_failure,
    classify,
    idempotency_key,
    next_action,
)

NOW = datetime(2026, 11, 27, 12, 0, tzinfo=UTC)
POLICY = RetryPolicy(base_seconds=2.0, cap_seconds=900.0, max_attempts=10)

statuses = st.sampled_from(list(StepStatus))
jitters = st.floats(min_value=0.0, max_value=1.0, exclude_max=True)


@given(st.lists(statuses, min_size=3, max_size=3))
def test_the_first_unfinished_step_decides_the_next_action(states: list[StepStatus]) -> None:
    """Steps before the deciding one are all done; a failed or blocked one ends the run."""
    action = next_action([StepState(s, st_) for s, st_ in zip(STEPS, states, strict=True)], now=NOW)
    if all(s is StepStatus.DONE for s in states):
        assert action == Finish(JobStatus.DONE)
        return
    first = next(i for i, s in enumerate(states) if s is not StepStatus.DONE)
    expected = {
        StepStatus.PENDING: Run(STEPS[first]),
        StepStatus.RUNNING: Run(STEPS[first]),
        StepStatus.FAILED: Finish(JobStatus.FAILED, STEPS[first]),
        StepStatus.NEEDS_MERCHANT: Finish(JobStatus.NEEDS_MERCHANT, STEPS[first]),
    }[states[first]]
    assert action == expected


def test_missing_step_rows_count_as_pending() -> None:
    """A job without step rows starts at the eManageCRM account."""
    assert next_action([], now=NOW) == Run(Step.EMANAGE_ACCOUNT)


def test_a_step_waiting_for_its_retry_makes_the_job_wait() -> None:
    """A pending step with a future next_attempt_at is not run before then."""
    later = NOW + timedelta(seconds=30)
    states = [
        StepState(Step.EMANAGE_ACCOUNT, StepStatus.DONE),
        StepState(Step.EMANAGE_USER, StepStatus.PENDING, next_attempt_at=later),
    ]
    assert next_action(states, now=NOW) == Wait(Step.EMANAGE_USER, later)
    assert next_action(states, now=later) == Run(Step.EMANAGE_USER)


@given(st.integers(min_value=1, max_value=10_000), jitters)
def test_backoff_stays_between_half_the_step_and_the_cap(attempt: int, jitter: float) -> None:
    """Every delay is within [ceiling/2, ceiling] for ceiling = min(cap, base * 2^(n-1))."""
    delay = backoff_delay(attempt, policy=POLICY, jitter=jitter)
    ceiling = min(POLICY.cap_seconds, POLICY.base_seconds * 2.0 ** min(attempt - 1, 63))
    assert ceiling / 2 <= delay <= ceiling


@given(st.integers(min_value=1, max_value=30), jitters)
def test_backoff_never_shrinks_as_attempts_grow(attempt: int, jitter: float) -> None:
    """With the same jitter, the next attempt waits at least as long."""
    assert backoff_delay(attempt + 1, policy=POLICY, jitter=jitter) >= backoff_delay(
        attempt, policy=POLICY, jitter=jitter
    )


@given(st.integers(min_value=1, max_value=50), jitters, st.floats(min_value=0, max_value=1e5))
def test_a_server_retry_after_is_a_floor(attempt: int, jitter: float, retry_after: float) -> None:
    """Retrying before the server's Retry-After would only fail again."""
    assert backoff_delay(attempt, policy=POLICY, jitter=jitter, retry_after=retry_after) >= (
        retry_after
    )


def test_backoff_refuses_an_attempt_below_one() -> None:
    """Attempts count from 1: a zero is a caller's bug, not a zero delay."""
    with pytest.raises(ValueError, match="attempt"):
        backoff_delay(0, policy=POLICY, jitter=0.5)


@given(
    st.integers(min_value=1, max_value=2**40),
    st.from_regex(r"[a-z0-9-]{1,20}\.myshopify\.com", fullmatch=True),
    st.sampled_from(STEPS),
    st.integers(min_value=0, max_value=1000),
)
def test_keys_are_deterministic_and_change_with_the_generation(
    shop_id: int, domain: str, step: Step, generation: int
) -> None:
    """The same inputs give the same key (a retry replays); another generation another key."""
    key = idempotency_key(shop_id=shop_id, shop_domain=domain, step=step, generation=generation)
    assert key == idempotency_key(
        shop_id=shop_id, shop_domain=domain.upper(), step=step, generation=generation
    )
    assert key != idempotency_key(
        shop_id=shop_id, shop_domain=domain, step=step, generation=generation + 1
    )
    assert len(key) <= 64


def test_keys_differ_between_steps_shops_and_operations() -> None:
    """No two requests of the sign-up share a key."""
    keys = {
        idempotency_key(
            shop_id=shop,
            shop_domain=f"s{shop}.myshopify.com",
            step=step,
            generation=0,
            operation=op,
        )
        for shop in (1, 2)
        for step in STEPS
        for op in ("", "create", "link", "tokens")
    }
    assert len(keys) == 2 * len(STEPS) * 4


def test_transient_errors_of_both_systems_are_retried_with_their_hint() -> None:
    """A 503 of either system is a Retry carrying the server's Retry-After."""
    emanage = classify(
        EmanageTransientError("down", status=503, retry_after=7), step=Step.EMANAGE_ACCOUNT
    )
    ctrwow = classify(
        CtrwowTransientError("down", status=503, retry_after=3), step=Step.CTRWOW_ACCOUNT
    )
    assert isinstance(emanage, Retry)
    assert emanage.retry_after == 7
    assert isinstance(ctrwow, Retry)
    assert ctrwow.retry_after == 3


def test_what_only_the_merchant_can_fix_asks_the_merchant() -> None:
    """A bad link code and an email with its own CTRwow account are the merchant's to fix."""
    code = classify(
        EmanageValidationError("bad", status=422, code="link_code_invalid"),
        step=Step.EMANAGE_ACCOUNT,
    )
    email = classify(CtrwowConflict("taken", code="email_in_use"), step=Step.CTRWOW_ACCOUNT)
    assert isinstance(code, AskMerchant)
    assert isinstance(email, AskMerchant)
    assert "consent screen" in email.message


def test_refused_credentials_stop_the_job_naming_the_settings() -> None:
    """A 401 for the system client is the operator's: the message names the variables."""
    outcome = classify(EmanageAuthError("no", status=401), step=Step.EMANAGE_USER)
    assert isinstance(outcome, Stop)
    assert "SYNCAPP_EMANAGE_CLIENT_ID/SECRET" in outcome.message


def test_a_reused_key_with_another_body_asks_for_a_new_request() -> None:
    """422 idempotency_key_reused means the body changed: send it under a new key."""
    outcome = classify(
        EmanageIdempotencyMismatch("reused", status=422, code="idempotency_key_reused"),
        step=Step.EMANAGE_ACCOUNT,
    )
    assert isinstance(outcome, NewRequest)


def test_a_conflict_without_an_id_is_permanent() -> None:
    """An account another integration owns cannot be converged on."""
    outcome = classify(
        EmanageConflict("exists", status=409, code="account_exists"), step=Step.EMANAGE_ACCOUNT
    )
    assert isinstance(outcome, Stop)


@given(st.integers(min_value=1, max_value=9), jitters)
def test_a_retry_within_budget_waits_and_keeps_the_key(attempts: int, jitter: float) -> None:
    """Below max_attempts a Retry goes back to pending, later, with the same generation."""
    update = after_failure(Retry("down"), attempts=attempts, policy=POLICY, now=NOW, jitter=jitter)
    assert update.status is StepStatus.PENDING
    assert update.next_attempt_at is not None
    assert update.next_attempt_at > NOW
    assert update.generation_bump == 0
    assert "Next try at" in update.last_error


def test_the_retry_budget_ends_in_failure() -> None:
    """At max_attempts the step fails, saying it gave up."""
    update = after_failure(Retry("down"), attempts=10, policy=POLICY, now=NOW, jitter=0.1)
    assert update.status is StepStatus.FAILED
    assert "Gave up after 10 attempts" in update.last_error


def test_a_new_request_is_due_now_under_the_next_generation() -> None:
    """NewRequest bumps the generation and does not wait."""
    update = after_failure(NewRequest("changed"), attempts=1, policy=POLICY, now=NOW, jitter=0.5)
    assert (update.status, update.next_attempt_at, update.generation_bump) == (
        StepStatus.PENDING,
        NOW,
        1,
    )
