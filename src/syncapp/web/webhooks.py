"""``POST /webhooks/shopify``: verify, record durably, acknowledge. Nothing else.

Checks run cheapest-first and every refusal stores nothing:

====================================================  ======
wrong method                                           405
body over ``SYNCAPP_WEBHOOK_MAX_BYTES``                 413
missing or wrong ``X-Shopify-Hmac-Sha256`` (old secret 401
accepted during rotation) — Shopify's review expects
401 for compliance topics too
body not UTF-8                                         400
missing topic / shop / webhook id header, shop not     400
``<name>.myshopify.com``, body not a JSON object, or
too deep / numbers too large to parse
a topic ``shopify.app.toml`` does not subscribe to     200, not stored
database unavailable                                   503
stored, or already stored (a redelivery)               200
====================================================  ======

The HMAC of the raw body is checked first (:func:`signed`, constant time, current and previous
secret): nothing parses an unsigned body, so a forged one costs one HMAC and gets its 401
whatever it contains. Then ``shopifyapp.verify_webhook_req`` (Shopify's own library) verifies
it again as before — it parses the body with the standard ``json`` to redact its log, so a
signed but pathological body is refused with 400 before it gets there. The event is then
written through the bus's inbox (:mod:`syncapp.bus.inbox`, group commits), the durable hand-off
to the workers, its payload encrypted when the topic carries customer data
(:mod:`syncapp.bus.sealed`); topics the app does not subscribe to are acknowledged, so
Shopify stops retrying, and dropped.
"""

from __future__ import annotations

import base64
import binascii
import hashlib
import hmac
import re
from collections.abc import Awaitable, Callable, Collection, Sequence

import orjson
import structlog
from prometheus_client import Counter
from shopify_app import AppConfig
from shopify_app.verify.webhook import verify_webhook_req
from starlette.types import ASGIApp, Receive, Scope, Send

from syncapp.bus.envelope import partition_key_of_body
from syncapp.bus.inbox import Inbox, InboxClosed, InboxEvent
from syncapp.bus.sealed import seal
from syncapp.store.vault import Vault

log = structlog.get_logger("syncapp.web.webhooks")

SHOP_DOMAIN = re.compile(r"^[a-z0-9][a-z0-9-]{0,99}\.myshopify\.com$")
TOPIC = re.compile(r"^[a-z_]{1,64}/[a-z_]{1,64}$")
HEADER_VALUE = re.compile(r"^[A-Za-z0-9._:\-]{1,128}$")
Headers = Sequence[tuple[bytes, bytes]]

WEBHOOKS = Counter(
    "syncapp_webhooks_total",
    "Shopify webhook requests by outcome (stored, duplicate or the refusal reason).",
    ["outcome"],
)


class _TooLarge(Exception):
    """The body is over the configured limit (answered 413)."""


class _Disconnected(Exception):
    """The client went away before sending the whole body."""


async def _send_plain(send: Send, status: int, text: str, headers: Headers = ()) -> None:
    body = text.encode()
    await send(
        {
            "type": "http.response.start",
            "status": status,
            "headers": [
                (b"content-type", b"text/plain; charset=utf-8"),
                (b"content-length", str(len(body)).encode()),
                *headers,
            ],
        }
    )
    await send({"type": "http.response.body", "body": body})


async def _refuse(send: Send, status: int, outcome: str, detail: str, **fields: object) -> None:
    WEBHOOKS.labels(outcome=outcome).inc()
    log.warning("webhook.refused", status=status, reason=outcome, detail=detail, **fields)
    await _send_plain(send, status, detail)


Refuse = Callable[[Send, int, str, str], Awaitable[None]]


async def read_post(
    scope: Scope, receive: Receive, send: Send, max_bytes: int, refuse: Refuse
) -> tuple[dict[str, str], bytes] | None:
    """The headers and body of a webhook POST, or None once ``refuse`` has answered it (405
    for another method, 413 past ``max_bytes``, 400 when the client went away)."""
    if scope["method"] != "POST":
        await refuse(send, 405, "method", "Method Not Allowed")
        return None
    # Names arrive lower-cased; of repeated headers the first wins, as in Starlette.
    headers = {k.decode("latin-1"): v.decode("latin-1") for k, v in reversed(scope["headers"])}
    try:
        raw = await _read_body(receive, headers.get("content-length"), max_bytes)
    except _TooLarge:
        await refuse(send, 413, "too_large", f"body larger than {max_bytes} bytes")
        return None
    except _Disconnected:
        await refuse(send, 400, "disconnect", "client went away")
        return None
    return headers, raw


async def _read_body(receive: Receive, declared: str | None, limit: int) -> bytes:
    if declared is not None and declared.isdigit() and int(declared) > limit:
        raise _TooLarge
    chunks: list[bytes] = []
    size = 0
    while True:
        message = await receive()
        if message["type"] == "http.disconnect":
            raise _Disconnected
        chunk = message.get("body", b"")
        size += len(chunk)
        if size > limit:
            raise _TooLarge
        chunks.append(chunk)
        if not message.get("more_body", False):
            return b"".join(chunks)


class ShopifyWebhookEndpoint:
    """The webhook endpoint as a plain ASGI app; one instance per app, holding the
    verification config. :class:`WebhookRoute` puts it in front of the router."""

    def __init__(
        self,
        *,
        app_config: AppConfig,
        inbox: Inbox,
        max_bytes: int,
        topics: Collection[str],
        vault: Vault,
    ) -> None:
        self._config = app_config
        self._inbox = inbox
        self._max_bytes = max_bytes
        self._topics = frozenset(topics)
        self._vault = vault
        old = app_config.get("old_client_secret")
        self._secrets = tuple(s.encode("utf-8") for s in (app_config["client_secret"], old) if s)

    async def __call__(self, scope: Scope, receive: Receive, send: Send) -> None:
        request = await read_post(scope, receive, send, self._max_bytes, _refuse)
        if request is None:
            return
        headers, raw = request
        received = headers.get("x-shopify-hmac-sha256") or headers.get("shopify-hmac-sha256", "")
        if not signed(raw, received, self._secrets):
            await _refuse(send, 401, "signature", "Unauthorized")
            return
        try:
            body = raw.decode("utf-8")
        except UnicodeDecodeError:
            await _refuse(send, 400, "encoding", "body is not UTF-8")
            return

        topic = headers.get("x-shopify-topic", "")
        shop = headers.get("x-shopify-shop-domain", "")
        delivery_id = headers.get("x-shopify-webhook-id", "")
        event_id = headers.get("x-shopify-event-id") or None
        refusal = _check_routing(topic, shop, delivery_id, event_id)
        if refusal is not None:
            await _refuse(send, 400, *refusal)
            return
        try:
            # orjson refuses nesting deeper than 1024 and numbers beyond a double.
            parsed = orjson.loads(raw)
        except orjson.JSONDecodeError as exc:
            await _refuse(send, 400, "json", f"body is not JSON: {exc}", shop=shop, topic=topic)
            return
        if not isinstance(parsed, dict):
            await _refuse(send, 400, "json", "body is not a JSON object", shop=shop, topic=topic)
            return
        try:
            verdict = verify_webhook_req(
                {"method": "POST", "headers": headers, "url": scope["path"], "body": body},
                self._config,
            )
        except (RecursionError, ValueError):
            # The library's log redaction re-parses with the standard json, which gives up
            # sooner than orjson (nesting past ~1000, integers past 4300 digits).
            await _refuse(send, 400, "json", "body is too deeply nested", shop=shop, topic=topic)
            return
        if not verdict.ok:
            await _refuse(send, 401, "signature", "Unauthorized", code=verdict.log.code)
            return
        if topic not in self._topics:
            # Acknowledged so that Shopify stops retrying; no worker would ever take it.
            WEBHOOKS.labels(outcome="unsubscribed").inc()
            log.info("webhook.unsubscribed_topic", shop=shop, topic=topic, webhook_id=delivery_id)
            await send({"type": "http.response.start", "status": 200, "headers": _EMPTY_200})
            await send({"type": "http.response.body", "body": b""})
            return

        event = InboxEvent(
            source="shopify",
            shop_domain=shop,
            topic=topic,
            delivery_id=delivery_id,
            event_id=event_id,
            api_version=headers.get("x-shopify-api-version"),
            triggered_at=headers.get("x-shopify-triggered-at"),
            # Orders, customers and compliance payloads are encrypted at rest.
            payload=seal(self._vault, topic, body),
            # From the body as Shopify signed it (before sealing): shop and object.
            partition_key=partition_key_of_body(shop, topic, parsed),
        )
        try:
            stored = await self._inbox.record(event)
        except (InboxClosed, Exception) as exc:
            WEBHOOKS.labels(outcome="unavailable").inc()
            log.error(
                "webhook.not_recorded",
                shop=shop,
                topic=topic,
                webhook_id=delivery_id,
                error=str(exc),
            )
            await _send_plain(send, 503, "temporarily unavailable", ((b"retry-after", b"5"),))
            return
        outcome = "stored" if stored else "duplicate"
        WEBHOOKS.labels(outcome=outcome).inc()
        log.info(
            f"webhook.{outcome}", shop=shop, topic=topic, webhook_id=delivery_id, event_id=event_id
        )
        await send({"type": "http.response.start", "status": 200, "headers": _EMPTY_200})
        await send({"type": "http.response.body", "body": b""})


_EMPTY_200 = [(b"content-length", b"0")]


def signed(body: bytes, received: str, secrets: Sequence[bytes]) -> bool:
    """True when ``received`` (base64) is the HMAC-SHA256 of ``body`` under one of ``secrets``.

    Runs before anything looks inside the body; compares in constant time.
    """
    try:
        digest = base64.b64decode(received, validate=True)
    except (binascii.Error, ValueError):
        return False
    ok = False
    for secret in secrets:
        expected = hmac.new(secret, body, hashlib.sha256).digest()
        ok |= hmac.compare_digest(expected, digest)
    return ok


def _check_routing(
    topic: str, shop: str, delivery_id: str, event_id: str | None
) -> tuple[str, str] | None:
    """(outcome, detail) of the first routing header that is missing or malformed, or None."""
    if not TOPIC.match(topic):
        return "topic", "missing or invalid X-Shopify-Topic"
    if not SHOP_DOMAIN.match(shop):
        return "shop", "X-Shopify-Shop-Domain must be <name>.myshopify.com"
    if not HEADER_VALUE.match(delivery_id):
        return "webhook_id", "missing or invalid X-Shopify-Webhook-Id"
    if event_id is not None and not HEADER_VALUE.match(event_id):
        return "event_id", "invalid X-Shopify-Event-Id"
    return None


class WebhookRoute:
    """Middleware that answers ``path`` with ``endpoint`` and passes everything else on.

    The webhook is the hot path: going around Starlette's exception middleware, router and
    Request/Response objects saved about a sixth of its CPU per request (docs/PERFORMANCE.md).
    It sits inside the request-context middleware, so request ids, logs and metrics are the
    same as for every other route; the endpoint answers every error it expects itself.
    """

    def __init__(self, app: ASGIApp, *, path: str, endpoint: ASGIApp) -> None:
        self.app = app
        self.path = path
        self.endpoint = endpoint

    async def __call__(self, scope: Scope, receive: Receive, send: Send) -> None:
        if scope["type"] == "http" and scope["path"] == self.path:
            await self.endpoint(scope, receive, send)
        else:
            await self.app(scope, receive, send)
