"""EmanageClient: the app's only way to eManageCRM. A thin async client over an injected
``httpx.AsyncClient``; the sandbox and the real system differ only in ``base_url``.

It obtains client-credentials tokens for the system identity and caches them in memory for
this process: one system token, and one token per account for that account's data (the
contract's isolation rule: a token reaches one account). A token is renewed ``refresh_margin``
seconds before it expires; concurrent callers share one token request per account. Answers are
mapped to :mod:`models`, failures to :mod:`errors`. The one retry it makes itself: a token the
API rejects (401 ``invalid_token``, e.g. because eManageCRM's clock ran past its expiry before
ours) is dropped and the call is sent once more with a fresh token. Otherwise callers wrap calls
with their retry policy (``errors.is_transient``), and every write takes the caller's
``idempotency_key`` so a retried write is safe.
"""

from __future__ import annotations

import asyncio
import hashlib
import json as jsonlib
import time
from collections.abc import Callable, Mapping, Sequence
from dataclasses import dataclass
from datetime import UTC, datetime
from decimal import Decimal
from typing import Any, TypeVar
from urllib.parse import quote, urlsplit
from uuid import UUID

import httpx
import orjson
import structlog
from pydantic import BaseModel, TypeAdapter, ValidationError

from syncapp.connectors.emanage.errors import (
    EmanageAuthError,
    EmanageConflict,
    EmanageNotFound,
    EmanageProtocolError,
    EmanageTokenRejected,
    EmanageTransientError,
    error_from_response,
)
from syncapp.connectors.emanage.models import (
    AccessToken,
    Account,
    BatchResult,
    BatchWrite,
    CampaignPrices,
    CampaignSettings,
    EmanageProduct,
    PaymentProvider,
    ProductPage,
    SsoLink,
    User,
    WebhookSubscription,
)

M = TypeVar("M", bound=BaseModel)

TOKEN_PATH = "/iam/oauth/token"  # noqa: S105 - a path, not a secret
DEFAULT_SCOPES: tuple[str, ...] = (
    "accounts:read",
    "accounts:write",
    "users:read",
    "users:write",
    "sso:write",
    "providers:read",
    "webhooks:read",
    "webhooks:write",
    "products:read",
    "products:write",
)
WEBHOOKS_PATH = "/admin/v1/webhook-subscriptions"

log = structlog.get_logger("syncapp.connectors.emanage")


@dataclass(frozen=True)
class _CachedToken:
    value: str
    renew_at: float


def _account_key(account_id: UUID | str) -> str:
    return str(account_id).lower()


class EmanageClient:
    """eManageCRM's IAM, admin and Web Sales APIs for the Sync App's system identity."""

    def __init__(
        self,
        http: httpx.AsyncClient,
        base_url: str,
        client_id: str,
        client_secret: str,
        *,
        scopes: Sequence[str] = DEFAULT_SCOPES,
        refresh_margin: float = 60.0,
        clock: Callable[[], float] = time.monotonic,
    ) -> None:
        self._http = http
        self._base_url = base_url.rstrip("/")
        self._client_id = client_id
        self._client_secret = client_secret
        self._scopes = " ".join(scopes)
        self._refresh_margin = refresh_margin
        self._clock = clock
        self._tokens: dict[str | None, _CachedToken] = {}
        self._locks: dict[str | None, asyncio.Lock] = {}

    def __repr__(self) -> str:
        return f"EmanageClient(base_url={self._base_url!r}, client_id={self._client_id!r})"

    # --- accounts ---------------------------------------------------------------------------

    async def create_account(
        self, *, shop_domain: str, name: str, email: str, currency: str, idempotency_key: str
    ) -> Account:
        """Create the shop's tenant in the shared instance.

        Raises EmanageConflict (``existing_id``) when the shop already has an account.
        """
        body = {"shopDomain": shop_domain, "name": name, "email": email, "currency": currency}
        response = await self._call(
            "POST", "/admin/v1/accounts", json=body, idempotency_key=idempotency_key
        )
        return _parse(Account, response)

    async def link_account(
        self,
        *,
        shop_domain: str,
        subscription_id: UUID | str,
        link_code: str,
        idempotency_key: str,
        replaces_account_id: UUID | str | None = None,
    ) -> Account:
        """Link the merchant's dedicated subscription, proven by the link code from their
        eManageCRM. A wrong/used/expired code raises EmanageValidationError
        (``code == "link_code_invalid"``). With ``replaces_account_id`` (the shop's shared
        account) that tenant is closed in the same step; a mismatch raises EmanageConflict
        (``code == "replaced_account_mismatch"``)."""
        body = {
            "shopDomain": shop_domain,
            "subscriptionId": str(subscription_id),
            "linkCode": link_code.strip(),
        }
        if replaces_account_id is not None:
            body["replacesAccountId"] = str(replaces_account_id)
        response = await self._call(
            "POST", "/admin/v1/account-links", json=body, idempotency_key=idempotency_key
        )
        return _parse(Account, response)

    async def get_account(self, *, account_id: UUID | str) -> Account:
        response = await self._call("GET", f"/admin/v1/accounts/{_seg(account_id)}")
        return _parse(Account, response)

    # --- users and SSO ----------------------------------------------------------------------

    async def create_user(
        self,
        *,
        account_id: UUID | str,
        email: str,
        name: str,
        role: str = "owner",
        idempotency_key: str,
    ) -> User:
        """Create a user; EmanageConflict (``existing_id``) if the email is taken there."""
        response = await self._call(
            "POST",
            f"/admin/v1/accounts/{_seg(account_id)}/users",
            account_id=account_id,
            json={"email": email, "name": name, "role": role},
            idempotency_key=idempotency_key,
        )
        return _parse(User, response)

    async def list_users(self, *, account_id: UUID | str) -> list[User]:
        response = await self._call(
            "GET", f"/admin/v1/accounts/{_seg(account_id)}/users", account_id=account_id
        )
        return _parse_items(User, response)

    async def create_sso_link(
        self,
        *,
        account_id: UUID | str,
        user_id: UUID | str,
        idempotency_key: str,
        redirect_path: str | None = None,
    ) -> SsoLink:
        """A one-time sign-in URL (5 minutes) into eManageCRM's web UI, for the user's browser."""
        body = {"redirectPath": redirect_path} if redirect_path else {}
        response = await self._call(
            "POST",
            f"/admin/v1/accounts/{_seg(account_id)}/users/{_seg(user_id)}/sso-links",
            account_id=account_id,
            json=body,
            idempotency_key=idempotency_key,
        )
        return _parse(SsoLink, response)

    # --- payment providers ------------------------------------------------------------------

    async def list_payment_providers(self, *, account_id: UUID | str) -> list[PaymentProvider]:
        response = await self._call(
            "GET",
            f"/admin/v1/accounts/{_seg(account_id)}/payment-providers",
            account_id=account_id,
        )
        return _parse_items(PaymentProvider, response)

    # --- notifications ----------------------------------------------------------------------

    async def list_webhook_subscriptions(self) -> list[WebhookSubscription]:
        response = await self._call("GET", WEBHOOKS_PATH)
        return _parse_items(WebhookSubscription, response)

    async def create_webhook_subscription(
        self, *, url: str, event_types: Sequence[str], secret: str, idempotency_key: str
    ) -> WebhookSubscription:
        """Subscribe ``url`` to the events of every account this client owns, signed with
        ``secret``. EmanageConflict (``existing_id``) when the URL is subscribed already."""
        body = {"url": url, "eventTypes": sorted(event_types), "secret": secret}
        response = await self._call(
            "POST", WEBHOOKS_PATH, json=body, idempotency_key=idempotency_key
        )
        return _parse(WebhookSubscription, response)

    async def update_webhook_subscription(
        self,
        *,
        subscription_id: UUID | str,
        idempotency_key: str,
        event_types: Sequence[str] | None = None,
        secret: str | None = None,
    ) -> WebhookSubscription:
        body: dict[str, Any] = {}
        if event_types is not None:
            body["eventTypes"] = sorted(event_types)
        if secret is not None:
            body["secret"] = secret
        response = await self._call(
            "PATCH",
            f"{WEBHOOKS_PATH}/{_seg(subscription_id)}",
            json=body,
            idempotency_key=idempotency_key,
        )
        return _parse(WebhookSubscription, response)

    async def delete_webhook_subscription(self, subscription_id: UUID | str) -> None:
        """Unsubscribe; one already gone (404) is done too."""
        try:
            await self._call(
                "DELETE",
                f"{WEBHOOKS_PATH}/{_seg(subscription_id)}",
                idempotency_key=f"webhooks:delete:{subscription_id}",
            )
        except EmanageNotFound:
            return

    async def ensure_webhook_subscription(
        self, *, url: str, event_types: Sequence[str], secret: str
    ) -> WebhookSubscription:
        """The subscription of ``url``, created or brought to ``event_types`` and ``secret``;
        subscriptions of this client to another URL with the same path (the app's address
        before ``SYNCAPP_PUBLIC_URL`` changed) are deleted, so eManageCRM stops delivering to
        an address nobody serves and the app is not notified twice.

        Idempotent: the keys are derived from what is asked (the secret only as a digest), so
        every start of every worker sends the same requests, which eManageCRM replays; a new
        secret (a rotation) or new types make new keys, hence a real change.
        """
        wanted = ",".join(sorted(event_types))
        fingerprint = hashlib.sha256(f"{url}\n{wanted}\n{secret}".encode()).hexdigest()[:32]
        subscriptions = await self.list_webhook_subscriptions()
        path = urlsplit(url).path
        for stale in subscriptions:
            if stale.url != url and urlsplit(stale.url).path == path:
                await self.delete_webhook_subscription(stale.id)
                log.info(
                    "emanage.stale_subscription_deleted",
                    subscription_id=str(stale.id),
                    url=stale.url,
                    replaced_by=url,
                )
        existing = next((s for s in subscriptions if s.url == url), None)
        if existing is None:
            try:
                return await self.create_webhook_subscription(
                    url=url,
                    event_types=event_types,
                    secret=secret,
                    idempotency_key=f"webhooks:create:{fingerprint}",
                )
            except EmanageConflict as exc:
                if exc.existing_id is None:
                    raise
                subscription_id: UUID | str = exc.existing_id
        else:
            subscription_id = existing.id
        return await self.update_webhook_subscription(
            subscription_id=subscription_id,
            event_types=event_types,
            secret=secret,
            idempotency_key=f"webhooks:update:{subscription_id}:{fingerprint}",
        )

    # --- products ---------------------------------------------------------------------------

    async def list_products(
        self,
        *,
        account_id: UUID | str,
        updated_since: datetime | None = None,
        after: str | None = None,
        limit: int = 100,
        shopify_product_id: str | None = None,
        sku: str | None = None,
    ) -> ProductPage:
        """One page in (updatedAt, productId) order; ``updated_since`` is inclusive to the
        second, so the caller dedupes re-read products by (product_id, version)."""
        params: dict[str, str] = {"limit": str(limit)}
        if updated_since is not None:
            if updated_since.tzinfo is None:
                raise ValueError("updated_since must be timezone-aware")
            params["updatedSince"] = (
                updated_since.astimezone(UTC).isoformat().replace("+00:00", "Z")
            )
        if after is not None:
            params["after"] = after
        if shopify_product_id is not None:
            params["shopifyProductId"] = shopify_product_id
        if sku is not None:
            params["sku"] = sku
        response = await self._call(
            "GET",
            f"/admin/v1/accounts/{_seg(account_id)}/products",
            account_id=account_id,
            params=params,
        )
        payload = _decimal_json(response)
        try:
            items = [EmanageProduct.from_body(item) for item in payload["items"]]
            next_cursor = payload["next"]
            if next_cursor is not None and not isinstance(next_cursor, str):
                raise TypeError("next must be a string or null")
        except (KeyError, TypeError, ValueError) as exc:
            raise _protocol(response, "a page of products", exc) from exc
        return ProductPage(items=items, next=next_cursor)

    async def get_product(
        self, *, account_id: UUID | str, product_id: str
    ) -> EmanageProduct | None:
        """The product, or None when the account has no such product."""
        try:
            response = await self._call(
                "GET",
                f"/admin/v1/accounts/{_seg(account_id)}/products/{_seg(product_id)}",
                account_id=account_id,
            )
        except EmanageNotFound as exc:
            # Only the product's own 404: an account the client cannot reach is still an error.
            if exc.code == "product_not_found":
                return None
            raise
        return _product(response)

    async def create_product(
        self,
        *,
        account_id: UUID | str,
        body: Mapping[str, Any],
        idempotency_key: str,
        origin: str | None = "syncapp",
    ) -> EmanageProduct:
        """Create a product (``body`` as ``mapping.emanage_product`` builds it)."""
        response = await self._call(
            "POST",
            f"/admin/v1/accounts/{_seg(account_id)}/products",
            account_id=account_id,
            content=_encode(body),
            idempotency_key=idempotency_key,
            headers=_origin(origin),
        )
        return _product(response)

    async def batch_products(
        self,
        *,
        account_id: UUID | str,
        items: Sequence[BatchWrite],
        idempotency_key: str,
        origin: str | None = "syncapp",
    ) -> list[BatchResult]:
        """Up to 250 product writes in one request, each with its own key and result (in the
        items' order): a refused item is a result, not an exception. The request's own
        failures (auth, a malformed batch, 5xx) raise as for any call."""
        payload: list[dict[str, Any]] = []
        for item in items:
            entry: dict[str, Any] = {"key": item.idempotency_key, "product": dict(item.body)}
            if item.match:
                entry["match"] = True
            if item.product_id is not None:
                if item.version is None:
                    raise ValueError("a replacement needs the version it is based on")
                entry["productId"] = item.product_id
                entry["ifMatch"] = item.version
            payload.append(entry)
        response = await self._call(
            "POST",
            f"/admin/v1/accounts/{_seg(account_id)}/products:batch",
            account_id=account_id,
            content=_encode({"items": payload}),
            idempotency_key=idempotency_key,
            headers=_origin(origin),
        )
        body = _decimal_json(response)
        try:
            results = [BatchResult.from_body(item) for item in body["items"]]
            if len(results) != len(items):
                raise ValueError(f"{len(results)} results for {len(items)} items")
        except (KeyError, TypeError, ValueError) as exc:
            raise _protocol(response, "a batch result", exc) from exc
        return results

    async def update_product(
        self,
        *,
        account_id: UUID | str,
        product_id: str,
        body: Mapping[str, Any],
        version: int,
        idempotency_key: str,
        origin: str | None = "syncapp",
    ) -> EmanageProduct:
        """Replace the product's content if it is still at ``version``; else raises
        EmanageVersionConflict (``current_version``). An unchanged body keeps the version."""
        response = await self._call(
            "PUT",
            f"/admin/v1/accounts/{_seg(account_id)}/products/{_seg(product_id)}",
            account_id=account_id,
            content=_encode(body),
            idempotency_key=idempotency_key,
            headers={"If-Match": f'"{version}"', **_origin(origin)},
        )
        return _product(response)

    async def archive_product(
        self,
        *,
        account_id: UUID | str,
        product_id: str,
        version: int,
        idempotency_key: str,
        origin: str | None = "syncapp",
    ) -> EmanageProduct:
        """Archive the product if it is still at ``version`` (EmanageVersionConflict if not)."""
        response = await self._call(
            "POST",
            f"/admin/v1/accounts/{_seg(account_id)}/products/{_seg(product_id)}/archive",
            account_id=account_id,
            idempotency_key=idempotency_key,
            headers={"If-Match": f'"{version}"', **_origin(origin)},
        )
        return _product(response)

    # --- Web Sales API (public; X_CID instead of a token) -----------------------------------

    async def get_campaign_settings(
        self, *, websales_api_url: str, web_key: str, cid: UUID | str
    ) -> CampaignSettings:
        response = await self._websales(websales_api_url, web_key, "settings", cid)
        return _parse(CampaignSettings, response)

    async def get_campaign_prices(
        self, *, websales_api_url: str, web_key: str, cid: UUID | str
    ) -> CampaignPrices:
        response = await self._websales(websales_api_url, web_key, "products/prices", cid)
        return _parse(CampaignPrices, response)

    # --- tokens -----------------------------------------------------------------------------

    def forget_tokens(self) -> None:
        """Drop every cached token (e.g. after the client secret was rotated)."""
        self._tokens.clear()

    async def _token(self, account_id: str | None) -> str:
        cached = self._tokens.get(account_id)
        if cached is not None and self._clock() < cached.renew_at:
            return cached.value
        lock = self._locks.setdefault(account_id, asyncio.Lock())
        async with lock:
            cached = self._tokens.get(account_id)
            if cached is not None and self._clock() < cached.renew_at:
                return cached.value
            started = self._clock()
            form = {"grant_type": "client_credentials", "scope": self._scopes}
            if account_id is not None:
                form["account_id"] = account_id
            response = await self._send(
                "POST",
                self._base_url + TOKEN_PATH,
                data=form,
                # RFC 6749 §2.3.1: form-encode both parts before Basic encoding.
                auth=httpx.BasicAuth(
                    quote(self._client_id, safe=""), quote(self._client_secret, safe="")
                ),
            )
            token = _parse(AccessToken, response)
            margin = min(self._refresh_margin, token.expires_in / 2)
            # Counted from before the request, so network time never makes us late.
            self._tokens[account_id] = _CachedToken(
                token.access_token, started + token.expires_in - margin
            )
            return token.access_token

    # --- transport --------------------------------------------------------------------------

    async def _call(
        self,
        method: str,
        path: str,
        *,
        account_id: UUID | str | None = None,
        json: Any = None,
        content: bytes | None = None,
        params: Mapping[str, str] | None = None,
        headers: Mapping[str, str] | None = None,
        idempotency_key: str | None = None,
    ) -> httpx.Response:
        key = _account_key(account_id) if account_id is not None else None
        extra: dict[str, Any] = {}
        if content is not None:
            extra["content"] = content
        else:
            extra["json"] = json
        if params is not None:
            extra["params"] = dict(params)
        for attempt in (1, 2):
            token = await self._token(key)
            sent = {"Authorization": f"Bearer {token}", "Accept": "application/json"}
            if content is not None:
                sent["Content-Type"] = "application/json"
            sent.update(headers or {})
            if idempotency_key is not None:
                sent["Idempotency-Key"] = idempotency_key
            try:
                return await self._send(method, self._base_url + path, headers=sent, **extra)
            except EmanageAuthError as exc:
                # The server refused this token (expired by its clock, revoked, or forgotten
                # by it): drop it, and for a rejected token ask once for a fresh one. A write
                # resent with its idempotency key is safe.
                cached = self._tokens.get(key)
                if cached is not None and cached.value == token:
                    del self._tokens[key]
                if attempt == 2 or not isinstance(exc, EmanageTokenRejected):
                    raise
        raise AssertionError("unreachable")  # pragma: no cover

    async def _websales(
        self, websales_api_url: str, web_key: str, resource: str, cid: UUID | str
    ) -> httpx.Response:
        url = f"{websales_api_url.rstrip('/')}/campaigns/{_seg(web_key)}/{resource}"
        return await self._send(
            "GET", url, headers={"X_CID": str(cid), "Accept": "application/json"}
        )

    async def _send(self, method: str, url: str, **kwargs: Any) -> httpx.Response:
        try:
            response = await self._http.request(method, url, **kwargs)
        except httpx.TimeoutException as exc:
            raise EmanageTransientError(
                f"eManageCRM did not answer {method} {url} in time ({type(exc).__name__})."
            ) from exc
        except httpx.TransportError as exc:
            raise EmanageTransientError(
                f"eManageCRM could not be reached for {method} {url}: {exc!r}"
            ) from exc
        if response.is_success:
            return response
        raise error_from_response(response.status_code, response.headers, response.content)


def _seg(value: UUID | str) -> str:
    """A value as one URL path segment (ids come from callers; never let them add segments)."""
    return quote(str(value), safe="")


def _decimal_default(value: object) -> object:
    if isinstance(value, Decimal):
        if not value.is_finite():
            raise TypeError(f"{value} is not a JSON number")
        # The decimal's own digits as the JSON number: Decimal("19.90") is sent as 19.90.
        return orjson.Fragment(format(value, "f").encode())
    raise TypeError(f"{type(value).__name__} is not JSON serializable")


def _encode(body: Mapping[str, Any]) -> bytes:
    """A request body as JSON with Decimals exact (never through float)."""
    return orjson.dumps(dict(body), default=_decimal_default)


def _origin(origin: str | None) -> dict[str, str]:
    return {} if origin is None else {"X-Sync-Origin": origin}


def _protocol(response: httpx.Response, what: str, exc: Exception) -> EmanageProtocolError:
    return EmanageProtocolError(
        f"eManageCRM's answer to {response.request.method} {response.request.url.path} is "
        f"not {what}: {exc!r}",
        status=response.status_code,
    )


def _decimal_json(response: httpx.Response) -> dict[str, Any]:
    """The answer as a JSON object with every non-integer number a Decimal."""
    try:
        payload = jsonlib.loads(response.content, parse_float=Decimal)
    except ValueError as exc:
        raise _protocol(response, "JSON", exc) from exc
    if not isinstance(payload, dict):
        raise _protocol(response, "a JSON object", TypeError(type(payload).__name__))
    return payload


def _product(response: httpx.Response) -> EmanageProduct:
    payload = _decimal_json(response)
    try:
        return EmanageProduct.from_body(payload)
    except (KeyError, TypeError, ValueError) as exc:
        raise _protocol(response, "a product", exc) from exc


def _parse(model: type[M], response: httpx.Response) -> M:
    try:
        return model.model_validate_json(response.content)
    except ValidationError as exc:
        raise EmanageProtocolError(
            f"eManageCRM's answer to {response.request.method} {response.request.url.path} is "
            f"not a valid {model.__name__}: {exc.errors(include_url=False)[:3]}",
            status=response.status_code,
        ) from exc


def _parse_items(model: type[M], response: httpx.Response) -> list[M]:
    adapter: TypeAdapter[list[M]] = TypeAdapter(list[model])  # type: ignore[valid-type]
    try:
        payload = response.json()
        items = payload["items"]
        return adapter.validate_python(items)
    except (ValueError, KeyError, TypeError, ValidationError) as exc:
        raise EmanageProtocolError(
            f"eManageCRM's answer to {response.request.method} {response.request.url.path} is "
            f"not a list of {model.__name__}: {exc}",
            status=response.status_code,
        ) from exc
