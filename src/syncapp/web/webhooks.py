"""``POST /webhooks/shopify``: verify, record durably, acknowledge. Nothing else.

Checks run cheapest-first and every refusal stores nothing:

====================================================  ======
wrong method                                           405
body over ``SYNCAPP_WEBHOOK_MAX_BYTES``                 413
body not UTF-8                                         400
missing or wrong ``X-Shopify-Hmac-Sha256`` (old secret 401
accepted during rotation) — Shopify's review expects
401 for compliance topics too
missing topic / shop / webhook id header, shop not     400
``<name>.myshopify.com``, body not a JSON object
database unavailable                                   503
stored, or already stored (a redelivery)               200
====================================================  ======

The signature is checked by ``shopifyapp.verify_webhook_req`` (Shopify's own library); the
recorded row is the durable hand-off to the workers.
"""

from __future__ import annotations

import re

import orjson
import structlog
from prometheus_client import Counter
from shopify_app import AppConfig
from shopify_app.verify.webhook import verify_webhook_req
from starlette.requests import ClientDisconnect, Request
from starlette.responses import PlainTextResponse, Response

from syncapp.web.ingest import EventRecorder, NewEvent, RecorderClosed

log = structlog.get_logger("syncapp.web.webhooks")

SHOP_DOMAIN = re.compile(r"^[a-z0-9][a-z0-9-]{0,99}\.myshopify\.com$")
TOPIC = re.compile(r"^[a-z_]{1,64}/[a-z_]{1,64}$")
HEADER_VALUE = re.compile(r"^[A-Za-z0-9._:\-]{1,128}$")

WEBHOOKS = Counter(
    "syncapp_webhooks_total",
    "Shopify webhook requests by outcome (stored, duplicate or the refusal reason).",
    ["outcome"],
)


class _TooLarge(Exception):
    """The body is over the configured limit (answered 413)."""


def _refuse(status: int, outcome: str, detail: str, **fields: object) -> Response:
    WEBHOOKS.labels(outcome=outcome).inc()
    log.warning("webhook.refused", status=status, reason=outcome, detail=detail, **fields)
    return PlainTextResponse(detail, status_code=status)


async def _read_body(request: Request, limit: int) -> bytes:
    declared = request.headers.get("content-length")
    if declared is not None and declared.isdigit() and int(declared) > limit:
        raise _TooLarge
    chunks: list[bytes] = []
    size = 0
    async for chunk in request.stream():
        size += len(chunk)
        if size > limit:
            raise _TooLarge
        chunks.append(chunk)
    return b"".join(chunks)


class ShopifyWebhookEndpoint:
    """The ASGI-level handler; one instance per app, holding the verification config."""

    def __init__(self, *, app_config: AppConfig, recorder: EventRecorder, max_bytes: int) -> None:
        self._config = app_config
        self._recorder = recorder
        self._max_bytes = max_bytes

    async def handle(self, request: Request) -> Response:
        if request.method != "POST":
            return _refuse(405, "method", "Method Not Allowed")
        try:
            raw = await _read_body(request, self._max_bytes)
        except _TooLarge:
            return _refuse(413, "too_large", f"body larger than {self._max_bytes} bytes")
        except ClientDisconnect:
            return _refuse(400, "disconnect", "client went away")
        try:
            body = raw.decode("utf-8")
        except UnicodeDecodeError:
            return _refuse(400, "encoding", "body is not UTF-8")

        headers = dict(request.headers)
        verdict = verify_webhook_req(
            {"method": "POST", "headers": headers, "url": request.scope["path"], "body": body},
            self._config,
        )
        if not verdict.ok:
            return _refuse(401, "signature", "Unauthorized", code=verdict.log.code)

        topic = headers.get("x-shopify-topic", "")
        shop = headers.get("x-shopify-shop-domain", "")
        delivery_id = headers.get("x-shopify-webhook-id", "")
        event_id = headers.get("x-shopify-event-id") or None
        if not TOPIC.match(topic):
            return _refuse(400, "topic", "missing or invalid X-Shopify-Topic")
        if not SHOP_DOMAIN.match(shop):
            return _refuse(400, "shop", "X-Shopify-Shop-Domain must be <name>.myshopify.com")
        if not HEADER_VALUE.match(delivery_id):
            return _refuse(400, "webhook_id", "missing or invalid X-Shopify-Webhook-Id")
        if event_id is not None and not HEADER_VALUE.match(event_id):
            return _refuse(400, "event_id", "invalid X-Shopify-Event-Id")
        try:
            parsed = orjson.loads(raw)
        except orjson.JSONDecodeError:
            return _refuse(400, "json", "body is not JSON", shop=shop, topic=topic)
        if not isinstance(parsed, dict):
            return _refuse(400, "json", "body is not a JSON object", shop=shop, topic=topic)

        event = NewEvent(
            source="shopify",
            shop_domain=shop,
            topic=topic,
            delivery_id=delivery_id,
            event_id=event_id,
            api_version=headers.get("x-shopify-api-version"),
            triggered_at=headers.get("x-shopify-triggered-at"),
            payload=body,
        )
        try:
            stored = await self._recorder.record(event)
        except (RecorderClosed, Exception) as exc:
            WEBHOOKS.labels(outcome="unavailable").inc()
            log.error(
                "webhook.not_recorded",
                shop=shop,
                topic=topic,
                webhook_id=delivery_id,
                error=str(exc),
            )
            return PlainTextResponse(
                "temporarily unavailable", status_code=503, headers={"Retry-After": "5"}
            )
        outcome = "stored" if stored else "duplicate"
        WEBHOOKS.labels(outcome=outcome).inc()
        log.info(
            f"webhook.{outcome}", shop=shop, topic=topic, webhook_id=delivery_id, event_id=event_id
        )
        return Response(status_code=200)
