"""Misbehaviour of the Admin API that Shopify is allowed and tests switch on: how throttling is
answered (HTTP 200 with THROTTLED, or HTTP 429 with ``Retry-After``), forced throttling of the
next requests, and bulk operations that fail, get canceled, run slowly or whose result URLs
expire early.

Like the webhook faults, these live in memory (a restarted sandbox starts without them) and are
set through ``/_sandbox/graphql/faults``. This module owns only the values and their parsing.
"""

from __future__ import annotations

import threading
from dataclasses import asdict, dataclass, replace
from typing import Any

BULK_OUTCOMES = (
    "FAILED_TIMEOUT",
    "FAILED_ACCESS_DENIED",
    "FAILED_INTERNAL_SERVER_ERROR",
    "CANCELED",
)
# Shopify: "Results remain available for seven days after completion" (bulkOperationRunQuery).
BULK_URL_LIFETIME = 7 * 24 * 3600.0


@dataclass(frozen=True)
class ApiFaults:
    """``throttle_status``: 200 (Shopify's usual THROTTLED body) or 429 (with ``Retry-After``).
    ``throttle_next``: that many coming requests are throttled whatever the bucket holds.
    ``bulk_outcome``: bulk queries started now end so (FAILED ones keep a partial file).
    ``bulk_running_ms``: bulk queries stay RUNNING at least this long.
    ``bulk_url_ttl_s``: result URLs stop working (and the operation reads EXPIRED) this long
    after completion, instead of seven days.
    """

    throttle_status: int = 200
    throttle_next: int = 0
    bulk_outcome: str | None = None
    bulk_running_ms: int = 0
    bulk_url_ttl_s: float | None = None


def parse_faults(body: Any) -> ApiFaults:
    """Faults from a control request's JSON body; ``ValueError`` says what is wrong."""
    if not isinstance(body, dict):
        raise ValueError("the body must be a JSON object")
    known = set(ApiFaults.__dataclass_fields__)
    unknown = set(body) - known
    if unknown:
        raise ValueError(f"unknown fault(s) {sorted(unknown)}; use {sorted(known)}")
    faults = ApiFaults(**body)
    if faults.throttle_status not in (200, 429) or isinstance(faults.throttle_status, bool):
        raise ValueError("throttle_status must be 200 or 429")
    for name, top in (("throttle_next", 1000), ("bulk_running_ms", 600_000)):
        value = getattr(faults, name)
        if not isinstance(value, int) or isinstance(value, bool) or not 0 <= value <= top:
            raise ValueError(f"{name} must be an integer from 0 to {top}")
    if faults.bulk_outcome is not None and faults.bulk_outcome not in BULK_OUTCOMES:
        raise ValueError(f"bulk_outcome must be null or one of {list(BULK_OUTCOMES)}")
    ttl = faults.bulk_url_ttl_s
    if ttl is not None and (
        not isinstance(ttl, int | float)
        or isinstance(ttl, bool)
        or not 0 <= ttl <= BULK_URL_LIFETIME
    ):
        raise ValueError("bulk_url_ttl_s must be null or a number of seconds up to 7 days")
    return faults


class FaultSwitch:
    """The current faults, shared by request threads and bulk runners."""

    def __init__(self) -> None:
        self._lock = threading.Lock()
        self._faults = ApiFaults()

    @property
    def current(self) -> ApiFaults:
        with self._lock:
            return self._faults

    def set(self, faults: ApiFaults) -> None:
        with self._lock:
            self._faults = faults

    def take_forced_throttle(self) -> bool:
        """True (and one fewer left) when the next request must be throttled regardless."""
        with self._lock:
            if self._faults.throttle_next <= 0:
                return False
            self._faults = replace(self._faults, throttle_next=self._faults.throttle_next - 1)
            return True

    def to_json(self) -> dict[str, Any]:
        return asdict(self.current)
