"""The contract check used by every eManageCRM integration test: an httpx transport that
validates each exchange with the sandbox against docs/contracts/emanage.openapi.yaml.

Every answer on a documented path must be documented (status, headers, body schema); a path
that is not documented fails the test unless it is one of the sandbox's own pages (``/crm/``),
control routes (``/_sandbox/``) or a CORS preflight. Requests that succeeded are validated too,
so the tests (and the connector) send what the contract says.
"""

from __future__ import annotations

from functools import cache
from pathlib import Path
from typing import Any
from urllib.parse import parse_qsl

import httpx
from openapi_core import OpenAPI
from openapi_core.datatypes import RequestParameters
from werkzeug.datastructures import Headers, ImmutableMultiDict

from syncapp.sandbox.emanage.contract import load_contract

CONTRACT = Path(__file__).resolve().parents[3] / "docs/contracts/emanage.openapi.yaml"
UNDOCUMENTED_PREFIXES = ("/_sandbox/", "/crm/", "/crm")


@cache
def contract_document() -> dict[str, Any]:
    return load_contract(CONTRACT)


@cache
def openapi() -> OpenAPI:
    return OpenAPI.from_dict(contract_document())


def operation_ids() -> set[str]:
    return {
        op["operationId"]
        for item in contract_document()["paths"].values()
        for method, op in item.items()
        if method in ("get", "post", "put", "patch", "delete")
    }


class _Request:
    def __init__(self, request: httpx.Request) -> None:
        self.host_url = f"{request.url.scheme}://{request.url.netloc.decode()}"
        self.path = request.url.path
        self.method = request.method.lower()
        self.body: bytes | None = request.content or None
        self.content_type = request.headers.get("content-type", "")
        cookies = dict(
            part.strip().split("=", 1)
            for part in request.headers.get("cookie", "").split(";")
            if "=" in part
        )
        self.parameters = RequestParameters(
            query=ImmutableMultiDict(parse_qsl(request.url.query.decode())),
            header=Headers(list(request.headers.items())),
            cookie=ImmutableMultiDict(cookies),
        )


class _Response:
    def __init__(self, response: httpx.Response) -> None:
        self.data = response.content
        self.status_code = response.status_code
        self.content_type = response.headers.get("content-type", "")
        self.headers = Headers(list(response.headers.items()))


def operation_id(request: httpx.Request) -> str | None:
    """The documented operation a request hits, or None."""
    spec = contract_document()
    for template, item in spec["paths"].items():
        parts, actual = template.strip("/").split("/"), request.url.path.strip("/").split("/")
        if len(parts) != len(actual):
            continue
        if all(p.startswith("{") or p == a for p, a in zip(parts, actual, strict=True)):
            op = item.get(request.method.lower())
            if op is not None:
                return str(op["operationId"])
    return None


class ContractCheckingTransport(httpx.AsyncBaseTransport):
    """Passes requests to ``inner`` and fails on any answer the contract does not describe."""

    def __init__(self, inner: httpx.AsyncBaseTransport) -> None:
        self.inner = inner
        self.seen: list[tuple[str, int]] = []  # (operationId, status)

    async def handle_async_request(self, request: httpx.Request) -> httpx.Response:
        response = await self.inner.handle_async_request(request)
        await response.aread()
        path = request.url.path
        if path.startswith(UNDOCUMENTED_PREFIXES):
            return response
        if request.method == "OPTIONS" and "access-control-request-method" in request.headers:
            return response  # CORS preflight: HTTP plumbing, not an operation
        op = operation_id(request)
        if op is None:
            raise AssertionError(f"{request.method} {path} is not in the contract")
        validated = httpx.Response(
            response.status_code, headers=response.headers, content=response.content
        )
        openapi().validate_response(_Request(request), _Response(validated))
        if response.is_success:
            openapi().validate_request(_Request(request))
        self.seen.append((op, response.status_code))
        return response

    async def aclose(self) -> None:
        await self.inner.aclose()
