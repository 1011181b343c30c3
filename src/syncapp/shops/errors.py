"""Errors of the shops domain.

SyncAppError
└── ShopError                        something about one shop's installation
    ├── ShopNotInstalled             no installed shop of that domain: nothing to act with
    ├── ShopifyReauthorizationRequired  Shopify refused the refresh token (invalid_grant or
    │                                   invalid_client); the shop's Shopify connection is
    │                                   now ``needs_attention`` — not retryable
    └── ShopifyTokenUnavailable      the refresh failed for a passing reason (Shopify 5xx,
                                     429, network); retry later
"""

from __future__ import annotations

from syncapp.errors import SyncAppError


class ShopError(SyncAppError):
    """An operation on one shop cannot proceed; ``shop`` names it."""

    def __init__(self, message: str, *, shop: str) -> None:
        super().__init__(message)
        self.shop = shop


class ShopNotInstalled(ShopError):
    """The shop has no installation (never installed, uninstalled or redacted)."""


class ShopifyReauthorizationRequired(ShopError):
    """Shopify refused our refresh token; the merchant must open the app again to restore it."""


class ShopifyTokenUnavailable(ShopError):
    """A token refresh failed for a transient reason; the caller should retry later."""
