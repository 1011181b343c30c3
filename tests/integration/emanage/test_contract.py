"""The sandbox matches the contract: every documented operation is exercised and each answer
validates against docs/contracts/emanage.openapi.yaml; the check itself fails on a mismatch;
/openapi.json serves the same document."""

from __future__ import annotations

import httpx
import pytest
from openapi_core.validation.response.exceptions import ResponseValidationError
from openapi_spec_validator import validate

from tests.integration.emanage.conftest import (
    BASE_URL,
    CLIENT_ID,
    CLIENT_SECRET,
    bearer,
    onboard,
    token,
)
from tests.integration.emanage.contract import (
    ContractCheckingTransport,
    contract_document,
    operation_ids,
)

pytestmark = pytest.mark.anyio


def test_the_contract_is_a_valid_openapi_3_1_document() -> None:
    """openapi-spec-validator accepts the document."""
    document = contract_document()
    assert document["openapi"].startswith("3.1")
    validate(document)


async def test_openapi_json_serves_the_contract(http: httpx.AsyncClient) -> None:
    """/openapi.json is the YAML contract, converted."""
    response = await http.get("/openapi.json")
    assert response.json() == contract_document()


async def test_every_documented_operation_answers_per_the_contract(
    http: httpx.AsyncClient, transport: ContractCheckingTransport
) -> None:
    """One walk through all operations; the checking transport validates each answer."""
    who = await onboard(http)
    sub = (await http.post("/_sandbox/subscriptions", json={})).json()
    system = await token(http)
    await http.post(
        "/admin/v1/account-links",
        json={
            "shopDomain": "acme.myshopify.com",
            "subscriptionId": sub["subscriptionId"],
            "linkCode": sub["linkCode"],
        },
        headers=bearer(system, "link-1"),
    )
    await http.get(f"/admin/v1/accounts/{who.account_id}", headers=bearer(system))
    await http.get(f"/admin/v1/accounts/{who.account_id}/users", headers=bearer(who.account_token))
    link = await http.post(
        f"/admin/v1/accounts/{who.account_id}/users/{who.user_id}/sso-links",
        headers=bearer(who.account_token, "sso-1"),
    )
    await http.get(link.json()["url"])
    await http.post(f"/_sandbox/accounts/{who.account_id}/payment-providers", json={})
    await http.get(
        f"/admin/v1/accounts/{who.account_id}/payment-providers",
        headers=bearer(who.account_token),
    )
    products = f"/admin/v1/accounts/{who.account_id}/products"
    product = {
        "name": "P",
        "status": "active",
        "currency": "USD",
        "variants": [{"sku": "P1", "productPrices": {"DiscountedPrice": {"Value": 19.9}}}],
    }
    created = await http.post(products, json=product, headers=bearer(who.account_token, "p-1"))
    pid = created.json()["productId"]
    await http.get(products, headers=bearer(who.account_token))
    await http.post(
        f"{products}:batch",
        json={"items": [{"key": "p-b1", "product": {**product, "name": "B"}, "match": True}]},
        headers=bearer(who.account_token, "p-batch"),
    )
    await http.get(f"{products}/{pid}", headers=bearer(who.account_token))
    await http.put(
        f"{products}/{pid}",
        json={**product, "name": "Q"},
        headers={**bearer(who.account_token, "p-2"), "If-Match": '"1"'},
    )
    await http.post(
        f"{products}/{pid}/archive",
        headers={**bearer(who.account_token, "p-3"), "If-Match": '"2"'},
    )
    campaign = (
        await http.post(
            f"/_sandbox/accounts/{who.account_id}/campaigns",
            json={"name": "C", "products": [{"name": "P", "price": 10}]},
        )
    ).json()
    cid = {"X_CID": who.cid}
    for resource in (
        "settings",
        "countries",
        "products/prices",
        "products/prices/US",
        "customers/location",
    ):
        await http.get(f"/api/campaigns/{campaign['webKey']}/{resource}", headers=cid)
    created = await http.post(
        "/admin/v1/webhook-subscriptions",
        json={"url": "https://app.example/webhooks/emanage", "eventTypes": ["product.updated"]},
        headers=bearer(system, "sub-1"),
    )
    hook = f"/admin/v1/webhook-subscriptions/{created.json()['id']}"
    await http.get("/admin/v1/webhook-subscriptions", headers=bearer(system))
    await http.get(hook, headers=bearer(system))
    await http.patch(hook, json={"secret": "s" * 40}, headers=bearer(system, "sub-2"))
    await http.delete(hook, headers=bearer(system, "sub-3"))
    await http.get("/healthz")
    await http.get("/openapi.json")
    await http.get("/iam/.well-known/jwks.json")
    as_jwt = await http.post(
        "/iam/oauth/token",
        data={"grant_type": "client_credentials", "resource": "http://127.0.0.1:8000/api"},
        auth=(CLIENT_ID, CLIENT_SECRET),
    )
    assert as_jwt.json()["issued_token_type"] == "urn:ietf:params:oauth:token-type:jwt"
    answered = {op for op, status in transport.seen if status < 400}
    assert answered == operation_ids()


async def test_the_check_fails_when_an_answer_disagrees_with_the_contract() -> None:
    """An answer missing a required field fails the check: the contract test can fail."""

    def wrong(request: httpx.Request) -> httpx.Response:
        return httpx.Response(200, json={"campaignName": "no language code"})

    transport = ContractCheckingTransport(httpx.MockTransport(wrong))
    async with httpx.AsyncClient(transport=transport, base_url=BASE_URL) as http:
        with pytest.raises(ResponseValidationError):
            await http.get(
                "/api/campaigns/9C4ABE3D-06B9-4150-B17F-9DEBAFEDCA38/settings",
                headers={"X_CID": "e1ec116b-04c6-4301-9475-6f6fdaa5be9d"},
            )


async def test_the_check_fails_on_an_undocumented_path() -> None:
    """A path the contract does not list fails the check."""
    transport = ContractCheckingTransport(httpx.MockTransport(lambda r: httpx.Response(200)))
    async with httpx.AsyncClient(transport=transport, base_url=BASE_URL) as http:
        with pytest.raises(AssertionError, match="not in the contract"):
            await http.get("/admin/v1/secrets")
