"""The contract document itself: valid OpenAPI 3.1, in step with the sandbox's routes, and the
contract check really fails on an answer that does not match it."""

from __future__ import annotations

import re
from pathlib import Path

import httpx
import pytest
from openapi_core.templating.responses.exceptions import ResponseNotFound
from openapi_core.validation.response.exceptions import InvalidData
from openapi_spec_validator import validate
from starlette.routing import Route

from syncapp.sandbox.ctrwow import CtrwowClientRegistration, CtrwowSandboxConfig, create_app
from tests.integration.ctrwow.contract import ContractChecker, load_document

# Not CTRwow's API: the sandbox's control routes, its own document and its favicons.
SANDBOX_ONLY = ("/_sandbox/", "/openapi.json", "/favicon.")


def test_contract_is_valid_openapi_3_1() -> None:
    """openapi-spec-validator accepts the document."""
    document = load_document()
    assert document["openapi"].startswith("3.1")
    validate(document)  # type: ignore[arg-type]


def test_every_sandbox_route_is_in_the_contract_and_back(tmp_path: Path) -> None:
    """The sandbox serves exactly the contract's operations, plus its own control routes."""
    app = create_app(
        CtrwowSandboxConfig(
            database_path=tmp_path / "c.db",
            clients=(CtrwowClientRegistration("a", "s" * 40, ()),),
        )
    )
    served = {
        (re.sub(r"\{(\w+)\}", r"{\1}", route.path), method.lower())
        for route in app.routes
        if isinstance(route, Route) and not route.path.startswith(SANDBOX_ONLY)
        for method in (route.methods or set()) - {"HEAD"}
    }
    documented = {
        (path, method)
        for path, item in load_document()["paths"].items()
        for method in item
        if method in {"get", "post", "put", "patch", "delete"}
    }
    assert served == documented


def _answer(status: int, body: object, path: str = "/v1/me") -> httpx.Response:
    request = httpx.Request("GET", f"http://127.0.0.1:8300{path}")
    return httpx.Response(status, json=body, request=request)


def test_contract_check_accepts_a_matching_answer() -> None:
    """A well-formed account passes, and was checked (not skipped as a control route)."""
    checker = ContractChecker()
    checker.validate(
        _answer(
            200,
            {
                "id": "acc_0123456789abcdef01234567",
                "name": "Demo",
                "email": "d@demo.example",
                "plan": "starter",
                "created_at": "2026-11-01T12:00:00Z",
                "external_ref": None,
            },
        )
    )
    assert checker.checked == 1


def test_contract_check_fails_on_a_missing_field() -> None:
    """An account without its email is refused by the contract check."""
    with pytest.raises(InvalidData, match="'email' is a required property"):
        ContractChecker().validate(
            _answer(
                200,
                {
                    "id": "acc_0123456789abcdef01234567",
                    "name": "Demo",
                    "plan": "starter",
                    "created_at": "2026-11-01T12:00:00Z",
                },
            )
        )


def test_contract_check_fails_on_an_undocumented_status() -> None:
    """A status the contract does not list for the operation is refused."""
    with pytest.raises(ResponseNotFound, match="418"):
        ContractChecker().validate(_answer(418, {}))
