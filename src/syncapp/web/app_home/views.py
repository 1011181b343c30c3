"""App Home routes.

==================================  =====================================================
``GET /``                           the App Home page (document load with ``id_token``)
``GET /billing/return``             Billing API ``returnUrl`` (loaded in the admin frame):
                                    reads the plan back from Shopify, shows the page
``GET /auth/patch-id-token``        shopifyapp's page that lets App Bridge fetch a fresh
                                    ID token and reload (``app_home_patch_id_token``)
``GET /app/api/shop``               the shop's status as JSON (App Bridge fetch, Bearer)
``GET /app/api/home``               the page's sections from local data, for its polling
``POST /app/api/web-vitals``        App Bridge's web vitals report → Prometheus histograms
``POST /app/api/shop/refresh``      read the shop from Shopify again and store it
``POST /app/api/emanage/sso``       a one-time sign-in link into eManageCRM for the owner
``POST /app/api/emanage/link``      ``{subscription_id, link_code}``: use the merchant's own
                                    eManageCRM subscription (Pro and Scale plans)
``GET /app/api/payment-providers``  payment processors from eManageCRM (cached briefly)
``GET /app/api/billing``            the shop's plan and the plans on offer
``POST /app/api/billing/plan``      ``{"plan": handle[, "confirm": true]}`` → a confirmation
                                    URL or done; cancelling a paid plan needs ``confirm``
``POST /app/api/onboarding/retry``  start a stopped sign-up again
``POST /app/api/ctrwow/connect``    → ``{"url"}``: CTRwow's authorization URL (OAuth + PKCE)
                                    when the sign-up needs the merchant's own CTRwow account
``GET /ctrwow/callback``            CTRwow's redirect (top level, no ID token: the single-use
                                    ``state`` authenticates it) → back to the app in the admin
==================================  =====================================================

A request that fails verification gets exactly shopifyapp's response: a document load
without a (valid) ``id_token`` is redirected (302) to the patch page, a fetch with a bad
token gets 401 with ``X-Shopify-Retry-Invalid-Session-Request: 1`` so App Bridge retries.
Verified document responses carry the library's headers (``Content-Security-Policy:
frame-ancestors https://<shop> https://admin.shopify.com;`` and the preload ``Link``); when
the admin is elsewhere (the Shopify sandbox) its origin is added to ``frame-ancestors`` and
the CDN script URLs point at ``SYNCAPP_SHOPIFY_ADMIN_ASSETS_URL``.
The first verified request of a shop without a valid token installs it
(:func:`syncapp.shops.install.ensure_installed`). The shop is always the verified token's.
"""

from __future__ import annotations

import hashlib
import re
import time
import uuid
from collections.abc import Awaitable, Callable
from dataclasses import dataclass
from datetime import UTC, datetime
from typing import Any
from urllib.parse import urlparse

import anyio
import httpx
import jinja2
import orjson
import structlog
from shopify_app import AppConfig, IdTokenDetails, Res
from shopify_app.helpers.app_home_patch_id_token import app_home_patch_id_token
from shopify_app.verify.app_home_req import verify_app_home_req
from sqlalchemy import select
from starlette.requests import Request
from starlette.responses import HTMLResponse, JSONResponse, RedirectResponse, Response
from starlette.routing import BaseRoute, Route

from syncapp.billing import (
    AlreadyOnPlan,
    BillingError,
    Catalog,
    ConfirmationNeeded,
    Plan,
    charge_outcome,
    choose_plan,
    load_catalog,
    plan_state,
)
from syncapp.billing.service import PlanState, refresh_from_shopify
from syncapp.config import Settings
from syncapp.connectors.ctrwow import CtrwowClient
from syncapp.connectors.emanage import EmanageClient
from syncapp.connectors.emanage.errors import (
    EmanageError,
    EmanageTransientError,
    merchant_message,
)
from syncapp.connectors.emanage.models import PaymentProvider
from syncapp.connectors.shopify.admin import ShopifyAdminError, ShopifyTransientError
from syncapp.onboarding import JobStatus, SignupView, StepStatus, restart_signup, signup_status
from syncapp.onboarding.connect import (
    BadState,
    ConnectNotNeeded,
    CtrwowConnectError,
    abandon_ctrwow_connect,
    connect_needed,
    finish_ctrwow_connect,
    start_ctrwow_connect,
)
from syncapp.onboarding.connections import ConnectionView, connection_views
from syncapp.onboarding.plan import STEP_TITLES
from syncapp.onboarding.service import OnboardingError
from syncapp.onboarding.switch import LinkRefused, LinkUnavailable, link_dedicated_account
from syncapp.shops.errors import ShopError, ShopifyTokenUnavailable
from syncapp.shops.install import ensure_installed, refresh_shop_info
from syncapp.shops.runtime import ShopsRuntime
from syncapp.shops.status import ShopStatus, shop_status
from syncapp.store.models import Shop
from syncapp.sync.backfill import BackfillProgress, backfill_progress
from syncapp.sync.state import SyncStatus, sync_status
from syncapp.web.app_home.cache import TtlCache
from syncapp.web.app_home.guard import (
    API_PREFIX,
    api_request_refusal,
    claims_refusal,
    json_body_refusal,
    origin_of,
    patch_params_refusal,
    public_request_url,
)
from syncapp.web.app_home.perf import (
    BadReport,
    ServerTiming,
    parse_web_vitals,
    record_web_vitals,
)

log = structlog.get_logger("syncapp.web.app_home")

PATCH_ID_TOKEN_PATH = "/auth/patch-id-token"  # noqa: S105 (a path, not a secret)
BILLING_RETURN_PATH = "/billing/return"
CTRWOW_CALLBACK_PATH = "/ctrwow/callback"
ROUTE_PATHS = frozenset(
    {
        "/",
        BILLING_RETURN_PATH,
        PATCH_ID_TOKEN_PATH,
        "/app/api/shop",
        "/app/api/home",
        "/app/api/web-vitals",
        "/app/api/shop/refresh",
        "/app/api/emanage/sso",
        "/app/api/emanage/link",
        "/app/api/payment-providers",
        "/app/api/billing",
        "/app/api/billing/plan",
        "/app/api/onboarding/retry",
        "/app/api/ctrwow/connect",
        CTRWOW_CALLBACK_PATH,
    }
)
CDN_ASSETS = "https://cdn.shopify.com/shopifycloud"
SHOPIFY_ADMIN = "https://admin.shopify.com"
_SHOP = re.compile(r"^[a-z0-9][a-z0-9-]{0,99}$")
_MAX_BODY = 64 * 1024
_HTTP_TIMEOUT = httpx.Timeout(10.0, connect=5.0)
# How old a cached eManageCRM answer may be: a page's own poll takes one of up to 15 s, a page
# load or the merchant coming back to the tab one of up to 2 s (a floor, so reloading the
# page again and again still asks eManageCRM at most every 2 s per process).
PROVIDERS_MAX_AGE = 15.0
PROVIDERS_MIN_AGE = 2.0
# While a charge waits for approval, a status poll asks Shopify at most this often.
BILLING_RECHECK_SECONDS = 10.0
_MAX_VITALS_BODY = 4 * 1024

_templates = jinja2.Environment(
    loader=jinja2.PackageLoader("syncapp.web", "templates"),
    autoescape=jinja2.select_autoescape(default=True),
    undefined=jinja2.StrictUndefined,
)


# What the App Home says when the merchant comes back from elsewhere: fixed texts chosen by
# a query parameter (never the parameter's own text: it is not authenticated).
_RETURN_NOTICES = {
    ("ctrwow", "cancelled"): (
        "You cancelled the CTRwow sign-in, so CTRwow is not connected yet. Choose “Connect "
        "your CTRwow account” when you are ready.",
        "warning",
    ),
    ("notice", "downgraded"): (
        "Your paid plan is cancelled: this store is on the Free plan now.",
        "success",
    ),
    ("notice", "linked"): (
        "Your own eManageCRM subscription is connected; the shared account is closed.",
        "success",
    ),
    ("ctrwow", "failed"): (
        "CTRwow did not connect your account. Try “Connect your CTRwow account” again; if it "
        "keeps failing, contact the app's support.",
        "critical",
    ),
}


@dataclass(frozen=True, slots=True)
class Verified:
    """A verified App Home request: the shop (domain) and the headers its response needs."""

    shop: str
    headers: dict[str, str]
    id_token: IdTokenDetails
    invalid_token_response: Res | None


@dataclass(frozen=True, slots=True)
class HomeOptions:
    """What the App Home takes from settings."""

    client_id: str
    assets_url: str
    admin_url: str
    catalog: Catalog
    test_charges: bool
    emanage_base_url: str
    emanage_client_id: str
    emanage_client_secret: str | None
    ctrwow_base_url: str = ""
    ctrwow_client_id: str = ""
    ctrwow_client_secret: str | None = None
    ctrwow_redirect_uri: str = ""
    # Where the app is reached (SYNCAPP_PUBLIC_URL): its origin is the only one allowed to
    # post to the JSON routes, and redirects are built on it, never on the Host header.
    public_url: str = "http://127.0.0.1:8000"

    @classmethod
    def from_settings(cls, settings: Settings) -> HomeOptions:
        secret = settings.emanage_client_secret
        ctrwow_secret = settings.ctrwow_client_secret
        return cls(
            client_id=settings.shopify_client_id,
            assets_url=settings.shopify_admin_assets_url.rstrip("/"),
            admin_url=settings.shopify_admin_url.rstrip("/"),
            catalog=load_catalog(settings.billing_plans),
            test_charges=settings.billing_test_charges,
            emanage_base_url=settings.emanage_base_url,
            emanage_client_id=settings.emanage_client_id,
            emanage_client_secret=secret.get_secret_value() if secret else None,
            ctrwow_base_url=settings.ctrwow_base_url,
            ctrwow_client_id=settings.ctrwow_client_id,
            ctrwow_client_secret=ctrwow_secret.get_secret_value() if ctrwow_secret else None,
            ctrwow_redirect_uri=settings.ctrwow_redirect_uri,
            public_url=settings.public_url,
        )

    @property
    def own_origin(self) -> str:
        return origin_of(self.public_url)

    def secrets(self, config: AppConfig) -> tuple[str, ...]:
        """The client secrets an ID token may be signed with: current, then previous."""
        old = config.get("old_client_secret")
        return (config["client_secret"], *((old,) if old else ()))

    @property
    def admin_origin(self) -> str:
        parts = urlparse(self.admin_url)
        return f"{parts.scheme}://{parts.netloc}"

    def return_url(self, shop: str) -> str:
        """Where Shopify sends the merchant after the charge page: the app, in the admin."""
        handle = shop.removesuffix(".myshopify.com")
        return f"{self.admin_url}/store/{handle}/apps/{self.client_id}{BILLING_RETURN_PATH}"

    def app_url(self, shop: str) -> str:
        """The app's page in the shop's Shopify admin."""
        handle = shop.removesuffix(".myshopify.com")
        return f"{self.admin_url}/store/{handle}/apps/{self.client_id}"


@dataclass(frozen=True, slots=True)
class ProviderView:
    """A payment processor as the page lists it."""

    name: str
    type: str
    currency: str
    active: bool
    mids: tuple[str, ...]

    @classmethod
    def of(cls, provider: PaymentProvider) -> ProviderView:
        return cls(
            name=provider.name,
            type=provider.type,
            currency=provider.currency,
            active=provider.can_take_payments,
            mids=tuple(m.mid for m in provider.mids if m.is_active),
        )


@dataclass(frozen=True, slots=True)
class Providers:
    """eManageCRM's answer about payment processors, or why there is none."""

    items: tuple[ProviderView, ...] = ()
    error: str | None = None
    connected: bool = True
    transient: bool = False  # eManageCRM did not answer: worth asking again soon

    @property
    def active(self) -> tuple[ProviderView, ...]:
        return tuple(p for p in self.items if p.active)

    def as_json(self) -> dict[str, Any]:
        return {
            "connected": self.connected,
            "error": self.error,
            "has_active": bool(self.active),
            "providers": [
                {
                    "name": p.name,
                    "type": p.type,
                    "currency": p.currency,
                    "active": p.active,
                    "mids": list(p.mids),
                }
                for p in self.items
            ],
        }


def _plan_json(state: PlanState, catalog: Catalog) -> dict[str, Any]:
    return {
        "plan": state.plan.handle,
        "status": state.status,
        "test": state.test,
        "pending_plan": state.pending_plan.handle if state.pending_plan else None,
        "frozen_plan": state.frozen_plan.handle if state.frozen_plan else None,
        "features": {
            "dedicated_emanage": state.features.dedicated_emanage,
            "order_sync": state.features.order_sync,
            "max_funnels": state.features.max_funnels,
            "usage_billing": state.features.usage_billing,
        },
        "plans": [p.handle for p in catalog.plans],
    }


def _time(value: datetime | None) -> str | None:
    return value.strftime("%H:%M:%S UTC") if value else None


class AppHome:
    """The App Home handlers of one app (its Shopify config, shop services and settings)."""

    def __init__(self, runtime: ShopsRuntime, config: AppConfig, options: HomeOptions) -> None:
        self._runtime = runtime
        self._config = config
        self._options = options
        self._http: httpx.AsyncClient | None = None
        self._emanage: EmanageClient | None = None
        self._ctrwow: CtrwowClient | None = None
        self._provider_cache: TtlCache[Providers] = TtlCache()
        self._billing_checked: dict[str, float] = {}

    async def aclose(self) -> None:
        """Close the eManageCRM HTTP client (at application shutdown)."""
        if self._http is not None:
            await self._http.aclose()
            self._http = None
            self._emanage = None
            self._ctrwow = None

    def _emanage_client(self) -> EmanageClient | None:
        opts = self._options
        if not (opts.emanage_base_url and opts.emanage_client_id and opts.emanage_client_secret):
            return None
        if self._emanage is None:
            # One client per process: it caches eManageCRM access tokens between requests.
            if self._http is None:
                self._http = httpx.AsyncClient(timeout=_HTTP_TIMEOUT)
            self._emanage = EmanageClient(
                self._http,
                opts.emanage_base_url,
                opts.emanage_client_id,
                opts.emanage_client_secret,
            )
        return self._emanage

    def _ctrwow_client(self) -> CtrwowClient | None:
        opts = self._options
        if not (opts.ctrwow_base_url and opts.ctrwow_client_id and opts.ctrwow_client_secret):
            return None
        if self._ctrwow is None:
            if self._http is None:
                self._http = httpx.AsyncClient(timeout=_HTTP_TIMEOUT)
            self._ctrwow = CtrwowClient(
                self._http,
                base_url=opts.ctrwow_base_url,
                client_id=opts.ctrwow_client_id,
                client_secret=opts.ctrwow_client_secret,
            )
        return self._ctrwow

    # --- verification ---------------------------------------------------------------------

    def _admin_headers(self, headers: dict[str, str]) -> dict[str, str]:
        """The library's headers, pointed at the configured admin and script host."""
        out = dict(headers)
        origin = self._options.admin_origin
        csp = out.get("Content-Security-Policy")
        if csp and origin != SHOPIFY_ADMIN and origin not in csp:
            out["Content-Security-Policy"] = csp.rstrip().rstrip(";") + f" {origin};"
        link = out.get("Link")
        if link and self._options.assets_url != CDN_ASSETS:
            out["Link"] = link.replace(CDN_ASSETS, self._options.assets_url)
        return out

    def _library_response(self, res: Res) -> Response:
        body = res.body
        if self._options.assets_url != CDN_ASSETS:
            body = body.replace(CDN_ASSETS, self._options.assets_url)
        return Response(
            content=body, status_code=res.status, headers=self._admin_headers(dict(res.headers))
        )

    async def _verify(self, request: Request) -> Verified | Response:
        body = await request.body()
        if len(body) > _MAX_BODY:
            return Response("request body too large", status_code=413)
        result = verify_app_home_req(
            {
                "method": request.method,
                "headers": dict(request.headers),
                "url": public_request_url(
                    self._options.public_url, request.url.path, request.url.query
                ),
                # The session token is in the header or query, never in the body; the library
                # would only parse the unverified body (standard json) to redact its log,
                # which a deeply nested or huge-number body turns into a 500.
                "body": "",
            },
            self._config,
            app_home_patch_id_token_path=PATCH_ID_TOKEN_PATH,
        )
        if not result.ok or result.shop is None or result.id_token is None:
            log.info("app_home.refused", code=result.log.code, status=result.response.status)
            return self._library_response(result.response)
        refused = claims_refusal(
            result.id_token.token,
            secrets=self._options.secrets(self._config),
            client_id=self._options.client_id,
        )
        if refused is not None:
            # Signed by us but not a complete Shopify session token: a fresh one from App
            # Bridge will be (the patch page for a document load, a retried fetch otherwise).
            log.info("app_home.refused", code="incomplete_id_token", detail=refused)
            assert result.invalid_token_response is not None
            return self._library_response(result.invalid_token_response)
        if not _SHOP.match(result.shop):
            # Signed with our secret, so not forged; but not a shop domain we can serve.
            log.warning("app_home.bad_dest", code="invalid_dest")
            return Response("Unauthorized", status_code=401)
        shop = f"{result.shop}.myshopify.com"
        outcome = await anyio.to_thread.run_sync(
            lambda: ensure_installed(
                self._runtime,
                shop=shop,
                id_token=result.id_token,  # type: ignore[arg-type]
                invalid_token_response=result.invalid_token_response,
            )
        )
        if outcome.response is not None:
            return self._library_response(outcome.response)
        return Verified(
            shop=shop,
            headers=self._admin_headers(dict(result.response.headers)),
            id_token=result.id_token,
            invalid_token_response=result.invalid_token_response,
        )

    def _verified(
        self, handler: Callable[[Request, Verified], Awaitable[Response]]
    ) -> Callable[[Request], Awaitable[Response]]:
        async def endpoint(request: Request) -> Response:
            api = request.url.path.startswith(API_PREFIX)
            if api:
                refusal = api_request_refusal(
                    request.method, request.headers, own_origin=self._options.own_origin
                )
                if refusal is not None:
                    log.info("app_home.api_refused", status=refusal.status, reason=refusal.error)
                    return JSONResponse({"error": refusal.error}, status_code=refusal.status)
            verified = await self._verify(request)
            if isinstance(verified, Response):
                return _as_json_error(verified) if api else verified
            refusal = json_body_refusal(request.method, request.headers) if api else None
            if refusal is not None:
                return JSONResponse({"error": refusal.error}, status_code=refusal.status)
            with structlog.contextvars.bound_contextvars(shop=verified.shop):
                return await handler(request, verified)

        return endpoint

    # --- what the page shows ----------------------------------------------------------------

    def _read_local(self, shop: str) -> tuple[ShopStatus, SignupView | None, PlanState]:
        status = shop_status(self._runtime, shop=shop)
        with self._runtime.sessions() as session:
            shop_id = session.scalar(select(Shop.id).where(Shop.domain == shop))
            assert shop_id is not None  # shop_status found the row
            signup = signup_status(session, shop_id=shop_id)
            plan = plan_state(session, shop_id=shop_id, catalog=self._options.catalog)
        return status, signup, plan

    def _read_home(self, shop: str) -> _HomeData:
        status, signup, plan = self._read_local(shop)
        with self._runtime.sessions() as session:
            shop_id = session.scalar(select(Shop.id).where(Shop.domain == shop))
            assert shop_id is not None  # _read_local found the row
            needed = connect_needed(session, shop_id=shop_id)
            connections = connection_views(session, shop_id=shop_id, now=datetime.now(UTC))
        sync = sync_status(self._runtime.sessions, shop)
        backfill = backfill_progress(self._runtime.sessions, shop)
        return _HomeData(status, signup, plan, needed, connections, sync, backfill)

    async def _providers(
        self,
        signup: SignupView | None,
        timing: ServerTiming | None = None,
        *,
        max_age: float = PROVIDERS_MAX_AGE,
    ) -> Providers:
        if signup is None or signup.emanage_account_id is None:
            return Providers(connected=False)
        client = self._emanage_client()
        if client is None:
            return Providers(error="eManageCRM is not configured for this app.")
        account_id = signup.emanage_account_id
        timing = timing or ServerTiming()

        async def fetch() -> Providers:
            with timing.measure("emanage"):
                try:
                    found = await client.list_payment_providers(account_id=account_id)
                except EmanageTransientError as exc:
                    log.warning("app_home.providers_unavailable", error=str(exc))
                    return Providers(
                        error="eManageCRM is not answering right now; this list updates by "
                        "itself when it does.",
                        transient=True,
                    )
                except EmanageError as exc:
                    log.warning("app_home.providers_failed", error=str(exc))
                    return Providers(
                        error=merchant_message(exc, doing="read your payment processors")
                    )
            return Providers(items=tuple(ProviderView.of(p) for p in found))

        providers, cached = await self._provider_cache.get(account_id, fetch, max_age=max_age)
        if cached:
            timing.note("emanage", "cached")
        return providers

    def _context(
        self, data: _HomeData, *, notice: str | None = None, notice_tone: str = "success"
    ) -> dict[str, Any]:
        signup = data.signup
        steps = []
        if signup is not None:
            for step in signup.steps:
                steps.append(
                    {
                        "title": STEP_TITLES[step.step],
                        "status": str(step.status),
                        "error": step.last_error,
                        "retry_at": _time(step.next_attempt_at)
                        if step.status in (StepStatus.PENDING, StepStatus.RUNNING)
                        and step.last_error
                        else None,
                    }
                )
        stopped = signup is not None and signup.status in (
            JobStatus.FAILED,
            JobStatus.NEEDS_MERCHANT,
            JobStatus.CANCELLED,
        )
        return {
            "client_id": self._options.client_id,
            "assets_url": self._options.assets_url,
            "status": data.status,
            "signup": signup,
            "steps": steps,
            "signup_done": signup is not None and signup.status == JobStatus.DONE,
            "signup_stopped": stopped,
            "providers": None,  # filled in by the page from /app/api/payment-providers
            "plan": data.plan,
            "plans": self._options.catalog.plans,
            "recommended": _recommended(data.plan, self._options.catalog),
            "test_charges": self._options.test_charges,
            "notice": notice,
            "notice_tone": notice_tone,
            "ctrwow_connect": data.ctrwow_connect,
            "connections": data.connections,
            "sync": data.sync,
            "sync_last": _time(data.sync.last_change_applied_at) if data.sync else None,
            "sync_oldest": _time(data.sync.oldest_pending_at) if data.sync else None,
            "backfill": data.backfill,
        }

    async def _render_home(
        self, verified: Verified, *, notice: str | None = None, notice_tone: str = "success"
    ) -> Response:
        timing = ServerTiming()
        data = await timing.in_thread("db", lambda: self._read_home(verified.shop))
        with timing.measure("render"):
            context = self._context(data, notice=notice, notice_tone=notice_tone)
            parts = _render_parts(context)
            html = _templates.get_template("app_home.html").render(
                **context, part_versions={name: part.version for name, part in parts.items()}
            )
        return HTMLResponse(html, headers=timing.headers(verified.headers))

    # --- handlers ---------------------------------------------------------------------------

    async def home(self, request: Request, verified: Verified) -> Response:
        for param in ("ctrwow", "notice"):
            notice = _RETURN_NOTICES.get((param, request.query_params.get(param, "")))
            if notice is not None:
                return await self._render_home(verified, notice=notice[0], notice_tone=notice[1])
        return await self._render_home(verified)

    async def home_status(self, request: Request, verified: Verified) -> Response:
        """What the open page polls: its sections rendered from local data, with a version
        each, so the page swaps only what changed. While a charge waits for approval Shopify
        is asked again (at most every BILLING_RECHECK_SECONDS), so a decline shows up even
        before its webhook is processed."""
        timing = ServerTiming()
        data = await timing.in_thread("db", lambda: self._read_home(verified.shop))
        if data.plan.pending_plan is not None and self._billing_due(verified.shop):
            catalog = self._options.catalog
            try:
                with timing.measure("shopify"):
                    await anyio.to_thread.run_sync(
                        lambda: refresh_from_shopify(
                            self._runtime, shop=verified.shop, catalog=catalog
                        )
                    )
            except (ShopifyAdminError, ShopError) as exc:
                log.info("app_home.billing_recheck_failed", error=str(exc))
            else:
                data = await timing.in_thread("db", lambda: self._read_home(verified.shop))
        with timing.measure("render"):
            parts = _render_parts(self._context(data))
        signup = data.signup
        busy = signup is not None and signup.status not in (
            JobStatus.DONE,
            JobStatus.FAILED,
            JobStatus.NEEDS_MERCHANT,
            JobStatus.CANCELLED,
        )
        return JSONResponse(
            {
                "onboarding": str(signup.status) if signup else None,
                "sections": {
                    name: {"version": part.version, "html": part.html}
                    for name, part in parts.items()
                },
                # Fast while the sign-up, a charge or a catalog import moves on its own.
                "poll_after_ms": 2000
                if busy or data.plan.pending_plan or _importing(data)
                else 10_000,
            },
            headers=timing.headers({**verified.headers, "Cache-Control": "no-store"}),
        )

    def _billing_due(self, shop: str) -> bool:
        now = time.monotonic()
        if now - self._billing_checked.get(shop, -BILLING_RECHECK_SECONDS) < (
            BILLING_RECHECK_SECONDS
        ):
            return False
        if len(self._billing_checked) > 10_000:
            self._billing_checked.clear()
        self._billing_checked[shop] = now
        return True

    async def web_vitals(self, request: Request, verified: Verified) -> Response:
        """App Bridge's web vitals report (``shopify.webVitals.onReport``), as histograms."""
        body = await request.body()
        if len(body) > _MAX_VITALS_BODY:
            return JSONResponse({"error": "report too large"}, status_code=413)
        try:
            metrics = parse_web_vitals(orjson.loads(body))
        except (orjson.JSONDecodeError, BadReport) as exc:
            return JSONResponse({"error": str(exc)}, status_code=400, headers=verified.headers)
        record_web_vitals(metrics)
        log.info("app_home.web_vitals", **{name.lower(): value for name, value in metrics})
        return Response(status_code=204, headers=verified.headers)

    async def billing_return(self, request: Request, verified: Verified) -> Response:
        """Shopify's return after the charge page: what became of the charge, in words."""
        catalog = self._options.catalog
        charge_id = request.query_params.get("charge_id", "")
        try:
            state = await anyio.to_thread.run_sync(
                lambda: refresh_from_shopify(self._runtime, shop=verified.shop, catalog=catalog)
            )
        except (ShopifyAdminError, ShopError) as exc:
            log.warning("app_home.billing_refresh_failed", error=str(exc))
            return await self._render_home(
                verified,
                notice="Shopify did not confirm the plan yet; this page updates when it does.",
                notice_tone="warning",
            )

        def outcome() -> tuple[str, Plan] | None:
            with self._runtime.sessions() as session:
                shop_id = session.scalar(select(Shop.id).where(Shop.domain == verified.shop))
                assert shop_id is not None
                return charge_outcome(
                    session, shop_id=shop_id, charge_id=charge_id, catalog=catalog
                )

        found = await anyio.to_thread.run_sync(outcome)
        notice, tone = _billing_notice(found, state)
        log.info("app_home.billing_return", outcome=found[0] if found else None)
        return await self._render_home(verified, notice=notice, notice_tone=tone)

    async def patch_id_token(self, request: Request) -> Response:
        params = request.query_params
        refused = patch_params_refusal(params.get("shop"), params.get("shopify-reload"))
        if refused is not None:
            # No shop, or not a shop's domain: most likely the app's address opened outside
            # the admin. Nothing of the query is echoed; the page says where the app lives.
            log.info("app_home.patch_id_token_refused", reason=refused)
            return self._outside_admin_page()
        result = app_home_patch_id_token(
            {
                "method": request.method,
                "headers": dict(request.headers),
                "url": public_request_url(
                    self._options.public_url, request.url.path, request.url.query
                ),
                "body": "",
            },
            self._config,
        )
        if result.response.status == 400:
            # Opened outside the admin (the app's URL typed or bookmarked): no shop to patch
            # a token for. Say where the app lives instead of the library's bare 400.
            log.info("app_home.opened_outside_admin", code=result.log.code)
            return self._outside_admin_page()
        return self._library_response(result.response)

    def _outside_admin_page(self) -> Response:
        return _message_page(
            "Open the Sync App from your Shopify admin",
            "The Sync App runs inside your Shopify admin: open Apps, then Sync App. "
            "This address works only when Shopify opens it.",
            back_url=self._options.admin_url,
            back_label="Go to your Shopify admin",
            tone="info",
        )

    async def shop_json(self, request: Request, verified: Verified) -> Response:
        status = await anyio.to_thread.run_sync(
            lambda: shop_status(self._runtime, shop=verified.shop)
        )
        return JSONResponse(status.as_json(), headers=verified.headers)

    async def refresh_shop(self, request: Request, verified: Verified) -> Response:
        try:
            await anyio.to_thread.run_sync(
                lambda: refresh_shop_info(self._runtime, shop=verified.shop)
            )
        except (ShopifyTransientError, ShopifyTokenUnavailable) as exc:
            log.warning("app_home.shop_refresh_unavailable", error=str(exc))
            return _unavailable("Shopify is not answering right now; try again in a minute")
        except (ShopifyAdminError, ShopError) as exc:
            log.warning("app_home.shop_refresh_failed", error=str(exc))
            return JSONResponse({"error": str(exc)}, status_code=502)
        status = await anyio.to_thread.run_sync(
            lambda: shop_status(self._runtime, shop=verified.shop)
        )
        return JSONResponse(status.as_json(), headers=verified.headers)

    async def sso_link(self, request: Request, verified: Verified) -> Response:
        _, signup, _ = await anyio.to_thread.run_sync(lambda: self._read_local(verified.shop))
        if signup is None or not (signup.emanage_account_id and signup.emanage_owner_user_id):
            return JSONResponse(
                {"error": "Your eManageCRM account is still being set up; try again shortly."},
                status_code=409,
            )
        client = self._emanage_client()
        if client is None:
            return JSONResponse({"error": "eManageCRM is not configured."}, status_code=503)
        try:
            # A new key per click: each click is a new link (a link signs in once).
            link = await client.create_sso_link(
                account_id=signup.emanage_account_id,
                user_id=signup.emanage_owner_user_id,
                idempotency_key=f"sso:{verified.shop}:{uuid.uuid4()}",
            )
        except EmanageTransientError as exc:
            log.warning("app_home.sso_unavailable", error=str(exc))
            return _unavailable(merchant_message(exc, doing="open eManageCRM"))
        except EmanageError as exc:
            log.warning("app_home.sso_failed", error=str(exc))
            return JSONResponse(
                {"error": merchant_message(exc, doing="open eManageCRM")}, status_code=502
            )
        log.info("app_home.sso_link_issued")
        return JSONResponse(
            {"url": link.url, "expires_at": link.expires_at.isoformat()},
            headers={**verified.headers, "Cache-Control": "no-store"},
        )

    async def emanage_link(self, request: Request, verified: Verified) -> Response:
        try:
            body = orjson.loads(await request.body())
        except orjson.JSONDecodeError:
            body = None
        fields = body if isinstance(body, dict) else {}
        subscription_id, link_code = fields.get("subscription_id"), fields.get("link_code")
        if not isinstance(subscription_id, str) or not isinstance(link_code, str):
            return JSONResponse(
                {"error": 'send {"subscription_id": "<GUID>", "link_code": "<code>"}'},
                status_code=400,
            )
        client = self._emanage_client()
        if client is None:
            return JSONResponse({"error": "eManageCRM is not configured."}, status_code=503)
        try:
            outcome = await link_dedicated_account(
                self._runtime.sessions,
                self._runtime.vault,
                client,
                self._options.catalog,
                shop=verified.shop,
                subscription_id=subscription_id,
                link_code=link_code,
            )
        except LinkUnavailable as exc:
            log.warning("app_home.emanage_link_unavailable", error=str(exc))
            return _unavailable(str(exc))
        except LinkRefused as exc:
            log.info("app_home.emanage_link_refused", reason=exc.reason)
            status = {"plan": 403, "already_linked": 409, "not_ready": 409}.get(exc.reason, 422)
            return JSONResponse(
                {"error": str(exc), "reason": exc.reason},
                status_code=status,
                headers=verified.headers,
            )
        except OnboardingError as exc:
            return JSONResponse({"error": str(exc)}, status_code=422, headers=verified.headers)
        log.info("app_home.emanage_linked", queued=outcome.queued)
        return JSONResponse(
            {"queued": outcome.queued, "account_id": outcome.account_id, "kind": outcome.kind},
            headers={**verified.headers, "Cache-Control": "no-store"},
        )

    async def providers_json(self, request: Request, verified: Verified) -> Response:
        """Payment processors from eManageCRM (cached: ``max_age`` seconds, at least
        PROVIDERS_MIN_AGE), with the page's section rendered from them."""
        try:
            max_age = float(request.query_params.get("max_age", PROVIDERS_MAX_AGE))
        except ValueError:
            max_age = PROVIDERS_MAX_AGE
        max_age = min(max(max_age, PROVIDERS_MIN_AGE), 60.0)
        timing = ServerTiming()
        _, signup, _ = await timing.in_thread("db", lambda: self._read_local(verified.shop))
        providers = await self._providers(signup, timing, max_age=max_age)
        with timing.measure("render"):
            html = _render_block("payments_body", {"providers": providers, "signup": signup})
        return JSONResponse(
            {**providers.as_json(), "html": html, "retry": providers.transient},
            headers=timing.headers({**verified.headers, "Cache-Control": "no-store"}),
        )

    async def billing_json(self, request: Request, verified: Verified) -> Response:
        _, _, plan = await anyio.to_thread.run_sync(lambda: self._read_local(verified.shop))
        return JSONResponse(_plan_json(plan, self._options.catalog), headers=verified.headers)

    async def choose(self, request: Request, verified: Verified) -> Response:
        try:
            body = orjson.loads(await request.body())
            handle = str(body["plan"])
            confirmed = body.get("confirm") is True
        except (orjson.JSONDecodeError, KeyError, TypeError, AttributeError):
            return JSONResponse({"error": 'send {"plan": "<handle>"}'}, status_code=400)
        opts = self._options
        try:
            url = await anyio.to_thread.run_sync(
                lambda: choose_plan(
                    self._runtime,
                    shop=verified.shop,
                    plan_handle=handle,
                    catalog=opts.catalog,
                    return_url=opts.return_url(verified.shop),
                    test=opts.test_charges,
                    confirmed=confirmed,
                )
            )
        except ConfirmationNeeded as exc:
            # Nothing changed: the page asks the merchant, then sends "confirm": true.
            return JSONResponse(
                {"error": str(exc), "confirm": str(exc), "reason": "confirm"},
                status_code=409,
                headers=verified.headers,
            )
        except AlreadyOnPlan as exc:
            return JSONResponse(
                {"error": str(exc), "reason": "current"}, status_code=409, headers=verified.headers
            )
        except BillingError as exc:
            return JSONResponse({"error": str(exc)}, status_code=422)
        except (ShopifyTransientError, ShopifyTokenUnavailable) as exc:
            log.warning("app_home.billing_unavailable", error=str(exc))
            return _unavailable("Shopify is not answering right now; try again in a minute")
        except (ShopifyAdminError, ShopError) as exc:
            log.warning("app_home.billing_failed", error=str(exc))
            return JSONResponse({"error": str(exc)}, status_code=502)
        if url is not None:
            return JSONResponse({"confirmation_url": url}, headers=verified.headers)
        _, _, plan = await anyio.to_thread.run_sync(lambda: self._read_local(verified.shop))
        return JSONResponse(_plan_json(plan, opts.catalog), headers=verified.headers)

    async def retry_signup(self, request: Request, verified: Verified) -> Response:
        def restart() -> str:
            with self._runtime.sessions() as session, session.begin():
                shop_id = session.scalar(select(Shop.id).where(Shop.domain == verified.shop))
                assert shop_id is not None
                return str(restart_signup(session, shop_id=shop_id).status)

        status = await anyio.to_thread.run_sync(restart)
        return JSONResponse({"onboarding": status}, headers=verified.headers)

    async def ctrwow_connect(self, request: Request, verified: Verified) -> Response:
        client = self._ctrwow_client()
        if client is None or not self._options.ctrwow_redirect_uri:
            return JSONResponse({"error": "CTRwow is not configured."}, status_code=503)
        try:
            url = await anyio.to_thread.run_sync(
                lambda: start_ctrwow_connect(
                    self._runtime.sessions,
                    self._runtime.vault,
                    client,
                    shop=verified.shop,
                    redirect_uri=self._options.ctrwow_redirect_uri,
                )
            )
        except ConnectNotNeeded as exc:
            return JSONResponse({"error": str(exc)}, status_code=409, headers=verified.headers)
        log.info("app_home.ctrwow_connect_started")
        return JSONResponse({"url": url}, headers={**verified.headers, "Cache-Control": "no-store"})

    async def ctrwow_callback(self, request: Request) -> Response:
        """CTRwow's redirect: a top-level page outside the admin, authenticated by ``state``."""
        params = request.query_params
        state, code, error = params.get("state"), params.get("code"), params.get("error")
        admin = self._options.admin_url
        if error is not None:
            # The merchant cancelled (access_denied) or CTRwow refused: back into the admin,
            # where the page says so. The state is spent; a new click starts a new one.
            log.info("app_home.ctrwow_callback_error", error=error)
            shop = None
            if state:
                shop = await anyio.to_thread.run_sync(
                    lambda: abandon_ctrwow_connect(self._runtime.sessions, state=state)
                )
            if shop is not None:
                outcome = "cancelled" if error == "access_denied" else "failed"
                return RedirectResponse(
                    f"{self._options.app_url(shop)}?ctrwow={outcome}",
                    status_code=303,
                    headers={"Cache-Control": "no-store", "Referrer-Policy": "no-referrer"},
                )
            return _message_page(
                "CTRwow is not connected",
                "You left the CTRwow sign-in before it finished, so nothing changed. Open the "
                "Sync App in your Shopify admin and choose “Connect your CTRwow account” "
                "when you are ready.",
                back_url=admin,
                back_label="Go to your Shopify admin",
                tone="warning",
            )
        if not state or not code:
            return _message_page(
                "This link is incomplete",
                "CTRwow's answer lacks its code or state, so nothing changed. Start again with "
                "“Connect your CTRwow account” in the app.",
                back_url=admin,
                back_label="Go to your Shopify admin",
            )
        client = self._ctrwow_client()
        if client is None:
            return _message_page(
                "CTRwow is not configured",
                "This installation of the Sync App has no CTRwow connection set up. Contact "
                "the app's support.",
                status=503,
                back_url=admin,
                back_label="Go to your Shopify admin",
            )
        try:
            done = await finish_ctrwow_connect(
                self._runtime.sessions,
                self._runtime.vault,
                client,
                state=state,
                code=code,
                redirect_uri=self._options.ctrwow_redirect_uri,
                shop_hint=params.get("shop"),
            )
        except BadState as exc:
            log.info("app_home.ctrwow_callback_bad_state")
            return _message_page(
                "This link cannot be used",
                str(exc),
                back_url=admin,
                back_label="Go to your Shopify admin",
            )
        except CtrwowConnectError as exc:
            log.warning("app_home.ctrwow_callback_failed", error=str(exc))
            return _message_page(
                "CTRwow could not be connected",
                str(exc),
                back_url=admin,
                back_label="Go to your Shopify admin",
            )
        log.info("app_home.ctrwow_connected", shop=done.shop, account_id=done.account_id)
        return RedirectResponse(
            self._options.app_url(done.shop),
            status_code=303,
            headers={"Cache-Control": "no-store", "Referrer-Policy": "no-referrer"},
        )

    def routes(self) -> list[BaseRoute]:
        v = self._verified
        return [
            Route("/", v(self.home), methods=["GET"]),
            Route(BILLING_RETURN_PATH, v(self.billing_return), methods=["GET"]),
            Route(PATCH_ID_TOKEN_PATH, self.patch_id_token, methods=["GET"]),
            Route("/app/api/shop", v(self.shop_json), methods=["GET"]),
            Route("/app/api/home", v(self.home_status), methods=["GET"]),
            Route("/app/api/web-vitals", v(self.web_vitals), methods=["POST"]),
            Route("/app/api/shop/refresh", v(self.refresh_shop), methods=["POST"]),
            Route("/app/api/emanage/sso", v(self.sso_link), methods=["POST"]),
            Route("/app/api/emanage/link", v(self.emanage_link), methods=["POST"]),
            Route("/app/api/payment-providers", v(self.providers_json), methods=["GET"]),
            Route("/app/api/billing", v(self.billing_json), methods=["GET"]),
            Route("/app/api/billing/plan", v(self.choose), methods=["POST"]),
            Route("/app/api/onboarding/retry", v(self.retry_signup), methods=["POST"]),
            Route("/app/api/ctrwow/connect", v(self.ctrwow_connect), methods=["POST"]),
            Route(CTRWOW_CALLBACK_PATH, self.ctrwow_callback, methods=["GET"]),
        ]


_TONES = {
    "critical": ("#fee9e8", "#8e0b21", "#fd8282"),
    "warning": ("#fff1e3", "#5e4200", "#ffb800"),
    "info": ("#eaf4ff", "#00527c", "#91d0ff"),
}


def _message_page(
    title: str,
    message: str,
    *,
    status: int = 400,
    back_url: str | None = None,
    back_label: str = "",
    tone: str = "critical",
) -> Response:
    """A page for a merchant outside the admin (no App Bridge): styled like the admin, saying
    what happened, with a way back into the Shopify admin."""
    bg, fg, edge = _TONES[tone]
    html = _templates.get_template("message.html").render(
        title=title,
        message=message,
        back_url=back_url,
        back_label=back_label,
        tone=tone,
        tone_bg=bg,
        tone_fg=fg,
        tone_edge=edge,
    )
    return HTMLResponse(
        html,
        status_code=status,
        headers={
            "Cache-Control": "no-store",
            "Referrer-Policy": "no-referrer",
            "Content-Security-Policy": "default-src 'none'; style-src 'unsafe-inline'; "
            "img-src 'self'; frame-ancestors 'none'",
        },
    )


# Headers of the library's refusals that App Bridge acts on; kept when the body becomes JSON.
_APP_BRIDGE_HEADERS = (
    "x-shopify-retry-invalid-session-request",
    "x-shopify-api-request-failure-reauthorize-url",
    "retry-after",
)


def _as_json_error(response: Response) -> Response:
    """A refusal of an ``/app/api/*`` request as JSON (``{"error": …}``), App Bridge headers
    kept: the JSON routes answer JSON, whatever shopifyapp's response body is."""
    if response.media_type == "application/json":
        return response
    raw = bytes(response.body).decode("utf-8", errors="replace").strip()
    message = raw or ("Unauthorized" if response.status_code == 401 else "refused")
    headers = {k: v for k, v in response.headers.items() if k.lower() in _APP_BRIDGE_HEADERS}
    return JSONResponse({"error": message}, status_code=response.status_code, headers=headers)


@dataclass(frozen=True, slots=True)
class _HomeData:
    """Everything the App Home shows that the app has itself (no network call)."""

    status: ShopStatus
    signup: SignupView | None
    plan: PlanState
    ctrwow_connect: bool
    connections: dict[str, ConnectionView]
    sync: SyncStatus | None = None
    backfill: BackfillProgress | None = None


@dataclass(frozen=True, slots=True)
class _Part:
    html: str
    version: str


# The sections of the page its polling swaps when their version changes (blocks of
# app_home.html: one template renders the page and its updates).
_PARTS = ("connections", "onboarding", "sync", "plan")


def _importing(data: _HomeData) -> bool:
    return data.backfill is not None and data.backfill.run is not None and not data.backfill.done


def _render_block(name: str, context: dict[str, Any]) -> str:
    template = _templates.get_template("app_home.html")
    return "".join(template.blocks[name](template.new_context(context)))


def _render_parts(context: dict[str, Any]) -> dict[str, _Part]:
    out = {}
    for name in _PARTS:
        html = _render_block(name, context)
        out[name] = _Part(html, hashlib.sha256(html.encode()).hexdigest()[:16])
    return out


def _recommended(state: PlanState, catalog: Catalog) -> str | None:
    """The one plan the Plan section offers as its primary action: the first paid plan above
    the current one (none when the store is on the top plan)."""
    plans = list(catalog.plans)
    current = next((i for i, p in enumerate(plans) if p.handle == state.plan.handle), -1)
    return next((p.handle for p in plans[current + 1 :] if not p.is_free), None)


def _billing_notice(found: tuple[str, Plan] | None, state: PlanState) -> tuple[str, str]:
    """What the billing return says about the charge it names."""
    if found is None:
        return f"No new plan was approved; this store stays on {state.plan.name}.", "info"
    status, plan = found
    if status == "ACTIVE":
        return f"The {plan.name} plan is active. Thank you!", "success"
    if status == "DECLINED":
        return (
            f"You declined the {plan.name} plan, so nothing is charged; this store stays on "
            f"{state.plan.name}.",
            "warning",
        )
    if status == "PENDING":
        return (
            f"Shopify has not confirmed the {plan.name} plan yet; this page updates when it does.",
            "info",
        )
    return (
        f"The {plan.name} charge is {status.lower()}; this store is on {state.plan.name}.",
        "info",
    )


def _unavailable(message: str) -> Response:
    return JSONResponse({"error": message}, status_code=503, headers={"Retry-After": "30"})


def app_home(runtime: ShopsRuntime, config: AppConfig, settings: Settings) -> AppHome:
    """The App Home of an app with shopifyapp ``config``; close it with ``aclose()``."""
    return AppHome(runtime, config, HomeOptions.from_settings(settings))
