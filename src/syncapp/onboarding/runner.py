"""The I/O shell of the sign-up: advances a shop's onboarding job step by step, as the bus's
handler of ``signup.requested`` (:mod:`syncapp.onboarding.topics`) calls it.

A job is claimed with a lease (``locked_by``/``locked_until`` on its row, set by a
compare-and-set UPDATE), so one runner works on it at a time and a crashed runner's job is
claimed again once the lease runs out. Each step is three moves, and no database transaction
is open while a request is in flight:

1. record the attempt (step ``running``, attempts + 1, lease renewed) and read the inputs;
2. send the request with the step's deterministic idempotency key;
3. record the result (or the failure, as :func:`plan.after_failure` says), only if this
   runner still holds the lease.

A crash between 2 and 3 leaves the step ``running``; the next runner sends the same request
with the same key, which the server answers as a replay, so nothing is created twice. A 409
that names the existing object converges on it.
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass
from datetime import UTC, datetime, timedelta
from typing import Any, cast

import structlog
from sqlalchemy import CursorResult, delete, or_, select, update
from sqlalchemy.orm import Session

from syncapp.connectors.ctrwow import CtrwowConflict, CtrwowError, TokenPair
from syncapp.connectors.emanage import Account, EmanageConflict, EmanageError
from syncapp.onboarding import plan
from syncapp.onboarding.models import CtrwowAccount, EmanageAccount, OnboardingJob, OnboardingStep
from syncapp.onboarding.plan import (
    CLAIMABLE,
    STEP_TITLES,
    STEPS,
    AskMerchant,
    Finish,
    JobStatus,
    Outcome,
    Retry,
    Run,
    Step,
    StepState,
    StepStatus,
    Wait,
)
from syncapp.onboarding.runtime import OnboardingRuntime
from syncapp.store.models import Connection, Credential, Shop
from syncapp.store.vault import Vault, get_secret, put_secret

log = structlog.get_logger(__name__)

SIGNUP = "signup"
LINK_CODE = "link_code"


class _LeaseLost(Exception):
    """Another runner holds the job now (ours ran out); stop touching it."""


def utc(value: datetime | None) -> datetime | None:
    """SQLite hands stored datetimes back naive; they were written in UTC."""
    if value is None or value.tzinfo is not None:
        return value
    return value.replace(tzinfo=UTC)


# --- claiming -----------------------------------------------------------------------------------


def _due(now: datetime) -> Any:
    return (
        OnboardingJob.kind == SIGNUP,
        OnboardingJob.status.in_(CLAIMABLE),
        or_(OnboardingJob.next_attempt_at.is_(None), OnboardingJob.next_attempt_at <= now),
        or_(OnboardingJob.locked_until.is_(None), OnboardingJob.locked_until < now),
    )


def _claim(rt: OnboardingRuntime, job_id: int) -> bool:
    """Take the job's lease if it is still due and free (atomic on SQLite and PostgreSQL)."""
    now = rt.clock()
    with rt.sessions.begin() as session:
        result = session.execute(
            update(OnboardingJob)
            .where(OnboardingJob.id == job_id, *_due(now))
            .values(locked_by=rt.runner_id, locked_until=now + timedelta(seconds=rt.lease_seconds))
            .execution_options(synchronize_session=False)
        )
        return cast(CursorResult[Any], result).rowcount == 1


def _fence(session: Session, rt: OnboardingRuntime, job_id: int) -> None:
    """Renew the lease inside ``session``'s transaction, or raise if it is no longer ours."""
    now = rt.clock()
    result = session.execute(
        update(OnboardingJob)
        .where(OnboardingJob.id == job_id, OnboardingJob.locked_by == rt.runner_id)
        .values(locked_until=now + timedelta(seconds=rt.lease_seconds))
        .execution_options(synchronize_session=False)
    )
    if cast(CursorResult[Any], result).rowcount != 1:
        raise _LeaseLost


async def advance_signup(rt: OnboardingRuntime, shop_id: int) -> float | None:
    """Advance the shop's sign-up job as far as it goes now (the bus handler of
    ``signup.requested``). Returns None when nothing is left to do, else the seconds until the
    job is due again (its backoff, or another runner's lease)."""
    with rt.sessions() as session:
        job_id = session.scalar(
            select(OnboardingJob.id).where(
                OnboardingJob.shop_id == shop_id, OnboardingJob.kind == SIGNUP
            )
        )
    if job_id is None:
        return None
    if _claim(rt, job_id):
        try:
            await _advance(rt, job_id)
        except _LeaseLost:
            log.warning("onboarding lease lost", job_id=job_id)
    with rt.sessions() as session:
        job = session.get_one(OnboardingJob, job_id)
        if job.status not in CLAIMABLE:
            return None
        now = rt.clock()
        due = max(
            (t for t in (utc(job.next_attempt_at), utc(job.locked_until)) if t is not None),
            default=now,
        )
    return max(0.05, (due - now).total_seconds())


# --- advancing one job ------------------------------------------------------------------------


def _step_rows(session: Session, job_id: int) -> dict[Step, OnboardingStep]:
    rows = session.scalars(select(OnboardingStep).where(OnboardingStep.job_id == job_id)).all()
    return {Step(r.step): r for r in rows if r.step in {s.value for s in STEPS}}


def _states(rows: dict[Step, OnboardingStep]) -> list[StepState]:
    return [
        StepState(
            step,
            StepStatus(row.status),
            next_attempt_at=utc(row.next_attempt_at),
            last_error=row.last_error,
        )
        for step, row in rows.items()
    ]


def _result_lost(session: Session, shop_id: int, step: Step) -> bool:
    """Whether a done ``step``'s result is gone, so the connection it made is not usable: the
    CTRwow tokens (an uninstall revokes and deletes them; a refused refresh leaves the
    connection ``needs_attention``), or the eManageCRM account or owner on record."""
    if step is Step.CTRWOW_ACCOUNT:
        status = session.scalar(
            select(Connection.status).where(
                Connection.shop_id == shop_id, Connection.provider == "ctrwow"
            )
        )
        refresh = session.scalar(
            select(Credential.id).where(
                Credential.shop_id == shop_id,
                Credential.provider == "ctrwow",
                Credential.name == "refresh_token",
            )
        )
        return status != "active" or refresh is None
    emanage = session.scalar(select(EmanageAccount).where(EmanageAccount.shop_id == shop_id))
    if step is Step.EMANAGE_ACCOUNT:
        return emanage is None
    return emanage is None or emanage.owner_user_id is None


def _start_run(session: Session, job: OnboardingJob) -> None:
    """A ``pending`` job starts a (new) run: missing steps are created; steps that failed or
    waited for the merchant are tried again under a new generation (a deliberate new request),
    and so are done steps whose result was lost (a reinstall after the uninstall revoked the
    CTRwow tokens: partner provisioning converges on the same account and issues new ones)."""
    rows = _step_rows(session, job.id)
    for step in STEPS:
        row = rows.get(step)
        if row is None:
            session.add(OnboardingStep(job_id=job.id, step=step.value, status=StepStatus.PENDING))
        elif row.status in (StepStatus.FAILED, StepStatus.NEEDS_MERCHANT) or (
            row.status == StepStatus.DONE and _result_lost(session, job.shop_id, step)
        ):
            row.status = StepStatus.PENDING
            row.generation += 1
            row.attempts = 0
            row.next_attempt_at = None
    job.status = JobStatus.RUNNING
    job.last_error = None
    job.next_attempt_at = None


async def _advance(rt: OnboardingRuntime, job_id: int) -> None:
    while True:
        with rt.sessions.begin() as session:
            _fence(session, rt, job_id)
            job = session.get_one(OnboardingJob, job_id)
            shop = session.get_one(Shop, job.shop_id)
            if shop.uninstalled_at is not None:
                job.status = JobStatus.CANCELLED
                job.locked_by = job.locked_until = None
                log.info("onboarding cancelled: shop uninstalled", shop=shop.domain)
                return
            if job.status == JobStatus.PENDING:
                _start_run(session, job)
                session.flush()
            action = plan.next_action(_states(_step_rows(session, job_id)), now=rt.clock())
            if isinstance(action, Wait):
                job.next_attempt_at = action.until
                job.last_error = _job_error(action.step, _step_rows(session, job_id))
                job.locked_by = job.locked_until = None
                return
            if isinstance(action, Finish):
                job.status = action.status
                job.next_attempt_at = None
                job.last_error = (
                    f"{STEP_TITLES[action.step]}: {action.message}"
                    if action.step is not None and action.message
                    else None
                )
                job.locked_by = job.locked_until = None
                log.info("onboarding finished", shop=shop.domain, status=action.status)
                return
            assert isinstance(action, Run)
            inputs = _begin_attempt(session, rt, job, shop, action.step)
        await _attempt(rt, inputs)


def _job_error(step: Step, rows: dict[Step, OnboardingStep]) -> str | None:
    row = rows.get(step)
    if row is None or row.last_error is None:
        return None
    return f"{STEP_TITLES[step]}: {row.last_error}"


# --- one attempt of one step ------------------------------------------------------------------


@dataclass(frozen=True)
class _Inputs:
    """What a step's request is built from, read in the transaction that records the attempt."""

    job_id: int
    step: Step
    attempts: int
    generation: int
    shop_id: int
    shop_domain: str
    shop_name: str
    shop_email: str | None
    currency: str | None
    subscription_id: str | None
    link_code: str | None
    emanage_account_id: str | None

    def key(self, operation: str = "") -> str:
        return plan.idempotency_key(
            shop_id=self.shop_id,
            shop_domain=self.shop_domain,
            step=self.step,
            generation=self.generation,
            operation=operation,
        )


def _begin_attempt(
    session: Session, rt: OnboardingRuntime, job: OnboardingJob, shop: Shop, step: Step
) -> _Inputs:
    row = _step_rows(session, job.id)[step]
    row.status = StepStatus.RUNNING
    row.attempts += 1
    row.started_at = rt.clock()
    job.attempts += 1
    emanage = session.scalar(select(EmanageAccount).where(EmanageAccount.shop_id == shop.id))
    link_code = None
    if job.emanage_subscription_id is not None:
        link_code = get_secret(
            session, rt.vault, shop_id=shop.id, provider="emanage", name=LINK_CODE
        )
    return _Inputs(
        job_id=job.id,
        step=step,
        attempts=row.attempts,
        generation=row.generation,
        shop_id=shop.id,
        shop_domain=shop.domain,
        shop_name=shop.name or shop.domain.removesuffix(".myshopify.com"),
        shop_email=shop.email,
        currency=shop.currency_code,
        subscription_id=job.emanage_subscription_id,
        link_code=link_code,
        emanage_account_id=emanage.account_id if emanage is not None else None,
    )


@dataclass(frozen=True)
class _AccountDone:
    account: Account


@dataclass(frozen=True)
class _UserDone:
    user_id: str


@dataclass(frozen=True)
class _CtrwowDone:
    account_id: str
    pair: TokenPair
    name: str | None = None


_Done = _AccountDone | _UserDone | _CtrwowDone


async def _attempt(rt: OnboardingRuntime, inputs: _Inputs) -> None:
    bound = log.bind(shop=inputs.shop_domain, step=inputs.step.value, attempt=inputs.attempts)
    result: _Done | Outcome
    try:
        result = await _send(rt, inputs)
    except (EmanageError, CtrwowError) as exc:
        result = plan.classify(exc, step=inputs.step)
        bound = bound.bind(cause=str(exc))  # the server's own words, for the operator
    with rt.sessions.begin() as session:
        _fence(session, rt, inputs.job_id)
        row = _step_rows(session, inputs.job_id)[inputs.step]
        now = rt.clock()
        if isinstance(result, _AccountDone | _UserDone | _CtrwowDone):
            row.result_id = _record(session, rt, inputs, result)
            row.status = StepStatus.DONE
            row.last_error = None
            row.next_attempt_at = None
            row.finished_at = now
            bound.info("onboarding step done", result_id=row.result_id)
            return
        update_ = plan.after_failure(
            result, attempts=row.attempts, policy=rt.policy, now=now, jitter=rt.jitter()
        )
        row.status = update_.status
        row.next_attempt_at = update_.next_attempt_at
        row.last_error = update_.last_error
        row.generation += update_.generation_bump
        if update_.status is StepStatus.NEEDS_MERCHANT and inputs.step is Step.CTRWOW_ACCOUNT:
            set_connection(session, inputs.shop_id, "ctrwow", "needs_attention", row.last_error)
        bound.warning("onboarding step failed", status=row.status, error=row.last_error)


async def _send(rt: OnboardingRuntime, inputs: _Inputs) -> _Done | Outcome:
    """The step's request(s); a 409 naming an existing object converges on it."""
    if inputs.shop_email is None or inputs.currency is None:
        return Retry("Waiting for the store's email address and currency from Shopify.")
    if inputs.step is Step.EMANAGE_ACCOUNT:
        return await _emanage_account(rt, inputs, inputs.shop_email, inputs.currency)
    if inputs.step is Step.EMANAGE_USER:
        return await _emanage_user(rt, inputs, inputs.shop_email)
    return await _ctrwow_account(rt, inputs, inputs.shop_email)


async def _emanage_account(
    rt: OnboardingRuntime, inputs: _Inputs, email: str, currency: str
) -> _Done | Outcome:
    try:
        if inputs.subscription_id is not None:
            if inputs.link_code is None:
                return AskMerchant(
                    "Enter the link code from your eManageCRM (Settings > Integrations > "
                    "Shopify Sync App) with your subscription id."
                )
            account = await rt.emanage.link_account(
                shop_domain=inputs.shop_domain,
                subscription_id=inputs.subscription_id,
                link_code=inputs.link_code,
                idempotency_key=inputs.key("link"),
            )
        else:
            account = await rt.emanage.create_account(
                shop_domain=inputs.shop_domain,
                name=inputs.shop_name,
                email=email,
                currency=currency,
                idempotency_key=inputs.key("create"),
            )
    except EmanageConflict as exc:
        if exc.code != "account_exists" or exc.existing_id is None:
            raise
        account = await rt.emanage.get_account(account_id=exc.existing_id)
        wanted = inputs.subscription_id
        if wanted is not None and str(account.subscription_id or "").lower() != wanted.lower():
            return AskMerchant(
                f"Your store is already connected to a {account.kind} eManageCRM account, so "
                "the subscription you entered cannot be linked as well. Contact eManageCRM "
                "support to move the store to your subscription."
            )
    return _AccountDone(account)


async def _emanage_user(rt: OnboardingRuntime, inputs: _Inputs, email: str) -> _Done | Outcome:
    account_id = inputs.emanage_account_id
    if account_id is None:  # the previous step's result is its precondition
        return plan.Stop("The eManageCRM account is missing; start the sign-up again.")
    try:
        user = await rt.emanage.create_user(
            account_id=account_id,
            email=email,
            name=inputs.shop_name,
            role="owner",
            idempotency_key=inputs.key(),
        )
    except EmanageConflict as exc:
        if exc.existing_id is not None:
            return _UserDone(exc.existing_id)
        users = await rt.emanage.list_users(account_id=account_id)
        match = next((u for u in users if u.email.lower() == email.lower()), None)
        if match is None:
            raise
        return _UserDone(str(match.id))
    return _UserDone(str(user.id))


async def _ctrwow_account(rt: OnboardingRuntime, inputs: _Inputs, email: str) -> _Done | Outcome:
    try:
        account, pair = await rt.ctrwow.provision_account(
            inputs.shop_domain, email, inputs.shop_name, inputs.key("provision")
        )
        return _CtrwowDone(account.id, pair, account.name)
    except CtrwowConflict as exc:
        if exc.code != "account_exists" or exc.existing_id is None:
            raise
        # Provisioned before (a reinstall, or a crash after the key's 24 h): take a new grant.
        pair = await rt.ctrwow.issue_account_tokens(exc.existing_id, inputs.key("tokens"))
        return _CtrwowDone(exc.existing_id, pair)


# --- recording results ------------------------------------------------------------------------


def _record(session: Session, rt: OnboardingRuntime, inputs: _Inputs, done: _Done) -> str:
    if isinstance(done, _AccountDone):
        account = done.account
        row = session.scalar(select(EmanageAccount).where(EmanageAccount.shop_id == inputs.shop_id))
        if row is None:
            row = EmanageAccount(shop_id=inputs.shop_id)
            session.add(row)
        row.account_id = str(account.id)
        row.kind = account.kind
        row.cid = str(account.cid)
        row.websales_api_url = account.websales_api_url
        row.subscription_id = str(account.subscription_id) if account.subscription_id else None
        set_connection(session, inputs.shop_id, "emanage", "active", None)
        # Single-use and proven: nothing left to keep it for.
        session.execute(
            delete(Credential).where(
                Credential.shop_id == inputs.shop_id,
                Credential.provider == "emanage",
                Credential.name == LINK_CODE,
            )
        )
        return row.account_id
    if isinstance(done, _UserDone):
        emanage = session.scalar(
            select(EmanageAccount).where(EmanageAccount.shop_id == inputs.shop_id)
        )
        assert emanage is not None
        emanage.owner_user_id = done.user_id
        return done.user_id
    record_ctrwow_account(
        session,
        rt.vault,
        shop_id=inputs.shop_id,
        account_id=done.account_id,
        pair=done.pair,
        name=done.name,
    )
    return done.account_id


def record_ctrwow_account(
    session: Session,
    vault: Vault,
    *,
    shop_id: int,
    account_id: str,
    pair: TokenPair,
    name: str | None = None,
) -> None:
    """The shop's CTRwow account, its token pair and an ``active`` connection, in the caller's
    transaction (what the ``ctrwow_account`` step and the OAuth connect both record)."""
    put_ctrwow_tokens(session, vault, shop_id=shop_id, pair=pair)
    ctrwow = session.scalar(select(CtrwowAccount).where(CtrwowAccount.shop_id == shop_id))
    if ctrwow is None:
        ctrwow = CtrwowAccount(shop_id=shop_id)
        session.add(ctrwow)
    if ctrwow.account_id != account_id or name:
        ctrwow.name = name  # a name belongs to its account; kept when it is the same one
    ctrwow.account_id = account_id
    ctrwow.scopes = " ".join(sorted(pair.scope))
    set_connection(session, shop_id, "ctrwow", "active", None, scopes=ctrwow.scopes)


def store_ctrwow_tokens(
    session: Session, rt: OnboardingRuntime, *, shop_id: int, pair: TokenPair
) -> None:
    """Both tokens of ``pair`` in the vault, in the caller's transaction (stored together)."""
    put_ctrwow_tokens(session, rt.vault, shop_id=shop_id, pair=pair)


def put_ctrwow_tokens(session: Session, vault: Vault, *, shop_id: int, pair: TokenPair) -> None:
    """Both tokens of ``pair`` in ``vault``, in the caller's transaction (stored together)."""
    put_secret(
        session,
        vault,
        shop_id=shop_id,
        provider="ctrwow",
        name="access_token",
        value=pair.access_token,
        expires_at=pair.expires_at,
    )
    put_secret(
        session,
        vault,
        shop_id=shop_id,
        provider="ctrwow",
        name="refresh_token",
        value=pair.refresh_token,
        expires_at=pair.refresh_expires_at,
    )


def set_connection(
    session: Session,
    shop_id: int,
    provider: str,
    status: str,
    detail: str | None,
    *,
    scopes: str | None = None,
) -> None:
    """Upsert the shop's connection row for ``provider`` (``active`` or ``needs_attention``)."""
    row = session.scalar(
        select(Connection).where(Connection.shop_id == shop_id, Connection.provider == provider)
    )
    if row is None:
        row = Connection(shop_id=shop_id, provider=provider)
        session.add(row)
    row.status = status
    row.detail = detail
    if scopes is not None:
        row.scopes = scopes


def step_rows(session: Session, job_id: int) -> Sequence[OnboardingStep]:
    """The job's step rows in run order (for status pages and tests)."""
    rows = _step_rows(session, job_id)
    return [rows[s] for s in STEPS if s in rows]
