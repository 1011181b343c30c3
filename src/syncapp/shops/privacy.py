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
* ``customers/data_request`` writes ``<exports_dir>/<shop>/<data_request.id>.json`` (0600, in
  0700 directories) with every payload that mentions the customer, for the merchant (the App
  Home will offer it).

Every request's payload is parsed with its model and must name the header's shop
(``shop_domain``, and ``shop_id`` when the install recorded the shop's id), else it is refused
(:mod:`syncapp.shops.payloads`). ``shop/redact`` for a shop that is installed (asked at
Shopify by :func:`confirm_shop_redact` when this app has no uninstall recorded), or was
uninstalled less than :data:`REDACT_AFTER` ago (Shopify sends it 48 hours after the uninstall,
and not at all after a reinstall), is refused too: a replayed or forged request cannot erase a
shop the merchant still uses. Refused requests are dead-lettered with the reason, and change
nothing.
"""

from __future__ import annotations

import hashlib
import os
import shutil
from collections.abc import Iterator
from datetime import UTC, datetime, timedelta
from pathlib import Path
from typing import Any

import orjson
import structlog
from sqlalchemy import delete, or_, select, update
from sqlalchemy.orm import Session

from syncapp.bus.models import InboundEvent
from syncapp.bus.sealed import SEALED_PREFIX
from syncapp.errors import RefusedEvent
from syncapp.onboarding.models import OnboardingJob
from syncapp.shops.payloads import (
    ComplianceRequest,
    Customer,
    CustomersDataRequest,
    CustomersRedact,
    ShopRedact,
    check_shop,
    parse,
)
from syncapp.shops.runtime import ShopsRuntime, utc
from syncapp.shops.uninstall import shopify_accepts_token
from syncapp.store.files import private_dirs
from syncapp.store.locking import lock_row
from syncapp.store.models import Connection, Credential, PrivacyRequest, Shop

log = structlog.get_logger("syncapp.shops.privacy")

COMPLIANCE_TOPICS = frozenset({"shop/redact", "customers/redact", "customers/data_request"})
# Shopify sends shop/redact 48 hours after the uninstall.
REDACT_AFTER = timedelta(hours=48)
_BATCH = 500


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


def is_sealed_column() -> Any:
    """SQL: the row's payload is stored sealed (the LIKE prefilter cannot see inside)."""
    return InboundEvent.payload.startswith(SEALED_PREFIX)


def _checked(
    session: Session, event: InboundEvent, request: ComplianceRequest, *, lock: bool = False
) -> Shop | None:
    """The header's shop row, after checking that the request names that shop."""
    query = select(Shop).where(Shop.domain == event.shop_domain)
    shop = session.scalar(lock_row(query) if lock else query)
    check_shop(event, named_domain=request.shop_domain, named_id=request.shop_id, shop=shop)
    return shop


def _mentioning(
    session: Session, runtime: ShopsRuntime, *, domain: str, customer: Customer
) -> Iterator[tuple[InboundEvent, Any]]:
    """Events of ``domain`` mentioning the customer, read in batches by id.

    The LIKE filter only narrows the plain rows parsed (sealed ones are all decrypted);
    :func:`mentions_customer` decides.
    """
    customer_id, email, phone = str(customer.id), customer.email, customer.phone
    terms = [t for t in (customer_id, email, phone) if t]
    last_id = 0
    while True:
        rows = session.scalars(
            select(InboundEvent)
            .where(
                InboundEvent.shop_domain == domain,
                InboundEvent.id > last_id,
                or_(
                    is_sealed_column(),
                    *(InboundEvent.payload.contains(t, autoescape=True) for t in terms),
                ),
            )
            .order_by(InboundEvent.id)
            .limit(_BATCH)
        ).all()
        if not rows:
            return
        for row in rows:
            try:
                document = orjson.loads(runtime.payload_of(row))
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


def _already_done(session: Session, event: InboundEvent, request_ref: str) -> bool:
    """A request of this topic and shop with ``request_ref`` was completed before: ``event``
    is a replay under a new webhook id (Shopify's own redeliveries keep theirs)."""
    return (
        session.scalar(
            select(PrivacyRequest.id).where(
                PrivacyRequest.topic == event.topic,
                PrivacyRequest.shop_hash == shop_hash(event.shop_domain),
                PrivacyRequest.request_ref == request_ref,
            )
        )
        is not None
    )


def _count(session: Session, statement: Any) -> int:
    return int(session.execute(statement).rowcount or 0)  # type: ignore[attr-defined]


def confirm_shop_redact(runtime: ShopsRuntime, event: InboundEvent) -> None:
    """The worker's precheck: refuse ``shop/redact`` while the shop has the app installed.

    A shop recorded as installed here is asked about at Shopify (no transaction held): while
    its token still works the request is refused; if Shopify refuses it, the app was uninstalled
    and its ``app/uninstalled`` never processed here, and the redaction goes ahead.
    """
    with runtime.sessions() as session:
        shop = session.scalar(select(Shop).where(Shop.domain == event.shop_domain))
        installed_here = shop is not None and shop.uninstalled_at is None
    if installed_here and shopify_accepts_token(runtime, event.shop_domain):
        raise RefusedEvent("shop/redact refused: the shop has the app installed")


def _refuse_early_redact(shop: Shop) -> None:
    """Refuse a redaction sooner than Shopify sends one after the recorded uninstall."""
    if shop.uninstalled_at is None:
        return  # installed here, but not at Shopify (confirm_shop_redact asked)
    since = datetime.now(UTC) - utc(shop.uninstalled_at)
    if since < REDACT_AFTER:
        hours = since.total_seconds() / 3600
        raise RefusedEvent(
            f"shop/redact refused: the app was uninstalled {hours:.1f} h ago; Shopify sends "
            f"it {REDACT_AFTER.total_seconds() / 3600:.0f} h after the uninstall"
        )


def handle_shop_redact(session: Session, runtime: ShopsRuntime, event: InboundEvent) -> str:
    """Erase everything the app holds of the shop (see the module docstring)."""
    domain = event.shop_domain
    request = parse(ShopRedact, event, runtime.payload_of(event))
    # Read before the events (this one included) are deleted.
    topic, received_at = event.topic, utc(event.received_at)
    summary: dict[str, int] = {}
    shop = _checked(session, event, request, lock=True)
    if shop is not None:
        _refuse_early_redact(shop)
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
    text = runtime.payload_of(event)
    request = parse(CustomersRedact, event, text)
    _checked(session, event, request)
    # The request carries no id of its own: the signed body identifies it.
    body_ref = hashlib.sha256(text.encode("utf-8")).hexdigest()
    if _already_done(session, event, body_ref):
        log.info("privacy.customer_redact_replayed", shop=domain)
        return "duplicate"
    customer_id = str(request.customer.id)
    redacted = 0
    for row, document in list(
        _mentioning(session, runtime, domain=domain, customer=request.customer)
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
        request_ref=body_ref,
    )
    log.info("privacy.customer_redacted", shop=domain, events=redacted, exports=exports)
    return "erased"


def _write_atomically(path: Path, content: bytes) -> None:
    """Write ``path`` (0600, its new directories 0700: it holds customer data) atomically."""
    private_dirs(path.parent)
    tmp = path.with_suffix(".json.tmp")
    descriptor = os.open(tmp, os.O_WRONLY | os.O_CREAT | os.O_TRUNC, 0o600)
    with os.fdopen(descriptor, "wb") as handle:
        handle.write(content)
        handle.flush()
        os.fsync(handle.fileno())
    tmp.replace(path)


def handle_customers_data_request(
    session: Session, runtime: ShopsRuntime, event: InboundEvent
) -> str:
    """Export everything held about the customer to a JSON file and record it."""
    domain = event.shop_domain
    request = parse(CustomersDataRequest, event, runtime.payload_of(event))
    _checked(session, event, request)
    customer = request.customer
    request_id = str(request.data_request.id)
    if _already_done(session, event, request_id):
        log.info("privacy.data_request_replayed", shop=domain, request=request_id)
        return "duplicate"
    held = [
        {
            "event_id": row.id,
            "topic": row.topic,
            "received_at": utc(row.received_at).isoformat(),
            "payload": document,
        }
        for row, document in _mentioning(session, runtime, domain=domain, customer=customer)
        if row.id != event.id
    ]
    export = {
        "shop_domain": domain,
        "data_request_id": int(request_id),
        "customer": {"id": str(customer.id), "email": customer.email, "phone": customer.phone},
        "generated_at": datetime.now(UTC).isoformat(),
        "orders_requested": list(request.orders_requested),
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
