"""The connectors' shared error base and ``Retry-After`` reading: every connector's answer
mapping lands in the same transient / permanent split, so code above the connectors can decide
"retry or give up" without knowing which system answered."""

from __future__ import annotations

from datetime import UTC, datetime, timedelta
from email.utils import format_datetime

import pytest
from hypothesis import given
from hypothesis import strategies as st

from syncapp.connectors.ctrwow.errors import error_from_response as ctrwow_error
from syncapp.connectors.emanage.errors import error_from_response as emanage_error
from syncapp.connectors.errors import (
    ConnectorError,
    PermanentConnectorError,
    TransientConnectorError,
    parse_retry_after,
)
from syncapp.connectors.shopify.admin import ShopifyQueryError, ShopifyTransientError


@pytest.mark.parametrize("status", [429, 500, 502, 503])
def test_emanage_and_ctrwow_retryable_answers_are_transient_connector_errors(status: int) -> None:
    """Both connectors' retryable answers carry the server's Retry-After on the shared base."""
    headers = {"Retry-After": "7"}
    for error in (
        emanage_error(status, headers, b""),
        ctrwow_error(status, {"retry-after": "7"}, None),
    ):
        assert isinstance(error, TransientConnectorError), error
        assert error.status == status
        assert error.retry_after == 7.0


@pytest.mark.parametrize("status", [400, 404, 409, 422])
def test_emanage_and_ctrwow_refusals_are_permanent_connector_errors(status: int) -> None:
    """A refusal is permanent whichever system answered, and never transient."""
    for error in (emanage_error(status, {}, b""), ctrwow_error(status, {}, None)):
        assert isinstance(error, PermanentConnectorError), error
        assert not isinstance(error, TransientConnectorError)
        assert error.status == status


def test_shopify_errors_hang_under_the_same_base() -> None:
    """Shopify's transient and query errors split the same way, with status and code."""
    transient = ShopifyTransientError("5xx", code="server_error", status=502)
    refused = ShopifyQueryError("bad query", code="graphql_errors", status=200)
    assert isinstance(transient, TransientConnectorError)
    assert isinstance(refused, PermanentConnectorError)
    assert isinstance(refused, ConnectorError)
    assert (transient.status, transient.code, transient.retry_after) == (502, "server_error", None)


@given(st.integers(min_value=0, max_value=10**6))
def test_retry_after_in_seconds_is_read_as_seconds(seconds: int) -> None:
    """delay-seconds parse to the same number."""
    assert parse_retry_after(str(seconds)) == float(seconds)


@given(st.integers(min_value=0, max_value=86_400))
def test_retry_after_as_an_http_date_is_seconds_from_now(seconds: int) -> None:
    """An HTTP date becomes the seconds until then."""
    now = datetime(2026, 1, 1, tzinfo=UTC)
    value = format_datetime(now + timedelta(seconds=seconds), usegmt=True)
    assert parse_retry_after(value, now=now) == float(seconds)


@given(st.text())
def test_retry_after_never_raises(value: str) -> None:
    """Any header value yields a non-negative number or None."""
    result = parse_retry_after(value)
    assert result is None or result >= 0
