"""The neutral product model: what the sync keeps equal between Shopify and eManageCRM.

Only synced fields are here; inventory is deliberately absent (it changes on every order and
fires ``products/update`` without a product change). Money is a :class:`~decimal.Decimal`,
never a float; :func:`money` parses every shape the two systems send and :func:`money_text`
gives the one canonical string (``"19.9"`` and ``"19.90"`` are both ``"19.90"``).
"""

from __future__ import annotations

import enum
from dataclasses import dataclass, field
from datetime import datetime
from decimal import Decimal, InvalidOperation

from syncapp.errors import SyncAppError

__all__ = [
    "InvalidMoney",
    "Option",
    "Product",
    "ProductStatus",
    "Variant",
    "WeightUnit",
    "money",
    "money_text",
]


class InvalidMoney(SyncAppError, ValueError):
    """A price that is not a finite decimal amount (a float-looking NaN, text, a bool)."""


class ProductStatus(enum.StrEnum):
    """Shopify's product statuses; eManageCRM knows active and archived (draft maps to
    archived there, see ADR 0016)."""

    ACTIVE = "ACTIVE"
    DRAFT = "DRAFT"
    ARCHIVED = "ARCHIVED"


class WeightUnit(enum.StrEnum):
    """Shopify's WeightUnit enum values."""

    GRAMS = "GRAMS"
    KILOGRAMS = "KILOGRAMS"
    OUNCES = "OUNCES"
    POUNDS = "POUNDS"


def money(value: object) -> Decimal:
    """A money amount as a Decimal from a string (Shopify's Money/Decimal scalars), an int, a
    Decimal, or a float (only a JSON number from eManageCRM: its shortest repr is taken, so
    ``19.9`` is ``Decimal("19.9")``, never ``19.899999...``)."""
    if isinstance(value, bool):
        raise InvalidMoney(f"{value!r} is not a money amount")
    try:
        if isinstance(value, Decimal):
            amount = value
        elif isinstance(value, float):
            amount = Decimal(repr(value))
        elif isinstance(value, int | str):
            amount = Decimal(str(value).strip())
        else:
            raise InvalidMoney(f"{value!r} is not a money amount")
    except InvalidOperation as exc:
        raise InvalidMoney(f"{value!r} is not a money amount") from exc
    if not amount.is_finite():
        raise InvalidMoney(f"{value!r} is not a finite money amount")
    return amount


def money_text(amount: Decimal) -> str:
    """The canonical text of an amount: at least two decimals, no trailing zeros beyond them,
    no exponent (``Decimal("19.9")`` → ``"19.90"``, ``Decimal("29.999")`` → ``"29.999"``)."""
    normalized = amount.normalize()
    exponent = normalized.as_tuple().exponent
    assert isinstance(exponent, int)  # finite amounts only
    places = max(2, -exponent)
    return f"{normalized:.{places}f}"


@dataclass(frozen=True, slots=True)
class Option:
    """A product option (``Size``) and its values in display order."""

    name: str
    values: tuple[str, ...]


@dataclass(frozen=True, slots=True)
class Variant:
    """One sellable variant. ``options`` are its option values in the product's option order
    (empty for a product that has only Shopify's standalone "Default Title" variant)."""

    sku: str | None
    options: tuple[str, ...]
    price: Decimal
    compare_at_price: Decimal | None = None
    weight: Decimal | None = None
    weight_unit: WeightUnit = WeightUnit.KILOGRAMS
    shopify_id: str | None = None
    emanage_id: str | None = None

    @property
    def key(self) -> tuple[str | None, tuple[str, ...]]:
        """What identifies a variant across an id change: its SKU and option values."""
        return (self.sku, self.options)


@dataclass(frozen=True, slots=True)
class Product:
    """One product as the sync sees it. ``updated_at`` is the source side's own clock (used
    by the merge's newest-wins rule and to spot stale notifications)."""

    title: str
    status: ProductStatus = ProductStatus.ACTIVE
    description: str = ""
    vendor: str = ""
    product_type: str = ""
    options: tuple[Option, ...] = ()
    image: str | None = None
    variants: tuple[Variant, ...] = ()
    shopify_id: str | None = None
    emanage_id: str | None = None
    updated_at: datetime | None = field(default=None, compare=False)
