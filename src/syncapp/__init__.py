"""Sync App: keeps a Shopify store, eManageCRM and CTRwow in sync."""

__version__ = "0.1.0"
