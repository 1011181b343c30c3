"""What the rest of the app asks of the sign-up: make sure a shop has its job, take the
merchant's request to link a dedicated eManageCRM subscription, start a stopped sign-up again,
and read where it stands. Plain functions over an injected session; the caller commits.
"""

from __future__ import annotations

import uuid
from dataclasses import dataclass
from datetime import datetime

from sqlalchemy import select
from sqlalchemy.orm import Session, object_session

from syncapp.errors import SyncAppError
from syncapp.onboarding.events import request_signup_of
from syncapp.onboarding.models import CtrwowAccount, EmanageAccount, OnboardingJob
from syncapp.onboarding.plan import STEPS, JobStatus, Step, StepStatus
from syncapp.onboarding.runner import LINK_CODE, SIGNUP, step_rows, utc
from syncapp.store.vault import Vault, put_secret


class OnboardingError(SyncAppError):
    """A request about a shop's sign-up cannot be done as asked (the message says why)."""


def ensure_signup_job(session: Session, *, shop_id: int) -> OnboardingJob:
    """The shop's sign-up job, created ``pending`` if install has not created it."""
    job = session.scalar(
        select(OnboardingJob).where(OnboardingJob.shop_id == shop_id, OnboardingJob.kind == SIGNUP)
    )
    if job is None:
        job = OnboardingJob(shop_id=shop_id, kind=SIGNUP, status=JobStatus.PENDING, attempts=0)
        session.add(job)
        session.flush()
        request_signup_of(session, shop_id=shop_id, reason="sign-up job created")
    return job


def request_dedicated_link(
    session: Session, vault: Vault, *, shop_id: int, subscription_id: str, link_code: str
) -> OnboardingJob:
    """Link the merchant's own eManageCRM subscription instead of a shared-instance tenant.

    The link code goes to the vault (it proves ownership for 30 minutes); the request is kept
    on the job and the account step is sent again under a new key. Raises OnboardingError
    when the id is not a GUID, the code is empty, or the store already has its account.
    """
    try:
        subscription = str(uuid.UUID(subscription_id.strip()))
    except ValueError:
        raise OnboardingError(
            "The subscription id must look like 3f2b1c4d-0000-4a5b-8c9d-1234567890ab; copy it "
            "from your eManageCRM (Settings > Integrations > Shopify Sync App)."
        ) from None
    if not link_code.strip():
        raise OnboardingError("Enter the link code shown next to your subscription id.")
    if session.scalar(select(EmanageAccount).where(EmanageAccount.shop_id == shop_id)):
        raise OnboardingError(
            "This store already has its eManageCRM account; eManageCRM allows one per store."
        )
    job = ensure_signup_job(session, shop_id=shop_id)
    put_secret(session, vault, shop_id=shop_id, provider="emanage", name=LINK_CODE, value=link_code)
    job.emanage_subscription_id = subscription
    for row in step_rows(session, job.id):
        if row.step == Step.EMANAGE_ACCOUNT and row.status != StepStatus.DONE:
            row.status = StepStatus.PENDING
            row.generation += 1
            row.attempts = 0
            row.next_attempt_at = None
            row.last_error = None
    _make_due(job)
    return job


def restart_signup(session: Session, *, shop_id: int) -> OnboardingJob:
    """Start a failed (or merchant-blocked) sign-up again: failed steps are sent again under
    a new key; finished steps are kept."""
    job = ensure_signup_job(session, shop_id=shop_id)
    if job.status in (JobStatus.FAILED, JobStatus.NEEDS_MERCHANT, JobStatus.CANCELLED):
        _make_due(job)
    return job


def _make_due(job: OnboardingJob) -> None:
    if job.status != JobStatus.RUNNING:
        job.status = JobStatus.PENDING
    job.next_attempt_at = None
    session = object_session(job)
    if session is not None:
        request_signup_of(session, shop_id=job.shop_id, reason="the merchant's request")


@dataclass(frozen=True)
class StepView:
    step: Step
    status: StepStatus
    attempts: int
    last_error: str | None
    next_attempt_at: datetime | None
    result_id: str | None


@dataclass(frozen=True)
class SignupView:
    """Where a shop's sign-up stands, for the app's status page."""

    status: JobStatus
    last_error: str | None
    steps: tuple[StepView, ...]
    emanage_account_id: str | None
    emanage_kind: str | None
    emanage_cid: str | None
    emanage_websales_api_url: str | None
    emanage_owner_user_id: str | None
    ctrwow_account_id: str | None
    ctrwow_account_name: str | None = None


def signup_status(session: Session, *, shop_id: int) -> SignupView | None:
    """The shop's sign-up as the merchant should see it, or None before install made it."""
    job = session.scalar(
        select(OnboardingJob).where(OnboardingJob.shop_id == shop_id, OnboardingJob.kind == SIGNUP)
    )
    if job is None:
        return None
    rows = {Step(r.step): r for r in step_rows(session, job.id)}
    steps = tuple(
        StepView(
            step,
            StepStatus(rows[step].status),
            rows[step].attempts,
            rows[step].last_error,
            utc(rows[step].next_attempt_at),
            rows[step].result_id,
        )
        if step in rows
        else StepView(step, StepStatus.PENDING, 0, None, None, None)
        for step in STEPS
    )
    emanage = session.scalar(select(EmanageAccount).where(EmanageAccount.shop_id == shop_id))
    ctrwow = session.scalar(select(CtrwowAccount).where(CtrwowAccount.shop_id == shop_id))
    return SignupView(
        status=JobStatus(job.status),
        last_error=job.last_error,
        steps=steps,
        emanage_account_id=emanage.account_id if emanage else None,
        emanage_kind=emanage.kind if emanage else None,
        emanage_cid=emanage.cid if emanage else None,
        emanage_websales_api_url=emanage.websales_api_url if emanage else None,
        emanage_owner_user_id=emanage.owner_user_id if emanage else None,
        ctrwow_account_id=ctrwow.account_id if ctrwow else None,
        ctrwow_account_name=ctrwow.name if ctrwow else None,
    )
