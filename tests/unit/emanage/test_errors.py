"""The pure mapping from eManageCRM answers to the connector's error tree."""

from __future__ import annotations

import json
import re

import pytest
from hypothesis import given
from hypothesis import strategies as st

from syncapp.connectors.emanage.errors import (
    EmanageAuthError,
    EmanageConflict,
    EmanageForbidden,
    EmanageIdempotencyMismatch,
    EmanageNotFound,
    EmanagePermanentError,
    EmanageRateLimited,
    EmanageTokenRejected,
    EmanageTransientError,
    EmanageValidationError,
    error_from_response,
    is_transient,
    merchant_message,
)


def body(**fields: object) -> bytes:
    return json.dumps(fields).encode()


@given(st.integers(min_value=500, max_value=599))
def test_every_5xx_is_transient(status: int) -> None:
    """Any server error is retryable."""
    error = error_from_response(status, {}, b"")
    assert isinstance(error, EmanageTransientError)
    assert is_transient(error)


@given(st.integers(min_value=400, max_value=499).filter(lambda s: s not in (401, 408, 429)))
def test_other_4xx_are_permanent(status: int) -> None:
    """Client errors other than 401, 408 and 429 are not retried."""
    error = error_from_response(status, {}, body(code="x", message="m"))
    assert isinstance(error, EmanagePermanentError)
    assert not is_transient(error)


def test_429_is_rate_limited_with_its_retry_after() -> None:
    """429 carries Retry-After in seconds."""
    error = error_from_response(429, {"Retry-After": "12"}, b"")
    assert isinstance(error, EmanageRateLimited)
    assert error.retry_after == 12.0


def test_401_invalid_client_is_a_configuration_error() -> None:
    """Refused client credentials are an auth error, not retryable."""
    error = error_from_response(401, {}, body(error="invalid_client", error_description="no"))
    assert type(error) is EmanageAuthError
    assert not is_transient(error)


def test_401_invalid_token_is_a_rejected_token_worth_one_retry() -> None:
    """A refused bearer token is retryable: the client drops it and gets a new one."""
    error = error_from_response(401, {}, body(code="invalid_token", message="expired"))
    assert isinstance(error, EmanageTokenRejected)
    assert is_transient(error)


def test_409_carries_the_existing_id() -> None:
    """A conflict names the resource that exists."""
    error = error_from_response(409, {}, body(code="account_exists", message="m", existingId="a1"))
    assert isinstance(error, EmanageConflict)
    assert error.existing_id == "a1"


def test_422_carries_the_servers_message_and_fields() -> None:
    """Validation errors keep the message and ASP.NET modelState."""
    error = error_from_response(
        422,
        {},
        body(code="validation_failed", message="check email", modelState={"email": ["bad"]}),
    )
    assert isinstance(error, EmanageValidationError)
    assert "check email" in str(error)
    assert error.field_errors == {"email": ["bad"]}


def test_a_reused_idempotency_key_has_its_own_class() -> None:
    """idempotency_key_reused is distinguishable from other validation errors."""
    error = error_from_response(422, {}, body(code="idempotency_key_reused", message="m"))
    assert isinstance(error, EmanageIdempotencyMismatch)


def test_403_and_404_and_invalid_target_map_to_forbidden_and_not_found() -> None:
    """Access refusals keep their meaning."""
    assert isinstance(error_from_response(403, {}, body(code="account_mismatch")), EmanageForbidden)
    assert isinstance(error_from_response(404, {}, b"not json"), EmanageNotFound)
    assert isinstance(error_from_response(400, {}, body(error="invalid_target")), EmanageNotFound)


def test_a_body_that_is_not_json_still_gives_a_readable_message() -> None:
    """An HTML error page from a proxy shows up in the message instead of crashing."""
    error = error_from_response(502, {}, b"<html>Bad Gateway</html>")
    assert "Bad Gateway" in str(error)


@pytest.mark.parametrize(
    ("status", "body", "says"),
    [
        (503, b'{"code": "unavailable", "message": "maintenance"}', "not answering right now"),
        (429, b'{"code": "rate_limited"}', "not answering right now"),
        (401, b'{"code": "invalid_token", "message": "expired"}', "did not accept the Sync App"),
        (401, b'{"error": "invalid_client"}', "did not accept the Sync App"),
        (403, b'{"code": "account_suspended"}', "reactivate it in eManageCRM"),
        (400, b'{"error": "invalid_target", "error_description": "suspended"}', "reactivate"),
        (422, b'{"code": "bad", "message": "field x"}', "Try again"),
    ],
)
def test_merchant_messages_say_what_happened_and_what_to_do_in_plain_words(
    status: int, body: bytes, says: str
) -> None:
    """Every error reads as plain words naming the action, never eManageCRM's own answer."""
    message = merchant_message(error_from_response(status, {}, body), doing="open eManageCRM")
    assert says in message
    assert "could not open eManageCRM" in message
    assert not re.search(r"HTTP|\d{3}|_|answered|expired|maintenance|field x", message), message
