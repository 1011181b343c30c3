"""What the backfill and the reconcile sweep share in one process: the shops' runtime (database,
Shopify tokens), their options from settings, and the HTTP client that downloads bulk results."""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass, field
from typing import Any

import httpx

from syncapp.config import Settings
from syncapp.connectors.shopify.products import ProductsClient
from syncapp.shops.runtime import ShopsRuntime
from syncapp.shops.tokens import get_admin_token


@dataclass(frozen=True, slots=True)
class SyncOptions:
    """``SYNCAPP_SYNC_*``: how often bulk operations are polled and sweeps run, how many JSONL
    lines of incomplete products may wait in memory, and the size of each transaction."""

    backfill_poll_seconds: float = 2.0
    backfill_buffer_lines: int = 10_000
    backfill_batch: int = 200
    backfill_step_seconds: float = 20.0
    backfill_max_restarts: int = 5
    reconcile_interval_seconds: float = 900.0

    @classmethod
    def from_settings(cls, settings: Settings) -> SyncOptions:
        return cls(
            backfill_poll_seconds=settings.sync_backfill_poll_seconds,
            backfill_buffer_lines=settings.sync_backfill_buffer_lines,
            reconcile_interval_seconds=settings.sync_reconcile_interval_seconds,
        )


def _download_client() -> httpx.Client:
    # Bulk results live on a storage host (signed URLs), not on the shop's domain.
    return httpx.Client(timeout=httpx.Timeout(30.0, read=120.0), follow_redirects=True)


@dataclass
class SyncRuntime:
    shops: ShopsRuntime
    options: SyncOptions = field(default_factory=SyncOptions)
    download: httpx.Client = field(default_factory=_download_client)
    emanage: Any = None
    """An eManageCRM client with ``list_products`` (the eManageCRM side of the sweep), or None."""
    products_factory: Callable[[str], ProductsClient] | None = None
    _clients: dict[str, ProductsClient] = field(default_factory=dict)

    def products(self, shop: str) -> ProductsClient:
        """The shop's products client (one per shop and process: its cost budget lives in it),
        with a token valid now."""
        if self.products_factory is not None:
            return self.products_factory(shop)
        token = get_admin_token(self.shops, shop=shop)
        client = self._clients.get(shop)
        if client is None:
            client = self._clients[shop] = ProductsClient(
                shop=shop,
                access_token=token,
                api_version=self.shops.api_version,
                http=self.shops.http(),
            )
        client.access_token = token
        return client

    def close(self) -> None:
        self.download.close()
        for client in self._clients.values():
            client.http.close()
        self._clients.clear()
