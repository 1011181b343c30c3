"""Hypothesis strategies for the neutral product model."""

from __future__ import annotations

import itertools
from datetime import UTC, datetime
from decimal import Decimal

from hypothesis import strategies as st

from syncapp.sync.catalog import Option, Product, ProductStatus, Variant, WeightUnit

text = st.text(st.characters(codec="utf-8", exclude_categories=("Cs", "Cc")), max_size=20)
names = st.text("abcdefghijklmnopqrstuvwxyz", min_size=1, max_size=8)
amounts = st.decimals(
    min_value=Decimal("0"), max_value=Decimal("99999"), places=3, allow_nan=False
).map(lambda d: d.normalize() if d else Decimal("0"))
weights = st.none() | st.decimals(
    min_value=Decimal("0"), max_value=Decimal("9999"), places=3, allow_nan=False
)
times = st.datetimes(
    min_value=datetime(2020, 1, 1), max_value=datetime(2030, 1, 1), timezones=st.just(UTC)
).map(lambda t: t.replace(microsecond=0))


@st.composite
def options(draw: st.DrawFn) -> tuple[Option, ...]:
    count = draw(st.integers(0, 3))
    opt_names = draw(st.lists(names, min_size=count, max_size=count, unique=True))
    return tuple(
        Option(n, tuple(draw(st.lists(names, min_size=1, max_size=3, unique=True))))
        for n in opt_names
    )


@st.composite
def products(draw: st.DrawFn, *, with_ids: bool = True, max_variants: int = 6) -> Product:
    opts = draw(options())
    combos = list(itertools.product(*(o.values for o in opts))) if opts else [()]
    chosen = draw(st.lists(st.sampled_from(combos), min_size=1, max_size=max_variants, unique=True))
    skus = draw(st.lists(names, min_size=len(chosen), max_size=len(chosen), unique=True))
    variants = []
    for i, (combo, sku) in enumerate(zip(chosen, skus, strict=True)):
        weight = draw(weights)
        variants.append(
            Variant(
                sku=f"SKU-{sku}",
                options=tuple(combo),
                price=draw(amounts),
                compare_at_price=draw(st.none() | amounts),
                weight=weight,
                weight_unit=draw(st.sampled_from(WeightUnit))
                if weight is not None
                else WeightUnit.KILOGRAMS,
                shopify_id=f"gid://shopify/ProductVariant/{i + 1}" if with_ids else None,
                emanage_id=f"v{i + 1}" if with_ids else None,
            )
        )
    return Product(
        title=draw(text.filter(str.strip)),
        status=draw(st.sampled_from(ProductStatus)),
        description=draw(text),
        vendor=draw(text),
        product_type=draw(text),
        options=opts,
        image=draw(st.none() | names.map(lambda n: f"https://cdn.example.com/{n}.png")),
        variants=tuple(variants),
        shopify_id="gid://shopify/Product/1" if with_ids else None,
        emanage_id="p1" if with_ids else None,
        updated_at=draw(times),
    )
