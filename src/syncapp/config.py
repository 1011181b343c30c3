"""Settings: parsed once at start from ``SYNCAPP_*`` environment variables, passed explicitly.

The defaults are the embedded mode (``make run``): SQLite under ``./var/``, the local
sandboxes on, the app on port 8000 and the Shopify sandbox on 8100. Production sets
``SYNCAPP_ENV=production``, a PostgreSQL ``SYNCAPP_DATABASE_URL``, real Shopify credentials
and ``SYNCAPP_SECRET_KEY``; then no secret is ever generated and a missing one is an error.
Every field is documented in ``docs/configuration.md``.
"""

from __future__ import annotations

import secrets
import tomllib
from pathlib import Path
from typing import Any, Literal

from cryptography.fernet import Fernet
from pydantic import Field, SecretStr, ValidationError, field_validator, model_validator
from pydantic_settings import BaseSettings, SettingsConfigDict
from sqlalchemy.engine import make_url

from syncapp.errors import ConfigError

ENV_PREFIX = "SYNCAPP_"
PROJECT_ROOT = Path(__file__).resolve().parents[2]
APP_TOML = PROJECT_ROOT / "shopify.app.toml"


def _toml_client_id() -> str:
    try:
        return str(tomllib.loads(APP_TOML.read_text(encoding="utf-8"))["client_id"])
    except (OSError, KeyError, tomllib.TOMLDecodeError):
        return ""


class Settings(BaseSettings):
    """All configuration of the app. Field ``x`` is set by the variable ``SYNCAPP_X``."""

    model_config = SettingsConfigDict(
        env_prefix=ENV_PREFIX, env_file=None, extra="ignore", validate_default=True
    )

    env: Literal["development", "production", "test"] = "development"
    data_dir: Path = Path("var")
    database_url: str = Field(default="", repr=False)
    secret_key: SecretStr | None = None

    host: str = "127.0.0.1"
    port: int = Field(default=8000, ge=1, le=65535)
    public_url: str = ""
    # Two processes: measured best for webhook ingest on 2 cores (docs/PERFORMANCE.md).
    web_workers: int = Field(default=2, ge=1, le=64)

    # Bearer token /metrics requires; without one, /metrics is refused in production.
    metrics_token: SecretStr | None = None

    log_level: Literal["debug", "info", "warning", "error"] = "info"
    log_format: Literal["json", "console"] = "json"

    shopify_client_id: str = Field(default_factory=_toml_client_id)
    shopify_client_secret: SecretStr | None = None
    shopify_old_client_secret: SecretStr | None = None
    shopify_api_version: str = "2026-10"
    shopify_app_toml: Path = APP_TOML
    # Where https://<shop>.myshopify.com is served; empty means the real Shopify.
    shopify_base_url: str = ""

    sandbox: bool = True
    sandbox_shopify_port: int = Field(default=8100, ge=1, le=65535)
    sandbox_seed_products: int = Field(default=50, ge=0)
    # `syncapp run` opens the app once for the demo shop, as its merchant would in the sandbox
    # admin (a real token exchange): the sign-up runs and the catalog syncs with no clicking.
    # Off for the browser tests that install the app themselves.
    sandbox_demo_install: bool = True

    # --- eManageCRM and CTRwow: the automatic sign-up (syncapp.onboarding) ----------------
    # Base URLs default to the local sandboxes when SYNCAPP_SANDBOX is on; the system client
    # credentials are generated into data_dir in embedded mode and required in production.
    emanage_base_url: str = ""
    emanage_client_id: str = ""
    emanage_client_secret: SecretStr | None = None
    sandbox_emanage_port: int = Field(default=8200, ge=1, le=65535)
    # eManageCRM notifications (POST /webhooks/emanage): the signing secret the worker gives
    # the app's subscription, and the previous one while a rotation is under way. Generated
    # into data_dir in embedded mode; required in production (docs/adr/0019).
    emanage_webhook_secret: SecretStr | None = None
    emanage_webhook_old_secret: SecretStr | None = None
    ctrwow_base_url: str = ""
    ctrwow_client_id: str = ""
    ctrwow_client_secret: SecretStr | None = None
    # Default {public_url}/ctrwow/callback; CTRwow matches it character for character.
    ctrwow_redirect_uri: str = ""
    sandbox_ctrwow_port: int = Field(default=8300, ge=1, le=65535)
    # --- end eManageCRM and CTRwow --------------------------------------------------------

    # --- App Home and billing (syncapp.web.app_home, syncapp.billing) ---------------------
    # Where App Bridge and Polaris are loaded from; the Shopify sandbox serves stand-ins.
    shopify_admin_assets_url: str = "https://cdn.shopify.com/shopifycloud"
    # The admin that frames the app (CSP frame-ancestors, billing returnUrl); the sandbox's own.
    shopify_admin_url: str = "https://admin.shopify.com"
    # JSON list of plans replacing the built-in catalog (syncapp.billing.plans); empty: built-in.
    billing_plans: str = ""
    # --- end App Home and billing ---------------------------------------------------------

    webhook_max_bytes: int = Field(default=1024 * 1024, ge=1024)
    ingest_batch_size: int = Field(default=256, ge=1, le=4096)
    # How long a webhook waits for SQLite's write lock (another process writing) before it is
    # answered 503 for Shopify to redeliver: well inside Shopify's 5 s.
    ingest_lock_wait_seconds: float = Field(default=3.0, gt=0, le=4.5)

    # Refresh the Shopify offline token when less than this is left (it lives an hour).
    shopify_token_refresh_margin_seconds: int = Field(default=300, ge=0, le=3000)

    worker_batch_size: int = Field(default=32, ge=1, le=1000)
    worker_poll_seconds: float = Field(default=0.5, gt=0, le=60)
    worker_max_attempts: int = Field(default=8, ge=1, le=100)
    worker_backoff_base_seconds: float = Field(default=2.0, ge=0)
    worker_backoff_cap_seconds: float = Field(default=900.0, ge=0)
    # A claimed event whose worker has not finished it within this time is claimed again.
    worker_lease_seconds: float = Field(default=300.0, gt=0)
    # The bus's back-end: empty for the embedded one (the app's database), or an amqp:// URL
    # of RabbitMQ (then the worker also relays the outbox to it). docs/adr/0013.
    bus_url: str = Field(default="", repr=False)
    # RabbitMQ: how long the relay leases the events of a round while it publishes them; a
    # relay that died mid-round holds them (and their keys) that long before another sends
    # them again (a second copy is harmless: consumers' receipts).
    bus_relay_lease_seconds: float = Field(default=60.0, gt=0)
    # Processed inbound events (payloads carry customer data) are deleted this long after
    # processing. At least two days: the rows are also what recognises Shopify's redeliveries.
    inbound_retention_hours: float = Field(default=168.0, ge=48)
    # The product sync's backfill and reconcile sweep (docs/adr/0023): how often a running bulk
    # export is polled, how many JSONL lines of not yet complete products may wait in memory,
    # and how often each shop is swept for changes a lost notification missed.
    sync_backfill_poll_seconds: float = Field(default=2.0, gt=0, le=300)
    sync_backfill_buffer_lines: int = Field(default=10_000, ge=100, le=1_000_000)
    sync_reconcile_interval_seconds: float = Field(default=900.0, ge=1)

    @field_validator("shopify_api_version")
    @classmethod
    def _api_version_shape(cls, value: str) -> str:
        year, _, month = value.partition("-")
        if not (year.isdigit() and month in {"01", "04", "07", "10"}):
            raise ValueError("must be a Shopify API version such as 2026-10")
        return value

    @field_validator("database_url")
    @classmethod
    def _database_url_parses(cls, value: str) -> str:
        if value:
            try:
                url = make_url(value)
            except Exception as exc:
                raise ValueError(f"not a database URL ({exc})") from None
            if url.get_backend_name() not in {"sqlite", "postgresql"}:
                raise ValueError("only sqlite:// and postgresql:// URLs are supported")
        return value

    @model_validator(mode="after")
    def _fill_embedded_defaults(self) -> Settings:
        if not self.database_url:
            self.database_url = f"sqlite:///{self.data_dir / 'syncapp.db'}"
        if not self.public_url:
            self.public_url = f"http://{self.host}:{self.port}"
        if self.sandbox and not self.shopify_base_url:
            self.shopify_base_url = f"http://127.0.0.1:{self.sandbox_shopify_port}"
        if self.sandbox and not self.emanage_base_url:
            self.emanage_base_url = f"http://127.0.0.1:{self.sandbox_emanage_port}"
        if self.sandbox and not self.ctrwow_base_url:
            self.ctrwow_base_url = f"http://127.0.0.1:{self.sandbox_ctrwow_port}"
        # The Shopify sandbox is both the shop's API host and the admin around the app.
        sandbox_admin = self.shopify_base_url.rstrip("/")
        if self.sandbox and self.shopify_admin_url == "https://admin.shopify.com":
            self.shopify_admin_url = sandbox_admin
        if self.sandbox and self.shopify_admin_assets_url == "https://cdn.shopify.com/shopifycloud":
            self.shopify_admin_assets_url = f"{sandbox_admin}/shopifycloud"
        if not self.ctrwow_redirect_uri:
            self.ctrwow_redirect_uri = f"{self.public_url.rstrip('/')}/ctrwow/callback"
        if self.env == "production":
            missing = [
                name
                for name, value in (
                    ("SECRET_KEY", self.secret_key),
                    ("SHOPIFY_CLIENT_SECRET", self.shopify_client_secret),
                    ("EMANAGE_BASE_URL", self.emanage_base_url or None),
                    ("EMANAGE_CLIENT_ID", self.emanage_client_id or None),
                    ("EMANAGE_CLIENT_SECRET", self.emanage_client_secret),
                    ("EMANAGE_WEBHOOK_SECRET", self.emanage_webhook_secret),
                    ("CTRWOW_BASE_URL", self.ctrwow_base_url or None),
                    ("CTRWOW_CLIENT_ID", self.ctrwow_client_id or None),
                    ("CTRWOW_CLIENT_SECRET", self.ctrwow_client_secret),
                )
                if value is None
            ]
            if missing:
                names = ", ".join(ENV_PREFIX + m for m in missing)
                raise ValueError(f"{names} must be set in production")
            if self.sandbox:
                raise ValueError("SYNCAPP_SANDBOX must be false in production")
        return self

    @property
    def masked_database_url(self) -> str:
        """The database URL with its password hidden, safe for logs."""
        return make_url(self.database_url).render_as_string(hide_password=True)

    @property
    def emanage_webhook_url(self) -> str:
        """Where eManageCRM delivers the app's notifications."""
        return f"{self.public_url.rstrip('/')}/webhooks/emanage"

    @property
    def exports_dir(self) -> Path:
        """Where customer data exports are written (``<shop>/<request id>.json``)."""
        return self.data_dir / "exports"

    @property
    def billing_test_charges(self) -> bool:
        """Charges are test charges (no money moves) everywhere but production."""
        return self.env != "production"

    @property
    def is_sqlite(self) -> bool:
        return make_url(self.database_url).get_backend_name() == "sqlite"

    def __repr_args__(self) -> Any:
        yield from super().__repr_args__()
        yield "database_url", self.masked_database_url


def subscribed_topics(app_toml: Path) -> frozenset[str]:
    """Every webhook topic ``shopify.app.toml`` subscribes to (compliance topics included)."""
    try:
        data = tomllib.loads(app_toml.read_text(encoding="utf-8"))
    except (OSError, tomllib.TOMLDecodeError) as exc:
        raise ConfigError(f"SYNCAPP_SHOPIFY_APP_TOML: cannot read {app_toml}: {exc}") from None
    topics: set[str] = set()
    for entry in data.get("webhooks", {}).get("subscriptions", []):
        topics.update(entry.get("topics", ()))
        topics.update(entry.get("compliance_topics", ()))
    return frozenset(topics)


def load_settings(**overrides: Any) -> Settings:
    """Read settings from the environment (and ``overrides``); errors name the variable."""
    try:
        return Settings(**overrides)
    except ValidationError as exc:
        problems = []
        for err in exc.errors():
            field = ".".join(str(p) for p in err["loc"]) or "settings"
            variable = ENV_PREFIX + field.upper() if err["loc"] else "SYNCAPP_*"
            problems.append(f"{variable}: {err['msg']}")
        raise ConfigError("invalid configuration:\n  " + "\n  ".join(problems)) from None


def _read_or_create(path: Path, make: Any) -> str:
    """Read a generated secret from ``path``, creating it (mode 0600) on first use."""
    if path.exists():
        return path.read_text(encoding="utf-8").strip()
    from syncapp.store.files import private_dirs

    private_dirs(path.parent)
    value = str(make())
    fd = path.open("x", encoding="utf-8")
    with fd:
        path.chmod(0o600)
        fd.write(value + "\n")
    return value


def ensure_embedded_secrets(settings: Settings) -> Settings:
    """In embedded mode, generate the vault key and a development Shopify secret into data_dir.

    Production never gets here with a missing secret (the validator refuses it), so nothing is
    generated where a real key is expected.
    """
    updates: dict[str, Any] = {}
    if settings.secret_key is None:
        key = _read_or_create(
            settings.data_dir / "secret.key", lambda: Fernet.generate_key().decode()
        )
        updates["secret_key"] = SecretStr(key)
    if settings.shopify_client_secret is None:
        secret = _read_or_create(
            settings.data_dir / "shopify_client_secret", lambda: secrets.token_hex(32)
        )
        updates["shopify_client_secret"] = SecretStr(secret)
    if settings.emanage_webhook_secret is None:
        secret = _read_or_create(
            settings.data_dir / "emanage_webhook_secret", lambda: "whsec_" + secrets.token_hex(32)
        )
        updates["emanage_webhook_secret"] = SecretStr(secret)
    updates.update(_embedded_system_clients(settings))
    return settings.model_copy(update=updates) if updates else settings


def _embedded_system_clients(settings: Settings) -> dict[str, Any]:
    """With the sandboxes on, the app's eManageCRM and CTRwow system clients, generated into
    data_dir once; the sandboxes register exactly these (``syncapp.sandbox_runner``)."""
    if not settings.sandbox:
        return {}
    generated: dict[str, Any] = {}
    for provider in ("emanage", "ctrwow"):
        if not getattr(settings, f"{provider}_client_id"):
            generated[f"{provider}_client_id"] = _read_or_create(
                settings.data_dir / f"{provider}_client_id",
                lambda p=provider: f"syncapp-{p}-{secrets.token_hex(4)}",
            )
        if getattr(settings, f"{provider}_client_secret") is None:
            generated[f"{provider}_client_secret"] = SecretStr(
                _read_or_create(
                    settings.data_dir / f"{provider}_client_secret", lambda: secrets.token_hex(32)
                )
            )
    return generated
