"""Schemathesis against the eManageCRM and CTRwow sandboxes and the app's own App Home JSON
routes (each served over HTTP) from their contracts in ``docs/contracts/``: no server error,
no answer outside the contract, and no request the contract allows that the server refuses
(400/422 on schema-valid data).

Each case is sent with the credentials its operation needs (Basic client credentials on token
endpoints, a system or account token, a partner token, a live ``X_CID``), and path ids are
those of a real account, so generated data reaches the sandboxes' logic instead of stopping
at 401/404. Examples are bounded (``MAX_EXAMPLES`` per operation) to keep the run short.
"""

from __future__ import annotations

import uuid
from collections.abc import Callable, Iterator
from dataclasses import dataclass, field
from pathlib import Path

import httpx
import pytest
import schemathesis
from hypothesis import HealthCheck, settings
from schemathesis import Case
from schemathesis.checks import (
    allow_header_conformance,
    content_type_conformance,
    not_a_server_error,
    positive_data_acceptance,
    response_headers_conformance,
    response_schema_conformance,
    status_code_conformance,
)
from sqlalchemy.orm import sessionmaker

from syncapp.sandbox.ctrwow import create_app as create_ctrwow
from syncapp.sandbox.emanage import create_app as create_emanage
from syncapp.web.sync_api import sync_api
from syncapp.web.sync_api.keys import SCOPES, create_key
from tests.integration.ctrwow.conftest import APP_ID, APP_SECRET, REDIRECT_URI
from tests.integration.ctrwow.conftest import make_config as ctrwow_config
from tests.integration.emanage.conftest import CLIENT_ID, CLIENT_SECRET, serve
from tests.integration.emanage.conftest import sandbox_config as emanage_config
from tests.integration.shops.conftest import System, running_system

CONTRACTS = Path(__file__).resolve().parents[2] / "docs" / "contracts"
MAX_EXAMPLES = 20
CHECKS = [
    not_a_server_error,
    status_code_conformance,
    content_type_conformance,
    response_headers_conformance,
    response_schema_conformance,
    positive_data_acceptance,
    allow_header_conformance,
]
FUZZ = settings(
    max_examples=MAX_EXAMPLES,
    deadline=None,
    suppress_health_check=list(HealthCheck),
    derandomize=True,
)


@dataclass
class Target:
    """A served sandbox and the credentials each of its operations is called with."""

    base_url: str
    headers: dict[str, dict[str, str]] = field(default_factory=dict)
    path_ids: dict[str, str] = field(default_factory=dict)
    query_ids: dict[str, str] = field(default_factory=dict)
    body_ids: dict[str, str] = field(default_factory=dict)
    # Operations whose positive data cannot be generated (a server-signed, single-use value).
    no_positive: frozenset[str] = frozenset()
    # Per operation label: fills body fields only the server can issue (a fresh link code).
    issued: dict[str, Callable[[], dict[str, str]]] = field(default_factory=dict)

    def call(self, case: Case) -> None:
        """Send ``case`` as a well-behaved client would, then run every check on the answer.

        What the client does that a schema cannot say: real ids in paths (and the registered
        client in an authorization request), the credentials of the operation, a new
        ``Idempotency-Key`` per request (a reused key with another body is a documented 422),
        and one client authentication method per request (RFC 6749 §2.3.1: Basic, so the
        form's ``client_id``/``client_secret`` are dropped).
        """
        for name, value in self.path_ids.items():
            if case.path_parameters and name in case.path_parameters:
                case.path_parameters[name] = value
        for name, value in self.query_ids.items():
            if case.query and name in case.query:
                case.query[name] = value
        label = f"{case.method.upper()} {case.path}"
        if isinstance(case.body, dict):
            case.body = {k: self.body_ids.get(k, v) for k, v in case.body.items()}
            if label in self.issued:
                case.body.update(self.issued[label]())
        headers = {k: v for k, v in (case.headers or {}).items() if k.lower() != "authorization"}
        if "Idempotency-Key" in headers:
            headers["Idempotency-Key"] = str(uuid.uuid4())
        for prefix, extra in self.headers.items():
            if case.path.startswith(prefix):
                headers.update(extra)
                break
        if headers.get("Authorization", "").startswith("Basic ") and isinstance(case.body, dict):
            case.body = {
                k: v for k, v in case.body.items() if k not in ("client_id", "client_secret")
            }
        checks = [
            c for c in CHECKS if c is not positive_data_acceptance or label not in self.no_positive
        ]
        case.call_and_validate(base_url=self.base_url, headers=headers, checks=checks)


def _bearer(token: str) -> dict[str, str]:
    return {"Authorization": f"Bearer {token}"}


def _basic(client_id: str, secret: str) -> dict[str, str]:
    return {"Authorization": httpx.BasicAuth(client_id, secret)._auth_header}


def _emanage_target(base_url: str) -> Target:
    with httpx.Client(base_url=base_url, timeout=10) as http:

        def token(**form: str) -> str:
            response = http.post(
                "/iam/oauth/token",
                data={"grant_type": "client_credentials", **form},
                auth=(CLIENT_ID, CLIENT_SECRET),
            )
            assert response.status_code == 200, response.text
            return str(response.json()["access_token"])

        system = token()
        account = http.post(
            "/admin/v1/accounts",
            json={
                "shopDomain": "fuzz.myshopify.com",
                "name": "Fuzz Store",
                "email": "owner@fuzz.example",
                "currency": "USD",
            },
            headers={**_bearer(system), "Idempotency-Key": str(uuid.uuid4())},
        )
        assert account.status_code == 201, account.text
        account_id, cid = account.json()["id"], account.json()["cid"]
        account_token = token(account_id=account_id)
        products = f"/admin/v1/accounts/{account_id}/products"
        for name in ("Fuzz One", "Fuzz Two"):
            made = http.post(
                products,
                json={
                    "name": name,
                    "status": "active",
                    "currency": "USD",
                    "variants": [{"productPrices": {"DiscountedPrice": {"Value": 9.99}}}],
                },
                headers={**_bearer(account_token), "Idempotency-Key": str(uuid.uuid4())},
            )
            assert made.status_code == 201, made.text
        first = http.get(products, params={"limit": 1}, headers=_bearer(account_token)).json()
        product_id, cursor = first["items"][0]["productId"], first["next"]
    return Target(
        base_url,
        headers={
            "/iam/": _basic(CLIENT_ID, CLIENT_SECRET),
            "/admin/v1/accounts/": _bearer(account_token),
            "/admin/v1/": _bearer(system),
            "/api/campaigns/": {"X_CID": cid},
        },
        path_ids={"accountId": account_id, "productId": product_id},
        # A cursor is opaque: only one the server issued is valid data.
        query_ids={"after": cursor},
        body_ids={"account_id": account_id},
        issued={"POST /admin/v1/account-links": lambda: _link_code(base_url)},
        # What a schema cannot say about a product write: the version If-Match must name (a
        # generated one is stale: 412), amounts within the currency's decimals, SKUs unique in
        # the product, one value per option; refusals of those are documented 412/422 answers.
        no_positive=frozenset(
            {
                "POST /admin/v1/accounts/{accountId}/products",
                "PUT /admin/v1/accounts/{accountId}/products/{productId}",
                "POST /admin/v1/accounts/{accountId}/products/{productId}/archive",
                # Its items are those writes, plus pairings the schema does not say (a
                # replacement's productId needs ifMatch and no match), refused with a 422.
                "POST /admin/v1/accounts/{accountId}/products:batch",
            }
        ),
    )


def _link_code(base_url: str) -> dict[str, str]:
    """A new dedicated subscription and its one-time link code (eManageCRM's own page)."""
    response = httpx.post(f"{base_url}/_sandbox/subscriptions", json={}, timeout=10)
    assert response.status_code == 201, response.text
    body = response.json()
    return {"subscriptionId": body["subscriptionId"], "linkCode": body["linkCode"]}


def _ctrwow_target(base_url: str) -> Target:
    with httpx.Client(base_url=base_url, timeout=10) as http:
        partner = http.post(
            "/oauth/token",
            data={"grant_type": "client_credentials", "scope": "partner:accounts"},
            auth=(APP_ID, APP_SECRET),
        )
        assert partner.status_code == 200, partner.text
        partner_token = str(partner.json()["access_token"])
        created = http.post(
            "/partner/v1/accounts",
            json={
                "external_ref": "fuzz.myshopify.com",
                "email": "owner@fuzz.example",
                "name": "Fuzz",
            },
            headers={**_bearer(partner_token), "Idempotency-Key": str(uuid.uuid4())},
        )
        assert created.status_code == 201, created.text
        account_id = str(created.json()["account"]["id"])
        access = str(created.json()["token"]["access_token"])
    return Target(
        base_url,
        headers={
            "/oauth/": _basic(APP_ID, APP_SECRET),
            "/partner/": _bearer(partner_token),
            "/v1/": _bearer(access),
        },
        path_ids={"account_id": account_id},
        query_ids={"client_id": APP_ID, "redirect_uri": REDIRECT_URI},
        # Its `request` is the consent page's signed, single-use form value.
        no_positive=frozenset({"POST /oauth/authorize"}),
    )


@pytest.fixture(scope="module")
def emanage(tmp_path_factory: pytest.TempPathFactory) -> Iterator[Target]:
    path = tmp_path_factory.mktemp("emanage-fuzz")
    with serve(lambda url: create_emanage(emanage_config(path, public_url=url))) as url:
        yield _emanage_target(url)


@pytest.fixture(scope="module")
def ctrwow(tmp_path_factory: pytest.TempPathFactory) -> Iterator[Target]:
    path = tmp_path_factory.mktemp("ctrwow-fuzz")
    with serve(lambda url: create_ctrwow(ctrwow_config(path, public_url=url))) as url:
        yield _ctrwow_target(url)


emanage_contract = schemathesis.openapi.from_path(CONTRACTS / "emanage.openapi.yaml")
ctrwow_contract = schemathesis.openapi.from_path(CONTRACTS / "ctrwow.openapi.yaml")


@emanage_contract.parametrize()
@FUZZ
def test_emanage_sandbox_keeps_its_contract(case: Case, emanage: Target) -> None:
    emanage.call(case)


@ctrwow_contract.parametrize()
@FUZZ
def test_ctrwow_sandbox_keeps_its_contract(case: Case, ctrwow: Target) -> None:
    ctrwow.call(case)


# --- the app's own JSON routes --------------------------------------------------------------

app_contract = schemathesis.openapi.from_path(CONTRACTS / "app-home.openapi.yaml")


@dataclass
class AppTarget:
    """The served app with the Shopify sandbox: each case gets a fresh ID token of a shop."""

    system: System
    shop: str

    def call(self, case: Case) -> None:
        headers = {k: v for k, v in (case.headers or {}).items() if k.lower() != "authorization"}
        if case.path != "/healthz":
            headers["Authorization"] = f"Bearer {self.system.id_token(self.shop)}"
        case.call_and_validate(base_url=self.system.app_url, headers=headers, checks=CHECKS)


@pytest.fixture(scope="module")
def app_home(tmp_path_factory: pytest.TempPathFactory) -> Iterator[AppTarget]:
    path = tmp_path_factory.mktemp("app-fuzz")
    with running_system(path, f"sqlite:///{path / 'app.db'}") as system:
        shop = system.create_shop("fuzz", name="Fuzz Store")
        system.install(shop)
        yield AppTarget(system, shop)


@app_contract.parametrize()
@FUZZ
def test_app_home_json_routes_keep_their_contract(case: Case, app_home: AppTarget) -> None:
    app_home.call(case)


# --- the Sync API (its document is generated by FastAPI from the routes) --------------------

# Unbound sessions: generating the document touches no database.
sync_contract = schemathesis.openapi.from_dict(sync_api(sessionmaker()).openapi())


@dataclass
class SyncTarget:
    """The served app with an installed shop and an operator key of every scope."""

    system: System
    key: str

    def call(self, case: Case) -> None:
        headers = {k: v for k, v in (case.headers or {}).items() if k.lower() != "authorization"}
        headers["Authorization"] = f"Bearer {self.key}"
        case.call_and_validate(
            base_url=f"{self.system.app_url}/api", headers=headers, checks=CHECKS
        )


@pytest.fixture(scope="module")
def sync_target(tmp_path_factory: pytest.TempPathFactory) -> Iterator[SyncTarget]:
    path = tmp_path_factory.mktemp("sync-api-fuzz")
    with running_system(path, f"sqlite:///{path / 'app.db'}") as system:
        shop = system.create_shop("fuzz", name="Fuzz Store")
        system.install(shop)
        key = create_key(system.runtime.sessions, name="fuzz", scopes=sorted(SCOPES))
        yield SyncTarget(system, key)


@sync_contract.parametrize()
@FUZZ
def test_the_sync_api_keeps_its_contract(case: Case, sync_target: SyncTarget) -> None:
    sync_target.call(case)
