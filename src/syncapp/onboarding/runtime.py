"""OnboardingRuntime: what the onboarding runner and the token helper share in one process —
sessions, vault, the two connectors, the retry policy, the lease and this runner's identity.
Built once from settings (:func:`open_onboarding`) and passed explicitly."""

from __future__ import annotations

import os
import random
import socket
import uuid
from collections.abc import AsyncIterator, Callable
from contextlib import asynccontextmanager
from dataclasses import dataclass, field
from datetime import UTC, datetime

import httpx
from sqlalchemy import Engine
from sqlalchemy.orm import Session, sessionmaker

from syncapp.bus.retry import RetryPolicy
from syncapp.config import Settings
from syncapp.connectors.ctrwow import CtrwowClient
from syncapp.connectors.emanage import EmanageClient
from syncapp.onboarding.plan import SIGNUP_RETRY
from syncapp.store.db import make_session_factory
from syncapp.store.vault import Vault

# Long enough for one step's requests (each bounded by the HTTP timeout below), short enough
# that a crashed runner's job is picked up again soon.
DEFAULT_LEASE_SECONDS = 60.0
HTTP_TIMEOUT = httpx.Timeout(10.0, connect=5.0)


def utcnow() -> datetime:
    return datetime.now(UTC)


def new_runner_id() -> str:
    """Unique per process and runtime: host, pid and a random suffix."""
    return f"{socket.gethostname()}:{os.getpid()}:{uuid.uuid4().hex[:8]}"


@dataclass(frozen=True)
class OnboardingRuntime:
    """Everything the sign-up needs; ``clock`` and ``jitter`` are injectable for tests."""

    sessions: sessionmaker[Session]
    vault: Vault
    emanage: EmanageClient
    ctrwow: CtrwowClient
    policy: RetryPolicy = SIGNUP_RETRY
    lease_seconds: float = DEFAULT_LEASE_SECONDS
    runner_id: str = field(default_factory=new_runner_id)
    clock: Callable[[], datetime] = utcnow
    jitter: Callable[[], float] = random.random
    # Refresh a CTRwow access token when less than this is left.
    token_margin_seconds: float = 120.0


@asynccontextmanager
async def open_onboarding(
    settings: Settings,
    engine: Engine,
    *,
    policy: RetryPolicy | None = None,
    lease_seconds: float = DEFAULT_LEASE_SECONDS,
) -> AsyncIterator[OnboardingRuntime]:
    """The runtime for ``settings`` on ``engine``, with one HTTP client closed on exit.

    The system client credentials must be present (``ensure_embedded_secrets`` in embedded
    mode; the settings validator requires them in production).
    """
    if settings.secret_key is None:
        raise ValueError("call ensure_embedded_secrets(settings) before open_onboarding")
    if settings.emanage_client_secret is None or settings.ctrwow_client_secret is None:
        raise ValueError(
            "SYNCAPP_EMANAGE_CLIENT_SECRET and SYNCAPP_CTRWOW_CLIENT_SECRET must be set "
            "(they are generated into the data dir only when SYNCAPP_SANDBOX is on)"
        )
    async with httpx.AsyncClient(timeout=HTTP_TIMEOUT) as http:
        yield OnboardingRuntime(
            sessions=make_session_factory(engine),
            vault=Vault(settings.secret_key.get_secret_value()),
            emanage=EmanageClient(
                http,
                settings.emanage_base_url,
                settings.emanage_client_id,
                settings.emanage_client_secret.get_secret_value(),
            ),
            ctrwow=CtrwowClient(
                http,
                base_url=settings.ctrwow_base_url,
                client_id=settings.ctrwow_client_id,
                client_secret=settings.ctrwow_client_secret.get_secret_value(),
            ),
            policy=policy or SIGNUP_RETRY,
            lease_seconds=lease_seconds,
        )
