"""The outbox: events the app publishes, written in the transaction of the change that
caused them, so an event exists exactly when its change committed.

With the embedded back-end the committed row *is* the message (consumers claim it); with a
broker, the relay (:class:`syncapp.bus.rabbitmq.Relay`) publishes it after the commit and marks
it relayed. Either way the commit rings the doorbell (:mod:`syncapp.bus.doorbell`), so an idle
consumer or relay starts on it at once rather than at its next poll.
"""

from __future__ import annotations

import uuid
from collections.abc import Mapping
from datetime import UTC, datetime
from typing import Any

from sqlalchemy.orm import Session

from syncapp.bus.doorbell import ring_on_commit
from syncapp.bus.envelope import APP_SOURCE, CloudEvent, EventType, InvalidEvent
from syncapp.bus.interface import APP
from syncapp.bus.models import InboundEvent


def new_event(
    event_type: EventType,
    *,
    shop_domain: str,
    obj: str,
    data: Mapping[str, Any],
    subject: str | None = None,
    event_id: str | None = None,
    time: datetime | None = None,
) -> CloudEvent:
    """A CloudEvent of ``event_type`` about ``obj`` of ``shop_domain``."""
    if "/" in shop_domain or not shop_domain:
        raise InvalidEvent(f"not a shop domain: {shop_domain!r}")
    return CloudEvent(
        id=event_id or str(uuid.uuid4()),
        source=APP_SOURCE,
        type=event_type.name,
        subject=subject or obj,
        time=time or datetime.now(UTC),
        partitionkey=f"{shop_domain}/{obj}",
        data=dict(data),
        dataschema=event_type.dataschema,
    )


def publish(session: Session, event: CloudEvent) -> None:
    """Put ``event`` in the outbox, in ``session``'s transaction (it is published if and only
    if that transaction commits). An event id is unique: publishing one twice fails the flush."""
    shop_domain = event.partitionkey.partition("/")[0]
    ring_on_commit(session)  # consumers (or the relay) hear of it once it commits
    session.add(
        InboundEvent(
            source=APP,
            shop_domain=shop_domain,
            topic=event.type,
            delivery_id=event.id,
            payload=event.to_json().decode(),
            partition_key=event.partitionkey,
            received_at=event.time,
            status="pending",
            attempts=0,
        )
    )
