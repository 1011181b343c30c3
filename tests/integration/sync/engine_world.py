"""A running world for the sync engine's tests: the Shopify sandbox delivering signed webhooks
to the app, the eManageCRM sandbox, the app's web service (its ingest stores every webhook in
the bus's inbox), each served by uvicorn on a free port; a shop installed through the App Home
and signed up to an eManageCRM account (more with :meth:`SyncWorld.add_shop`); and a bus
consumer of the sync's topic table.

Writes are counted at the HTTP level, outside any app code (:class:`WriteCounter` wraps each
sandbox as an ASGI middleware): Shopify mutations sent with the app's token, eManageCRM product
writes that carry the app's origin marker. A merchant's edits are made with a token of their
own (Shopify) and without the marker (eManageCRM), so they are not counted.
"""

from __future__ import annotations

import asyncio
import hashlib
import re
import threading
import uuid
from collections.abc import AsyncIterator, Callable
from contextlib import ExitStack, asynccontextmanager
from dataclasses import dataclass, field, replace
from datetime import UTC, datetime
from pathlib import Path
from typing import Any

import httpx
import orjson
from sqlalchemy import func, select
from starlette.types import ASGIApp, Message, Receive, Scope, Send

from syncapp.bus.consumer import Consumer
from syncapp.bus.embedded import EmbeddedBus
from syncapp.bus.interface import subscriptions
from syncapp.bus.models import InboundEvent
from syncapp.bus.retry import RetryPolicy
from syncapp.connectors.emanage import EmanageClient, EmanageProduct
from syncapp.connectors.shopify.products import ProductsClient
from syncapp.connectors.shopify.transport import ShopifyRedirectTransport
from syncapp.onboarding.models import EmanageAccount
from syncapp.onboarding.notifications import subscribe_to_notifications
from syncapp.sandbox.emanage import EmanageSandboxConfig, SystemClient
from syncapp.sandbox.emanage import create_app as create_emanage
from syncapp.sandbox.shopify.admin import shop_handle
from syncapp.sandbox.shopify.app import create_app as create_sandbox
from syncapp.shops.runtime import ShopsRuntime
from syncapp.shops.tokens import get_admin_token
from syncapp.store.db import make_engine
from syncapp.store.migrate import upgrade
from syncapp.store.models import Shop
from syncapp.sync import topics
from syncapp.sync.context import SyncContext, open_sync
from syncapp.sync.events import RESYNC_REQUESTED
from syncapp.sync.models import PRODUCT, SyncConflict, SyncLink
from syncapp.web.app import create_app
from tests.conftest import make_settings
from tests.integration.emanage.conftest import serve
from tests.integration.sandbox.conftest import CLIENT_ID, CLIENT_SECRET, make_config
from tests.integration.shops.conftest import System, _bound_socket, serve_on

EMANAGE_ID = "syncapp-emanage-test"
EMANAGE_SECRET = "emanage-system-secret-0123456789abcdef"
API_VERSION = "2026-10"
FAST = RetryPolicy(max_attempts=4, base_seconds=0.05, cap_seconds=0.2)
WEBHOOK_SECRET = "whsec_sync_world_0123456789abcdef0123456789ab"
# The sandbox's deliverer looks for work often and retries soon (the app is up throughout).
DELIVERY: dict[str, Any] = {
    "notification_poll_seconds": 0.01,
    "notification_retry_base_seconds": 0.05,
    "notification_retry_cap_seconds": 0.2,
}


@dataclass
class WriteCounter:
    """Counts the requests ``is_write`` selects, by side, as they pass to the sandbox."""

    app: ASGIApp
    is_write: Callable[[Scope, bytes], bool]
    count: int = 0
    # Status to answer instead of passing on, for the next ``fail_next`` writes.
    fail_next: int = 0
    fail_status: int = 503
    _lock: threading.Lock = field(default_factory=threading.Lock)

    async def __call__(self, scope: Scope, receive: Receive, send: Send) -> None:
        if scope["type"] != "http":
            await self.app(scope, receive, send)
            return
        chunks: list[Message] = []
        while True:
            message = await receive()
            chunks.append(message)
            if message["type"] != "http.request" or not message.get("more_body"):
                break
        body = b"".join(m.get("body", b"") for m in chunks)
        if self.is_write(scope, body):
            with self._lock:
                failing = self.fail_next > 0
                if failing:
                    self.fail_next -= 1
                else:
                    self.count += 1
            if failing:
                await send(
                    {
                        "type": "http.response.start",
                        "status": self.fail_status,
                        "headers": [(b"content-type", b"application/json")],
                    }
                )
                await send({"type": "http.response.body", "body": b'{"code":"unavailable"}'})
                return
        replay = iter(chunks)

        async def again() -> Message:
            # After the body, the real channel: a streamed response (a bulk result file)
            # listens for the client's disconnect, which must not come early.
            message = next(replay, None)
            return message if message is not None else await receive()

        await self.app(scope, again, send)


def _header(scope: Scope, name: bytes) -> str | None:
    for key, value in scope.get("headers") or ():
        if key.lower() == name:
            return bytes(value).decode()
    return None


@dataclass
class SyncWorld:
    system: System
    emanage_url: str
    shop: str
    account_id: str
    merchant_token: str
    shopify_writes: WriteCounter
    emanage_writes: WriteCounter
    context: SyncContext
    merchant_emanage: EmanageClient
    _merchant: ProductsClient | None = None
    # Shared by every shop's view of the world (:meth:`add_shop`): the app's Shopify tokens
    # (what the write counter counts) and the merchants' clients to close at the end.
    _app_tokens: list[str] = field(default_factory=list)
    _merchants: list[ProductsClient] = field(default_factory=list)
    _admin_csrf: dict[str, str] = field(default_factory=dict)

    @property
    def runtime(self) -> ShopsRuntime:
        return self.system.runtime

    def merchant(self) -> ProductsClient:
        """The merchant editing Shopify (a token of their own, not the app's)."""
        if self._merchant is None:
            self._merchant = ProductsClient(
                shop=self.shop,
                access_token=self.merchant_token,
                api_version=API_VERSION,
                http=httpx.Client(
                    transport=ShopifyRedirectTransport(self.system.sandbox_url), timeout=10
                ),
            )
            self._merchants.append(self._merchant)
        return self._merchant

    async def add_shop(self, handle_seed: str, **shop_fields: Any) -> SyncWorld:
        """Another shop in this world, installed and signed up to an eManageCRM account of its
        own as the first one was (``shop_fields``: the sandbox's, e.g. ``plan_name="Plus"``);
        returns the world as seen by that shop: the same sandboxes, app, counters and
        consumers (a consumer of any view handles every shop's events)."""
        shop, account_id, merchant_token = await _signed_up_shop(
            self.system, self.context, self._app_tokens, handle_seed, **shop_fields
        )
        return replace(
            self, shop=shop, account_id=account_id, merchant_token=merchant_token, _merchant=None
        )

    def consumer(self, policy: RetryPolicy = FAST) -> Consumer:
        table = topics.topics(self.context)
        bus = EmbeddedBus(self.runtime.engine, policy=policy, lease_seconds=30)
        return Consumer(bus.consumer(sorted(table)), subscriptions(table), batch_size=16)

    def unsettled(self) -> int:
        """Sync events still pending or in flight."""
        with self.runtime.sessions() as session:
            return int(
                session.scalar(
                    select(func.count()).where(
                        InboundEvent.shop_domain == self.shop,
                        InboundEvent.status.in_(("pending", "processing")),
                        InboundEvent.topic.in_(
                            (*topics.SHOPIFY_TOPICS, *topics.EMANAGE_TOPICS, RESYNC_REQUESTED.name)
                        ),
                    )
                )
                or 0
            )

    async def settle(
        self, *, quiet: float = 0.6, within: float = 20.0, policy: RetryPolicy = FAST
    ) -> None:
        """Consume until nothing is left and no new event arrived for ``quiet`` seconds (the
        sandboxes deliver asynchronously, and every write the engine makes comes back)."""
        consumer = self.consumer(policy)
        loop = asyncio.get_running_loop()
        deadline = loop.time() + within
        idle_since: float | None = None
        while True:
            assert loop.time() < deadline, f"still {self.unsettled()} sync events unsettled"
            settled = await consumer.run_once()
            if settled:
                idle_since = None
                continue
            if self.unsettled() == 0:
                idle_since = idle_since or loop.time()
                if loop.time() - idle_since >= quiet:
                    return
            await asyncio.sleep(0.03)

    def link(self, *, gid: str | None = None, emanage_id: str | None = None) -> SyncLink | None:
        with self.runtime.sessions() as session:
            query = select(SyncLink).where(SyncLink.kind == PRODUCT)
            if gid:
                query = query.where(SyncLink.shopify_gid == gid)
            if emanage_id:
                query = query.where(SyncLink.emanage_id == emanage_id)
            return session.scalars(query).first()

    def conflicts(self) -> list[SyncConflict]:
        with self.runtime.sessions() as session:
            return list(session.scalars(select(SyncConflict).order_by(SyncConflict.id)))

    def events(self, **where: Any) -> list[InboundEvent]:
        with self.runtime.sessions() as session:
            query = select(InboundEvent).where(InboundEvent.shop_domain == self.shop)
            for name, value in where.items():
                query = query.where(getattr(InboundEvent, name) == value)
            return list(session.scalars(query.order_by(InboundEvent.id)))


def _shopify_write(app_token: list[str]) -> Callable[[Scope, bytes], bool]:
    def is_write(scope: Scope, body: bytes) -> bool:
        if scope["method"] != "POST" or not scope["path"].endswith("/graphql.json"):
            return False
        token = _header(scope, b"x-shopify-access-token")
        return token is not None and token in app_token and b"mutation" in body[:400]

    return is_write


def _emanage_write(scope: Scope, body: bytes) -> bool:
    return (
        scope["method"] in ("POST", "PUT")
        and "/products" in scope["path"]
        and _header(scope, b"x-sync-origin") == "syncapp"
    )


@asynccontextmanager
async def sync_world(
    tmp_path: Path, handle_seed: str, *, deliver: bool = False, plan_name: str = "Standard"
) -> AsyncIterator[SyncWorld]:
    """The served world with one installed, signed-up shop; consumers are the test's.

    ``deliver``: the app subscribes to eManageCRM's notifications as the worker does
    (:func:`subscribe_to_notifications`) and the sandbox delivers them, signed, to the app's
    ``/webhooks/emanage``; without it a test stores the ones it wants with :func:`notify`
    (duplicates, reorderings and replays exactly when the test says)."""
    with ExitStack() as stack:
        counters: dict[str, WriteCounter] = {}

        def emanage_app(base_url: str) -> ASGIApp:
            app = create_emanage(
                EmanageSandboxConfig(
                    database_path=tmp_path / "emanage.db",
                    public_url=base_url,
                    clients=(SystemClient(EMANAGE_ID, EMANAGE_SECRET),),
                    **(DELIVERY if deliver else {}),
                )
            )
            counters["emanage"] = WriteCounter(app, _emanage_write)
            return counters["emanage"]

        emanage_url = stack.enter_context(serve(emanage_app))
        app_sock, sandbox_sock = _bound_socket(), _bound_socket()
        app_url = f"http://127.0.0.1:{app_sock.getsockname()[1]}"
        sandbox_url = f"http://127.0.0.1:{sandbox_sock.getsockname()[1]}"
        settings = make_settings(
            tmp_path,
            database_url=f"sqlite:///{tmp_path / 'app.db'}",
            shopify_client_id=CLIENT_ID,
            shopify_client_secret=CLIENT_SECRET,
            shopify_base_url=sandbox_url,
            public_url=app_url,
            emanage_base_url=emanage_url,
            emanage_client_id=EMANAGE_ID,
            emanage_client_secret=EMANAGE_SECRET,
            emanage_webhook_secret=WEBHOOK_SECRET if deliver else None,
        )
        engine = make_engine(settings.database_url)
        stack.callback(engine.dispose)
        upgrade(engine)
        app_token: list[str] = []
        shopify = WriteCounter(
            # public_url: bulk result files are downloaded from the sandbox itself.
            create_sandbox(make_config(tmp_path, app_url, public_url=sandbox_url)),
            _shopify_write(app_token),
        )
        stack.enter_context(serve_on(shopify, sandbox_sock))
        stack.enter_context(serve_on(create_app(settings), app_sock))
        app_client = stack.enter_context(httpx.Client(base_url=app_url, timeout=20))
        control = stack.enter_context(httpx.Client(base_url=sandbox_url, timeout=20))
        system = System(
            settings=settings,
            app_url=app_url,
            sandbox_url=sandbox_url,
            app=app_client,
            control=control,
            runtime=ShopsRuntime.from_settings(settings, engine),
        )
        async with (
            open_sync(settings, system.runtime) as context,
            httpx.AsyncClient(timeout=10) as merchant_http,
        ):
            shop, account_id, merchant_token = await _signed_up_shop(
                system, context, app_token, handle_seed, currency_code="USD", plan_name=plan_name
            )
            if deliver:
                subscribed = await subscribe_to_notifications(
                    context.emanage, settings, asyncio.Event(), policy=FAST
                )
                assert subscribed is not None
            world = SyncWorld(
                system=system,
                emanage_url=emanage_url,
                shop=shop,
                account_id=account_id,
                merchant_token=merchant_token,
                shopify_writes=shopify,
                emanage_writes=counters["emanage"],
                context=context,
                merchant_emanage=EmanageClient(
                    merchant_http, emanage_url, EMANAGE_ID, EMANAGE_SECRET
                ),
                _app_tokens=app_token,
            )
            try:
                yield world
            finally:
                for merchant in world._merchants:
                    merchant.http.close()


async def _signed_up_shop(
    system: System,
    context: SyncContext,
    app_tokens: list[str],
    handle_seed: str,
    **shop_fields: Any,
) -> tuple[str, str, str]:
    """A sandbox shop, installed through the App Home and signed up to an eManageCRM account
    of its own; the app's token joins ``app_tokens``. Returns (shop, account id, a merchant's
    Shopify token)."""
    handle = "e" + hashlib.sha1(handle_seed.encode()).hexdigest()[:12]  # noqa: S324
    shop = system.create_shop(handle, **shop_fields)
    system.install(shop)
    app_tokens.append(get_admin_token(system.runtime, shop=shop))
    token = system.control.post(f"/_sandbox/shops/{shop}/custom_token", json={})
    assert token.status_code == 200, token.text
    account = await context.emanage.create_account(
        shop_domain=shop,
        name="Sync Test",
        email="owner@sync.example",
        currency="USD",
        idempotency_key=str(uuid.uuid4()),
    )
    with system.runtime.sessions.begin() as session:
        shop_id = session.scalar(select(Shop.id).where(Shop.domain == shop))
        assert shop_id is not None
        session.add(
            EmanageAccount(
                shop_id=shop_id,
                account_id=str(account.id),
                kind=account.kind,
                cid=str(account.cid),
                websales_api_url=account.websales_api_url,
            )
        )
    return shop, str(account.id), str(token.json()["access_token"])


async def admin_set_prices(
    world: SyncWorld, http: httpx.AsyncClient, gid: str, prices: dict[str, str]
) -> None:
    """The merchant saves new variant prices (variant GID → price) on the product's page in the
    Shopify admin (the sandbox's ``/store/<shop>/products/<id>`` form): the admin spends no
    app's cost bucket, unlike an edit through an API token."""
    number = gid.rsplit("/", 1)[-1]
    url = f"{world.system.sandbox_url}/store/{shop_handle(world.shop)}/products/{number}"
    token = world._admin_csrf.get(world.shop)
    if token is None:
        page = await http.get(url)
        assert page.status_code == 200, page.text[:500]
        found = re.search(r'name="csrf_token" value="([0-9a-f]+)"', page.text)
        assert found is not None, "no CSRF token on the admin's product page"
        token = world._admin_csrf[world.shop] = found.group(1)
    form = {"csrf_token": token}
    form.update({f"price-{vid.rsplit('/', 1)[-1]}": price for vid, price in prices.items()})
    saved = await http.post(url, data=form)
    assert saved.status_code == 303, saved.text[:500]


def notify(world: SyncWorld, product: EmanageProduct, topic: str = "product.updated") -> int:
    """Store eManageCRM's notification of ``product`` in the inbox as its ingest does (source
    ``emanage``, the documented data, the pair's partition key); returns the event's id."""
    refs = product.body.get("externalRefs") or {}
    gid = refs.get("shopifyProductId")
    obj = gid.removeprefix("gid://shopify/") if gid else f"EmanageProduct/{product.product_id}"
    # The notification's body as /webhooks/emanage stores it: data is the resource after the
    # change (the ingest is h-emnotify's; until it is merged here the test stores the row).
    data = {
        "id": str(uuid.uuid4()),
        "type": topic,
        "accountId": world.account_id,
        "occurredAt": product.updated_at.isoformat(),
        "data": {
            **product.body,
            "productId": product.product_id,
            "version": product.version,
            "origin": product.last_write_origin,
        },
    }
    with world.runtime.sessions.begin() as session:
        event = InboundEvent(
            source="emanage",
            topic=topic,
            shop_domain=world.shop,
            partition_key=f"{world.shop}/{obj}",
            delivery_id=f"emanage-{uuid.uuid4()}",
            payload=orjson.dumps(data, default=str).decode(),
            received_at=datetime.now(UTC),
            status="pending",
            attempts=0,
        )
        session.add(event)
        session.flush()
        return event.id


def shopify_graphql(world: SyncWorld, query: str, variables: dict[str, Any]) -> dict[str, Any]:
    """A raw Admin GraphQL call with the merchant's token (another app's stock update)."""
    response = world.merchant().http.post(
        f"https://{world.shop}/admin/api/{API_VERSION}/graphql.json",
        headers={"X-Shopify-Access-Token": world.merchant_token},
        json={"query": query, "variables": variables},
    )
    assert response.status_code == 200, response.text
    body: dict[str, Any] = response.json()
    assert "errors" not in body, body
    data: dict[str, Any] = body["data"]
    return data
