"""The app's subscription to eManageCRM's notifications, kept in place by the worker.

One partner-wide subscription (docs/adr/0019) covers every account the app's system client
created or linked, so nothing is subscribed per shop: each worker start makes sure it exists
for ``<SYNCAPP_PUBLIC_URL>/webhooks/emanage``, with every notification type and the signing
secret of ``SYNCAPP_EMANAGE_WEBHOOK_SECRET`` (a changed secret is a rotation, applied here;
a changed public URL moves the subscription: the old address's is deleted).
The calls are idempotent (:meth:`EmanageClient.ensure_webhook_subscription`), so any number of
workers may do it at once.
"""

from __future__ import annotations

import asyncio
import contextlib
import random
from collections.abc import Callable

import structlog

from syncapp.bus.retry import RetryPolicy, backoff_delay
from syncapp.config import Settings
from syncapp.connectors.emanage import EmanageClient, EmanageError, is_transient
from syncapp.connectors.emanage.models import WebhookSubscription
from syncapp.connectors.emanage.notifications import NOTIFICATION_TYPES

log = structlog.get_logger("syncapp.onboarding.notifications")

# Until eManageCRM answers: 1 s doubling to 5 minutes. The budget only bounds the exponent;
# the task keeps trying (no claim or lease is held while it waits).
SUBSCRIBE_RETRY = RetryPolicy(max_attempts=1000, base_seconds=1.0, cap_seconds=300.0)


async def subscribe_to_notifications(
    emanage: EmanageClient,
    settings: Settings,
    stop: asyncio.Event,
    *,
    policy: RetryPolicy = SUBSCRIBE_RETRY,
    jitter: Callable[[], float] = random.random,
) -> WebhookSubscription | None:
    """Ensure the subscription, retrying with backoff until it is done or ``stop`` is set."""
    if settings.emanage_webhook_secret is None:
        log.warning("emanage.notifications_disabled", reason="SYNCAPP_EMANAGE_WEBHOOK_SECRET")
        return None
    attempt = 0
    while not stop.is_set():
        try:
            subscription = await emanage.ensure_webhook_subscription(
                url=settings.emanage_webhook_url,
                event_types=sorted(NOTIFICATION_TYPES),
                secret=settings.emanage_webhook_secret.get_secret_value(),
            )
        except EmanageError as exc:
            attempt += 1
            delay = backoff_delay(
                min(attempt, policy.max_attempts),
                policy=policy,
                jitter=jitter(),
                retry_after=getattr(exc, "retry_after", None),
            )
            # A permanent refusal (a missing scope) needs an operator, but retrying is harmless.
            level = log.warning if is_transient(exc) else log.error
            level(
                "emanage.notifications_subscribe_failed",
                error=str(exc),
                attempt=attempt,
                retry_in_seconds=round(delay, 1),
            )
            with contextlib.suppress(TimeoutError):
                await asyncio.wait_for(stop.wait(), timeout=delay)
            continue
        log.info(
            "emanage.notifications_subscribed",
            subscription_id=str(subscription.id),
            url=subscription.url,
            event_types=list(subscription.event_types),
        )
        return subscription
    return None
