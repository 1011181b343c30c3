"""get_ctrwow_token(): a valid CTRwow access token for a shop, refreshed with one refresh in
flight per (shop, 'ctrwow') across every process.

CTRwow's refresh tokens rotate on every use and a replaced one presented again (after a short
grace window) revokes the whole grant, so two processes refreshing at once could lock the shop
out. The refresh is therefore single-flight through a lease on the shop's ``ctrwow_accounts``
row, taken by a compare-and-set UPDATE: the holder re-reads the tokens after taking it (another
process may have just refreshed), refreshes, and stores the new pair and releases the lease in
one transaction. Others wait, polling, and use the pair the holder stored.

Why a lease rather than holding a row lock during the refresh? On SQLite a write lock held across
the await of the HTTP refresh would stall every writer of every process, and any other
coroutine's write on the same loop would block the loop inside sqlite's busy wait — a deadlock
until the busy timeout. A lease holds no lock during I/O; a holder that dies leaves a lease that
simply runs out. The Shopify token refresh (``syncapp.shops.tokens``) works the same way.
"""

from __future__ import annotations

import asyncio
from datetime import datetime, timedelta
from typing import cast

from sqlalchemy import select, update

from syncapp.connectors.ctrwow import CtrwowInvalidGrant, CtrwowTransientError
from syncapp.errors import SyncAppError
from syncapp.onboarding.events import request_signup_of
from syncapp.onboarding.models import CtrwowAccount, OnboardingJob
from syncapp.onboarding.plan import CLAIMABLE, JobStatus
from syncapp.onboarding.runner import SIGNUP, set_connection, store_ctrwow_tokens, utc
from syncapp.onboarding.runtime import OnboardingRuntime
from syncapp.store.locking import Lease
from syncapp.store.models import Connection, Credential, Shop
from syncapp.store.vault import get_secret

REFRESH_LEASE = Lease(
    CtrwowAccount.refresh_locked_by, CtrwowAccount.refresh_locked_until, timedelta(seconds=30)
)


class CtrwowTokenError(SyncAppError):
    """No CTRwow access token can be had for the shop now; ``shop`` names it."""

    def __init__(self, message: str, *, shop: str) -> None:
        super().__init__(message)
        self.shop = shop


class CtrwowNotConnected(CtrwowTokenError):
    """The shop has no CTRwow account yet (its sign-up has not reached that step)."""


class CtrwowReconnectRequired(CtrwowTokenError):
    """CTRwow refused the refresh token; the connection is ``needs_attention`` and the sign-up
    is queued to set CTRwow up again. Not retryable until it has."""


class CtrwowTokenUnavailable(CtrwowTokenError):
    """The refresh failed for a passing reason (CTRwow down, 429, network, lock held too
    long); retry later."""


async def get_ctrwow_token(rt: OnboardingRuntime, *, shop: str) -> str:
    """A CTRwow access token for ``shop`` (domain) valid for ``rt.token_margin_seconds`` more.

    Raises CtrwowNotConnected, CtrwowReconnectRequired or CtrwowTokenUnavailable.
    """
    deadline = asyncio.get_running_loop().time() + REFRESH_LEASE.duration.total_seconds() * 2
    while True:
        shop_id, token = _current(rt, shop)
        if token is not None:
            return token
        if _take_lease(rt, shop_id):
            return await _refresh_holding_lease(rt, shop, shop_id)
        if asyncio.get_running_loop().time() > deadline:
            raise CtrwowTokenUnavailable(
                f"another process has been refreshing {shop}'s CTRwow token for too long; "
                "retry later",
                shop=shop,
            )
        await asyncio.sleep(REFRESH_LEASE.poll_seconds)


def _current(rt: OnboardingRuntime, shop: str) -> tuple[int, str | None]:
    """The shop's id, and its access token if it is valid long enough (else None)."""
    with rt.sessions() as session:
        row = session.execute(
            select(Shop.id, CtrwowAccount.id, Connection.status, Connection.detail)
            .join(CtrwowAccount, CtrwowAccount.shop_id == Shop.id, isouter=True)
            .join(
                Connection,
                (Connection.shop_id == Shop.id) & (Connection.provider == "ctrwow"),
                isouter=True,
            )
            .where(Shop.domain == shop)
        ).one_or_none()
        if row is None or row[1] is None:
            raise CtrwowNotConnected(f"{shop} has no CTRwow account yet", shop=shop)
        shop_id = int(row[0])
        if row[2] == "needs_attention":
            raise CtrwowReconnectRequired(
                f"{shop}'s CTRwow connection needs the merchant: {row[3] or 'reconnect CTRwow'}",
                shop=shop,
            )
        expires = session.scalar(
            select(Credential.expires_at).where(
                Credential.shop_id == shop_id,
                Credential.provider == "ctrwow",
                Credential.name == "access_token",
            )
        )
        fresh_until = rt.clock() + timedelta(seconds=rt.token_margin_seconds)
        if expires is not None and cast(datetime, utc(expires)) > fresh_until:
            token = get_secret(
                session, rt.vault, shop_id=shop_id, provider="ctrwow", name="access_token"
            )
            return shop_id, token
        return shop_id, None


def _take_lease(rt: OnboardingRuntime, shop_id: int) -> bool:
    row = CtrwowAccount.shop_id == shop_id
    return REFRESH_LEASE.take(rt.sessions, row, rt.runner_id, now=rt.clock())


def _release(rt: OnboardingRuntime, shop_id: int) -> None:
    REFRESH_LEASE.release(rt.sessions, CtrwowAccount.shop_id == shop_id, rt.runner_id)


async def _refresh_holding_lease(rt: OnboardingRuntime, shop: str, shop_id: int) -> str:
    try:
        # Re-read under the lease: whoever held it before may have stored a fresh pair.
        _, token = _current(rt, shop)
        if token is not None:
            return token
        with rt.sessions() as session:
            refresh_token = get_secret(
                session, rt.vault, shop_id=shop_id, provider="ctrwow", name="refresh_token"
            )
        if refresh_token is None:
            raise _needs_attention(rt, shop, shop_id, "no CTRwow refresh token is stored")
        try:
            pair = await rt.ctrwow.refresh(refresh_token)
        except CtrwowInvalidGrant as exc:
            raise _needs_attention(
                rt,
                shop,
                shop_id,
                f"CTRwow refused to renew access ({exc.detail}); the sign-up sets CTRwow up "
                "again (a new grant, or the merchant connects their own account)",
            ) from exc
        except CtrwowTransientError as exc:
            raise CtrwowTokenUnavailable(
                f"CTRwow could not renew {shop}'s token now: {exc.detail}", shop=shop
            ) from exc
        with rt.sessions.begin() as session:
            store_ctrwow_tokens(session, rt, shop_id=shop_id, pair=pair)
            session.execute(
                update(CtrwowAccount)
                .where(CtrwowAccount.shop_id == shop_id)
                .values(refresh_locked_by=None, refresh_locked_until=None)
                .execution_options(synchronize_session=False)
            )
        return pair.access_token
    finally:
        _release(rt, shop_id)


def _needs_attention(
    rt: OnboardingRuntime, shop: str, shop_id: int, detail: str
) -> CtrwowReconnectRequired:
    with rt.sessions.begin() as session:
        set_connection(session, shop_id, "ctrwow", "needs_attention", detail)
        # The sign-up re-establishes it: the CTRwow step's result is lost (see runner).
        session.execute(
            update(OnboardingJob)
            .where(
                OnboardingJob.shop_id == shop_id,
                OnboardingJob.kind == SIGNUP,
                OnboardingJob.status.not_in(CLAIMABLE),
            )
            .values(status=JobStatus.PENDING, next_attempt_at=None, last_error=None)
            .execution_options(synchronize_session=False)
        )
        request_signup_of(session, shop_id=shop_id, reason="ctrwow reconnect")
    return CtrwowReconnectRequired(f"{shop}: {detail}", shop=shop)
