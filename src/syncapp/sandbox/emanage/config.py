"""Settings of the eManageCRM sandbox: where its state lives, its public address, and the
system clients (the Sync App's identity) registered with its IAM.

A real eManageCRM registers the Sync App's system client out of band (eManageCRM staff issue a
client id and secret); the sandbox takes them from here at start, so ``make run`` and the tests
hand it exactly the credentials they give the app.
"""

from __future__ import annotations

from dataclasses import dataclass, field
from pathlib import Path

ALL_SCOPES: tuple[str, ...] = (
    "accounts:read",
    "accounts:write",
    "users:read",
    "users:write",
    "sso:write",
    "providers:read",
    "webhooks:read",
    "webhooks:write",
    "products:read",
    "products:write",
    # The Sync App's own Sync API, for eManageCRM's services (JWTs with resource=<app>/api).
    "sync:read",
    "sync:write",
    "dlq:replay",
)


@dataclass(frozen=True)
class SystemClient:
    """One OAuth client allowed the client-credentials grant (secret masked in ``repr``)."""

    client_id: str
    client_secret: str = field(repr=False)
    scopes: tuple[str, ...] = ALL_SCOPES
    name: str = "Shopify Sync App"


@dataclass(frozen=True)
class EmanageSandboxConfig:
    """Everything the eManageCRM sandbox needs to run; built once at start."""

    database_path: Path
    public_url: str = "http://127.0.0.1:8200"
    clients: tuple[SystemClient, ...] = ()
    token_ttl_seconds: int = 900
    sso_link_ttl_seconds: int = 300
    session_ttl_seconds: int = 8 * 3600
    link_code_ttl_seconds: int = 1800
    idempotency_ttl_seconds: int = 24 * 3600
    # Notification delivery (notifications.py): how often the deliverer looks for work, and the
    # retry schedule of a failed delivery (exponential, equal jitter, then given up).
    notification_poll_seconds: float = 0.05
    notification_retry_base_seconds: float = 1.0
    notification_retry_cap_seconds: float = 600.0
    notification_max_attempts: int = 12
    # None: the contract in the source tree (docs/contracts/emanage.openapi.yaml).
    contract_path: Path | None = None

    def client(self, client_id: str) -> SystemClient | None:
        """The registered client with this id, if any."""
        return next((c for c in self.clients if c.client_id == client_id), None)
