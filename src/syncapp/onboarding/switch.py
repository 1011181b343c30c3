"""Moving a shop to the merchant's own eManageCRM subscription from the App Home.

Before the sign-up made an account, the request goes to the sign-up job
(:func:`service.request_dedicated_link`). Once the shop runs on a shared-instance tenant, the
switch happens here and now: eManageCRM links the subscription and closes the shared tenant
in one call (``replacesAccountId``), the owner user is made sure of in the dedicated account,
and the shop's ``emanage_accounts`` row moves to the new account in one transaction. Every
eManageCRM write uses a key derived from (shop, subscription, code), so a repeated click after
a failure in the middle replays the same answers instead of failing on the spent code.
"""

from __future__ import annotations

import hashlib
import uuid
from dataclasses import dataclass

import anyio
from sqlalchemy import select
from sqlalchemy.orm import Session, sessionmaker

from syncapp.billing.plans import Catalog
from syncapp.billing.service import plan_state
from syncapp.connectors.emanage import (
    Account,
    EmanageClient,
    EmanageConflict,
    EmanageError,
    EmanageTransientError,
)
from syncapp.connectors.emanage.errors import EmanageValidationError, merchant_message
from syncapp.onboarding.models import EmanageAccount
from syncapp.onboarding.service import OnboardingError, request_dedicated_link
from syncapp.store.models import Shop
from syncapp.store.vault import Vault

LINK_CODE_HELP = (
    "That link code is not valid any more: create a new one in eManageCRM under Settings > "
    "Integrations > Shopify Sync App (Generate link code) and enter it here within 30 minutes."
)


class LinkRefused(OnboardingError):
    """The link cannot be made as asked; the message tells the merchant what to do.

    ``reason`` is short and stable for the API (``plan``, ``invalid``, ``link_code``,
    ``already_linked``, ``not_ready``, ``refused``).
    """

    def __init__(self, message: str, *, reason: str) -> None:
        super().__init__(message)
        self.reason = reason


class LinkUnavailable(OnboardingError):
    """eManageCRM did not answer; the same request can be sent again (it is idempotent)."""


@dataclass(frozen=True)
class LinkOutcome:
    """What the request did: ``queued`` when the sign-up job will link (no account yet)."""

    queued: bool
    account_id: str | None
    kind: str


@dataclass(frozen=True)
class _Current:
    shop_id: int
    account_id: str
    shop_name: str
    email: str


def _clean(subscription_id: str, link_code: str) -> tuple[str, str]:
    try:
        subscription = str(uuid.UUID(subscription_id.strip()))
    except ValueError:
        raise LinkRefused(
            "The subscription id must look like 3f2b1c4d-0000-4a5b-8c9d-1234567890ab; copy it "
            "from your eManageCRM (Settings > Integrations > Shopify Sync App).",
            reason="invalid",
        ) from None
    code = link_code.strip()
    if not code:
        raise LinkRefused(
            "Enter the link code shown next to your subscription id.", reason="invalid"
        )
    return subscription, code


def _prepare(
    session: Session,
    vault: Vault,
    catalog: Catalog,
    *,
    shop: str,
    subscription_id: str,
    link_code: str,
) -> _Current | LinkOutcome:
    row = session.scalar(select(Shop).where(Shop.domain == shop))
    if row is None:
        raise LinkRefused("This store is not installed; open the app again.", reason="not_ready")
    state = plan_state(session, shop_id=row.id, catalog=catalog)
    if not state.features.dedicated_emanage:
        allowed = [p.name for p in catalog.plans if p.dedicated_emanage]
        raise LinkRefused(
            f"Connecting your own eManageCRM subscription is part of the {' and '.join(allowed)} "
            f"plans; this store is on {state.plan.name}. Choose one of those plans first.",
            reason="plan",
        )
    account = session.scalar(select(EmanageAccount).where(EmanageAccount.shop_id == row.id))
    if account is None:
        request_dedicated_link(
            session, vault, shop_id=row.id, subscription_id=subscription_id, link_code=link_code
        )
        return LinkOutcome(queued=True, account_id=None, kind="dedicated")
    if account.kind == "dedicated":
        raise LinkRefused(
            "This store is already connected to your own eManageCRM subscription "
            f"({account.subscription_id}); contact eManageCRM support to move it to another.",
            reason="already_linked",
        )
    if account.owner_user_id is None or not row.email:
        # The sign-up is still writing to the shared tenant; switching under it would leave
        # the owner user recorded against the closed account.
        raise LinkRefused(
            "Your eManageCRM account is still being set up; wait until the sign-up has "
            "finished, then link your subscription.",
            reason="not_ready",
        )
    return _Current(
        shop_id=row.id,
        account_id=account.account_id,
        shop_name=row.name or shop.removesuffix(".myshopify.com"),
        email=row.email,
    )


def _key(kind: str, shop: str, subscription_id: str, link_code: str) -> str:
    # The code is a secret: only its digest goes into the key eManageCRM stores.
    code = hashlib.sha256(link_code.upper().encode()).hexdigest()[:32]
    return f"emanage-switch:{kind}:{shop}:{subscription_id}:{code}"


async def _link(
    client: EmanageClient, current: _Current, *, shop: str, subscription_id: str, link_code: str
) -> Account:
    try:
        return await client.link_account(
            shop_domain=shop,
            subscription_id=subscription_id,
            link_code=link_code,
            idempotency_key=_key("link", shop, subscription_id, link_code),
            replaces_account_id=current.account_id,
        )
    except EmanageValidationError as exc:
        if exc.code == "link_code_invalid":
            raise LinkRefused(LINK_CODE_HELP, reason="link_code") from exc
        raise LinkRefused(
            merchant_message(exc, doing="link your subscription"), reason="refused"
        ) from exc
    except EmanageConflict as exc:
        if exc.code == "subscription_already_linked":
            raise LinkRefused(
                "That eManageCRM subscription is already connected to a store. Check the "
                "subscription id, or ask eManageCRM support to release it.",
                reason="already_linked",
            ) from exc
        raise LinkRefused(
            "eManageCRM no longer has this store on the shared account we know of; reload "
            "the page and try again.",
            reason="refused",
        ) from exc
    except EmanageTransientError as exc:
        raise LinkUnavailable(
            "eManageCRM is not answering right now; send the same code again in a minute."
        ) from exc
    except EmanageError as exc:
        raise LinkRefused(
            merchant_message(exc, doing="link your subscription"), reason="refused"
        ) from exc


async def _owner(client: EmanageClient, account: Account, current: _Current, key: str) -> str:
    try:
        user = await client.create_user(
            account_id=account.id,
            email=current.email,
            name=current.shop_name,
            role="owner",
            idempotency_key=key,
        )
        return str(user.id)
    except EmanageConflict as exc:
        if exc.existing_id is not None:
            return exc.existing_id
        users = await client.list_users(account_id=account.id)
        match = next((u for u in users if u.email.lower() == current.email.lower()), None)
        if match is None:
            raise LinkRefused(
                merchant_message(exc, doing="add you as the owner user"), reason="refused"
            ) from exc
        return str(match.id)
    except EmanageTransientError as exc:
        raise LinkUnavailable(
            "Your subscription is linked but eManageCRM is not answering; send the same code "
            "again in a minute to finish."
        ) from exc
    except EmanageError as exc:
        raise LinkRefused(
            merchant_message(exc, doing="add you as the owner user"), reason="refused"
        ) from exc


def _record(session: Session, current: _Current, account: Account, owner_user_id: str) -> None:
    row = session.scalar(select(EmanageAccount).where(EmanageAccount.shop_id == current.shop_id))
    if row is None or row.account_id != current.account_id:
        raise LinkRefused(
            "The store's eManageCRM account changed while linking; reload the page.",
            reason="refused",
        )
    row.account_id = str(account.id)
    row.kind = account.kind
    row.cid = str(account.cid)
    row.websales_api_url = account.websales_api_url
    row.subscription_id = str(account.subscription_id) if account.subscription_id else None
    row.owner_user_id = owner_user_id


async def link_dedicated_account(
    sessions: sessionmaker[Session],
    vault: Vault,
    client: EmanageClient,
    catalog: Catalog,
    *,
    shop: str,
    subscription_id: str,
    link_code: str,
) -> LinkOutcome:
    """Connect ``shop`` (domain) to the merchant's own eManageCRM subscription.

    Raises LinkRefused (plan, bad input, bad code, subscription taken, sign-up not finished)
    or LinkUnavailable (eManageCRM down; the same request may be sent again).
    """
    subscription, code = _clean(subscription_id, link_code)

    def prepare() -> _Current | LinkOutcome:
        with sessions() as session, session.begin():
            return _prepare(
                session, vault, catalog, shop=shop, subscription_id=subscription, link_code=code
            )

    current = await anyio.to_thread.run_sync(prepare)
    if isinstance(current, LinkOutcome):
        return current
    account = await _link(client, current, shop=shop, subscription_id=subscription, link_code=code)
    owner = await _owner(client, account, current, _key("owner", shop, subscription, code))

    def record() -> None:
        with sessions() as session, session.begin():
            _record(session, current, account, owner)

    await anyio.to_thread.run_sync(record)
    return LinkOutcome(queued=False, account_id=str(account.id), kind=account.kind)
