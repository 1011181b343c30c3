"""The small interface every back-end implements, and what handlers see.

A consumer claims :class:`Delivery` values from its back-end (only events of its
subscriptions, at most one per partition key in flight, fairly across shops), runs each
subscription's :data:`Handler`, and settles each delivery with one :class:`Outcome` as soon as
its handler finishes (:mod:`syncapp.bus.consumer`):

* :class:`Ack` — done; its ``apply`` (the handler's fenced write) commits together with the
  completion, so an effect is recorded exactly once even when the event is delivered twice;
* :class:`Retry` — try again after the policy's backoff, or not before ``after`` seconds (a
  server's Retry-After); after the retry budget the event is a dead letter;
* :class:`DeadLetter` — stop: kept with its reason and attempt history for operators.

A handler makes three moves: read what it needs in a short transaction of its own, do its
network I/O with no transaction and no lock held, and return the outcome whose ``apply`` records
the result. A delivery whose lease was taken over by another consumer is refused at settle
time (:class:`LeaseLost`): the other consumer's claim wins.
"""

from __future__ import annotations

from collections.abc import Awaitable, Callable, Sequence
from dataclasses import dataclass, field
from datetime import datetime
from typing import Any, Protocol

import orjson
from sqlalchemy.orm import Session

from syncapp.bus.envelope import (
    CloudEvent,
    notification_source,
    notification_type,
    webhook_source,
    webhook_type,
)
from syncapp.errors import RefusedEvent

APP = "syncapp"
"""The ``source`` column of events the app publishes (the outbox)."""
EMANAGE = "emanage"
"""The ``source`` column of eManageCRM's notifications (``/webhooks/emanage``)."""


class BusError(Exception):
    """Base of the bus's errors."""


class LeaseLost(BusError):
    """The claim is no longer ours (the lease ran out and another consumer took it over)."""


class BrokerUnavailable(BusError):
    """The broker cannot be reached; events stay in the outbox until it is back."""


@dataclass(frozen=True, slots=True)
class Delivery:
    """One claimed event. ``token`` fences the claim: settling checks it is still current."""

    id: int
    source: str
    topic: str
    shop_domain: str
    partition_key: str
    delivery_id: str
    payload: str
    attempts: int
    token: int
    received_at: datetime
    event_id: str | None = None
    triggered_at: str | None = None
    api_version: str | None = None
    # Broker back-ends keep their handle on the message here (channel, delivery tag).
    handle: Any = field(default=None, compare=False, repr=False)

    def json(self) -> Any:
        """The payload as stored: a webhook's body, or an app event's whole envelope."""
        return orjson.loads(self.payload)

    def data(self) -> Any:
        """What the event says: a webhook's body, or an app event's ``data``."""
        body = orjson.loads(self.payload)
        return body.get("data") if self.source == APP else body

    def envelope(self) -> CloudEvent:
        """The event as a CloudEvents envelope (what a broker carries)."""
        if self.source == APP:
            return CloudEvent.from_dict(orjson.loads(self.payload))
        if self.source == EMANAGE:
            return CloudEvent(
                id=f"{self.source}:{self.delivery_id}",
                source=notification_source(self.shop_domain),
                type=notification_type(self.topic),
                subject=self.partition_key.partition("/")[2],
                time=self.received_at,
                partitionkey=self.partition_key,
                data=self.json(),
                extensions={"emanagetype": self.topic, "emanageeventid": self.delivery_id},
            )
        extensions = {"shopifytopic": self.topic, "shopifywebhookid": self.delivery_id}
        if self.api_version:
            extensions["shopifyapiversion"] = self.api_version
        return CloudEvent(
            id=f"{self.source}:{self.delivery_id}",
            source=webhook_source(self.shop_domain),
            type=webhook_type(self.topic),
            subject=self.partition_key.partition("/")[2],
            time=self.received_at,
            partitionkey=self.partition_key,
            data=self.json(),
            extensions=extensions,
        )


Apply = Callable[[Session], None]


@dataclass(frozen=True, slots=True)
class Ack:
    apply: Apply | None = None
    note: str = "done"


@dataclass(frozen=True, slots=True)
class Retry:
    """Try again after the policy's backoff (or not before ``after`` seconds). ``counts=False``:
    not a failure but a wait (a sign-up waiting for its backoff), outside the retry budget."""

    reason: str
    after: float | None = None
    counts: bool = True


@dataclass(frozen=True, slots=True)
class DeadLetter:
    reason: str


Outcome = Ack | Retry | DeadLetter
Handler = Callable[[Delivery], Awaitable[Outcome]]


def outcome_of_error(exc: Exception) -> Retry | DeadLetter:
    """What a handler's exception means: a refused event (its payload can never apply) is a
    dead letter at once; anything else is retried under the policy."""
    if isinstance(exc, RefusedEvent):
        return DeadLetter(f"refused: {exc}")
    return Retry(f"{type(exc).__name__}: {exc}")


@dataclass(frozen=True, slots=True)
class Subscription:
    """Events of ``source`` and ``topic`` go to ``handler`` (``topic`` is the webhook topic,
    or the CloudEvents type of an app event)."""

    source: str
    topic: str
    handler: Handler


TopicTable = dict[tuple[str, str], Handler]
"""What a domain exports: its handlers by (source, topic)."""


def subscriptions(*tables: TopicTable) -> list[Subscription]:
    """Compose the topic tables of several domains; a topic claimed twice is an error."""
    merged: dict[tuple[str, str], Handler] = {}
    for table in tables:
        for key, handler in table.items():
            if key in merged:
                raise BusError(f"two handlers for {key[0]} topic {key[1]!r}")
            merged[key] = handler
    return [Subscription(source, topic, h) for (source, topic), h in sorted(merged.items())]


@dataclass(frozen=True, slots=True)
class Settled:
    """What settling one delivery did: ``done``, ``retry``, ``dead`` or ``lost``."""

    delivery: Delivery
    result: str
    delay: float | None = None
    reason: str | None = None


class ConsumerBackend(Protocol):
    """What a consumer needs from its medium (embedded database or broker)."""

    async def claim(self, limit: int, *, wait: bool = True) -> list[Delivery]:
        """Up to ``limit`` deliveries claimable now (at most one per partition key, none of a
        key already in flight with this consumer). ``wait``: a broker back-end may wait a
        moment for its first message (``run_once``); the embedded one never waits."""
        ...

    async def wait_for_work(self, seconds: float) -> None:
        """Return once new events may be claimable — a doorbell ring after a publish's commit,
        a broker's delivery, a retry coming due — or after ``seconds`` (the poll). A spurious
        return costs an empty claim; a missed ring costs ``seconds``."""
        ...

    async def settle(self, outcomes: Sequence[tuple[Delivery, Outcome]]) -> list[Settled]: ...

    async def renew(self, deliveries: Sequence[Delivery]) -> None: ...

    async def release(self, deliveries: Sequence[Delivery]) -> None: ...

    async def close(self) -> None: ...
