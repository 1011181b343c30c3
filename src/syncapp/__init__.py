"""Sync App: joins a Shopify store to eManageCRM and CTRwow."""

__version__ = "0.1.0"
