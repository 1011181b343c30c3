"""Shops: installation (token exchange at the first App Home request), the Shopify offline
token with single-flight refresh, uninstall, and the mandatory privacy requests.

    install.py    ensure_installed(): token exchange, shop row, ShopInfo, onboarding hook
    tokens.py     get_admin_token(): a valid access token, refreshed once per shop at a time
    uninstall.py  the app/uninstalled handler (idempotent, needs no token)
    scopes.py     the app/scopes_update handler (the connection's granted scopes)
    privacy.py    shop/redact, customers/redact, customers/data_request handlers
    locking.py    the per-shop write lock, leases for single flight without a lock held
                  during network calls, and after-commit actions
    runtime.py    ShopsRuntime: the engine, vault and Shopify client settings these share
    errors.py     the error tree of this package
"""

from syncapp.shops.errors import (
    ShopError,
    ShopifyReauthorizationRequired,
    ShopifyTokenUnavailable,
    ShopNotInstalled,
)
from syncapp.shops.install import InstallOutcome, ensure_installed, refresh_shop_info
from syncapp.shops.runtime import ShopsRuntime
from syncapp.shops.tokens import get_admin_token

__all__ = [
    "InstallOutcome",
    "ShopError",
    "ShopNotInstalled",
    "ShopifyReauthorizationRequired",
    "ShopifyTokenUnavailable",
    "ShopsRuntime",
    "ensure_installed",
    "get_admin_token",
    "refresh_shop_info",
]
