"""The CTRwow part of ``app/uninstalled``: an uninstall hook that deletes the CTRwow tokens from
the vault, marks the ``ctrwow`` connection ``uninstalled`` (and drops the shop's pending CTRwow
authorizations) inside the worker's uninstall transaction, and revokes the grant at CTRwow
(RFC 7009) once that transaction has committed.

The revocation is a network call, so it runs after the commit (``call_after_commit``) with no
lock held: on SQLite a lock held across it would stall every writer, the webhook ingest
included, for up to the revocation timeouts. The transaction records ``revocation pending: …``
on the connection, with the CTRwow account id; the revocation replaces that with the outcome.
CTRwow being unreachable must not block the uninstall: the local tokens are gone either way, and
``revocation failed: …`` (or a ``revocation pending`` left by a crash in between) is the durable
record for an operator, who can end the grant with the partner API (issuing new account tokens
revokes the earlier grants). Idempotent: with no tokens left, a second delivery only re-marks
the connection and keeps such a record.
"""

from __future__ import annotations

import asyncio
from functools import partial

import httpx
import structlog
from sqlalchemy import Engine, delete, select, update
from sqlalchemy.orm import Session

from syncapp.config import Settings
from syncapp.connectors.ctrwow import CtrwowClient, CtrwowError
from syncapp.onboarding.models import CtrwowAccount, CtrwowAuthorization
from syncapp.onboarding.runner import set_connection
from syncapp.shops.uninstall import UninstallHook
from syncapp.store.locking import call_after_commit
from syncapp.store.models import Connection, Credential, Shop
from syncapp.store.vault import Vault, get_secret

log = structlog.get_logger("syncapp.onboarding.uninstall")

PROVIDER = "ctrwow"
UNINSTALLED = "uninstalled"
REVOCATION_FAILED = "revocation failed"
REVOCATION_PENDING = "revocation pending"
# Short: the worker waits for the revocation before its next event.
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
        if connection is None and not tokens and account_id is None:
            return  # the shop never reached CTRwow
        earlier = (connection.detail or "") if connection is not None else ""
        detail: str
        if tokens:
            detail = (
                f"{REVOCATION_PENDING}: the CTRwow grant of account {account_id} is being revoked"
                " (if this stays, it may still be live); local tokens were deleted"
            )
            engine = session.get_bind()
            assert isinstance(engine, Engine)
            call_after_commit(
                session,
                partial(
                    _revoke_and_record,
                    settings,
                    engine,
                    shop.id,
                    shop.domain,
                    account_id,
                    tokens,
                    detail,
                ),
            )
        elif earlier.startswith((REVOCATION_FAILED, REVOCATION_PENDING)):
            detail = earlier  # a redelivery must not erase the record of an unfinished revocation
        else:
            detail = "app uninstalled from the Shopify admin; CTRwow access revoked"
        set_connection(session, shop.id, PROVIDER, UNINSTALLED, detail)

    return hook


def _revoke_and_record(
    settings: Settings,
    engine: Engine,
    shop_id: int,
    domain: str,
    account_id: str | None,
    tokens: list[tuple[str, str]],
    pending: str,
) -> None:
    """After the uninstall commit: revoke at CTRwow, then replace the pending record."""
    try:
        # The refresh token first: revoking it ends the whole grant, access token included.
        _revoke(settings, tokens)
    except (CtrwowError, ValueError) as exc:
        detail = (
            f"{REVOCATION_FAILED}: the CTRwow grant of account {account_id} may still be "
            f"live ({exc}); local tokens were deleted"
        )
        log.error("uninstall.ctrwow_revoke_failed", shop=domain, account_id=account_id, error=exc)
    else:
        detail = "app uninstalled from the Shopify admin; CTRwow access revoked"
        log.info("uninstall.ctrwow_done", shop=domain, revoked=len(tokens))
    with Session(engine) as session, session.begin():
        # Only our own record: a reinstall meanwhile has its own connection state.
        session.execute(
            update(Connection)
            .where(
                Connection.shop_id == shop_id,
                Connection.provider == PROVIDER,
                Connection.status == UNINSTALLED,
                Connection.detail == pending,
            )
            .values(detail=detail)
        )
