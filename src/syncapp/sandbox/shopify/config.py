"""Settings of the Shopify sandbox: where its state lives and which app it serves.

The sandbox knows exactly one app, as a real shop knows an installed app: its client id and
secret, its URL (webhook URIs in ``shopify.app.toml`` are relative to it) and its webhook
subscriptions.
"""

from __future__ import annotations

import tomllib
from dataclasses import dataclass, field
from pathlib import Path


@dataclass(frozen=True)
class WebhookSubscription:
    """One ``[[webhooks.subscriptions]]`` entry: topics delivered to ``uri``.

    ``name`` (optional, up to 50 of ``[A-Za-z0-9_-]``) is sent as ``X-Shopify-Name``
    (changelog webhook-subscriptions-now-support-a-name-field-for-identification, 2026-04).
    """

    topics: tuple[str, ...]
    uri: str
    name: str | None = None


@dataclass(frozen=True)
class SandboxConfig:
    """Everything the Shopify sandbox needs to run; built once at start."""

    database_path: Path
    client_id: str
    client_secret: str
    app_url: str
    api_version: str = "2026-10"
    webhook_api_version: str = "2026-10"
    subscriptions: tuple[WebhookSubscription, ...] = ()
    # Shopify retries a failed delivery 8 times over about 4 hours; tests shrink the clock.
    webhook_retry_delays: tuple[float, ...] = (10, 30, 60, 300, 900, 1800, 3600, 7200)
    public_url: str = "http://127.0.0.1:8100"
    deliver_webhooks: bool = True
    # Shopify follows products/create at once with products/update (statamic-rad-pack/shopify
    # #239; pitfalls §3); off only for tests that count one event per change.
    update_after_create: bool = True
    extra: dict[str, str] = field(default_factory=dict)


def load_subscriptions(toml_path: Path) -> tuple[WebhookSubscription, ...]:
    """Read the app-specific webhook subscriptions from a ``shopify.app.toml``."""
    data = tomllib.loads(toml_path.read_text(encoding="utf-8"))
    subs = []
    for entry in data.get("webhooks", {}).get("subscriptions", []):
        topics = tuple(entry.get("topics", ())) + tuple(entry.get("compliance_topics", ()))
        name = entry.get("name")
        subs.append(
            WebhookSubscription(
                topics=topics, uri=str(entry["uri"]), name=str(name) if name else None
            )
        )
    return tuple(subs)
