"""The contract check: every answer the CTRwow sandbox gives over HTTP in these tests is
validated against ``docs/contracts/ctrwow.openapi.yaml`` with openapi-core (operation found,
status documented, headers and body matching their schemas). A mismatch fails the test.

Hook it into an httpx client with ``event_hooks={"response": [checker.check]}`` (sync) or
``[checker.acheck]`` (async). Control routes (``/_sandbox/``) and ``/openapi.json`` are not
part of CTRwow's contract and are skipped.
"""

from __future__ import annotations

import functools
import json
from pathlib import Path
from typing import Any
from urllib.parse import parse_qs, urlsplit

import httpx
import yaml
from openapi_core import Config, OpenAPI
from openapi_core.datatypes import RequestParameters
from werkzeug.datastructures import Headers, ImmutableMultiDict

CONTRACT_PATH = Path(__file__).resolve().parents[3] / "docs" / "contracts" / "ctrwow.openapi.yaml"
# The document's first server; requests are matched as if sent there.
SERVER = "http://127.0.0.1:8300"
UNCHECKED_PREFIXES = ("/_sandbox/", "/openapi.json")


def load_document() -> dict[str, Any]:
    document: dict[str, Any] = yaml.safe_load(CONTRACT_PATH.read_text(encoding="utf-8"))
    return document


class _Request:
    def __init__(self, request: httpx.Request) -> None:
        url = urlsplit(str(request.url))
        self.host_url = SERVER
        self.path = url.path
        self.method = request.method.lower()
        self.body: bytes | None = request.content or None
        self.content_type = request.headers.get("content-type", "")
        self.parameters = RequestParameters(
            query=ImmutableMultiDict(parse_qs(url.query)),
            header=Headers(dict(request.headers)),
            cookie=ImmutableMultiDict({}),
        )


class _Response:
    def __init__(self, response: httpx.Response) -> None:
        self.status_code = response.status_code
        self.data: bytes | None = response.content
        self.content_type = response.headers.get("content-type", "")
        self.headers = Headers(dict(response.headers))


@functools.cache
def contract_api() -> OpenAPI:
    """The contract, checked once (openapi-spec-validator) and shared by every test."""
    # RFC 9457 problem documents are JSON; openapi-core only knows application/json by name.
    config = Config(extra_media_type_deserializers={"application/problem+json": _json})
    return OpenAPI.from_dict(load_document(), config=config)


def _json(data: bytes, **_: Any) -> Any:
    return json.loads(data)


class ContractChecker:
    """Validates responses against the contract; keeps a count so tests can prove it ran."""

    def __init__(self) -> None:
        self.api = contract_api()
        self.checked = 0

    def validate(self, response: httpx.Response) -> None:
        """Raise when ``response`` (with its request) does not match the contract."""
        path = response.request.url.path
        if path.startswith(UNCHECKED_PREFIXES):
            return
        self.api.validate_response(_Request(response.request), _Response(response))
        self.checked += 1

    def check(self, response: httpx.Response) -> None:
        response.read()
        self.validate(response)

    async def acheck(self, response: httpx.Response) -> None:
        await response.aread()
        self.validate(response)
