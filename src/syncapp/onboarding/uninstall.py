"""The CTRwow part of ``app/uninstalled``: an uninstall hook that revokes the shop's CTRwow
grant at CTRwow (RFC 7009), deletes the CTRwow tokens from the vault and marks the ``ctrwow``
connection ``uninstalled`` (and drops the shop's pending CTRwow authorizations).

The hook runs inside the worker's uninstall transaction (``hook(session, shop)``), which is
synchronous, so the revocation runs on a short-lived event loop of its own. CTRwow being
unreachable must not block the uninstall: the local tokens are deleted anyway, the failure is
logged, and the connection's ``detail`` keeps a durable record (``revocation failed: …``
with the CTRwow account id) for an operator, who can end the grant with the partner API
(issuing new account tokens revokes the earlier grants). Idempotent: with no tokens left,
a second delivery only re-marks the connection.
"""

from __future__ import annotations

import asyncio

import httpx
import structlog
from sqlalchemy import delete, select
from sqlalchemy.orm import Session

from syncapp.config import Settings
from syncapp.connectors.ctrwow import CtrwowClient, CtrwowError
from syncapp.onboarding.models import CtrwowAccount, CtrwowAuthorization
from syncapp.onboarding.runner import set_connection
from syncapp.shops.uninstall import UninstallHook
from syncapp.store.models import Connection, Credential, Shop
from syncapp.store.vault import Vault, get_secret

log = structlog.get_logger("syncapp.onboarding.uninstall")

PROVIDER = "ctrwow"
UNINSTALLED = "uninstalled"
REVOCATION_FAILED = "revocation failed"
# Short: the revocation runs while the uninstall transaction holds the shop's row.
REVOKE_TIMEOUT = httpx.Timeout(5.0, connect=3.0)


async def _revoke_all(client: CtrwowClient, tokens: list[tuple[str, str]]) -> None:
    for token, hint in tokens:
        await client.revoke(token, token_type_hint=hint)


def _revoke(settings: Settings, tokens: list[tuple[str, str]]) -> None:
    """Revoke ``tokens`` (value, hint) in order; raises CtrwowError or ValueError."""
    secret = settings.ctrwow_client_secret
    if secret is None:
        raise ValueError("SYNCAPP_CTRWOW_CLIENT_SECRET is not set, so nothing can be revoked")

    async def run() -> None:
        async with httpx.AsyncClient(timeout=REVOKE_TIMEOUT) as http:
            client = CtrwowClient(
                http,
                base_url=settings.ctrwow_base_url,
                client_id=settings.ctrwow_client_id,
                client_secret=secret.get_secret_value(),
            )
            await _revoke_all(client, tokens)

    asyncio.run(run())


def revoke_ctrwow_on_uninstall(settings: Settings) -> UninstallHook:
    """The uninstall hook for ``settings`` (its CTRwow client credentials and vault key)."""
    if settings.secret_key is None:
        raise ValueError("call ensure_embedded_secrets(settings) before building the hook")
    vault = Vault(settings.secret_key.get_secret_value())

    def hook(session: Session, shop: Shop) -> None:
        names = ("refresh_token", "access_token")
        tokens = [
            (value, name)
            for name in names
            if (value := get_secret(session, vault, shop_id=shop.id, provider=PROVIDER, name=name))
            is not None
        ]
        failure: str | None = None
        detail: str | None
        if tokens:
            # The refresh token first: revoking it ends the whole grant, access token included.
            try:
                _revoke(settings, tokens)
            except (CtrwowError, ValueError) as exc:
                failure = str(exc)
        session.execute(
            delete(Credential).where(Credential.shop_id == shop.id, Credential.provider == PROVIDER)
        )
        # A connection the merchant started but did not finish must not complete any more.
        session.execute(delete(CtrwowAuthorization).where(CtrwowAuthorization.shop_id == shop.id))
        account_id = session.scalar(
            select(CtrwowAccount.account_id).where(CtrwowAccount.shop_id == shop.id)
        )
        connection = session.scalar(
            select(Connection).where(Connection.shop_id == shop.id, Connection.provider == PROVIDER)
        )
        if failure is not None:
            detail = (
                f"{REVOCATION_FAILED}: the CTRwow grant of account {account_id} may still be "
                f"live ({failure}); local tokens were deleted"
            )
            log.error(
                "uninstall.ctrwow_revoke_failed",
                shop=shop.domain,
                account_id=account_id,
                error=failure,
            )
        elif connection is not None and (connection.detail or "").startswith(REVOCATION_FAILED):
            detail = connection.detail  # a redelivery must not erase the record of a failure
        else:
            detail = "app uninstalled from the Shopify admin; CTRwow access revoked"
        if connection is None and not tokens and account_id is None:
            return  # the shop never reached CTRwow
        set_connection(session, shop.id, PROVIDER, UNINSTALLED, detail)
        log.info(
            "uninstall.ctrwow_done",
            shop=shop.domain,
            revoked=len(tokens) if failure is None else 0,
        )

    return hook
