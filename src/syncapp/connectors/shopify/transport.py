"""Send ``https://<shop>.myshopify.com/...`` to another base URL, keeping the ``Host`` header.

Production uses plain httpx clients. Against the local sandbox the clients are exactly the
same; only their transport is wrapped, so every request still names its shop in ``Host`` the
way Shopify routes it. This is the only place that knows a sandbox may stand in for Shopify.
"""

from __future__ import annotations

import httpx

_SHOP_SUFFIX = ".myshopify.com"


def _rewrite(request: httpx.Request, target: httpx.URL) -> None:
    host = request.url.host
    if not host.endswith(_SHOP_SUFFIX):
        return
    request.headers["Host"] = host
    request.url = request.url.copy_with(scheme=target.scheme, host=target.host, port=target.port)


class ShopifyRedirectTransport(httpx.BaseTransport):
    """A sync transport that sends shop hosts to ``base_url`` (e.g. ``http://127.0.0.1:8100``)."""

    def __init__(self, base_url: str, inner: httpx.BaseTransport | None = None) -> None:
        self._target = httpx.URL(base_url)
        self._inner = inner or httpx.HTTPTransport()

    def handle_request(self, request: httpx.Request) -> httpx.Response:
        _rewrite(request, self._target)
        return self._inner.handle_request(request)

    def close(self) -> None:
        self._inner.close()


class AsyncShopifyRedirectTransport(httpx.AsyncBaseTransport):
    """The async twin of :class:`ShopifyRedirectTransport`."""

    def __init__(self, base_url: str, inner: httpx.AsyncBaseTransport | None = None) -> None:
        self._target = httpx.URL(base_url)
        self._inner = inner or httpx.AsyncHTTPTransport()

    async def handle_async_request(self, request: httpx.Request) -> httpx.Response:
        _rewrite(request, self._target)
        return await self._inner.handle_async_request(request)

    async def aclose(self) -> None:
        await self._inner.aclose()


def shopify_client(base_url: str | None, *, timeout: float = 10.0) -> httpx.Client:
    """An httpx client for Shopify; ``base_url`` set means "Shopify lives there" (the sandbox)."""
    transport = ShopifyRedirectTransport(base_url) if base_url else None
    return httpx.Client(transport=transport, timeout=timeout)


def async_shopify_client(base_url: str | None, *, timeout: float = 10.0) -> httpx.AsyncClient:
    """The async twin of :func:`shopify_client`."""
    transport = AsyncShopifyRedirectTransport(base_url) if base_url else None
    return httpx.AsyncClient(transport=transport, timeout=timeout)
