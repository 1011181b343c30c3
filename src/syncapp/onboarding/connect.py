"""Connecting a merchant's own CTRwow account through OAuth (authorization code + PKCE), for
when partner provisioning cannot: the ``ctrwow_account`` step ended ``needs_merchant`` because
the email already has a CTRwow account (or a refresh was refused and the connection
``needs_attention``).

:func:`start_ctrwow_connect` stores a pending authorization (``ctrwow_authorizations``: the
SHA-256 of a random ``state``, the PKCE verifier encrypted by the vault, a 10-minute expiry)
and returns CTRwow's authorization URL; the verifier never leaves the server.
:func:`finish_ctrwow_connect` is the callback: the state is the only credential of that
top-level request, so it is consumed (deleted) before anything else — single use even when
the exchange then fails — and refused when unknown or expired. The code is exchanged with the
verifier, ``/v1/me`` names the account, and the pair is recorded exactly as the sign-up
records it; the step becomes ``done`` and the job ``done`` when no step is left.
"""

from __future__ import annotations

import hashlib
import secrets
from dataclasses import dataclass
from datetime import UTC, datetime, timedelta
from typing import Any, cast

import anyio
from sqlalchemy import CursorResult, delete, select
from sqlalchemy.orm import Session, sessionmaker

from syncapp.connectors.ctrwow import CtrwowClient, CtrwowError
from syncapp.connectors.ctrwow.oauth import new_code_verifier
from syncapp.errors import SyncAppError
from syncapp.onboarding.models import CtrwowAuthorization, OnboardingJob, OnboardingStep
from syncapp.onboarding.plan import CLAIMABLE, JobStatus, Step, StepStatus
from syncapp.onboarding.runner import SIGNUP, record_ctrwow_account, utc
from syncapp.store.models import Connection, Shop
from syncapp.store.vault import Vault

STATE_TTL = timedelta(minutes=10)


class CtrwowConnectError(SyncAppError):
    """The CTRwow connection cannot be started or finished; the message is for the merchant."""


class ConnectNotNeeded(CtrwowConnectError):
    """The shop's CTRwow account is connected already or its sign-up has not reached it."""


class BadState(CtrwowConnectError):
    """The callback's ``state`` is unknown, already used or expired."""


@dataclass(frozen=True, slots=True)
class Connected:
    """A finished connection: the shop (domain) and the CTRwow account now linked to it."""

    shop: str
    account_id: str


def _hash(state: str) -> str:
    return hashlib.sha256(state.encode()).hexdigest()


def _now() -> datetime:
    return datetime.now(UTC)


def _ctrwow_step(session: Session, shop_id: int) -> OnboardingStep | None:
    return session.scalar(
        select(OnboardingStep)
        .join(OnboardingJob, OnboardingJob.id == OnboardingStep.job_id)
        .where(
            OnboardingJob.shop_id == shop_id,
            OnboardingJob.kind == SIGNUP,
            OnboardingStep.step == Step.CTRWOW_ACCOUNT.value,
        )
    )


def connect_needed(session: Session, *, shop_id: int) -> bool:
    """Whether the shop must connect CTRwow itself: the step waits for it, or the stored grant
    was refused and the sign-up is not (or no longer) setting CTRwow up again by itself."""
    step = _ctrwow_step(session, shop_id)
    if step is not None and step.status == StepStatus.NEEDS_MERCHANT:
        return True
    status = session.scalar(
        select(Connection.status).where(
            Connection.shop_id == shop_id, Connection.provider == "ctrwow"
        )
    )
    job_status = session.scalar(
        select(OnboardingJob.status).where(
            OnboardingJob.shop_id == shop_id, OnboardingJob.kind == SIGNUP
        )
    )
    return status == "needs_attention" and job_status not in CLAIMABLE


def start_ctrwow_connect(
    sessions: sessionmaker[Session],
    vault: Vault,
    client: CtrwowClient,
    *,
    shop: str,
    redirect_uri: str,
    now: datetime | None = None,
) -> str:
    """Store a pending authorization for ``shop`` (domain); CTRwow's authorization URL.

    Raises ConnectNotNeeded when the shop has nothing to connect.
    """
    now = now or _now()
    state = secrets.token_urlsafe(32)
    verifier = new_code_verifier()
    with sessions.begin() as session:
        row = session.scalar(select(Shop).where(Shop.domain == shop))
        if row is None or row.uninstalled_at is not None:
            raise ConnectNotNeeded(f"{shop} is not installed")
        if not connect_needed(session, shop_id=row.id):
            raise ConnectNotNeeded(
                "CTRwow needs nothing from you: the account is connected or still being set up."
            )
        # Expired authorizations of any shop are dead weight; drop them while here.
        session.execute(delete(CtrwowAuthorization).where(CtrwowAuthorization.expires_at < now))
        session.add(
            CtrwowAuthorization(
                shop_id=row.id,
                state_hash=_hash(state),
                verifier_ciphertext=vault.encrypt(verifier),
                expires_at=now + STATE_TTL,
            )
        )
        email, name = row.email, row.name
    return client.authorization_url(
        redirect_uri,
        state,
        verifier,
        login_hint=email,
        account_name=name,
        shop_domain=shop,
    )


def _consume(
    sessions: sessionmaker[Session], vault: Vault, state: str, now: datetime
) -> tuple[int, str, str]:
    """Delete the pending authorization of ``state``; (shop id, shop domain, verifier)."""
    with sessions.begin() as session:
        row = session.scalar(
            select(CtrwowAuthorization).where(CtrwowAuthorization.state_hash == _hash(state))
        )
        if row is None:
            raise BadState(
                "This CTRwow connection link is unknown or was already used. Start again with "
                "“Connect your CTRwow account” in the app."
            )
        result = session.execute(
            delete(CtrwowAuthorization)
            .where(CtrwowAuthorization.id == row.id)
            .execution_options(synchronize_session=False)
        )
        if cast(CursorResult[Any], result).rowcount != 1:  # a concurrent callback won
            raise BadState("This CTRwow connection link was already used.")
        expires = utc(row.expires_at)
        assert expires is not None
        if expires <= now:
            raise BadState(
                "This CTRwow connection link expired (links last 10 minutes). Start again with "
                "“Connect your CTRwow account” in the app."
            )
        shop = session.get_one(Shop, row.shop_id)
        if shop.uninstalled_at is not None:
            raise BadState(f"{shop.domain} uninstalled the app; install it again first.")
        return shop.id, shop.domain, vault.decrypt(row.verifier_ciphertext)


def abandon_ctrwow_connect(sessions: sessionmaker[Session], *, state: str) -> str | None:
    """CTRwow sent the merchant back with an error (they cancelled): drop the pending
    authorization of ``state``; the shop (domain) it was started for, if it is known."""
    with sessions.begin() as session:
        row = session.scalar(
            select(CtrwowAuthorization).where(CtrwowAuthorization.state_hash == _hash(state))
        )
        if row is None:
            return None
        session.delete(row)
        shop = session.get_one(Shop, row.shop_id)
        return None if shop.uninstalled_at is not None else shop.domain


async def finish_ctrwow_connect(
    sessions: sessionmaker[Session],
    vault: Vault,
    client: CtrwowClient,
    *,
    state: str,
    code: str,
    redirect_uri: str,
    shop_hint: str | None = None,
    now: datetime | None = None,
) -> Connected:
    """Complete the connection the callback's ``state`` names.

    ``shop_hint`` is a ``shop`` parameter the callback may carry; it must name the state's
    shop. Raises BadState, or CtrwowConnectError when CTRwow refuses or the account is
    another store's. No transaction is open while CTRwow is called; the database work runs
    in worker threads so the event loop is never blocked on SQLite's lock.
    """
    now = now or _now()
    shop_id, shop, verifier = await anyio.to_thread.run_sync(
        lambda: _consume(sessions, vault, state, now)
    )
    if shop_hint is not None and shop_hint != shop:
        raise CtrwowConnectError(
            f"This CTRwow connection was started for {shop}, not {shop_hint}; start again "
            "from the app in the right store."
        )
    try:
        pair = await client.exchange_code(code, redirect_uri, verifier)
        account = await client.me(pair.access_token)
    except CtrwowError as exc:
        raise CtrwowConnectError(
            f"CTRwow did not complete the connection: {exc}. Start again from the app."
        ) from exc
    if account.external_ref is not None and account.external_ref != shop:
        raise CtrwowConnectError(
            f"That CTRwow account belongs to the store {account.external_ref}, not {shop}; "
            "sign in to CTRwow with the account of this store."
        )

    def record() -> None:
        with sessions.begin() as session:
            row = session.get_one(Shop, shop_id)
            if row.uninstalled_at is not None:
                raise CtrwowConnectError(f"{shop} uninstalled the app; install it again first.")
            record_ctrwow_account(
                session, vault, shop_id=shop_id, account_id=account.id, pair=pair, name=account.name
            )
            _mark_done(session, shop_id, account.id, now)

    await anyio.to_thread.run_sync(record)
    return Connected(shop=shop, account_id=account.id)


def _mark_done(session: Session, shop_id: int, account_id: str, now: datetime) -> None:
    step = _ctrwow_step(session, shop_id)
    if step is None:
        return
    step.status = StepStatus.DONE
    step.result_id = account_id
    step.last_error = None
    step.next_attempt_at = None
    step.finished_at = now
    job = session.get_one(OnboardingJob, step.job_id)
    statuses = session.scalars(
        select(OnboardingStep.status).where(OnboardingStep.job_id == job.id)
    ).all()
    # A claimed (running) job finishes itself when its runner finds every step done.
    if job.status not in CLAIMABLE and all(s == StepStatus.DONE for s in statuses):
        job.status = JobStatus.DONE
        job.last_error = None
        job.next_attempt_at = None
