"""ShopsRuntime: what the shop services share, built once from settings and passed explicitly."""

from __future__ import annotations

from dataclasses import dataclass
from datetime import UTC, datetime
from pathlib import Path

import httpx
from shopify_app import ShopifyApp
from sqlalchemy import Engine
from sqlalchemy.orm import Session, sessionmaker

from syncapp.bus.models import InboundEvent
from syncapp.bus.sealed import unseal
from syncapp.config import Settings
from syncapp.connectors.shopify.transport import shopify_client
from syncapp.store.db import make_session_factory
from syncapp.store.vault import Vault


@dataclass(frozen=True, slots=True)
class ShopsRuntime:
    """The engine, vault and Shopify app configuration of one process."""

    engine: Engine
    sessions: sessionmaker[Session]
    vault: Vault
    shopify: ShopifyApp
    api_version: str
    shopify_base_url: str | None
    exports_dir: Path
    refresh_margin_seconds: int = 300

    @classmethod
    def from_settings(cls, settings: Settings, engine: Engine) -> ShopsRuntime:
        """The runtime for ``settings`` on ``engine`` (secrets must be present)."""
        if settings.secret_key is None or settings.shopify_client_secret is None:
            raise ValueError("call ensure_embedded_secrets(settings) before building the runtime")
        old = settings.shopify_old_client_secret
        return cls(
            engine=engine,
            sessions=make_session_factory(engine),
            vault=Vault(settings.secret_key.get_secret_value()),
            shopify=ShopifyApp(
                client_id=settings.shopify_client_id,
                client_secret=settings.shopify_client_secret.get_secret_value(),
                old_client_secret=old.get_secret_value() if old else None,
            ),
            api_version=settings.shopify_api_version,
            shopify_base_url=settings.shopify_base_url or None,
            exports_dir=settings.exports_dir,
            refresh_margin_seconds=settings.shopify_token_refresh_margin_seconds,
        )

    def payload_of(self, event: InboundEvent) -> str:
        """``event``'s payload as JSON text (decrypted when it was stored sealed)."""
        return unseal(self.vault, event.payload)

    def http(self) -> httpx.Client:
        """A new client for ``https://<shop>.myshopify.com`` (the sandbox when configured)."""
        return shopify_client(self.shopify_base_url)


def utc(value: datetime) -> datetime:
    """``value`` as an aware UTC datetime (SQLite returns stored datetimes naive)."""
    return value.replace(tzinfo=UTC) if value.tzinfo is None else value.astimezone(UTC)


def shop_name(domain: str) -> str:
    """``demo.myshopify.com`` → ``demo``, the form shopifyapp's functions take."""
    return domain.removesuffix(".myshopify.com")
