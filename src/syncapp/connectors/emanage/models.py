"""What eManageCRM returns, as the app uses it: immutable pydantic models over the contract's
JSON (camelCase; the Web Sales API's PascalCase price members mapped explicitly). Unknown
fields are ignored so that additions on eManageCRM's side do not break the app.
"""

from __future__ import annotations

from collections.abc import Mapping
from dataclasses import dataclass
from datetime import datetime
from decimal import Decimal
from typing import Any, Literal
from uuid import UUID

from pydantic import BaseModel, ConfigDict, Field
from pydantic.alias_generators import to_camel


class _Model(BaseModel):
    model_config = ConfigDict(
        alias_generator=to_camel, populate_by_name=True, frozen=True, extra="ignore"
    )


class Account(_Model):
    """A tenant: ``shared`` (created by the app) or ``dedicated`` (the merchant's, linked)."""

    id: UUID
    kind: Literal["shared", "dedicated"]
    status: Literal["active", "suspended", "closed"]
    name: str
    email: str
    currency: str
    shop_domain: str | None
    cid: UUID
    websales_api_url: str
    subscription_id: UUID | None = None
    created_at: datetime


class WebhookSubscription(_Model):
    """A partner-wide notification subscription (its secret is never read back)."""

    id: UUID
    url: str
    event_types: tuple[str, ...]
    created_at: datetime
    updated_at: datetime


class User(_Model):
    id: UUID
    account_id: UUID
    email: str
    name: str
    role: Literal["owner", "admin", "member"]
    created_at: datetime


class SsoLink(_Model):
    """A one-time sign-in URL for the user's browser, valid until ``expires_at``."""

    url: str
    expires_at: datetime


class Mid(_Model):
    id: int
    mid: str
    descriptor: str | None
    is_active: bool
    is_main: bool
    monthly_cap_usd: Decimal | None


class PaymentProvider(_Model):
    id: int
    name: str
    type: str
    category: str
    currency: str
    is_active: bool
    mids: tuple[Mid, ...]
    created_at: datetime
    updated_at: datetime

    @property
    def can_take_payments(self) -> bool:
        """Active, with at least one active MID: what a funnel needs before it publishes."""
        return self.is_active and any(m.is_active for m in self.mids)


class AccessToken(BaseModel):
    """The token endpoint's answer (RFC 6749 names, snake_case)."""

    model_config = ConfigDict(frozen=True, extra="ignore")

    access_token: str
    token_type: str
    expires_in: int = Field(gt=0)
    scope: str = ""
    account_id: UUID | None = None


# --- Web Sales API (public shapes, quirks kept) ---------------------------------------------


class PriceValue(BaseModel):
    model_config = ConfigDict(frozen=True, extra="ignore", populate_by_name=True)

    value: Decimal = Field(alias="Value")
    formatted_value: str = Field(alias="FormattedValue")


class Shipping(_Model):
    shipping_method_id: int
    shipping_name: str
    price: Decimal
    formatted_price: str


class ProductPrice(_Model):
    """One package of a campaign ("P" in the traces); ``product_prices`` keyed by price type
    (``DiscountedPrice``, ``FullRetailPrice``, ``UnitDiscountRate``, ``UnitFullRetailPrice``)."""

    product_id: int
    product_name: str
    sku: str
    message: str | None = None
    warranty_type_id: int | None = None
    warranty_period: int | None = None
    quantity: int
    shippings: tuple[Shipping, ...] = ()
    product_prices: dict[str, PriceValue]


class Location(_Model):
    country_code: str
    country_name: str
    region_code: str
    region_name: str
    city: str
    zip_code: str
    currency_code: str


class CampaignPrices(_Model):
    prices: tuple[ProductPrice, ...]
    location: Location


class CampaignSettings(_Model):
    campaign_name: str
    default_language_code: str


# --- products (admin API) -------------------------------------------------------------------


@dataclass(frozen=True)
class EmanageProduct:
    """A product resource: the fields the sync engine keys on, and ``body``, the resource as
    answered (numbers as Decimal, so ``19.90`` is ``Decimal("19.90")``), which is what
    ``syncapp.sync.mapping.product_from_emanage`` reads."""

    product_id: str
    version: int
    updated_at: datetime
    last_write_origin: str | None
    body: dict[str, Any]

    @classmethod
    def from_body(cls, body: dict[str, Any]) -> EmanageProduct:
        """Raises KeyError/TypeError/ValueError when a required member is missing or wrong."""
        product_id = body["productId"]
        version = body["version"]
        origin = body.get("lastWriteOrigin")
        if not isinstance(product_id, str) or isinstance(version, bool):
            raise TypeError("productId must be a string and version an integer")
        if not isinstance(version, int) or not (origin is None or isinstance(origin, str)):
            raise TypeError("version must be an integer and lastWriteOrigin a string or null")
        updated = datetime.fromisoformat(str(body["updatedAt"]).replace("Z", "+00:00"))
        if updated.tzinfo is None:
            raise ValueError("updatedAt has no UTC offset")
        return cls(product_id, version, updated, origin, body)


@dataclass(frozen=True)
class ProductPage:
    """One page of ``list_products``; ``next`` is the cursor for ``after`` (None: the last)."""

    items: list[EmanageProduct]
    next: str | None


BatchStatus = Literal["created", "matched", "updated", "unchanged", "conflict", "error"]


@dataclass(frozen=True)
class BatchWrite:
    """One item of ``batch_products``: a create (``match``: take the product that already
    stands for it, by external reference then SKU) or, with ``product_id`` and ``version``,
    a replacement. ``idempotency_key`` is the item's own, the key of the single write."""

    idempotency_key: str
    body: Mapping[str, Any]
    match: bool = False
    product_id: str | None = None
    version: int | None = None


@dataclass(frozen=True)
class BatchResult:
    """One item's result; ``product`` for created, matched, updated and unchanged items,
    ``code``/``message`` (and ``model_state``, ``current_version``) for the refused ones."""

    idempotency_key: str
    status: BatchStatus
    replayed: bool
    matched_by: str | None
    product: EmanageProduct | None
    code: str | None = None
    message: str | None = None
    model_state: Mapping[str, Any] | None = None
    current_version: int | None = None

    @classmethod
    def from_body(cls, body: Mapping[str, Any]) -> BatchResult:
        """Raises KeyError/TypeError/ValueError when the item is not a batch result."""
        status = body["status"]
        if status not in ("created", "matched", "updated", "unchanged", "conflict", "error"):
            raise ValueError(f"unknown batch item status {status!r}")
        product = body.get("product")
        error = body.get("error") or {}
        if not isinstance(error, Mapping):
            raise TypeError("error must be an object or null")
        current = error.get("currentVersion")
        return cls(
            idempotency_key=str(body["key"]),
            status=status,
            replayed=bool(body.get("replayed")),
            matched_by=body.get("matchedBy"),
            product=None if product is None else EmanageProduct.from_body(dict(product)),
            code=error.get("code"),
            message=error.get("message"),
            model_state=error.get("modelState"),
            current_version=current if isinstance(current, int) else None,
        )
