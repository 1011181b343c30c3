"""Installation: the first verified App Home request of a shop without a valid token.

Shopify installs the app itself (managed installation) and never calls us; the app learns
of the install when the merchant first opens it. :func:`ensure_installed` then exchanges the
request's ID token for an expiring offline token (shopifyapp's token exchange) while holding
the shop's install lease (so two first requests make one exchange; no database lock is held
during the call to Shopify), and then, in one short transaction:

* creates the ``shops`` row, or restores it on a reinstall (``installed_at`` now,
  ``uninstalled_at`` cleared, every old Shopify credential replaced by the new pair);
* stores the access and refresh tokens encrypted, one ``credentials`` row each;
* sets the shop's Shopify ``connections`` row ``active`` with the granted scopes;
* creates (or resets) the shop's ``onboarding_jobs`` row ``kind='signup'``, ``pending``: the
  eManageCRM/CTRwow sign-up picks it up from there. On a reinstall the job is queued again
  whatever its state, so the run re-establishes what the uninstall cut (CTRwow's tokens).

After the commit it reads the shop (ShopInfo: name, email, currency, plan) through the Admin
API and stores it; if that read fails the shop is installed anyway and the next App Home
request tries again. A shop whose connection ``needs_attention`` (its refresh token was
refused) gets a fresh exchange the same way, which is how it recovers.

An exchange that fails (Shopify refuses the token, e.g. for a shop that uninstalled the app,
or does not answer) is recorded on the shop with a backoff (:data:`EXCHANGE_RETRY`): until it
ends, requests of that shop get a 401 (refused) or a 503 (Shopify unreachable) with
``Retry-After`` and Shopify is not called. A successful exchange clears it.
"""

from __future__ import annotations

import contextlib
import math
import random
import time
from dataclasses import dataclass
from datetime import UTC, datetime, timedelta

import structlog
from shopify_app import IdTokenDetails, Res
from sqlalchemy import insert, select, update
from sqlalchemy.exc import IntegrityError
from sqlalchemy.orm import Session

from syncapp.bus.retry import RetryPolicy, backoff_delay
from syncapp.connectors.shopify.admin import ShopifyAdminError, ShopInfo, fetch_shop_info
from syncapp.onboarding.events import request_signup_of
from syncapp.onboarding.models import OnboardingJob
from syncapp.shops.errors import ShopError
from syncapp.shops.runtime import ShopsRuntime
from syncapp.shops.tokens import (
    ACTIVE,
    PROVIDER,
    delete_shopify_credentials,
    get_admin_token,
    read_pair,
    store_pair,
)
from syncapp.store.locking import Lease, lease_owner, lock_row, locked_transaction
from syncapp.store.models import Connection, Shop

log = structlog.get_logger("syncapp.shops.install")

SIGNUP = "signup"
# One token exchange per shop at a time; longer than the HTTP client's timeouts.
INSTALL_LEASE = Lease(Shop.install_locked_by, Shop.install_locked_until, timedelta(seconds=30))
# When another request's exchange takes too long: App Bridge retries a 503 with Retry-After.
STILL_INSTALLING = Res(
    status=503, body="The app is still being installed; retry shortly", headers={"Retry-After": "2"}
)
# Backoff after a failed token exchange, per shop (max_attempts unused: it never gives up,
# since a reinstall makes the next exchange succeed). Short enough for a reinstall.
EXCHANGE_RETRY = RetryPolicy(base_seconds=4.0, cap_seconds=120.0, max_attempts=1)
REFUSED = "refused"
UNAVAILABLE = "unavailable"


@dataclass(frozen=True, slots=True)
class InstallOutcome:
    """What :func:`ensure_installed` did.

    ``response`` is set when the token exchange failed: shopifyapp's response (e.g. the
    patch-ID-token redirect or a 401 for App Bridge to retry), to be returned unchanged.
    """

    shop: str
    exchanged: bool = False
    reinstalled: bool = False
    response: Res | None = None


def _has_valid_token(session: Session, runtime: ShopsRuntime, shop: Shop | None) -> bool:
    if shop is None or shop.installed_at is None or shop.uninstalled_at is not None:
        return False
    status = session.scalar(
        select(Connection.status).where(
            Connection.shop_id == shop.id, Connection.provider == PROVIDER
        )
    )
    if status != ACTIVE:
        return False
    pair = read_pair(session, runtime.vault, shop_id=shop.id)
    if pair is None:
        return False
    now = datetime.now(UTC)
    alive = pair.access_expires_at is None or pair.access_expires_at > now
    refreshable = pair.refresh_token is not None and (
        pair.refresh_expires_at is None or pair.refresh_expires_at > now
    )
    return alive or refreshable


def _backoff_response(row: Shop, now: datetime) -> Res | None:
    """The answer for a shop still in its exchange backoff, or None when it may exchange."""
    retry_at = row.install_retry_at
    if retry_at is None:
        return None
    if retry_at.tzinfo is None:  # SQLite returns naive datetimes (stored as UTC)
        retry_at = retry_at.replace(tzinfo=UTC)
    if retry_at <= now:
        return None
    wait = {"Retry-After": str(max(1, math.ceil((retry_at - now).total_seconds())))}
    if row.install_error == UNAVAILABLE:
        return Res(status=503, body="Shopify is not answering; retry shortly", headers=wait)
    return Res(
        status=401,
        body="Shopify refused to connect this store (is the app installed?); "
        "open the app again from the Shopify admin",
        headers=wait,
    )


def _record_exchange_failure(runtime: ShopsRuntime, shop_id: int, kind: str) -> Shop | None:
    with locked_transaction(runtime.sessions) as session:
        row: Shop | None = session.scalar(lock_row(select(Shop).where(Shop.id == shop_id)))
        if row is None:
            return None
        row.install_failures = (row.install_failures or 0) + 1
        delay = backoff_delay(row.install_failures, policy=EXCHANGE_RETRY, jitter=random.random())
        row.install_retry_at = datetime.now(UTC) + timedelta(seconds=delay)
        row.install_error = kind
        session.flush()
        session.expunge(row)
        return row


def _failure_kind(result_code: str, statuses: list[int]) -> str:
    """Whether Shopify refused the exchange or could not be reached (network, 5xx)."""
    if result_code == "network_error" or any(s in (0, 429) or s >= 500 for s in statuses):
        return UNAVAILABLE
    return REFUSED


def _ensure_shop_row(runtime: ShopsRuntime, domain: str) -> None:
    """Create the shop's row if missing, so there is a row to lock (a racing insert is fine)."""
    with contextlib.suppress(IntegrityError), locked_transaction(runtime.sessions) as session:
        if session.scalar(select(Shop.id).where(Shop.domain == domain)) is None:
            session.add(Shop(domain=domain))


def _upsert_connection(session: Session, *, shop_id: int, scopes: str) -> None:
    connection = session.scalar(
        select(Connection).where(Connection.shop_id == shop_id, Connection.provider == PROVIDER)
    )
    if connection is None:
        connection = Connection(shop_id=shop_id, provider=PROVIDER)
        session.add(connection)
    connection.status = ACTIVE
    connection.detail = None
    connection.scopes = scopes


def _reset_onboarding(session: Session, *, shop_id: int, reinstalled: bool) -> None:
    """Queue the sign-up: a new job, a stopped one again, and on a reinstall any job at all —
    the uninstall cut connections (CTRwow's tokens are revoked) that the run re-establishes;
    steps whose result is still usable are kept (the same eManageCRM tenant)."""
    # Named columns only: the onboarding engine adds columns of its own to this table.
    status = session.scalar(
        select(OnboardingJob.status).where(
            OnboardingJob.shop_id == shop_id, OnboardingJob.kind == SIGNUP
        )
    )
    if status is None:
        session.execute(
            insert(OnboardingJob).values(shop_id=shop_id, kind=SIGNUP, status="pending", attempts=0)
        )
        request_signup_of(session, shop_id=shop_id, reason="install")
    elif reinstalled or status in ("cancelled", "failed"):
        session.execute(
            update(OnboardingJob)
            .where(OnboardingJob.shop_id == shop_id, OnboardingJob.kind == SIGNUP)
            .values(status="pending", attempts=0, last_error=None, next_attempt_at=None)
        )
        request_signup_of(session, shop_id=shop_id, reason="reinstall")


def ensure_installed(
    runtime: ShopsRuntime,
    *,
    shop: str,
    id_token: IdTokenDetails,
    invalid_token_response: Res | None,
) -> InstallOutcome:
    """Make sure ``shop`` (from a verified App Home request) has a valid stored token.

    ``id_token`` and ``invalid_token_response`` are those of shopifyapp's
    ``verify_app_home_req`` result for the request.
    """
    with runtime.sessions() as session:
        row = session.scalar(select(Shop).where(Shop.domain == shop))
        if _has_valid_token(session, runtime, row):
            return InstallOutcome(shop=shop)
        waiting = _backoff_response(row, datetime.now(UTC)) if row is not None else None
        if waiting is not None:
            return InstallOutcome(shop=shop, response=waiting)

    _ensure_shop_row(runtime, shop)
    owner = lease_owner()
    deadline = time.monotonic() + INSTALL_LEASE.duration.total_seconds() * 2
    waited = False
    while True:
        with runtime.sessions() as session:
            row = session.scalar(select(Shop).where(Shop.domain == shop))
            assert row is not None  # created just above; only a shop/redact deletes it
            if _has_valid_token(session, runtime, row):
                if waited:
                    log.info("install.already_done_by_another_request", shop=shop)
                return InstallOutcome(shop=shop)
            shop_id = row.id
        if INSTALL_LEASE.take(runtime.sessions, Shop.id == shop_id, owner):
            break
        if time.monotonic() > deadline:
            log.warning("install.still_in_progress_elsewhere", shop=shop)
            return InstallOutcome(shop=shop, response=STILL_INSTALLING)
        waited = True
        time.sleep(INSTALL_LEASE.poll_seconds)
    try:
        outcome = _exchange_holding_lease(runtime, shop, shop_id, id_token, invalid_token_response)
    finally:
        INSTALL_LEASE.release(runtime.sessions, Shop.id == shop_id, owner)
    if outcome.exchanged:
        log.info("install.completed", shop=shop, reinstalled=outcome.reinstalled)
        try:
            refresh_shop_info(runtime, shop=shop)
        except (ShopifyAdminError, ShopError) as exc:
            log.warning("install.shop_info_failed", shop=shop, error=str(exc))
    return outcome


def _exchange_holding_lease(
    runtime: ShopsRuntime,
    shop: str,
    shop_id: int,
    id_token: IdTokenDetails,
    invalid_token_response: Res | None,
) -> InstallOutcome:
    """Exchange with no transaction open during the call; store what Shopify gave."""
    with runtime.sessions() as session:
        # Whoever held the lease before us may have just installed, or just failed.
        row = session.get(Shop, shop_id)
        if _has_valid_token(session, runtime, row):
            log.info("install.already_done_by_another_request", shop=shop)
            return InstallOutcome(shop=shop)
        waiting = _backoff_response(row, datetime.now(UTC)) if row is not None else None
        if waiting is not None:
            return InstallOutcome(shop=shop, response=waiting)
    log.info("install.token_exchange_started", shop=shop)
    with runtime.http() as http:
        result = runtime.shopify.exchange_using_token_exchange(
            "offline",
            id_token=id_token,
            invalid_token_response=invalid_token_response,
            http_client=http,
        )
    token = result.access_token
    if not result.ok or token is None or not token.token:
        kind = _failure_kind(result.log.code, [h.res.status for h in result.http_logs])
        failed = _record_exchange_failure(runtime, shop_id, kind)
        log.warning(
            "install.token_exchange_failed",
            shop=shop,
            code=result.log.code,
            kind=kind,
            failures=failed.install_failures if failed else None,
        )
        if result.log.code == "invalid_subject_token" and result.response.status in (302, 401):
            # Shopify did not accept this ID token: App Bridge is asked for a fresh one once;
            # the backoff stops a loop of them.
            return InstallOutcome(shop=shop, response=result.response)
        waiting = _backoff_response(failed, datetime.now(UTC)) if failed is not None else None
        return InstallOutcome(shop=shop, response=waiting or STILL_INSTALLING)
    with locked_transaction(runtime.sessions) as session:
        row = session.scalar(lock_row(select(Shop).where(Shop.id == shop_id)))
        if row is None:
            # A shop/redact removed the shop during the call; the next request starts over.
            log.warning("install.shop_redacted_meanwhile", shop=shop)
            return InstallOutcome(shop=shop, response=STILL_INSTALLING)
        reinstalled = row.uninstalled_at is not None
        delete_shopify_credentials(session, shop_id=row.id)
        store_pair(session, runtime.vault, shop_id=row.id, token=token)
        log.info("install.tokens_stored", shop=shop, expires=token.expires)
        row.installed_at = datetime.now(UTC)
        row.uninstalled_at = None
        row.install_failures, row.install_retry_at, row.install_error = 0, None, None
        _upsert_connection(session, shop_id=row.id, scopes=token.scope)
        _reset_onboarding(session, shop_id=row.id, reinstalled=reinstalled)
        log.info("install.onboarding_queued", shop=shop)
    return InstallOutcome(shop=shop, exchanged=True, reinstalled=reinstalled)


def refresh_shop_info(runtime: ShopsRuntime, *, shop: str) -> ShopInfo:
    """Read the shop's name, email, currency and plan from Shopify and store them.

    Raises :class:`~syncapp.shops.errors.ShopError` (no usable token) or
    :class:`~syncapp.connectors.shopify.admin.ShopifyAdminError` (the read failed).
    """
    token = get_admin_token(runtime, shop=shop)
    with runtime.http() as http:
        info = fetch_shop_info(
            shop=shop, access_token=token, api_version=runtime.api_version, http=http
        )
    with locked_transaction(runtime.sessions) as session:
        row = session.scalar(select(Shop).where(Shop.domain == shop))
        if row is not None:
            row.name = info.name
            row.email = info.email
            row.currency_code = info.currency_code
            row.plan_name = info.plan_name[:64] or None
            row.shopify_gid = info.gid
    log.info("install.shop_info_stored", shop=shop, plan=info.plan_name)
    return info
