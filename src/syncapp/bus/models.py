"""The bus's tables: ``inbound_events`` (the inbox and the outbox, one row per event) and
``bus_receipts`` (what a broker consumer group settled).

An inbound event is the durable hand-off between the web tier and the workers: a verified
webhook (or an eManageCRM notification) is a row here before it is acknowledged
(:mod:`syncapp.bus.inbox`), and the consumers take it from here. Two unique constraints make
redelivery harmless: the delivery id (``X-Shopify-Webhook-Id``) and the underlying event id per
topic (``X-Shopify-Event-Id``), each per ``source``.

Registered on the shared ``Base.metadata``; :mod:`syncapp.schema` imports this module for the
migrations.
"""

from __future__ import annotations

from datetime import datetime

from sqlalchemy import DateTime, Index, Integer, String, Text, UniqueConstraint, text
from sqlalchemy.orm import Mapped, mapped_column

from syncapp.store.models import Base, BigId, utcnow

UNFINISHED_STATES = ("pending", "processing", "relaying", "relayed", "retrying")
"""Every state in which an event may still hold back the later events of its key."""
UNFINISHED_SQL = "status IN ('pending', 'processing', 'relaying', 'relayed', 'retrying')"
"""The predicate of the partial index ``ix_inbound_events_unfinished_key``; queries that are to
use it repeat it word for word (as a literal: a planner matches a partial index's predicate
against constants, not bound parameters)."""


class InboundEvent(Base):
    """One event of the bus (``syncapp.bus``): a verified notification from an external system
    (the inbox; stored before it is acknowledged) or an event the app publishes (the outbox,
    ``source='syncapp'``, written in the transaction of the change that caused it).

    The embedded back-end claims these rows directly; with a broker the relay publishes each
    once (``relayed_at``) and the broker's queues take over. A claim is a lease with an owner
    (``lease_owner``) and a fencing token (``lease_token``, incremented by every claim): a
    consumer whose lease ran out and was taken over can no longer settle the event.
    """

    __tablename__ = "inbound_events"
    __table_args__ = (
        UniqueConstraint("source", "delivery_id"),
        UniqueConstraint("source", "shop_domain", "topic", "event_id"),
        # Workers claim the due events of *their* topics in id order; without the topic here
        # every claim walked all pending events of other topics (products, orders).
        Index("ix_inbound_events_status_topic_id", "status", "topic", "id"),
        # The bus: fair claims walk one shop's due events at a time; a key's earlier events.
        Index("ix_inbound_events_status_shop_domain_id", "status", "shop_domain", "id"),
        Index("ix_inbound_events_partition_key_id", "partition_key", "id"),
        # "Is an earlier event of this key unfinished?" (the embedded claim and the relay ask it
        # for every candidate): only unfinished rows, so a probe never walks a key's done
        # history, and the one index a planner without statistics still picks (revision 1800).
        Index(
            "ix_inbound_events_unfinished_key",
            "partition_key",
            "id",
            sqlite_where=text(UNFINISHED_SQL),
            postgresql_where=text(UNFINISHED_SQL),
        ),
        # The relay to a broker picks the events not relayed yet (a partial index).
        Index(
            "ix_inbound_events_unrelayed",
            "id",
            sqlite_where=text("relayed_at IS NULL AND status = 'pending'"),
            postgresql_where=text("relayed_at IS NULL AND status = 'pending'"),
        ),
    )

    id: Mapped[int] = mapped_column(BigId, primary_key=True, autoincrement=True)
    source: Mapped[str] = mapped_column(String(32))  # shopify | emanage
    shop_domain: Mapped[str] = mapped_column(String(255))
    topic: Mapped[str] = mapped_column(String(128))
    delivery_id: Mapped[str] = mapped_column(String(128))  # X-Shopify-Webhook-Id
    event_id: Mapped[str | None] = mapped_column(String(128))  # X-Shopify-Event-Id
    api_version: Mapped[str | None] = mapped_column(String(16))
    triggered_at: Mapped[str | None] = mapped_column(String(64))
    received_at: Mapped[datetime] = mapped_column(DateTime(timezone=True), default=utcnow)
    payload: Mapped[str] = mapped_column(Text)
    # pending → processing → done | dead (or back to pending with next_attempt_at on failure).
    # Each worker claims only the topics it handles; other topics wait for their consumer.
    status: Mapped[str] = mapped_column(String(16), default="pending")
    attempts: Mapped[int] = mapped_column(Integer, default=0)
    last_error: Mapped[str | None] = mapped_column(Text)
    # Not before this time (retry backoff); NULL means now.
    next_attempt_at: Mapped[datetime | None] = mapped_column(DateTime(timezone=True))
    # A claim is a lease: a 'processing' row whose lease ran out (worker died) is claimed again.
    locked_until: Mapped[datetime | None] = mapped_column(DateTime(timezone=True))
    processed_at: Mapped[datetime | None] = mapped_column(DateTime(timezone=True))
    # The bus (revision 1200): shop and object (never processed twice at once, in id order).
    partition_key: Mapped[str | None] = mapped_column(String(512))
    lease_owner: Mapped[str | None] = mapped_column(String(64))
    lease_token: Mapped[int] = mapped_column(Integer, default=0, server_default="0")
    # JSON list of failed attempts ({"attempt", "at", "error"}): a dead letter's history.
    history: Mapped[str | None] = mapped_column(Text)
    # When the relay handed the event to a broker (NULL: not yet, or the embedded back-end).
    relayed_at: Mapped[datetime | None] = mapped_column(DateTime(timezone=True))


class BusReceipt(Base):
    """An event a broker consumer group has settled (``syncapp.bus.rabbitmq``): written in the
    transaction of the handler's write, so a redelivered event (a broker delivers at least
    once) is acknowledged without applying its effect twice. Pruned with the events."""

    __tablename__ = "bus_receipts"

    consumer_group: Mapped[str] = mapped_column(String(128), primary_key=True)
    event_id: Mapped[str] = mapped_column(String(255), primary_key=True)
    settled_at: Mapped[datetime] = mapped_column(
        DateTime(timezone=True), default=utcnow, index=True
    )
