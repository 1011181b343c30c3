"""SyncContext: what the sync engine's handlers share in one process, built once from settings.

It holds the shops runtime (sessions, vault: Shopify tokens), one :class:`EmanageClient` (its
token cache is per process) and one :class:`ProductsClient` per shop, kept for the life of the
process because the client carries the shop's cost budget: a client per call would forget the
bucket and start every call from the cautious default.
"""

from __future__ import annotations

import threading
from collections.abc import AsyncIterator
from contextlib import asynccontextmanager
from dataclasses import dataclass, field

import httpx

from syncapp.config import Settings
from syncapp.connectors.emanage import EmanageClient
from syncapp.connectors.shopify.products import ProductsClient
from syncapp.shops.runtime import ShopsRuntime
from syncapp.shops.tokens import get_admin_token
from syncapp.sync.merge import MergePolicy

HTTP_TIMEOUT = httpx.Timeout(10.0, connect=5.0)


@dataclass
class SyncContext:
    """The engine's runtime; ``policy`` is the merge policy (ADR 0016)."""

    shops: ShopsRuntime
    emanage: EmanageClient
    policy: MergePolicy = field(default_factory=MergePolicy)
    _clients: dict[str, ProductsClient] = field(default_factory=dict, repr=False)
    _lock: threading.Lock = field(default_factory=threading.Lock, repr=False)

    def products(self, shop: str) -> ProductsClient:
        """The shop's products client with a valid Admin token (synchronous: it may refresh
        the token; call it from a thread). Raises the shops domain's token errors."""
        token = get_admin_token(self.shops, shop=shop)
        with self._lock:
            client = self._clients.get(shop)
            if client is None:
                client = ProductsClient(
                    shop=shop,
                    access_token=token,
                    api_version=self.shops.api_version,
                    http=self.shops.http(),
                )
                self._clients[shop] = client
            else:
                client.access_token = token
            return client

    def close(self) -> None:
        with self._lock:
            for client in self._clients.values():
                client.http.close()
            self._clients.clear()


@asynccontextmanager
async def open_sync(
    settings: Settings, shops: ShopsRuntime, *, policy: MergePolicy | None = None
) -> AsyncIterator[SyncContext]:
    """The context for ``settings``; its HTTP clients are closed on exit. The eManageCRM
    system client secret must be set (generated into the data dir in sandbox mode)."""
    if settings.emanage_client_secret is None:
        raise ValueError("SYNCAPP_EMANAGE_CLIENT_SECRET must be set for the sync engine")
    async with httpx.AsyncClient(timeout=HTTP_TIMEOUT) as http:
        context = SyncContext(
            shops=shops,
            emanage=EmanageClient(
                http,
                settings.emanage_base_url,
                settings.emanage_client_id,
                settings.emanage_client_secret.get_secret_value(),
            ),
            policy=policy or MergePolicy(),
        )
        try:
            yield context
        finally:
            context.close()
