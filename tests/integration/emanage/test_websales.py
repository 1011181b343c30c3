"""The public Web Sales API reads: paths, X_CID, shapes and quirks as live pages see them."""

from __future__ import annotations

from typing import Any

import httpx
import pytest

from tests.integration.emanage.conftest import Onboarded, onboard

pytestmark = pytest.mark.anyio

CAMPAIGN: dict[str, Any] = {
    "name": "Jet Flyer EN",
    "languageCode": "en",
    "countries": ["US", "CA"],
    "products": [
        {
            "name": "Jet Flyer x1",
            "sku": "JETF_1",
            "quantity": 1,
            "price": 29.99,
            "fullRetailPrice": 59.98,
            "shippingPrice": 4.99,
        },
        {
            "name": "Jet Flyer x2",
            "sku": "JETF_2",
            "quantity": 2,
            "price": 49.98,
            "fullRetailPrice": 119.96,
            "shippingPrice": 0,
        },
    ],
}


async def seed(http: httpx.AsyncClient, who: Onboarded, **overrides: Any) -> str:
    response = await http.post(
        f"/_sandbox/accounts/{who.account_id}/campaigns", json={**CAMPAIGN, **overrides}
    )
    assert response.status_code == 201, response.text
    return str(response.json()["webKey"])


async def test_prices_come_as_prices_and_location_with_pascal_case_price_members(
    http: httpx.AsyncClient,
) -> None:
    """productPrices is keyed by price type, each {Value, FormattedValue}, as live pages read it."""
    who = await onboard(http)
    web_key = await seed(http, who)
    response = await http.get(
        f"/api/campaigns/{web_key}/products/prices", headers={"X_CID": who.cid}
    )
    assert response.status_code == 200
    body = response.json()
    assert [p["sku"] for p in body["prices"]] == ["JETF_1", "JETF_2"]
    two = body["prices"][1]["productPrices"]
    assert two["DiscountedPrice"] == {"Value": 49.98, "FormattedValue": "$49.98"}
    assert two["UnitDiscountRate"]["Value"] == 24.99
    assert body["prices"][0]["shippings"][0]["formattedPrice"] == "$4.99"
    assert body["location"]["countryCode"] == "US"


async def test_settings_name_the_campaign_and_language(http: httpx.AsyncClient) -> None:
    """GET settings is {campaignName, defaultLanguageCode}; the webKey is case-insensitive."""
    who = await onboard(http)
    web_key = await seed(http, who)
    response = await http.get(
        f"/api/campaigns/{web_key.lower()}/settings", headers={"X_CID": who.cid}
    )
    assert response.json() == {"campaignName": "Jet Flyer EN", "defaultLanguageCode": "en"}


async def test_prices_for_a_country_are_a_bare_array(http: httpx.AsyncClient) -> None:
    """The per-country path keeps the old array shape; a country not sold to is empty."""
    who = await onboard(http)
    web_key = await seed(http, who)
    canada = await http.get(
        f"/api/campaigns/{web_key}/products/prices/CA", headers={"X_CID": who.cid}
    )
    france = await http.get(
        f"/api/campaigns/{web_key}/products/prices/FR", headers={"X_CID": who.cid}
    )
    assert len(canada.json()) == 2
    assert france.json() == []


async def test_countries_and_location_follow_the_campaign(http: httpx.AsyncClient) -> None:
    """Countries list the campaign's, with its currency; location is in the first one."""
    who = await onboard(http)
    web_key = await seed(http, who, countries=["CA"], currency="CAD")
    countries = await http.get(f"/api/campaigns/{web_key}/countries", headers={"X_CID": who.cid})
    location = await http.get(
        f"/api/campaigns/{web_key}/customers/location", headers={"X_CID": who.cid}
    )
    assert countries.json() == [
        {
            "countryName": "Canada",
            "countryCode": "CA",
            "currencyCode": "CAD",
            "currencyName": "Canadian Dollar",
            "currencySign": "$",
        }
    ]
    assert location.json()["regionName"] == "British Columbia"


async def test_a_missing_x_cid_is_denied(http: httpx.AsyncClient) -> None:
    """Without X_CID the answer is 401 with ASP.NET's message."""
    who = await onboard(http)
    web_key = await seed(http, who)
    response = await http.get(f"/api/campaigns/{web_key}/products/prices")
    assert response.status_code == 401
    assert response.json() == {"message": "Authorization has been denied for this request."}


async def test_a_malformed_x_cid_is_denied(http: httpx.AsyncClient) -> None:
    """An X_CID that is not a GUID is a wrong credential: 401, as the contract's apiKey
    scheme (any string) leads a client to expect, not a 400."""
    who = await onboard(http)
    web_key = await seed(http, who)
    response = await http.get(f"/api/campaigns/{web_key}/settings", headers={"X_CID": "abc"})
    assert response.status_code == 401


async def test_another_accounts_cid_is_denied(http: httpx.AsyncClient) -> None:
    """The CID of another account does not open this campaign."""
    a = await onboard(http, "a.myshopify.com")
    b = await onboard(http, "b.myshopify.com")
    web_key = await seed(http, a)
    response = await http.get(f"/api/campaigns/{web_key}/settings", headers={"X_CID": b.cid})
    assert response.status_code == 401


async def test_a_pending_campaign_is_not_served(http: httpx.AsyncClient) -> None:
    """Only campaigns Active with Traffic answer; a Pending one is 404."""
    who = await onboard(http)
    web_key = await seed(http, who, status="Pending")
    response = await http.get(f"/api/campaigns/{web_key}/settings", headers={"X_CID": who.cid})
    assert response.status_code == 404


async def test_browsers_on_other_origins_may_call_it(http: httpx.AsyncClient) -> None:
    """A CORS preflight from a page's origin allows the X_CID header."""
    who = await onboard(http)
    web_key = await seed(http, who)
    response = await http.options(
        f"/api/campaigns/{web_key}/settings",
        headers={
            "Origin": "https://offer.example",
            "Access-Control-Request-Method": "GET",
            "Access-Control-Request-Headers": "X_CID",
        },
    )
    assert response.status_code == 200
    assert response.headers["access-control-allow-origin"] == "*"
