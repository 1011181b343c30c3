"""The pure core of the sign-up: the steps and their order, which one runs next, what a
connector error means for a step (retry, stop, ask the merchant, send a new request), how long
to wait before a retry, and the idempotency key of each request. No I/O and no clock: the
runner (:mod:`syncapp.onboarding.runner`) passes ``now`` and the jitter in.
"""

from __future__ import annotations

import uuid
from collections.abc import Iterable
from dataclasses import dataclass
from datetime import datetime, timedelta
from enum import StrEnum

from syncapp.connectors.ctrwow import (
    CtrwowConflict,
    CtrwowError,
    CtrwowInvalidClient,
    CtrwowTransientError,
)
from syncapp.connectors.emanage import (
    EmanageAuthError,
    EmanageConflict,
    EmanageError,
    EmanageForbidden,
    EmanageIdempotencyMismatch,
    EmanageValidationError,
    is_transient,
    merchant_message,
)


class Step(StrEnum):
    """The steps of the sign-up, in the order they run."""

    EMANAGE_ACCOUNT = "emanage_account"
    EMANAGE_USER = "emanage_user"
    CTRWOW_ACCOUNT = "ctrwow_account"


STEPS: tuple[Step, ...] = (Step.EMANAGE_ACCOUNT, Step.EMANAGE_USER, Step.CTRWOW_ACCOUNT)

STEP_TITLES: dict[Step, str] = {
    Step.EMANAGE_ACCOUNT: "eManageCRM account",
    Step.EMANAGE_USER: "eManageCRM user",
    Step.CTRWOW_ACCOUNT: "CTRwow account",
}


class StepStatus(StrEnum):
    PENDING = "pending"
    RUNNING = "running"
    DONE = "done"
    FAILED = "failed"
    NEEDS_MERCHANT = "needs_merchant"


class JobStatus(StrEnum):
    """``pending``: a new run is due (install created or reset the job). ``running``: in
    progress, possibly waiting for ``next_attempt_at``. The rest are where a run ends."""

    PENDING = "pending"
    RUNNING = "running"
    DONE = "done"
    FAILED = "failed"
    NEEDS_MERCHANT = "needs_merchant"
    CANCELLED = "cancelled"


CLAIMABLE: tuple[str, ...] = (JobStatus.PENDING, JobStatus.RUNNING)


@dataclass(frozen=True)
class StepState:
    """What the planner needs to know of one step's row."""

    step: Step
    status: StepStatus = StepStatus.PENDING
    next_attempt_at: datetime | None = None
    last_error: str | None = None


# --- what to do next --------------------------------------------------------------------------


@dataclass(frozen=True)
class Run:
    """Run ``step`` now."""

    step: Step


@dataclass(frozen=True)
class Wait:
    """Nothing to do before ``until`` (``step`` is waiting for its retry)."""

    step: Step
    until: datetime


@dataclass(frozen=True)
class Finish:
    """The run is over: ``status`` is done, failed or needs_merchant (``step`` says where)."""

    status: JobStatus
    step: Step | None = None
    message: str | None = None


Action = Run | Wait | Finish


def next_action(steps: Iterable[StepState], *, now: datetime) -> Action:
    """The next thing to do for a job whose steps are ``steps`` (missing ones are pending).

    Steps run strictly in order: a step's inputs are the previous steps' results. A ``running``
    step is run again: whoever holds the job's lease found it interrupted.
    """
    by_step = {s.step: s for s in steps}
    for step in STEPS:
        state = by_step.get(step, StepState(step))
        if state.status is StepStatus.DONE:
            continue
        if state.status is StepStatus.FAILED:
            return Finish(JobStatus.FAILED, step, state.last_error)
        if state.status is StepStatus.NEEDS_MERCHANT:
            return Finish(JobStatus.NEEDS_MERCHANT, step, state.last_error)
        if state.next_attempt_at is not None and state.next_attempt_at > now:
            return Wait(step, state.next_attempt_at)
        return Run(step)
    return Finish(JobStatus.DONE)


# --- what a failure means ---------------------------------------------------------------------


@dataclass(frozen=True)
class Retry:
    """A passing failure: the same request may succeed later (``retry_after``: server's hint)."""

    message: str
    retry_after: float | None = None


@dataclass(frozen=True)
class Stop:
    """The request will fail again as it is: the job stops with ``message``."""

    message: str


@dataclass(frozen=True)
class AskMerchant:
    """Only the merchant can unblock this (``message`` says what to do)."""

    message: str


@dataclass(frozen=True)
class NewRequest:
    """The idempotency key belongs to another request body (the shop's details changed since
    the key was first used): send again under the next generation's key. Safe, because a
    second create for the shop converges on the existing object through its 409."""

    message: str


Outcome = Retry | Stop | AskMerchant | NewRequest

_OPERATOR = "the Sync App's operator must check its {names} settings"


def classify(exc: BaseException, *, step: Step) -> Outcome:
    """What ``exc`` (raised by a connector during ``step``) means for the step.

    Conflicts that name an existing object never get here: the runner converges on it. The
    messages are the merchant's (the App Home shows them): plain words, never the server's own
    message, which the runner logs.
    """
    title = STEP_TITLES[step]
    if isinstance(exc, EmanageError):
        if is_transient(exc):
            return Retry(
                f"eManageCRM is not available right now; the {title} will be created when "
                "it is back.",
                getattr(exc, "retry_after", None),
            )
        if isinstance(exc, EmanageIdempotencyMismatch):
            return NewRequest(f"The {title} request changed since it was first sent; resending.")
        if isinstance(exc, EmanageValidationError) and exc.code == "link_code_invalid":
            return AskMerchant(
                "eManageCRM did not accept the link code: it is wrong, used already or older "
                "than 30 minutes. Create a new code in your eManageCRM (Settings > Integrations "
                "> Shopify Sync App) and enter it with your subscription id again."
            )
        if isinstance(exc, EmanageConflict) and exc.code == "subscription_already_linked":
            return AskMerchant(
                "This eManageCRM subscription is already linked to another Shopify store. "
                "Unlink it there, or enter the id of another subscription."
            )
        if isinstance(exc, EmanageConflict):
            return Stop(
                "Your store already has an eManageCRM account that another integration "
                "created, so the Sync App cannot use it. Contact eManageCRM support to move "
                "it to the Sync App."
            )
        if isinstance(exc, EmanageAuthError):
            return Stop(
                "eManageCRM refused the Sync App's credentials; "
                + _OPERATOR.format(names="SYNCAPP_EMANAGE_CLIENT_ID/SECRET")
                + ". Your store's sign-up resumes once they are fixed."
            )
        if isinstance(exc, EmanageForbidden):
            return Stop(
                f"eManageCRM refused to set up the {title}. If your eManageCRM account is "
                "suspended, reactivate it, then start the sign-up again."
            )
        return Stop(merchant_message(exc, doing=f"set up the {title}"))
    if isinstance(exc, CtrwowError):
        if isinstance(exc, CtrwowTransientError):
            return Retry(
                f"CTRwow is not available right now; the {title} will be set up when it is back.",
                exc.retry_after,
            )
        if isinstance(exc, CtrwowConflict) and exc.code == "email_in_use":
            return AskMerchant(
                "Your email address already has a CTRwow account. Connect that account to the "
                "Sync App through CTRwow's consent screen: open the app's CTRwow page, choose "
                "'Connect CTRwow', sign in to CTRwow and allow access."
            )
        if isinstance(exc, CtrwowInvalidClient):
            return Stop(
                "CTRwow refused the Sync App's credentials; "
                + _OPERATOR.format(names="SYNCAPP_CTRWOW_CLIENT_ID/SECRET")
                + "."
            )
        if exc.code == "idempotency_key_reused":
            return NewRequest(f"The {title} request changed since it was first sent; resending.")
        return Stop(
            f"CTRwow turned down the request to set up the {title}. Start the sign-up again; "
            "contact the Sync App's support if it keeps happening."
        )
    return Stop(f"Setting up the {title} failed unexpectedly: {type(exc).__name__}: {exc}")


# --- retries ----------------------------------------------------------------------------------


@dataclass(frozen=True)
class RetryPolicy:
    """Exponential backoff with jitter; after ``max_attempts`` attempts of one step it fails."""

    base_seconds: float = 2.0
    cap_seconds: float = 900.0
    max_attempts: int = 30

    def __post_init__(self) -> None:
        if self.base_seconds < 0 or self.cap_seconds < self.base_seconds:
            raise ValueError("RetryPolicy needs 0 <= base_seconds <= cap_seconds")
        if self.max_attempts < 1:
            raise ValueError("RetryPolicy.max_attempts must be at least 1")


def backoff_delay(
    attempt: int, *, policy: RetryPolicy, jitter: float, retry_after: float | None = None
) -> float:
    """Seconds to wait after failed attempt number ``attempt`` (1 for the first failure).

    "Equal jitter": half of the exponential step is kept, the other half is scaled by
    ``jitter`` in [0, 1), so retries of many shops spread out but never come back at once. A
    server's ``retry_after`` is a floor, since retrying before it only fails again.
    """
    if attempt < 1:
        raise ValueError("attempt counts from 1")
    if not 0.0 <= jitter < 1.0:
        raise ValueError("jitter must be in [0, 1)")
    # Clamp the exponent: 2**63 s is already past any cap, and larger powers overflow floats.
    ceiling = min(policy.cap_seconds, policy.base_seconds * 2.0 ** min(attempt - 1, 63))
    delay = ceiling / 2 + ceiling / 2 * jitter
    if retry_after is not None and retry_after > delay:
        delay = retry_after
    return delay


@dataclass(frozen=True)
class StepUpdate:
    """The new state of a step after a failed attempt."""

    status: StepStatus
    next_attempt_at: datetime | None
    last_error: str
    generation_bump: int = 0


def after_failure(
    outcome: Outcome, *, attempts: int, policy: RetryPolicy, now: datetime, jitter: float
) -> StepUpdate:
    """Where a step stands after attempt number ``attempts`` failed with ``outcome``."""
    if isinstance(outcome, Stop):
        return StepUpdate(StepStatus.FAILED, None, outcome.message)
    if isinstance(outcome, AskMerchant):
        return StepUpdate(StepStatus.NEEDS_MERCHANT, None, outcome.message)
    if attempts >= policy.max_attempts:
        return StepUpdate(
            StepStatus.FAILED,
            None,
            f"{outcome.message} Gave up after {attempts} attempts; start the sign-up again "
            "from the app once the service is back.",
        )
    if isinstance(outcome, NewRequest):
        return StepUpdate(StepStatus.PENDING, now, outcome.message, generation_bump=1)
    delay = backoff_delay(attempts, policy=policy, jitter=jitter, retry_after=outcome.retry_after)
    when = now + timedelta(seconds=delay)
    return StepUpdate(
        StepStatus.PENDING,
        when,
        f"{outcome.message} Next try at {when:%H:%M:%S} UTC (attempt {attempts + 1}).",
    )


# --- idempotency keys -------------------------------------------------------------------------

# Fixed forever: changing it would change every key and let a retry create a second object.
_KEY_NAMESPACE = uuid.UUID("6b1f0f55-2d0e-4c59-9a43-0d7a3c1e9b21")


def idempotency_key(
    *, shop_id: int, shop_domain: str, step: Step, generation: int, operation: str = ""
) -> str:
    """The key of ``step``'s request (``operation`` names a second request of the same step).

    Derived, not stored: the same shop, step and generation give the same key in every process
    and after every restart, so a retried or resumed request is a replay on the server's side.
    """
    if generation < 0:
        raise ValueError("generation counts from 0")
    name = (
        f"onboarding|{shop_id}|{shop_domain.strip().lower()}|{step.value}|{operation}|{generation}"
    )
    return str(uuid.uuid5(_KEY_NAMESPACE, name))
