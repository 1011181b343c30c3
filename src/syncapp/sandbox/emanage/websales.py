"""The public Web Sales API (``/api/...``) that live CTRwow pages call, with its real paths,
shapes and quirks (docs/contracts/emanage.md, "Evidenced"):

* every call carries the account's client id in the ``X_CID`` header (underscore included);
  missing, not a GUID or not the campaign's → 401 ``{"message": "Authorization has been denied
  for this request."}`` (ASP.NET's wording: a wrong credential, whatever its shape);
* top-level JSON is camelCase, but ``productPrices`` is a dictionary keyed by price type with
  PascalCase ``{Value, FormattedValue}`` members;
* ``/products/prices`` answers ``{prices, location}``; ``/products/prices/{countryCode}`` the
  older bare array;
* only campaigns "Active with Traffic" are served; browsers call it cross-origin, so CORS is
  open.

Campaign administration is a later issue: campaigns are seeded with ``/_sandbox/`` for now
(:func:`seed_campaign`). A package may reference a product variant (``variantId``, see
:mod:`products`): it then shows that variant's current name, SKU and prices (the package's
prices are the variant's times its quantity), so a price the Sync App synced from Shopify is
what live pages show.
"""

from __future__ import annotations

import json
import sqlite3
import uuid
from collections.abc import Callable
from decimal import Decimal
from typing import Any

from starlette.applications import Starlette
from starlette.middleware import Middleware
from starlette.middleware.cors import CORSMiddleware
from starlette.requests import Request
from starlette.responses import JSONResponse, Response
from starlette.routing import BaseRoute, Mount, Route

from syncapp.sandbox.emanage.common import UUID_RE
from syncapp.sandbox.emanage.state import EmanageState

ACTIVE = "Active with Traffic"
PENDING = "Pending"
DENIED = "Authorization has been denied for this request."

CURRENCIES: dict[str, tuple[str, str]] = {
    "USD": ("US Dollar", "$"),
    "CAD": ("Canadian Dollar", "$"),
    "AUD": ("Australian Dollar", "$"),
    "EUR": ("Euro", "€"),
    "GBP": ("British Pound", "£"),
}
# A sandbox has no GeoIP: each country answers with one plausible visitor address.
COUNTRIES: dict[str, tuple[str, str, str, str, str]] = {
    "US": ("United States", "CA", "California", "Los Angeles", "90001"),
    "CA": ("Canada", "BC", "British Columbia", "Vancouver", "V4G0N8"),
    "GB": ("United Kingdom", "ENG", "England", "London", "SW1A 1AA"),
    "AU": ("Australia", "NSW", "New South Wales", "Sydney", "2000"),
    "DE": ("Germany", "BE", "Berlin", "Berlin", "10115"),
    "FR": ("France", "IDF", "Ile-de-France", "Paris", "75001"),
    "NL": ("Netherlands", "NH", "North Holland", "Amsterdam", "1012"),
}


def formatted(value: float, currency: str) -> str:
    """``FormattedValue`` as pages expect it: digits they can replace with ``######``."""
    sign = CURRENCIES.get(currency, (currency, currency + " "))[1]
    return f"{sign}{value:,.2f}"


def _message(status: int, message: str) -> JSONResponse:
    return JSONResponse({"message": message}, status_code=status)


def _campaign(conn: sqlite3.Connection, request: Request) -> sqlite3.Row | Response:
    """The active campaign the request names, if ``X_CID`` is its account's client id."""
    cid = request.headers.get("x_cid")
    if cid is None or not cid.strip() or not UUID_RE.match(cid.strip()):
        # The contract's apiKey scheme allows any value: a malformed one is a wrong key.
        return _message(401, DENIED)
    web_key = str(request.path_params["web_key"]).strip().upper()
    row: sqlite3.Row | None = conn.execute(
        "SELECT c.*, a.cid AS account_cid, a.status AS account_status FROM campaigns c"
        " JOIN accounts a ON a.id = c.account_id WHERE c.web_key = ?",
        (web_key,),
    ).fetchone()
    if row is None or row["status"] != ACTIVE:
        return _message(404, f"No active campaign with web key {web_key}.")
    if row["account_cid"] != cid.strip().lower() or row["account_status"] != "active":
        return _message(401, DENIED)
    return row


def _location(campaign: sqlite3.Row) -> dict[str, Any]:
    code = json.loads(campaign["countries"])[0]
    name, region_code, region_name, city, zip_code = COUNTRIES[code]
    return {
        "countryCode": code,
        "countryName": name,
        "regionCode": region_code,
        "regionName": region_name,
        "city": city,
        "zipCode": zip_code,
        "currencyCode": campaign["currency"],
    }


def _prices(conn: sqlite3.Connection, campaign: sqlite3.Row) -> list[dict[str, Any]]:
    currency = campaign["currency"]
    rows = conn.execute(
        "SELECT cp.*, v.sku AS variant_sku, v.options AS variant_options,"
        " v.price AS variant_price, v.full_retail_price AS variant_full_price,"
        " p.name AS variant_product_name"
        " FROM campaign_products cp"
        " LEFT JOIN product_variants v ON v.id = cp.variant_id"
        " LEFT JOIN products p ON p.id = v.product_id"
        " WHERE cp.campaign_id = ? ORDER BY cp.position, cp.product_id",
        (campaign["id"],),
    ).fetchall()

    def money(value: float) -> dict[str, Any]:
        value = round(value, 2)
        return {"Value": value, "FormattedValue": formatted(value, currency)}

    return [_package(r, money, currency) for r in rows]


def _package(
    r: sqlite3.Row, money: Callable[[float], dict[str, Any]], currency: str
) -> dict[str, Any]:
    name, sku = r["name"], r["sku"]
    price, full = r["price"], r["full_retail_price"]
    if r["variant_id"] is not None:
        # The variant's prices are exact decimal text; the Web Sales API answers floats
        # rounded to the cent, as it does for every package.
        options = json.loads(r["variant_options"])
        name = r["variant_product_name"] + (f" - {' / '.join(options)}" if options else "")
        sku = r["variant_sku"] or sku
        unit = Decimal(r["variant_price"])
        unit_full = Decimal(r["variant_full_price"] or r["variant_price"])
        price = float(unit * r["quantity"])
        full = float(unit_full * r["quantity"])
    return {
        "productId": r["product_id"],
        "productName": name,
        "sku": sku,
        "message": r["message"],
        "warrantyTypeId": None,
        "warrantyPeriod": None,
        "quantity": r["quantity"],
        "shippings": [
            {
                "shippingMethodId": r["shipping_method_id"],
                "shippingName": r["shipping_name"],
                "price": round(r["shipping_price"], 2),
                "formattedPrice": formatted(round(r["shipping_price"], 2), currency),
            }
        ],
        "productPrices": {
            "DiscountedPrice": money(price),
            "FullRetailPrice": money(full),
            "UnitDiscountRate": money(price / r["quantity"]),
            "UnitFullRetailPrice": money(full / r["quantity"]),
        },
    }


def check_campaign_spec(spec: dict[str, Any], account_currency: str) -> list[str]:
    """Problems with a campaign to seed (see :func:`seed_campaign`); empty when it is valid."""
    problems = []
    if not isinstance(spec.get("name"), str) or not spec["name"].strip():
        problems.append("'name' is required")
    currency = spec.get("currency", account_currency)
    if currency not in CURRENCIES:
        problems.append(f"'currency' must be one of {', '.join(CURRENCIES)}")
    countries = spec.get("countries", ["US"])
    if (
        not isinstance(countries, list)
        or not countries
        or any(c not in COUNTRIES for c in countries)
    ):
        problems.append(f"'countries' must be a non-empty list of {', '.join(COUNTRIES)}")
    if spec.get("status", ACTIVE) not in (ACTIVE, PENDING):
        problems.append(f"'status' must be '{ACTIVE}' or '{PENDING}'")
    if "webKey" in spec and not UUID_RE.match(str(spec["webKey"])):
        problems.append("'webKey' must be a GUID")
    products = spec.get("products", [])
    if not isinstance(products, list):
        problems.append("'products' must be a list")
        products = []
    for i, p in enumerate(products):
        if not isinstance(p, dict) or not isinstance(p.get("name"), str):
            problems.append(f"products[{i}] needs a 'name'")
            continue
        for key in ("price", "fullRetailPrice", "shippingPrice"):
            if key in p and (not isinstance(p[key], int | float) or p[key] < 0):
                problems.append(f"products[{i}].{key} must be a number >= 0")
        if "quantity" in p and (not isinstance(p["quantity"], int) or p["quantity"] < 1):
            problems.append(f"products[{i}].quantity must be an integer >= 1")
        if "variantId" in p and not str(p["variantId"]).isdigit():
            problems.append(f"products[{i}].variantId must be a product variant's id")
    return problems


def check_variants(conn: sqlite3.Connection, account_id: str, spec: dict[str, Any]) -> list[str]:
    """Problems with the spec's ``variantId`` references: each must be a variant of a product
    of the campaign's account (checked spec only)."""
    problems = []
    for i, p in enumerate(spec.get("products", [])):
        if "variantId" not in p:
            continue
        row = conn.execute(
            "SELECT 1 FROM product_variants v JOIN products p ON p.id = v.product_id"
            " WHERE v.id = ? AND p.account_id = ?",
            (int(p["variantId"]), account_id),
        ).fetchone()
        if row is None:
            problems.append(f"products[{i}].variantId is not a variant of this account")
    return problems


def seed_campaign(
    conn: sqlite3.Connection, *, account: sqlite3.Row, spec: dict[str, Any], now: float
) -> dict[str, Any]:
    """Create a campaign with its package products (``spec`` checked by
    :func:`check_campaign_spec`); returns ``{id, webKey, cid, name, status}``."""
    web_key = str(spec.get("webKey") or uuid.uuid4()).upper()
    status = spec.get("status", ACTIVE)
    cursor = conn.execute(
        "INSERT INTO campaigns (account_id, web_key, name, language_code, currency, status,"
        " countries, created_at) VALUES (?, ?, ?, ?, ?, ?, ?, ?)",
        (
            account["id"],
            web_key,
            spec["name"].strip(),
            spec.get("languageCode", "en"),
            spec.get("currency", account["currency"]),
            status,
            json.dumps(spec.get("countries", ["US"])),
            now,
        ),
    )
    campaign_id = int(cursor.lastrowid or 0)
    for position, p in enumerate(spec.get("products", [])):
        quantity = int(p.get("quantity", 1))
        price = float(p.get("price", 0))
        conn.execute(
            "INSERT INTO campaign_products (campaign_id, name, sku, quantity, price,"
            " full_retail_price, shipping_price, shipping_method_id, shipping_name, message,"
            " position, variant_id) VALUES (?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?)",
            (
                campaign_id,
                p["name"],
                p.get("sku", f"SKU_{quantity}"),
                quantity,
                price,
                float(p.get("fullRetailPrice", price)),
                float(p.get("shippingPrice", 0)),
                int(p.get("shippingMethodId", 1)),
                p.get("shippingName", "Standard Shipping"),
                p.get("message"),
                position,
                int(p["variantId"]) if "variantId" in p else None,
            ),
        )
    return {
        "id": campaign_id,
        "webKey": web_key,
        "cid": account["cid"],
        "name": spec["name"].strip(),
        "status": status,
    }


def routes(state: EmanageState) -> list[BaseRoute]:
    """``/api/campaigns/{webKey}/...`` reads, mounted with open CORS."""

    async def settings(request: Request) -> Response:
        with state.db.transaction() as conn:
            campaign = _campaign(conn, request)
        if isinstance(campaign, Response):
            return campaign
        return JSONResponse(
            {"campaignName": campaign["name"], "defaultLanguageCode": campaign["language_code"]}
        )

    async def countries(request: Request) -> Response:
        with state.db.transaction() as conn:
            campaign = _campaign(conn, request)
        if isinstance(campaign, Response):
            return campaign
        currency = campaign["currency"]
        currency_name, sign = CURRENCIES[currency]
        return JSONResponse(
            [
                {
                    "countryName": COUNTRIES[code][0],
                    "countryCode": code,
                    "currencyCode": currency,
                    "currencyName": currency_name,
                    "currencySign": sign,
                }
                for code in json.loads(campaign["countries"])
            ]
        )

    async def prices(request: Request) -> Response:
        with state.db.transaction() as conn:
            campaign = _campaign(conn, request)
            if isinstance(campaign, Response):
                return campaign
            items = _prices(conn, campaign)
        return JSONResponse({"prices": items, "location": _location(campaign)})

    async def prices_for_country(request: Request) -> Response:
        with state.db.transaction() as conn:
            campaign = _campaign(conn, request)
            if isinstance(campaign, Response):
                return campaign
            code = str(request.path_params["country_code"]).upper()
            if code not in json.loads(campaign["countries"]):
                return JSONResponse([])
            return JSONResponse(_prices(conn, campaign))

    async def location(request: Request) -> Response:
        with state.db.transaction() as conn:
            campaign = _campaign(conn, request)
        if isinstance(campaign, Response):
            return campaign
        return JSONResponse(_location(campaign))

    api = Starlette(
        routes=[
            Route("/campaigns/{web_key}/settings", settings, methods=["GET"]),
            Route("/campaigns/{web_key}/countries", countries, methods=["GET"]),
            Route("/campaigns/{web_key}/products/prices", prices, methods=["GET"]),
            Route(
                "/campaigns/{web_key}/products/prices/{country_code}",
                prices_for_country,
                methods=["GET"],
            ),
            Route("/campaigns/{web_key}/customers/location", location, methods=["GET"]),
        ],
        middleware=[
            Middleware(
                CORSMiddleware,
                allow_origins=["*"],
                allow_methods=["GET", "POST", "PUT", "DELETE"],
                allow_headers=["X_CID", "Content-Type", "Authorization"],
                max_age=600,
            )
        ],
    )
    return [Mount("/api", app=api)]
