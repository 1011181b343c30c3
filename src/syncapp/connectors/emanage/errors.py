"""What can go wrong talking to eManageCRM, and whether retrying helps.

    EmanageError                      anything this connector raises (a ConnectorError)
    ├── EmanageTransientError         retry later (``retry_after`` seconds when the server said):
    │   │                             5xx, 408, timeouts, connection failures
    │   └── EmanageRateLimited        429; ``retry_after`` from ``Retry-After``
    ├── EmanageAuthError              401: the system client's credentials or scopes were
    │   │                             refused; fix configuration, do not retry
    │   └── EmanageTokenRejected      401 ``invalid_token``: the API refused a token (expired
    │                                 or revoked early); the client has already dropped it and
    │                                 sent the call once more with a fresh one, so this is the
    │                                 fresh token refused too
    └── EmanagePermanentError         the same request will fail again: do not retry unchanged
        ├── EmanageForbidden          403: the token may not reach that account (``code`` says why)
        ├── EmanageNotFound           404, or a token asked for an account the client does not own
        ├── EmanageConflict           409: it exists already; ``existing_id`` names it when known
        │   └── EmanageVersionConflict  412: the product changed since the version sent in
        │                             If-Match; ``current_version`` is its version now (re-read,
        │                             merge, write again with a new idempotency key)
        ├── EmanageValidationError    400/422: ``message`` and ``field_errors`` from the server
        │   └── EmanageIdempotencyMismatch  422: the Idempotency-Key was used for another body
        └── EmanageProtocolError      the answer does not match the contract

:func:`error_from_response` (pure) turns an HTTP answer into one of these; :func:`is_transient`
is the predicate a retry policy (stamina) should use; :func:`merchant_message` says what one
means to a merchant.
"""

from __future__ import annotations

import json
from collections.abc import Mapping
from typing import Any

from syncapp.connectors.errors import (
    ConnectorError,
    PermanentConnectorError,
    TransientConnectorError,
    parse_retry_after,
)


class EmanageError(ConnectorError):
    """Base class; ``status`` and ``code`` are the server's when it answered."""

    system = "eManageCRM"

    def __init__(
        self,
        message: str,
        *,
        status: int | None = None,
        code: str | None = None,
        retry_after: float | None = None,
    ):
        super().__init__(message, status=status, code=code, retry_after=retry_after)
        self.message = message


class EmanageTransientError(EmanageError, TransientConnectorError):
    """Retry later; ``retry_after`` is the server's hint in seconds, if any."""


class EmanageRateLimited(EmanageTransientError):
    """429: too many requests."""


class EmanageAuthError(EmanageError):
    """401 (or a refused scope): the credentials are wrong; a configuration problem."""


class EmanageTokenRejected(EmanageAuthError):
    """The API refused an access token, and the fresh one the client then fetched as well;
    the cache is cleared, so a later retry may succeed."""


class EmanagePermanentError(EmanageError, PermanentConnectorError):
    """The request will fail again as it is."""


class EmanageForbidden(EmanagePermanentError):
    """403: the token may not do this (wrong account, missing scope, suspended account)."""


class EmanageNotFound(EmanagePermanentError):
    """404: no such resource for this client."""


class EmanageConflict(EmanagePermanentError):
    """409: the resource exists already; ``existing_id`` is its id when the server gave it."""

    def __init__(
        self,
        message: str,
        *,
        status: int | None = None,
        code: str | None = None,
        existing_id: str | None = None,
    ):
        super().__init__(message, status=status, code=code)
        self.existing_id = existing_id


class EmanageVersionConflict(EmanageConflict):
    """412: a guarded write named an old version; ``current_version`` is the server's now."""

    def __init__(
        self,
        message: str,
        *,
        status: int | None = None,
        code: str | None = None,
        current_version: int | None = None,
    ):
        super().__init__(message, status=status, code=code)
        self.current_version = current_version


class EmanageValidationError(EmanagePermanentError):
    """400/422: the server refused the input; ``field_errors`` maps field to messages."""

    def __init__(
        self,
        message: str,
        *,
        status: int | None = None,
        code: str | None = None,
        field_errors: Mapping[str, list[str]] | None = None,
    ):
        super().__init__(message, status=status, code=code)
        self.field_errors: dict[str, list[str]] = dict(field_errors or {})


class EmanageIdempotencyMismatch(EmanageValidationError):
    """422: this Idempotency-Key was already used with a different request body."""


class EmanageProtocolError(EmanagePermanentError):
    """The answer was not what the contract promises (not JSON, wrong shape)."""


def is_transient(exc: BaseException) -> bool:
    """True for errors a retry policy should retry (transient ones and a rejected token)."""
    return isinstance(exc, EmanageTransientError | EmanageTokenRejected)


def _body(raw: bytes) -> dict[str, Any]:
    try:
        parsed = json.loads(raw)
    except ValueError:
        return {}
    return parsed if isinstance(parsed, dict) else {}


def error_from_response(status: int, headers: Mapping[str, str], raw_body: bytes) -> EmanageError:
    """The error for a non-2xx answer: the class says what to do, the message says why."""
    body = _body(raw_body)
    code = body.get("code") or body.get("error")
    code = str(code) if code is not None else None
    server_message = body.get("message") or body.get("error_description")
    if not server_message:
        snippet = raw_body[:200].decode("utf-8", "replace").strip()
        server_message = snippet or "no message"
    message = f"eManageCRM answered HTTP {status}" + (f" {code}" if code else "")
    message += f": {server_message}"
    retry_after = parse_retry_after(
        next((v for k, v in headers.items() if k.lower() == "retry-after"), None)
    )
    if status == 429:
        return EmanageRateLimited(message, status=status, code=code, retry_after=retry_after)
    if status >= 500 or status == 408:
        return EmanageTransientError(message, status=status, code=code, retry_after=retry_after)
    if status == 401:
        if code == "invalid_token":
            return EmanageTokenRejected(message, status=status, code=code)
        return EmanageAuthError(message, status=status, code=code)
    if status == 400 and code == "invalid_scope":
        return EmanageAuthError(message, status=status, code=code)
    if status == 400 and code == "invalid_target":
        return EmanageNotFound(message, status=status, code=code)
    if status == 403:
        return EmanageForbidden(message, status=status, code=code)
    if status == 404:
        return EmanageNotFound(message, status=status, code=code)
    if status == 409:
        existing = body.get("existingId")
        return EmanageConflict(
            message, status=status, code=code, existing_id=str(existing) if existing else None
        )
    if status == 412:
        current = body.get("currentVersion")
        return EmanageVersionConflict(
            message,
            status=status,
            code=code,
            current_version=current if isinstance(current, int) else None,
        )
    if status in (400, 422):
        model_state = body.get("modelState")
        fields = (
            {str(k): [str(m) for m in v] for k, v in model_state.items() if isinstance(v, list)}
            if isinstance(model_state, dict)
            else {}
        )
        cls = (
            EmanageIdempotencyMismatch
            if code == "idempotency_key_reused"
            else EmanageValidationError
        )
        return cls(message, status=status, code=code, field_errors=fields)
    return EmanagePermanentError(message, status=status, code=code)


_SUPPORT = "contact the Sync App's support if it keeps happening"


def merchant_message(exc: EmanageError, *, doing: str) -> str:
    """What a merchant reads when ``exc`` stopped the app from ``doing`` something ("open
    eManageCRM"): what happened and what to do, in plain words. Never the server's own
    message, which is for the log (it names codes and HTTP statuses)."""
    if isinstance(exc, EmanageTransientError):
        return (
            f"eManageCRM is not answering right now, so the app could not {doing}. Nothing "
            "was lost: try again in a minute."
        )
    if isinstance(exc, EmanageAuthError):
        return (
            f"eManageCRM did not accept the Sync App's sign-in, so the app could not {doing}. "
            "This is on the app's side, not in your store: try again in a few minutes, and "
            f"{_SUPPORT}."
        )
    if isinstance(exc, EmanageForbidden | EmanageNotFound):
        # A suspended account refuses its token as "invalid_target" (404 class) or 403.
        return (
            f"eManageCRM did not let the app into your store's account, so the app could not "
            f"{doing}. If the account is suspended, reactivate it in eManageCRM and try again; "
            "otherwise contact the Sync App's support."
        )
    return (
        f"eManageCRM turned down the request, so the app could not {doing}. Try again, and "
        f"{_SUPPORT}."
    )
