"""The one error base every connector's errors share, and the ``Retry-After`` reading they use.

::

    ConnectorError                 a call to an external system failed: ``status`` (None or 0
    │                              when no answer came), the system's machine ``code``,
    │                              ``retry_after`` seconds when the system said
    ├── TransientConnectorError    the same call may succeed later: retry with backoff
    └── PermanentConnectorError    the same call fails again unchanged: do not retry it as is

Each connector draws its own tree under these (``EmanageError``, ``CtrwowError``,
``ShopifyAdminError``), so code above the connectors can decide "retry or give up" from this
base alone, and the one retry policy (``bus.retry``) reads ``retry_after`` the same way for all.
Errors that are neither (a refused credential, say) are configuration problems each caller
handles by name.
"""

from __future__ import annotations

import math
from datetime import UTC, datetime
from email.utils import parsedate_to_datetime
from typing import ClassVar

from syncapp.errors import SyncAppError


class ConnectorError(SyncAppError):
    """A call to an external system failed; ``system`` names it for messages and logs."""

    system: ClassVar[str] = "an external system"

    def __init__(
        self,
        message: str,
        *,
        status: int | None = None,
        code: str | None = None,
        retry_after: float | None = None,
    ) -> None:
        super().__init__(message)
        self.status = status
        self.code = code
        self.retry_after = retry_after


class TransientConnectorError(ConnectorError):
    """The system could not answer now (5xx, 429, timeout, no connection); retry later."""


class PermanentConnectorError(ConnectorError):
    """The system refused the request as it is (4xx, off-contract answer); retrying won't help."""


def parse_retry_after(value: str | None, *, now: datetime | None = None) -> float | None:
    """``Retry-After`` as seconds from now (delay-seconds or an HTTP date), or None.

    Negative or unparseable values give None rather than an exception: the hint is optional
    and a bad one must not turn a transient error into a crash.
    """
    if value is None or not value.strip():
        return None
    text = value.strip()
    try:
        seconds = float(text)
    except ValueError:
        try:
            when = parsedate_to_datetime(text)
        except (TypeError, ValueError, IndexError):
            return None
        if when.tzinfo is None:
            when = when.replace(tzinfo=UTC)
        seconds = (when - (now or datetime.now(UTC))).total_seconds()
        return max(0.0, seconds)
    if not math.isfinite(seconds) or seconds < 0:
        return None
    return seconds
