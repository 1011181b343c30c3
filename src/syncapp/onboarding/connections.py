"""Where each of a shop's three connections stands (Shopify, eManageCRM, CTRwow), judged by
the credential behind it rather than by what the sign-up once recorded — the App Home and
``syncapp shops list/show`` show this — and the operator's reset of one connection.

A connection is ``connected`` only when a usable credential exists: Shopify tokens that are
alive or refreshable; the eManageCRM account on record (the app reaches it with its own client
credentials); CTRwow tokens with a refresh token that has not expired. Otherwise it is
``setting_up`` (the sign-up is queued or running and will make it), ``needs_you`` (only the
merchant can unblock it) or ``not_connected``. Pure reads over an injected session.

:func:`reset_connection` forgets a connection's credentials and queues what re-establishes
it: a fresh Shopify token exchange at the merchant's next visit, or the sign-up's steps for
eManageCRM (converging on the same tenant) or CTRwow (partner provisioning converging on the
same account, with a new grant).
"""

from __future__ import annotations

from dataclasses import dataclass
from datetime import datetime
from enum import StrEnum

from sqlalchemy import delete, select
from sqlalchemy.orm import Session

from syncapp.errors import SyncAppError
from syncapp.onboarding.events import request_signup_of
from syncapp.onboarding.models import CtrwowAccount, EmanageAccount, OnboardingJob, OnboardingStep
from syncapp.onboarding.plan import JobStatus, Step, StepStatus
from syncapp.onboarding.runner import SIGNUP, set_connection, utc
from syncapp.shops.tokens import ACCESS_TOKEN as SHOPIFY_ACCESS
from syncapp.shops.tokens import REFRESH_TOKEN as SHOPIFY_REFRESH
from syncapp.store.models import Connection, Credential, Shop

PROVIDERS: tuple[str, ...] = ("shopify", "emanage", "ctrwow")
TITLES = {"shopify": "Shopify", "emanage": "eManageCRM", "ctrwow": "CTRwow"}


class State(StrEnum):
    CONNECTED = "connected"
    SETTING_UP = "setting_up"
    NEEDS_YOU = "needs_you"
    NOT_CONNECTED = "not_connected"


@dataclass(frozen=True, slots=True)
class ConnectionView:
    """One connection: its state, the account it reaches (when connected) and why not."""

    provider: str
    state: State
    account: str | None = None
    detail: str | None = None

    @property
    def connected(self) -> bool:
        return self.state is State.CONNECTED


class ConnectionResetError(SyncAppError):
    """The connection cannot be reset as asked (unknown provider or shop)."""


def _alive(session: Session, shop_id: int, provider: str, name: str, now: datetime) -> bool:
    row = session.execute(
        select(Credential.id, Credential.expires_at).where(
            Credential.shop_id == shop_id, Credential.provider == provider, Credential.name == name
        )
    ).one_or_none()
    if row is None:
        return False
    expires = utc(row[1])
    return expires is None or expires > now


def connection_views(session: Session, *, shop_id: int, now: datetime) -> dict[str, ConnectionView]:
    """The shop's connections by provider (``PROVIDERS`` order)."""
    shop = session.get_one(Shop, shop_id)
    rows = {
        c.provider: c
        for c in session.scalars(select(Connection).where(Connection.shop_id == shop_id)).all()
    }
    job = session.scalar(
        select(OnboardingJob).where(OnboardingJob.shop_id == shop_id, OnboardingJob.kind == SIGNUP)
    )
    steps = (
        {
            Step(r.step): r
            for r in session.scalars(
                select(OnboardingStep).where(OnboardingStep.job_id == job.id)
            ).all()
        }
        if job is not None
        else {}
    )
    queued = job is not None and job.status in (JobStatus.PENDING, JobStatus.RUNNING)

    def status(provider: str) -> tuple[str | None, str | None]:
        row = rows.get(provider)
        return (row.status, row.detail) if row is not None else (None, None)

    def pending(*wanted: Step) -> ConnectionView | None:
        """The view while the sign-up still owes ``wanted``: needs you, or setting up."""
        for step in wanted:
            row = steps.get(step)
            if row is not None and row.status == StepStatus.NEEDS_MERCHANT:
                return ConnectionView(provider, State.NEEDS_YOU, detail=row.last_error)
            if row is not None and row.status == StepStatus.FAILED:
                return ConnectionView(provider, State.NEEDS_YOU, detail=row.last_error)
        if queued:
            return ConnectionView(provider, State.SETTING_UP)
        return None

    views: dict[str, ConnectionView] = {}
    provider = "shopify"
    shopify_status, shopify_detail = status(provider)
    usable = _alive(session, shop_id, provider, SHOPIFY_ACCESS, now) or _alive(
        session, shop_id, provider, SHOPIFY_REFRESH, now
    )
    if shop.uninstalled_at is None and shopify_status == "active" and usable:
        views[provider] = ConnectionView(provider, State.CONNECTED, account=shop.domain)
    elif shopify_status == "needs_attention":
        views[provider] = ConnectionView(provider, State.NEEDS_YOU, detail=shopify_detail)
    else:
        views[provider] = ConnectionView(provider, State.NOT_CONNECTED, detail=shopify_detail)

    provider = "emanage"
    emanage = session.scalar(select(EmanageAccount).where(EmanageAccount.shop_id == shop_id))
    emanage_status, emanage_detail = status(provider)
    if emanage is not None and emanage_status in ("active", None):
        views[provider] = ConnectionView(provider, State.CONNECTED, account=emanage.cid)
    else:
        views[provider] = pending(Step.EMANAGE_ACCOUNT) or ConnectionView(
            provider, State.NOT_CONNECTED, detail=emanage_detail
        )

    provider = "ctrwow"
    ctrwow = session.scalar(select(CtrwowAccount).where(CtrwowAccount.shop_id == shop_id))
    ctrwow_status, ctrwow_detail = status(provider)
    if (
        ctrwow is not None
        and ctrwow_status == "active"
        and _alive(session, shop_id, provider, "refresh_token", now)
    ):
        views[provider] = ConnectionView(provider, State.CONNECTED, account=ctrwow.account_id)
    elif ctrwow_status == "needs_attention" and not queued:
        views[provider] = ConnectionView(provider, State.NEEDS_YOU, detail=ctrwow_detail)
    else:
        views[provider] = pending(Step.CTRWOW_ACCOUNT) or ConnectionView(
            provider, State.NOT_CONNECTED, detail=ctrwow_detail
        )
    return views


def reset_connection(session: Session, *, shop_id: int, provider: str) -> str:
    """Forget ``provider``'s credentials of the shop and queue what re-establishes them, in the
    caller's transaction; returns what will happen next (for the operator)."""
    if provider not in PROVIDERS:
        raise ConnectionResetError(f"unknown provider {provider!r}; one of {', '.join(PROVIDERS)}")
    session.execute(
        delete(Credential).where(Credential.shop_id == shop_id, Credential.provider == provider)
    )
    if provider == "shopify":
        # A connection not ``active`` makes the next App Home request exchange a new token.
        set_connection(session, shop_id, provider, "needs_attention", "reset by the operator")
        return "the next time the merchant opens the app, it exchanges a new Shopify token"
    job = session.scalar(
        select(OnboardingJob).where(OnboardingJob.shop_id == shop_id, OnboardingJob.kind == SIGNUP)
    )
    if job is None:
        raise ConnectionResetError("this shop has no sign-up yet: it has never opened the app")
    wanted: tuple[Step, ...] = (
        (Step.CTRWOW_ACCOUNT,) if provider == "ctrwow" else (Step.EMANAGE_ACCOUNT,)
    )
    if provider == "emanage":
        wanted += (Step.EMANAGE_USER,)
        # Converge on the store's existing account (dedicated ones included) through its 409;
        # a link request without its single-use code could not be sent again.
        job.emanage_subscription_id = None
    for row in session.scalars(select(OnboardingStep).where(OnboardingStep.job_id == job.id)):
        if row.step in wanted:
            row.status = StepStatus.PENDING
            row.generation += 1
            row.attempts = 0
            row.next_attempt_at = None
            row.last_error = None
    set_connection(session, shop_id, provider, "pending", "reset by the operator")
    if job.status != JobStatus.RUNNING:
        job.status = JobStatus.PENDING
    job.next_attempt_at = None
    job.last_error = None
    request_signup_of(session, shop_id=shop_id, reason=f"{provider} reset by the operator")
    return f"the sign-up sets {TITLES[provider]} up again (the worker runs it)"
