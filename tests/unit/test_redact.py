"""Credentials never reach a log line: URLs' id_token/code/state, bearer values, JWTs."""

from __future__ import annotations

import asyncio
import io
import logging
from collections.abc import Iterator

import httpx
import orjson
import pytest
import structlog
from hypothesis import given
from hypothesis import strategies as st
from starlette.types import Message, Receive, Scope, Send

from syncapp.logging import configure_logging
from syncapp.redact import REDACTED, redact_headers, redact_text
from syncapp.web.observability import RequestContextMiddleware

JWT = (
    "eyJhbGciOiJIUzI1NiIsInR5cCI6IkpXVCJ9.eyJkZXN0IjoiaHR0cHM6Ly9kZW1vLm15c2hvcGlmeS5jb20ifQ"
    ".c2lnbmF0dXJlLXZhbHVlLWhlcmU"
)
_value = st.text(
    alphabet="abcdefghijklmnopqrstuvwxyzABCDEFGHIJKLMNOPQRSTUVWXYZ0123456789-_.~",
    min_size=8,
    max_size=60,
)


@given(
    value=_value,
    name=st.sampled_from(
        [
            "id_token",
            "code",
            "state",
            "access_token",
            "hmac",
            "client_secret",
            "session",
            "refresh_token",
            "link_code",
        ]
    ),
)
def test_a_credential_query_value_is_masked_wherever_it_stands(value: str, name: str) -> None:
    for url in (
        f"/?{name}={value}",
        f"/ctrwow/callback?shop=demo&{name}={value}&x=1",
        f"http://127.0.0.1:8000/p?a=b&{name}={value}#frag",
    ):
        redacted = redact_text(f'GET {url} "HTTP/1.1" 200')
        assert value not in redacted
        assert f"{name}={REDACTED}" in redacted


def test_ordinary_parameters_and_text_stay_readable() -> None:
    line = "GET /store/demo/products?page=2&shop=demo.myshopify.com HTTP/1.1"
    assert redact_text(line) == line
    assert redact_text("install.completed") == "install.completed"


def test_bearer_values_jwts_and_sso_paths_are_masked() -> None:
    assert "abcdefgh12345" not in redact_text("Authorization: Bearer abcdefgh12345")
    assert JWT not in redact_text(f"token was {JWT} here")
    assert "oneTimeToken123" not in redact_text("GET http://127.0.0.1:8200/sso/oneTimeToken123")
    headers = redact_headers(
        {"Authorization": "Bearer x", "X-Shopify-Access-Token": "shpat_1", "Accept": "*/*"}
    )
    assert headers == {
        "Authorization": REDACTED,
        "X-Shopify-Access-Token": REDACTED,
        "Accept": "*/*",
    }


@pytest.fixture
def captured_logs() -> Iterator[io.StringIO]:
    """configure_logging writing to a buffer; structlog and the root logger restored after."""
    saved_config = structlog.get_config()
    root = logging.getLogger()
    saved_handlers, saved_level = root.handlers[:], root.level
    buffer = io.StringIO()
    with pytest.MonkeyPatch.context() as mp:
        mp.setattr("sys.stdout", buffer)
        configure_logging("debug", "json")
    try:
        yield buffer
    finally:
        structlog.configure(**saved_config)
        root.handlers[:], root.level = saved_handlers, saved_level


async def _through_access_log(path: str, query: bytes) -> None:
    """One request through the app's request middleware, whose access line is logged."""

    async def redirect(scope: Scope, receive: Receive, send: Send) -> None:
        await send({"type": "http.response.start", "status": 302, "headers": []})
        await send({"type": "http.response.body", "body": b""})

    async def receive() -> Message:
        return {"type": "http.request", "body": b""}

    async def send(message: Message) -> None:
        pass

    scope = {"type": "http", "method": "GET", "path": path, "query_string": query, "headers": []}
    await RequestContextMiddleware(redirect, known_routes=frozenset())(scope, receive, send)


def test_every_log_line_is_redacted(captured_logs: io.StringIO) -> None:
    """Our events, the access log and httpx's request log pass the redaction."""
    structlog.get_logger("t").info(
        "app_home.request",
        url=f"/?id_token={JWT}&shop=demo",
        headers={"authorization": "Bearer zzzzzzzz99"},
    )
    asyncio.run(
        _through_access_log(
            "/ctrwow/callback", b"code=the-oauth-code-1&state=the-state-value-1&shop=demo"
        )
    )
    # uvicorn's own access line is off (the middleware's replaces it), redacted or not.
    logging.getLogger("uvicorn.access").info('"GET /?code=uvicorn-line-1 HTTP/1.1" 200')

    def answer(request: httpx.Request) -> httpx.Response:
        return httpx.Response(200)

    with httpx.Client(transport=httpx.MockTransport(answer)) as client:
        client.get(f"http://127.0.0.1:8000/?embedded=1&id_token={JWT}")
    lines = [orjson.loads(line) for line in captured_logs.getvalue().splitlines()]
    text = captured_logs.getvalue()
    assert len(lines) >= 3
    for secret in (JWT, "zzzzzzzz99", "the-oauth-code-1", "the-state-value-1", "uvicorn-line"):
        assert secret not in text
    (access,) = [line for line in lines if line["event"] == "http.request"]
    assert access["target"] == "/ctrwow/callback?code=[REDACTED]&state=[REDACTED]&shop=demo"
    assert access["status"] == 302
    assert len(access["request_id"]) == 32
    assert any(
        "HTTP Request" in line["event"] and "id_token=[REDACTED]" in line["event"] for line in lines
    )
