"""Settings of the CTRwow sandbox: where its state lives, its public URL and the OAuth clients
registered with it (the Sync App is one, usually a partner client)."""

from __future__ import annotations

from dataclasses import dataclass, field
from pathlib import Path

ALL_SCOPES = ("account:read", "templates:read", "sites:write", "publish")
PARTNER_SCOPE = "partner:accounts"

# The contract lives with the docs; a checkout has it at this path relative to the package.
DEFAULT_CONTRACT_PATH = (
    Path(__file__).resolve().parents[4] / "docs" / "contracts" / "ctrwow.openapi.yaml"
)


@dataclass(frozen=True)
class CtrwowClientRegistration:
    """One registered OAuth client. Redirect URIs are matched exactly, character for character.

    A ``partner`` client may also use the client_credentials grant and the ``/partner/v1`` API.
    ``scopes`` are those it may request (default: every account scope).
    """

    client_id: str
    client_secret: str = field(repr=False)
    redirect_uris: tuple[str, ...] = ()
    partner: bool = False
    name: str = ""
    scopes: tuple[str, ...] = ALL_SCOPES

    @property
    def display_name(self) -> str:
        return self.name or self.client_id


@dataclass(frozen=True)
class CtrwowSandboxConfig:
    """Everything the CTRwow sandbox needs to run; built once at start."""

    database_path: Path
    clients: tuple[CtrwowClientRegistration, ...]
    public_url: str = "http://127.0.0.1:8300"
    access_token_ttl: int = 3600
    refresh_token_ttl: int = 60 * 86400
    # A replaced refresh token used again within this many seconds, while its replacement is
    # still unused, is a lost race (answered with the same replacement), not a theft.
    refresh_grace_seconds: int = 30
    code_ttl: int = 600
    idempotency_ttl: int = 86400
    # When set, /_sandbox/ routes require ``X-Sandbox-Token: <control_token>``.
    control_token: str | None = field(default=None, repr=False)
    contract_path: Path = DEFAULT_CONTRACT_PATH
    # PBKDF2 rounds for account passwords; tests may lower it to stay fast.
    password_rounds: int = 100_000

    def client(self, client_id: str) -> CtrwowClientRegistration | None:
        """The registration of ``client_id``, or None when unknown."""
        for registration in self.clients:
            if registration.client_id == client_id:
                return registration
        return None

    @property
    def issuer(self) -> str:
        return self.public_url.rstrip("/")
