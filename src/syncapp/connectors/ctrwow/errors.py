"""The CTRwow connector's errors, and the pure mapping from an HTTP answer to one of them.

::

    CtrwowError                    every failure of a CTRwow call
    ├── CtrwowTransientError       retry later: 5xx, timeout, no connection (retry_after?)
    │   └── CtrwowRateLimited      429; retry_after always set
    ├── CtrwowAuthError            do not retry as is
    │   ├── CtrwowInvalidToken     401 invalid_token: access token expired/revoked → refresh
    │   ├── CtrwowInvalidGrant     400 invalid_grant: code/refresh token dead → connect again
    │   ├── CtrwowInvalidClient    401 invalid_client: our client id/secret wrong → settings
    │   └── CtrwowInsufficientScope  403: the grant lacks a scope → connect again with it
    ├── CtrwowConflict             409: it exists already (``existing_id`` when CTRwow says);
    │                              like CtrwowPermanentError, a PermanentConnectorError
    └── CtrwowPermanentError       any other refusal (400, 404, 422 …) or an off-contract answer

The tree hangs under ``connectors.errors.ConnectorError``. Only :class:`CtrwowTransientError`
(and subclasses) is retryable; a retry wrapper should honour
``retry_after``. Every error carries the HTTP ``status`` (0 when no answer came), CTRwow's
machine ``code`` and a ``detail`` fit for a log or a merchant-facing message.
"""

from __future__ import annotations

from collections.abc import Mapping
from datetime import UTC, datetime
from typing import Any

from syncapp.connectors.errors import (
    ConnectorError,
    PermanentConnectorError,
    TransientConnectorError,
    parse_retry_after,
)


class CtrwowError(ConnectorError):
    """A CTRwow call failed."""

    system = "CTRwow"

    status: int
    code: str

    def __init__(
        self, detail: str, *, status: int = 0, code: str = "", retry_after: float | None = None
    ) -> None:
        super().__init__(detail, status=status, code=code, retry_after=retry_after)
        self.detail = detail


class CtrwowTransientError(CtrwowError, TransientConnectorError):
    """CTRwow could not answer now (5xx, timeout, network); the same call may succeed later."""


class CtrwowRateLimited(CtrwowTransientError):
    """429: too many requests; wait ``retry_after`` seconds."""

    retry_after: float


class CtrwowAuthError(CtrwowError):
    """Credentials were refused; retrying the same call cannot help."""


class CtrwowInvalidToken(CtrwowAuthError):
    """The access token is unknown, expired or revoked: refresh it, then retry once."""


class CtrwowInvalidGrant(CtrwowAuthError):
    """The authorization code or refresh token was refused: the merchant must connect again."""


class CtrwowInvalidClient(CtrwowAuthError):
    """CTRwow does not accept our client id/secret: the app's CTRwow settings are wrong."""


class CtrwowInsufficientScope(CtrwowAuthError):
    """The grant lacks a scope this call needs."""


class CtrwowConflict(CtrwowError, PermanentConnectorError):
    """The resource already exists; ``existing_id`` names it when CTRwow said which."""

    def __init__(
        self, detail: str, *, status: int = 409, code: str = "", existing_id: str | None = None
    ) -> None:
        super().__init__(detail, status=status, code=code)
        self.existing_id = existing_id


class CtrwowPermanentError(CtrwowError, PermanentConnectorError):
    """A refusal that retrying will not change (bad request, not found, key reuse, off-contract)."""


def error_from_response(
    status: int, headers: Mapping[str, str], body: Any, *, now: float | None = None
) -> CtrwowError:
    """The error for a non-2xx answer; ``body`` is the decoded JSON (None if not JSON).

    Understands RFC 6749 token-endpoint errors (``error``) and RFC 9457 problems (``code``).
    """
    data = body if isinstance(body, dict) else {}
    code = str(data.get("error") or data.get("code") or "")
    detail = (
        str(data.get("error_description") or data.get("detail") or data.get("title") or "")
        or f"CTRwow answered HTTP {status}"
    )
    moment = None if now is None else datetime.fromtimestamp(now, UTC)
    retry_after = parse_retry_after(headers.get("retry-after"), now=moment)
    if status == 429:
        return CtrwowRateLimited(
            detail, status=status, code=code or "rate_limited", retry_after=retry_after or 1.0
        )
    if status >= 500 or status == 408:
        return CtrwowTransientError(detail, status=status, code=code, retry_after=retry_after)
    if code == "invalid_client":
        return CtrwowInvalidClient(detail, status=status, code=code)
    if code == "invalid_grant":
        return CtrwowInvalidGrant(detail, status=status, code=code)
    if status == 401:
        return CtrwowInvalidToken(detail, status=status, code=code or "invalid_token")
    if status == 403:
        return CtrwowInsufficientScope(detail, status=status, code=code or "insufficient_scope")
    if status == 409:
        existing = data.get("account_id")
        return CtrwowConflict(
            detail,
            status=status,
            code=code,
            existing_id=str(existing) if isinstance(existing, str) else None,
        )
    return CtrwowPermanentError(detail, status=status, code=code)
