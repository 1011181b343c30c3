"""Shopify's mandatory privacy requests: ``shop/redact``, ``customers/redact``,
``customers/data_request``. Each completes in one transaction and leaves a
``privacy_requests`` row (topic, SHA-256 of the shop domain, received and completed times,
counts) — never personal data, never the shop's domain.

What the app holds about customers today is what webhooks carried: inbound event payloads.
A payload *mentions* a customer when, anywhere in it, a ``customer`` object has the
customer's id, a ``customer_id`` field equals it, or a string equals the customer's email,
phone or ``gid://shopify/Customer/<id>`` (:func:`mentions_customer`, a pure function).

* ``shop/redact`` erases everything of the shop: the shop row and through it (foreign keys,
  ``ON DELETE CASCADE``) its credentials, connections and onboarding jobs; every inbound
  event of the shop whatever its status (this one included); its export files. Tables that
  later issues add must reference ``shops.id`` with ``ON DELETE CASCADE`` or be erased here.
* ``customers/redact`` replaces the payload of every event of the shop that mentions the
  customer (this one included) with ``{"redacted": true}`` — keeping only the top-level
  ``id``/``admin_graphql_api_id`` of a product or order, which the sync engine needs to fetch
  the current, already-redacted truth from Shopify — and deletes the customer's exports.
* ``customers/data_request`` writes ``<exports_dir>/<shop>/<data_request.id>.json`` with every
  payload that mentions the customer, for the merchant (the App Home will offer it).
"""

from __future__ import annotations

import hashlib
import os
import shutil
from collections.abc import Iterator
from datetime import UTC, datetime
from pathlib import Path
from typing import Any

import orjson
import structlog
from sqlalchemy import delete, or_, select, update
from sqlalchemy.orm import Session

from syncapp.shops.runtime import ShopsRuntime, utc
from syncapp.store.locking import lock_row
from syncapp.store.models import (
    Connection,
    Credential,
    InboundEvent,
    OnboardingJob,
    PrivacyRequest,
    Shop,
)

log = structlog.get_logger("syncapp.shops.privacy")

COMPLIANCE_TOPICS = frozenset({"shop/redact", "customers/redact", "customers/data_request"})
_BATCH = 500


class InvalidPrivacyRequest(ValueError):
    """The compliance payload lacks what the request needs (a customer, a data request id)."""


def shop_hash(domain: str) -> str:
    """How ``privacy_requests`` names a shop: the SHA-256 (hex) of its domain."""
    return hashlib.sha256(domain.encode("utf-8")).hexdigest()


def _same_id(value: Any, customer_id: str) -> bool:
    return not isinstance(value, bool) and value is not None and str(value) == customer_id


def mentions_customer(
    document: Any, *, customer_id: str, email: str | None, phone: str | None
) -> bool:
    """True when the JSON ``document`` mentions the customer (see the module docstring)."""
    needles = {customer_id and f"gid://shopify/customer/{customer_id}"}
    needles |= {v.strip().casefold() for v in (email, phone) if v and v.strip()}
    needles.discard("")
    stack = [document]
    while stack:
        node = stack.pop()
        if isinstance(node, dict):
            for key, value in node.items():
                if key == "customer" and isinstance(value, dict):
                    if _same_id(value.get("id"), customer_id):
                        return True
                elif key == "customer_id" and _same_id(value, customer_id):
                    return True
                stack.append(value)
        elif isinstance(node, list):
            stack.extend(node)
        elif isinstance(node, str) and node.strip().casefold() in needles:
            return True
    return False


def redacted_payload(topic: str, document: Any) -> str:
    """The payload kept after a customer redaction: a marker, plus a product's or order's id."""
    kept: dict[str, Any] = {"redacted": True}
    if isinstance(document, dict) and topic.split("/", 1)[0] not in ("customers", "shop"):
        for key in ("id", "admin_graphql_api_id"):
            if key in document and not isinstance(document[key], (dict, list)):
                kept[key] = document[key]
    return orjson.dumps(kept).decode()


def _customer(payload: dict[str, Any]) -> tuple[str, str | None, str | None]:
    customer = payload.get("customer")
    if not isinstance(customer, dict) or customer.get("id") in (None, ""):
        raise InvalidPrivacyRequest("the payload has no customer.id")
    email, phone = customer.get("email"), customer.get("phone")
    return (
        str(customer["id"]),
        email if isinstance(email, str) else None,
        phone if isinstance(phone, str) else None,
    )


def _load(event: InboundEvent) -> dict[str, Any]:
    try:
        payload = orjson.loads(event.payload)
    except orjson.JSONDecodeError:
        raise InvalidPrivacyRequest(f"event {event.id}: the payload is not JSON") from None
    if not isinstance(payload, dict):
        raise InvalidPrivacyRequest(f"event {event.id}: the payload is not a JSON object")
    return payload


def _mentioning(
    session: Session, *, domain: str, customer_id: str, email: str | None, phone: str | None
) -> Iterator[tuple[InboundEvent, Any]]:
    """Events of ``domain`` mentioning the customer, read in batches by id.

    The LIKE filter only narrows the rows parsed; :func:`mentions_customer` decides.
    """
    terms = [t for t in (customer_id, email, phone) if t]
    last_id = 0
    while True:
        rows = session.scalars(
            select(InboundEvent)
            .where(
                InboundEvent.shop_domain == domain,
                InboundEvent.id > last_id,
                or_(*(InboundEvent.payload.contains(t, autoescape=True) for t in terms)),
            )
            .order_by(InboundEvent.id)
            .limit(_BATCH)
        ).all()
        if not rows:
            return
        for row in rows:
            try:
                document = orjson.loads(row.payload)
            except orjson.JSONDecodeError:
                continue
            if mentions_customer(document, customer_id=customer_id, email=email, phone=phone):
                yield row, document
        last_id = rows[-1].id


def _record(
    session: Session,
    *,
    event: InboundEvent,
    shop: str,
    summary: dict[str, Any],
    request_ref: str | None = None,
    export_path: str | None = None,
) -> None:
    session.add(
        PrivacyRequest(
            topic=event.topic,
            shop_hash=shop_hash(shop),
            request_ref=request_ref,
            received_at=utc(event.received_at),
            completed_at=datetime.now(UTC),
            export_path=export_path,
            summary=orjson.dumps(summary).decode(),
        )
    )


def _count(session: Session, statement: Any) -> int:
    return int(session.execute(statement).rowcount or 0)  # type: ignore[attr-defined]


def handle_shop_redact(session: Session, runtime: ShopsRuntime, event: InboundEvent) -> str:
    """Erase everything the app holds of the shop (see the module docstring)."""
    domain = event.shop_domain
    # Read before the events (this one included) are deleted.
    topic, received_at = event.topic, utc(event.received_at)
    summary: dict[str, int] = {}
    shop = session.scalar(lock_row(select(Shop).where(Shop.domain == domain)))
    if shop is not None:
        if shop.uninstalled_at is None:
            log.warning("privacy.shop_redact_while_installed", shop=domain)
        # Explicit deletes give the counts and do not depend on SQLite's foreign_keys pragma.
        summary["credentials"] = _count(
            session, delete(Credential).where(Credential.shop_id == shop.id)
        )
        summary["connections"] = _count(
            session, delete(Connection).where(Connection.shop_id == shop.id)
        )
        summary["onboarding_jobs"] = _count(
            session, delete(OnboardingJob).where(OnboardingJob.shop_id == shop.id)
        )
        summary["shops"] = _count(session, delete(Shop).where(Shop.id == shop.id))
    summary["inbound_events"] = _count(
        session,
        delete(InboundEvent)
        .where(InboundEvent.shop_domain == domain)
        .execution_options(synchronize_session=False),
    )
    exports = runtime.exports_dir / domain
    summary["export_files"] = sum(1 for p in exports.glob("*.json")) if exports.is_dir() else 0
    shutil.rmtree(exports, ignore_errors=True)
    session.execute(
        update(PrivacyRequest)
        .where(PrivacyRequest.shop_hash == shop_hash(domain))
        .values(export_path=None)
    )
    session.add(
        PrivacyRequest(
            topic=topic,
            shop_hash=shop_hash(domain),
            received_at=received_at,
            completed_at=datetime.now(UTC),
            summary=orjson.dumps(summary).decode(),
        )
    )
    log.info("privacy.shop_redacted", shop=domain, **summary)
    return "erased"


def _delete_exports(runtime: ShopsRuntime, session: Session, domain: str, customer_id: str) -> int:
    folder = runtime.exports_dir / domain
    if not folder.is_dir():
        return 0
    deleted = 0
    for path in sorted(folder.glob("*.json")):
        try:
            content = orjson.loads(path.read_bytes())
        except (OSError, orjson.JSONDecodeError):
            continue
        if str((content.get("customer") or {}).get("id")) == customer_id:
            path.unlink(missing_ok=True)
            session.execute(
                update(PrivacyRequest)
                .where(PrivacyRequest.export_path == f"{domain}/{path.name}")
                .values(export_path=None)
            )
            deleted += 1
    return deleted


def handle_customers_redact(session: Session, runtime: ShopsRuntime, event: InboundEvent) -> str:
    """Erase what the app holds about one customer of the shop (see the module docstring)."""
    domain = event.shop_domain
    customer_id, email, phone = _customer(_load(event))
    redacted = 0
    for row, document in list(
        _mentioning(session, domain=domain, customer_id=customer_id, email=email, phone=phone)
    ):
        row.payload = redacted_payload(row.topic, document)
        redacted += 1
    if event.payload != redacted_payload(event.topic, None):
        # The request itself names the customer; it matched above unless its JSON was odd.
        event.payload = redacted_payload(event.topic, None)
        redacted += 1
    exports = _delete_exports(runtime, session, domain, customer_id)
    _record(
        session,
        event=event,
        shop=domain,
        summary={"events_redacted": redacted, "export_files": exports},
    )
    log.info("privacy.customer_redacted", shop=domain, events=redacted, exports=exports)
    return "erased"


def _write_atomically(path: Path, content: bytes) -> None:
    path.parent.mkdir(parents=True, exist_ok=True)
    tmp = path.with_suffix(".json.tmp")
    with tmp.open("wb") as handle:
        handle.write(content)
        handle.flush()
        os.fsync(handle.fileno())
    tmp.replace(path)


def handle_customers_data_request(
    session: Session, runtime: ShopsRuntime, event: InboundEvent
) -> str:
    """Export everything held about the customer to a JSON file and record it."""
    domain = event.shop_domain
    payload = _load(event)
    customer_id, email, phone = _customer(payload)
    request = payload.get("data_request")
    request_id = str(request.get("id", "")) if isinstance(request, dict) else ""
    if not request_id.isdigit():
        raise InvalidPrivacyRequest("the payload has no numeric data_request.id")
    held = [
        {
            "event_id": row.id,
            "topic": row.topic,
            "received_at": utc(row.received_at).isoformat(),
            "payload": document,
        }
        for row, document in _mentioning(
            session, domain=domain, customer_id=customer_id, email=email, phone=phone
        )
        if row.id != event.id
    ]
    export = {
        "shop_domain": domain,
        "data_request_id": int(request_id),
        "customer": {"id": customer_id, "email": email, "phone": phone},
        "generated_at": datetime.now(UTC).isoformat(),
        "orders_requested": payload.get("orders_requested") or [],
        "inbound_events": held,
    }
    relative = f"{domain}/{request_id}.json"
    _write_atomically(
        runtime.exports_dir / relative, orjson.dumps(export, option=orjson.OPT_INDENT_2)
    )
    _record(
        session,
        event=event,
        shop=domain,
        summary={"events_exported": len(held)},
        request_ref=request_id,
        export_path=relative,
    )
    log.info("privacy.customer_data_exported", shop=domain, events=len(held), path=relative)
    return "exported"
