"""How the app's settings start the local sandboxes (used by ``make run``, the CLI and tests).

This is the one place that turns :class:`~syncapp.config.Settings` into sandbox
configuration; the sandboxes themselves know nothing of the app.
"""

from __future__ import annotations

from pathlib import Path
from typing import TYPE_CHECKING

from syncapp.config import Settings
from syncapp.sandbox.shopify.config import SandboxConfig, load_subscriptions
from syncapp.sandbox.shopify.oauth import load_access_scopes

if TYPE_CHECKING:
    from syncapp.sandbox.ctrwow import CtrwowSandboxConfig
    from syncapp.sandbox.emanage import EmanageSandboxConfig


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
    from syncapp.sandbox.shopify.app import create_app
    from syncapp.serving import serve

    config = shopify_sandbox_config(settings)
    for shop in seed_shops:
        seed_shop(config, shop, settings.sandbox_seed_products)
    serve(create_app(config), host="127.0.0.1", port=settings.sandbox_shopify_port)


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


# --- eManageCRM and CTRwow (the sign-up's two systems) ----------------------------------------


def emanage_sandbox_config(
    settings: Settings, *, data_dir: Path | None = None
) -> EmanageSandboxConfig:
    """The eManageCRM sandbox with the app's system client registered in its IAM."""
    from syncapp.sandbox.emanage import EmanageSandboxConfig, SystemClient

    assert settings.emanage_client_secret is not None
    base = data_dir or settings.data_dir / "sandbox"
    return EmanageSandboxConfig(
        database_path=base / "emanage.db",
        public_url=f"http://127.0.0.1:{settings.sandbox_emanage_port}",
        clients=(
            SystemClient(
                settings.emanage_client_id, settings.emanage_client_secret.get_secret_value()
            ),
        ),
    )


def sandbox_emanage_token(settings: Settings, shop: str) -> str:
    """An account token of the local eManageCRM for the tenant of ``shop`` (every scope of the
    app's system client, the token endpoint's lifetime), as the connector would get it."""
    import time

    from syncapp.sandbox.emanage.db import EmanageDB
    from syncapp.sandbox.emanage.iam import issue_opaque_token

    config = emanage_sandbox_config(settings)
    client = config.client(settings.emanage_client_id)
    assert client is not None
    if not config.database_path.exists():
        raise LookupError(f"the local eManageCRM has no state at {config.database_path} yet")
    db = EmanageDB(config.database_path)
    try:
        with db.transaction() as conn:
            row = conn.execute(
                "SELECT id, owner_client_id, status FROM accounts WHERE shop_domain = ?", (shop,)
            ).fetchone()
            if row is None or row["owner_client_id"] != client.client_id:
                raise LookupError(f"the local eManageCRM has no account of {shop}")
            if row["status"] != "active":
                raise LookupError(f"the eManageCRM account of {shop} is {row['status']}")
            return issue_opaque_token(
                conn,
                client_id=client.client_id,
                account_id=row["id"],
                scopes=client.scopes,
                now=time.time(),
                ttl_seconds=config.token_ttl_seconds,
            )
    finally:
        db.close()


def ctrwow_sandbox_config(
    settings: Settings, *, data_dir: Path | None = None
) -> CtrwowSandboxConfig:
    """The CTRwow sandbox with the app registered as a partner client (redirect URI exact)."""
    from syncapp.sandbox.ctrwow import CtrwowClientRegistration, CtrwowSandboxConfig

    assert settings.ctrwow_client_secret is not None
    base = data_dir or settings.data_dir / "sandbox"
    return CtrwowSandboxConfig(
        database_path=base / "ctrwow.db",
        clients=(
            CtrwowClientRegistration(
                settings.ctrwow_client_id,
                settings.ctrwow_client_secret.get_secret_value(),
                (settings.ctrwow_redirect_uri,),
                partner=True,
                name="Shopify Sync App",
            ),
        ),
        public_url=f"http://127.0.0.1:{settings.sandbox_ctrwow_port}",
    )


def serve_emanage_sandbox(settings: Settings) -> None:
    """Serve the eManageCRM sandbox on SYNCAPP_SANDBOX_EMANAGE_PORT until interrupted."""
    from syncapp.sandbox.emanage import create_app
    from syncapp.serving import serve

    serve(
        create_app(emanage_sandbox_config(settings)),
        host="127.0.0.1",
        port=settings.sandbox_emanage_port,
    )


def serve_ctrwow_sandbox(settings: Settings) -> None:
    """Serve the CTRwow sandbox on SYNCAPP_SANDBOX_CTRWOW_PORT until interrupted."""
    from syncapp.sandbox.ctrwow import create_app
    from syncapp.serving import serve

    serve(
        create_app(ctrwow_sandbox_config(settings)),
        host="127.0.0.1",
        port=settings.sandbox_ctrwow_port,
    )
