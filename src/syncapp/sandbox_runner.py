"""How the app's settings start the local sandboxes (used by ``make run``, the CLI and tests).

This is the one place that turns :class:`~syncapp.config.Settings` into sandbox
configuration; the sandboxes themselves know nothing of the app.
"""

from __future__ import annotations

from pathlib import Path

from syncapp.config import Settings
from syncapp.sandbox.shopify.config import SandboxConfig, load_subscriptions
from syncapp.sandbox.shopify.oauth import load_access_scopes


def shopify_sandbox_config(settings: Settings, *, data_dir: Path | None = None) -> SandboxConfig:
    """The Shopify sandbox that serves this app: same client id/secret, webhooks to its URL."""
    assert settings.shopify_client_secret is not None
    base = data_dir or settings.data_dir / "sandbox"
    return SandboxConfig(
        database_path=base / "shopify.db",
        client_id=settings.shopify_client_id,
        client_secret=settings.shopify_client_secret.get_secret_value(),
        app_url=settings.public_url.rstrip("/"),
        api_version=settings.shopify_api_version,
        webhook_api_version=settings.shopify_api_version,
        subscriptions=load_subscriptions(settings.shopify_app_toml),
        public_url=f"http://127.0.0.1:{settings.sandbox_shopify_port}",
        extra={"scopes": load_access_scopes(settings.shopify_app_toml)},
    )


def seed_shop(config: SandboxConfig, shop: str, products: int) -> int:
    """Create ``shop`` with the app installed and top it up to ``products`` demo products."""
    from syncapp.sandbox.shopify.db import SandboxDB
    from syncapp.sandbox.shopify.seed import seed_demo_products
    from syncapp.sandbox.shopify.shops import ensure_shop
    from syncapp.sandbox.shopify.state import SandboxState

    state = SandboxState(config=config, db=SandboxDB(config.database_path))
    try:
        with state.db.transaction() as conn:
            domain = ensure_shop(conn, shop).domain
        return seed_demo_products(state, domain, products)
    finally:
        state.db.close()


def serve_shopify_sandbox(settings: Settings, *, seed_shops: list[str]) -> None:
    """Seed the given shops, then serve the Shopify sandbox until interrupted."""
    import uvicorn

    from syncapp.sandbox.shopify.app import create_app

    config = shopify_sandbox_config(settings)
    for shop in seed_shops:
        seed_shop(config, shop, settings.sandbox_seed_products)
    uvicorn.run(
        create_app(config),
        host="127.0.0.1",
        port=settings.sandbox_shopify_port,
        access_log=False,
        log_config=None,
    )


def sandbox_custom_token(settings: Settings, shop: str) -> str:
    """A merchant custom-app Admin API token for ``shop`` (creating the shop if needed)."""
    from syncapp.sandbox.shopify.db import SandboxDB
    from syncapp.sandbox.shopify.shops import ensure_shop
    from syncapp.sandbox.shopify.tokens import issue_custom_token

    config = shopify_sandbox_config(settings)
    db = SandboxDB(config.database_path)
    try:
        with db.transaction() as conn:
            domain = ensure_shop(conn, shop).domain
            return issue_custom_token(conn, domain, config.extra["scopes"])
    finally:
        db.close()
