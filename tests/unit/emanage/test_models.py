"""The connector's models read the shapes the public traces show."""

from __future__ import annotations

from decimal import Decimal

from syncapp.connectors.emanage.models import CampaignPrices, PaymentProvider

LIVE_PRICES = {
    "prices": [
        {
            "productId": 917704,
            "productName": "Jet Flyer x2",
            "sku": "JETF_2",
            "message": None,
            "warrantyTypeId": None,
            "warrantyPeriod": None,
            "quantity": 2,
            "shippings": [
                {
                    "shippingMethodId": 3,
                    "shippingName": "Free",
                    "price": 0,
                    "formattedPrice": "$0.00",
                }
            ],
            "productPrices": {
                "DiscountedPrice": {"Value": 49.98, "FormattedValue": "$49.98"},
                "FullRetailPrice": {"Value": 119.96, "FormattedValue": "$119.96"},
                "PreSaleAmount1": {"Value": 5, "FormattedValue": "$5.00"},
            },
            "someFutureField": 1,
        }
    ],
    "location": {
        "countryCode": "CA",
        "countryName": "Canada",
        "regionCode": "BC",
        "regionName": "British Columbia",
        "city": "Vancouver",
        "zipCode": "V4G0N8",
        "currencyCode": "CAD",
    },
}


def test_live_price_payloads_parse_with_pascal_case_price_members() -> None:
    """productPrices keeps its price-type keys; values are exact decimals."""
    prices = CampaignPrices.model_validate(LIVE_PRICES)
    item = prices.prices[0]
    assert item.product_prices["DiscountedPrice"].value == Decimal("49.98")
    assert item.product_prices["PreSaleAmount1"].formatted_value == "$5.00"
    assert prices.location.region_code == "BC"


def test_a_provider_takes_payments_only_when_it_and_a_mid_are_active() -> None:
    """can_take_payments needs the provider active and at least one active MID."""
    base = {
        "id": 101,
        "name": "G",
        "type": "Test Gateway",
        "category": "Credit Card (Online)",
        "currency": "USD",
        "isActive": True,
        "createdAt": "2026-01-01T00:00:00Z",
        "updatedAt": "2026-01-01T00:00:00Z",
    }
    mid = {"id": 1, "mid": "M", "descriptor": None, "isMain": True, "monthlyCapUsd": None}
    active = PaymentProvider.model_validate({**base, "mids": [{**mid, "isActive": True}]})
    no_mid = PaymentProvider.model_validate({**base, "mids": [{**mid, "isActive": False}]})
    off = PaymentProvider.model_validate(
        {**base, "isActive": False, "mids": [{**mid, "isActive": True}]}
    )
    assert (active.can_take_payments, no_mid.can_take_payments, off.can_take_payments) == (
        True,
        False,
        False,
    )
