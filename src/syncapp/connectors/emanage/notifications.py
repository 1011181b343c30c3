"""eManageCRM's notifications as the contract defines them (the ``notification`` webhook of
docs/contracts/emanage.openapi.yaml): the signature scheme and the body. Pure: no I/O.

``Emanage-Signature: t=<unix seconds>,v1=<hex HMAC-SHA256(secret, f"{t}.{raw body}")>`` (Stripe's
scheme; several ``v1`` may be sent). The timestamp is signed with the body, so refusing
timestamps more than :data:`TOLERANCE_SECONDS` away from our clock refuses a replayed request;
within the window a replay is an ordinary redelivery, deduplicated on the event id.
"""

from __future__ import annotations

import hashlib
import hmac
import re
from collections.abc import Sequence
from dataclasses import dataclass
from typing import Any

NOTIFICATION_TYPES = frozenset({"product.created", "product.updated", "product.archived"})
TOLERANCE_SECONDS = 300
# A header longer than this is not a signature (a few v1 values at most).
MAX_SIGNATURE_HEADER = 1024

_UUID = re.compile(r"^[0-9a-fA-F]{8}-([0-9a-fA-F]{4}-){3}[0-9a-fA-F]{12}$")
_HEX64 = re.compile(r"^[0-9a-f]{64}$")
_GID_PRODUCT = re.compile(r"^gid://shopify/Product/([0-9]{1,20})$")


def sign(secret: str, timestamp: int, body: bytes) -> str:
    """The ``Emanage-Signature`` header value of ``body`` signed at ``timestamp``."""
    mac = hmac.new(secret.encode(), f"{timestamp}.".encode() + body, hashlib.sha256)
    return f"t={timestamp},v1={mac.hexdigest()}"


def verify_signature(
    header: str,
    body: bytes,
    secrets: Sequence[bytes],
    *,
    now: float,
    tolerance: float = TOLERANCE_SECONDS,
) -> str | None:
    """None when ``header`` signs ``body`` under one of ``secrets`` within ``tolerance`` seconds
    of ``now``; else why not (``missing``, ``malformed``, ``stale``, ``mismatch``).

    The header is checked before any HMAC is computed, and every (secret, v1) pair is compared
    in constant time, whichever matches, so timing says nothing about which secret or value.
    """
    if not header:
        return "missing"
    if len(header) > MAX_SIGNATURE_HEADER:
        return "malformed"
    timestamp: int | None = None
    candidates: list[bytes] = []
    for part in header.split(","):
        key, sep, value = part.strip().partition("=")
        if not sep:
            return "malformed"
        if key == "t":
            if timestamp is not None or not value.isdigit() or len(value) > 12:
                return "malformed"
            timestamp = int(value)
        elif key == "v1":
            if not _HEX64.match(value):
                return "malformed"
            candidates.append(bytes.fromhex(value))
        # Other schemes (v0, a future v2) are ignored, as Stripe's receivers do.
    if timestamp is None or not candidates:
        return "malformed"
    if abs(now - timestamp) > tolerance:
        return "stale"
    signed = f"{timestamp}.".encode() + body
    ok = False
    for secret in secrets:
        expected = hmac.new(secret, signed, hashlib.sha256).digest()
        for candidate in candidates:
            ok |= hmac.compare_digest(expected, candidate)
    return None if ok else "mismatch"


@dataclass(frozen=True, slots=True)
class Notification:
    """A notification's body, checked: ``data`` says what changed (for ``product.*``:
    ``productId``, ``version``, ``updatedAt``, ``origin``, ``externalRefs``)."""

    id: str
    type: str
    occurred_at: str
    account_id: str
    data: dict[str, Any]

    @property
    def product_id(self) -> str | None:
        """eManageCRM's id of the product a ``product.*`` event is about."""
        value = self.data.get("productId", self.data.get("id"))
        if isinstance(value, bool) or not isinstance(value, int | str) or not str(value):
            return None
        return str(value)

    @property
    def shopify_product_id(self) -> int | None:
        """The Shopify product the eManageCRM product is linked to
        (``data.externalRefs.shopifyProductId``: a number, its digits, or its GID)."""
        refs = self.data.get("externalRefs")
        if not isinstance(refs, dict):
            return None
        value = refs.get("shopifyProductId")
        if isinstance(value, bool):
            return None
        if isinstance(value, int):
            return value if value > 0 else None
        if isinstance(value, str):
            if value.isdigit() and len(value) <= 20:
                return int(value) or None
            if match := _GID_PRODUCT.match(value):
                return int(match.group(1)) or None
        return None


def parse_notification(body: Any, event_id_header: str) -> Notification | str:
    """The notification in a parsed JSON body, or why it is refused (a short reason)."""
    if not isinstance(body, dict):
        return "the body is not a JSON object"
    event_id = body.get("id")
    if not isinstance(event_id, str) or not _UUID.match(event_id):
        return "id must be a GUID"
    if event_id_header.lower() != event_id.lower():
        return "Emanage-Event-Id does not match the body's id"
    event_type = body.get("type")
    if event_type not in NOTIFICATION_TYPES:
        return f"unknown type {event_type!r}"
    account_id = body.get("accountId")
    if not isinstance(account_id, str) or not _UUID.match(account_id):
        return "accountId must be a GUID"
    occurred_at = body.get("occurredAt")
    if not isinstance(occurred_at, str) or not 0 < len(occurred_at) <= 64:
        return "occurredAt must be a timestamp"
    data = body.get("data")
    if not isinstance(data, dict):
        return "data must be an object"
    return Notification(
        id=event_id.lower(),
        type=str(event_type),
        occurred_at=occurred_at,
        account_id=account_id.lower(),
        data=data,
    )
