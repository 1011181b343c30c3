"""Inbound payloads that carry customer data are stored encrypted under the vault's keys.

Orders, customers and the compliance topics name customers (e-mail, phone, addresses). Their
``inbound_events.payload`` is stored *sealed*: ``fernet:`` followed by a Fernet token of the
JSON text (:class:`~syncapp.store.vault.Vault`, so the same keys, rotation included). Other
payloads (products, app and billing events) stay plain JSON, which always starts with ``{``, so
a stored value says itself which it is. Everything that reads a payload goes through
:func:`unseal`; ``syncapp vault rotate`` re-encrypts sealed payloads with the credentials, and
seals customer-data payloads stored before sealing existed (:func:`rotate_sealed_payloads`).
"""

from __future__ import annotations

from sqlalchemy import or_, select
from sqlalchemy.orm import Session

from syncapp.bus.models import InboundEvent
from syncapp.store.vault import Vault

SEALED_PREFIX = "fernet:"
# Topics whose payloads name customers; a topic is sealed when it starts with one of these.
CUSTOMER_DATA_TOPICS = ("orders/", "customers/", "shop/redact", "checkouts/", "refunds/")


def carries_customer_data(topic: str) -> bool:
    return topic.startswith(CUSTOMER_DATA_TOPICS)


def seal(vault: Vault, topic: str, payload: str) -> str:
    """What to store for ``payload`` of ``topic``: sealed when it carries customer data."""
    if not carries_customer_data(topic):
        return payload
    return SEALED_PREFIX + vault.encrypt(payload).decode("ascii")


def is_sealed(stored: str) -> bool:
    return stored.startswith(SEALED_PREFIX)


def unseal(vault: Vault, stored: str) -> str:
    """The payload's JSON text, whether it was stored sealed or plain."""
    if not is_sealed(stored):
        return stored
    return vault.decrypt(stored[len(SEALED_PREFIX) :].encode("ascii"))


def rotate_sealed_payloads(session: Session, vault: Vault, *, batch_size: int = 500) -> int:
    """Re-encrypt every sealed payload not yet under the newest key, and seal customer-data
    payloads stored in plaintext (before they were sealed); returns how many changed.

    In batches by id, flushed as it goes; the caller commits.
    """
    changed = 0
    last_id = 0
    customer_data = or_(*(InboundEvent.topic.startswith(t) for t in CUSTOMER_DATA_TOPICS))
    while True:
        rows = session.scalars(
            select(InboundEvent)
            .where(
                InboundEvent.id > last_id,
                or_(InboundEvent.payload.startswith(SEALED_PREFIX), customer_data),
            )
            .order_by(InboundEvent.id)
            .limit(batch_size)
        ).all()
        if not rows:
            return changed
        for row in rows:
            if not is_sealed(row.payload):
                if carries_customer_data(row.topic):
                    row.payload = seal(vault, row.topic, row.payload)
                    changed += 1
                continue
            token = row.payload[len(SEALED_PREFIX) :].encode("ascii")
            if not vault.is_current(token):
                row.payload = SEALED_PREFIX + vault.rotate(token).decode("ascii")
                changed += 1
        last_id = rows[-1].id
        session.flush()
