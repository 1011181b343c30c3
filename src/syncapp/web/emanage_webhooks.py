"""``POST /webhooks/emanage``: eManageCRM's notifications — verify, record durably, acknowledge.

Checks run cheapest-first and every refusal stores nothing:

====================================================  ======
wrong method                                           405
body over ``SYNCAPP_WEBHOOK_MAX_BYTES``                 413
``Emanage-Signature`` missing or malformed, its ``t``   401
more than 5 minutes from our clock (a replay), or no
``v1`` is the HMAC under the current or previous
``SYNCAPP_EMANAGE_WEBHOOK_SECRET``
body not a JSON object, ``id`` not a GUID or not the   400
``Emanage-Event-Id``, unknown ``type``, ``accountId``
not a GUID, ``data`` not an object
an ``accountId`` no shop of the app has                200, not stored (logged)
database unavailable                                   503
stored, or already stored (a redelivery)               200
====================================================  ======

The signature (timestamp window, then constant-time HMACs of the raw bytes) is checked before
anything parses the body, so a forged request costs one HMAC per secret. A verified event is
written through the bus's inbox (:mod:`syncapp.bus.inbox`: group commits, deduplicated on
``("emanage", event id)``) with the notification as its payload, the event type as its topic
and the shop whose eManageCRM account sent it. Its partition key is the Shopify product when
the eManageCRM product is linked to one (``<shop>/Product/<id>``, the key of that product's
Shopify webhooks, so the two are never processed at once), else ``<shop>/EmanageProduct/<id>``.

An unknown account is acknowledged rather than refused: eManageCRM delivers one subscription's
events in order, so a refusal would hold up every shop's events behind an account that is not
(or no longer) ours (docs/adr/0019). The shop is found through a small in-process cache of the
``emanage_accounts`` table, read in a thread: no network call, no blocking on the event loop.
"""

from __future__ import annotations

import asyncio
import time
from collections.abc import Callable, Mapping, Sequence

import orjson
import structlog
from prometheus_client import Counter
from sqlalchemy import Engine, select
from starlette.types import Receive, Scope, Send

from syncapp.bus.envelope import partition_key
from syncapp.bus.inbox import Inbox, InboxEvent
from syncapp.connectors.emanage.notifications import (
    Notification,
    parse_notification,
    verify_signature,
)
from syncapp.onboarding.models import EmanageAccount
from syncapp.store.models import Shop
from syncapp.web.webhooks import _EMPTY_200, _send_plain, read_post

log = structlog.get_logger("syncapp.web.emanage_webhooks")

NOTIFICATIONS = Counter(
    "syncapp_emanage_notifications_total",
    "eManageCRM notification requests by outcome (stored, duplicate, unknown_account or the "
    "refusal reason).",
    ["outcome"],
)

# The shop of an account rarely changes (a shop switching to a dedicated subscription gets a
# new account); a minute of caching keeps the database out of the hot path.
KNOWN_TTL = 60.0
UNKNOWN_TTL = 5.0
MAX_CACHED = 10_000


class AccountShops:
    """eManageCRM account id → the shop domain, from ``emanage_accounts`` (cached)."""

    def __init__(self, engine: Engine, *, clock: Callable[[], float] = time.monotonic) -> None:
        self._engine = engine
        self._clock = clock
        self._cache: dict[str, tuple[str | None, float]] = {}

    async def shop_of(self, account_id: str) -> str | None:
        cached = self._cache.get(account_id)
        now = self._clock()
        if cached is not None and cached[1] > now:
            return cached[0]
        shop = await asyncio.to_thread(self._query, account_id)
        if len(self._cache) >= MAX_CACHED:
            self._cache.clear()
        self._cache[account_id] = (shop, now + (KNOWN_TTL if shop else UNKNOWN_TTL))
        return shop

    def _query(self, account_id: str) -> str | None:
        with self._engine.connect() as conn:
            row = conn.execute(
                select(Shop.domain)
                .join(EmanageAccount, EmanageAccount.shop_id == Shop.id)
                .where(EmanageAccount.account_id == account_id)
                .limit(1)
            ).first()
        return None if row is None else str(row[0])


def notification_partition_key(shop_domain: str, notification: Notification) -> str:
    """The Shopify product's key when the product is linked to one, else eManageCRM's."""
    shopify_id = notification.shopify_product_id
    if shopify_id is not None:
        return partition_key(shop_domain, f"Product/{shopify_id}")
    product_id = notification.product_id
    if product_id is not None:
        return partition_key(shop_domain, f"EmanageProduct/{product_id}")
    return partition_key(shop_domain)


async def _refuse(send: Send, status: int, outcome: str, detail: str, **fields: object) -> None:
    NOTIFICATIONS.labels(outcome=outcome).inc()
    log.warning(
        "emanage_notification.refused", status=status, reason=outcome, detail=detail, **fields
    )
    await _send_plain(send, status, detail)


async def _ok(send: Send) -> None:
    await send({"type": "http.response.start", "status": 200, "headers": _EMPTY_200})
    await send({"type": "http.response.body", "body": b""})


class EmanageWebhookEndpoint:
    """The notification endpoint as a plain ASGI app (put in front of the router by
    :class:`syncapp.web.webhooks.WebhookRoute`)."""

    def __init__(
        self,
        *,
        inbox: Inbox,
        secrets: Sequence[str],
        accounts: AccountShops,
        max_bytes: int,
        clock: Callable[[], float] = time.time,
    ) -> None:
        self._inbox = inbox
        self._secrets = tuple(s.encode("utf-8") for s in secrets if s)
        self._accounts = accounts
        self._max_bytes = max_bytes
        self._clock = clock

    async def __call__(self, scope: Scope, receive: Receive, send: Send) -> None:
        request = await read_post(scope, receive, send, self._max_bytes, _refuse)
        if request is None:
            return
        headers, raw = request
        problem = verify_signature(
            headers.get("emanage-signature", ""), raw, self._secrets, now=self._clock()
        )
        if problem is not None:
            await _refuse(send, 401, f"signature_{problem}", "Unauthorized")
            return
        event_id = headers.get("emanage-event-id", "")
        try:
            # orjson refuses invalid UTF-8, nesting deeper than 1024 and numbers beyond a double.
            parsed = orjson.loads(raw)
        except orjson.JSONDecodeError as exc:
            await _refuse(send, 400, "json", f"body is not JSON: {exc}", event_id=event_id)
            return
        notification = parse_notification(parsed, event_id)
        if isinstance(notification, str):
            await _refuse(send, 400, "body", notification, event_id=event_id)
            return
        fields = {
            "topic": notification.type,
            "event_id": notification.id,
            "account_id": notification.account_id,
        }
        try:
            shop = await self._accounts.shop_of(notification.account_id)
        except Exception as exc:
            await self._unavailable(send, exc, fields)
            return
        if shop is None:
            NOTIFICATIONS.labels(outcome="unknown_account").inc()
            log.warning("emanage_notification.unknown_account", **fields)
            await _ok(send)
            return
        event = InboxEvent(
            source="emanage",
            shop_domain=shop,
            topic=notification.type,
            delivery_id=notification.id,
            event_id=notification.id,
            api_version=None,
            triggered_at=notification.occurred_at,
            # As signed: product payloads carry no customer data, so nothing is sealed.
            payload=raw.decode("utf-8"),
            partition_key=notification_partition_key(shop, notification),
        )
        try:
            stored = await self._inbox.record(event)
        except Exception as exc:  # InboxClosed or a failed commit: eManageCRM retries
            await self._unavailable(send, exc, {**fields, "shop": shop})
            return
        outcome = "stored" if stored else "duplicate"
        NOTIFICATIONS.labels(outcome=outcome).inc()
        log.info(
            f"emanage_notification.{outcome}",
            shop=shop,
            partition_key=event.partition_key,
            **fields,
        )
        await _ok(send)

    async def _unavailable(self, send: Send, exc: Exception, fields: Mapping[str, object]) -> None:
        NOTIFICATIONS.labels(outcome="unavailable").inc()
        log.error("emanage_notification.not_recorded", error=str(exc), **fields)
        await _send_plain(send, 503, "temporarily unavailable", ((b"retry-after", b"5"),))
