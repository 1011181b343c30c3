"""Demo products for a sandbox shop: deterministic, idempotent, made through ``productSet``.

Seeding goes through the same mutation path an app uses (``execute_internal``), so every
seeded product fires ``products/create`` exactly as a merchant-created one would. Product
``n`` of a shop is always the same product (same title, handle, options, variants, prices), so
two sandboxes seeded to the same count hold the same catalogue.
"""

from __future__ import annotations

import random
from decimal import Decimal
from typing import Any

from syncapp.sandbox.shopify import documents, graphql_api
from syncapp.sandbox.shopify.state import SandboxState

_ADJECTIVES = (
    "Aurora",
    "Summit",
    "Harbor",
    "Canyon",
    "Meadow",
    "Ember",
    "Glacier",
    "Juniper",
    "Coastal",
    "Prairie",
)
_MATERIALS = ("Cotton", "Linen", "Wool", "Bamboo", "Leather", "Canvas", "Merino", "Denim")
_NOUNS = (
    "T-Shirt",
    "Hoodie",
    "Backpack",
    "Cap",
    "Scarf",
    "Tote",
    "Jacket",
    "Sneakers",
    "Socks",
    "Beanie",
    "Water Bottle",
    "Notebook",
)
_VENDORS = ("Northwind Goods", "Acme Apparel", "Blue Fern Co", "Tidewater Supply")
_TYPES = {
    "T-Shirt": "Shirts",
    "Hoodie": "Sweaters",
    "Backpack": "Bags",
    "Cap": "Hats",
    "Scarf": "Accessories",
    "Tote": "Bags",
    "Jacket": "Outerwear",
    "Sneakers": "Shoes",
    "Socks": "Accessories",
    "Beanie": "Hats",
    "Water Bottle": "Drinkware",
    "Notebook": "Stationery",
}
_TAGS = ("new", "sale", "bestseller", "eco", "gift", "limited", "summer", "winter")
_OPTION_VALUES = {
    "Size": ("S", "M", "L", "XL", "XXL", "One Size"),
    "Color": ("Black", "White", "Navy", "Olive", "Sand", "Red"),
    "Material": ("Standard", "Recycled", "Organic"),
}
# Value counts per option: 1 to 3 options, 1 to 6 variants.
_SHAPES = ((1,), (3,), (6,), (2, 2), (2, 3), (3, 2), (2, 1, 2), (1, 2, 3))

_PRODUCT_SET = documents.load("seed_product")
_EXISTING = documents.load("seed_existing")


def demo_product_input(index: int) -> dict[str, Any]:
    """The ``ProductSetInput`` of demo product ``index`` (0-based); pure and deterministic."""
    rng = random.Random(f"syncapp-demo-{index}")
    combos = len(_ADJECTIVES) * len(_MATERIALS) * len(_NOUNS)
    slot = (index * 7919) % combos  # a stride coprime with combos visits every title once
    adjective = _ADJECTIVES[slot % len(_ADJECTIVES)]
    material = _MATERIALS[(slot // len(_ADJECTIVES)) % len(_MATERIALS)]
    noun = _NOUNS[slot // (len(_ADJECTIVES) * len(_MATERIALS))]
    title = f"{adjective} {material} {noun}"
    if index >= combos:
        title += f" {index // combos + 1}"
    shape = _SHAPES[rng.randrange(len(_SHAPES))]
    option_names = ["Size", "Color", "Material"][: len(shape)]
    options = [
        (name, _OPTION_VALUES[name][:count])
        for name, count in zip(option_names, shape, strict=True)
    ]
    base = Decimal(rng.randrange(5, 180)) + Decimal(rng.choice(("0.99", "0.00", "0.50")))
    has_compare_at = rng.random() < 0.35
    vendor = rng.choice(_VENDORS)
    code = "".join(word[0] for word in vendor.split()).upper()
    variants = []
    combos_of_values: list[tuple[str, ...]] = [()]
    for _, values in options:
        combos_of_values = [(*c, v) for c in combos_of_values for v in values]
    for position, values_of_variant in enumerate(combos_of_values, start=1):
        price = base + Decimal(position - 1) * Decimal("2.00")
        variant: dict[str, Any] = {
            "optionValues": [
                {"optionName": name, "name": value}
                for (name, _), value in zip(options, values_of_variant, strict=True)
            ],
            "price": str(price),
            "sku": f"{code}-{index + 1:05d}-{position}",
            "barcode": f"{(index + 1) * 100 + position:012d}",
        }
        if has_compare_at:
            variant["compareAtPrice"] = str((price * Decimal("1.25")).quantize(Decimal("0.01")))
        variants.append(variant)
    return {
        "title": title,
        "handle": f"{'-'.join(title.lower().split())}-{index + 1}",
        "descriptionHtml": f"<p>The {title.lower()}, made by {vendor}.</p>",
        "vendor": vendor,
        "productType": _TYPES[noun],
        "status": "DRAFT" if rng.random() < 0.1 else "ACTIVE",
        "tags": sorted(rng.sample(_TAGS, rng.randint(1, 3))),
        "productOptions": [
            {"name": name, "values": [{"name": v} for v in values]} for name, values in options
        ],
        "variants": variants,
    }


def seed_demo_products(state: SandboxState, shop_domain: str, count: int = 50) -> int:
    """Create demo products ``0..count-1`` that the shop lacks; returns how many were created.

    A demo product is recognised by its handle, so a product the merchant renamed still counts
    and deleted ones are re-created.
    """
    created = 0
    for index in range(count):
        product_input = demo_product_input(index)
        found = graphql_api.execute_internal(
            state, shop_domain, _EXISTING, {"query": f"handle:{product_input['handle']}"}
        )
        _raise_on_errors(found, "looking up demo products")
        if found["data"]["products"]["nodes"]:
            continue
        result = graphql_api.execute_internal(
            state, shop_domain, _PRODUCT_SET, {"input": product_input}
        )
        _raise_on_errors(result, f"creating demo product {product_input['title']!r}")
        user_errors = result["data"]["productSet"]["userErrors"]
        if user_errors:
            raise RuntimeError(
                f"seeding demo product {product_input['title']!r} failed: {user_errors}"
            )
        created += 1
    return created


def _raise_on_errors(result: dict[str, Any], doing: str) -> None:
    if result.get("errors"):
        raise RuntimeError(f"{doing} failed: {result['errors'][0]['message']}")
