"""The plan of writes for one product (pitfalls 1, 4, 5, 10, 11, 14, 18)."""

from __future__ import annotations

from dataclasses import replace
from datetime import timedelta
from decimal import Decimal

from hypothesis import given
from hypothesis import strategies as st

from syncapp.sync.catalog import Option, Product, ProductStatus, Variant
from syncapp.sync.merge import Side
from syncapp.sync.plan import (
    Archive,
    Create,
    CreateVariants,
    Relink,
    RemoveVariants,
    SharedSku,
    UpdateProduct,
    UpdateVariants,
    VariantLink,
    plan_product,
)
from tests.unit.sync.strategies import products


def links_of(product: Product) -> tuple[VariantLink, ...]:
    return tuple(
        VariantLink(v.shopify_id, v.emanage_id, v.sku, v.options) for v in product.variants
    )


@given(products())
def test_an_echo_of_the_agreed_state_plans_nothing(product: Product) -> None:
    """Both sides at the agreed state (the engine's own write coming back) → no write at all."""
    plan = plan_product(
        agreed=product, variant_links=links_of(product), shopify=product, emanage=product
    )
    assert plan.is_noop
    assert plan.conflicts == ()


@given(products(max_variants=8), st.data())
def test_a_shopify_price_change_updates_only_that_price_in_emanage(
    product: Product, data: st.DataObject
) -> None:
    """One variant's new price is one eManageCRM variant update of the price field only."""
    index = data.draw(st.integers(0, len(product.variants) - 1))
    v = product.variants[index]
    edited = replace(v, price=v.price + Decimal("1.5"))
    shopify = replace(
        product, variants=tuple(edited if i == index else x for i, x in enumerate(product.variants))
    )
    plan = plan_product(
        agreed=product, variant_links=links_of(product), shopify=shopify, emanage=product
    )
    (write,) = plan.writes
    assert isinstance(write, UpdateVariants)
    assert write.side is Side.EMANAGE
    ((variant, fields),) = write.changes
    assert fields == {"price"}
    assert variant.emanage_id == v.emanage_id
    assert variant.price == edited.price


@given(products())
def test_a_title_change_in_emanage_sends_only_the_title(product: Product) -> None:
    """A title-only change is a product update of the title, no variants or options."""
    emanage = replace(product, title=product.title + " v2")
    plan = plan_product(
        agreed=product, variant_links=links_of(product), shopify=product, emanage=emanage
    )
    assert plan.writes == (UpdateProduct(Side.SHOPIFY, frozenset({"title"}), plan.agreed),)
    assert plan.agreed is not None
    assert plan.agreed.title == emanage.title


@given(products())
def test_three_edits_merged_into_one_webhook_all_sync(product: Product) -> None:
    """Title, price and compare-at price changed together all reach eManageCRM."""
    v = product.variants[0]
    edited = replace(v, price=v.price + 1, compare_at_price=(v.compare_at_price or Decimal(0)) + 3)
    shopify = replace(product, title=product.title + "!", variants=(edited, *product.variants[1:]))
    plan = plan_product(
        agreed=product, variant_links=links_of(product), shopify=shopify, emanage=product
    )
    kinds = {type(w): w for w in plan.writes}
    assert kinds[UpdateProduct].fields == {"title"}  # type: ignore[attr-defined]
    assert kinds[UpdateVariants].changes[0][1] == {"price", "compare_at_price"}  # type: ignore[attr-defined]
    assert all(w.side is Side.EMANAGE for w in plan.writes)


@given(products(), products())
def test_replanning_the_merged_state_is_a_noop(a: Product, b: Product) -> None:
    """Whatever both sides did, once the plan is applied nothing more is planned."""
    plan = plan_product(
        agreed=a, variant_links=links_of(a), shopify=a, emanage=replace(b, updated_at=a.updated_at)
    )
    if plan.shared_skus:
        return
    assert plan.agreed is not None
    # Applying the creates gives the new variants their ids on both sides, and links them.
    applied = replace(
        plan.agreed,
        variants=tuple(
            replace(
                v, shopify_id=v.shopify_id or f"new-s{i}", emanage_id=v.emanage_id or f"new-e{i}"
            )
            for i, v in enumerate(plan.agreed.variants)
        ),
    )
    again = plan_product(
        agreed=applied, variant_links=links_of(applied), shopify=applied, emanage=applied
    )
    assert again.writes == ()


@given(products())
def test_a_new_shopify_product_is_created_in_emanage(product: Product) -> None:
    """No link and no eManageCRM product: create it there."""
    assert plan_product(agreed=None, shopify=product, emanage=None).writes == (
        Create(Side.EMANAGE, product),
    )


@given(products())
def test_a_deleted_shopify_product_is_archived_in_emanage(product: Product) -> None:
    """Gone from Shopify: archive in eManageCRM, never delete; already archived: nothing."""
    active = replace(product, status=ProductStatus.ACTIVE)
    plan = plan_product(agreed=active, variant_links=links_of(active), shopify=None, emanage=active)
    assert plan.writes == (Archive(Side.EMANAGE),)
    archived = replace(product, status=ProductStatus.ARCHIVED)
    assert plan_product(agreed=active, shopify=None, emanage=archived).writes == ()


def test_shopify_replacing_the_standalone_variant_relinks_it() -> None:
    """Adding the first option gives the variant a new id: the link follows, no duplicate."""
    old = Variant(
        sku="MUG",
        options=(),
        price=Decimal("5"),
        shopify_id="gid://shopify/ProductVariant/1",
        emanage_id="e1",
    )
    agreed = Product(
        title="Mug", variants=(old,), shopify_id="gid://shopify/Product/1", emanage_id="p1"
    )
    new = replace(
        old, options=("Red",), shopify_id="gid://shopify/ProductVariant/2", emanage_id=None
    )
    shopify = replace(agreed, options=(Option("Color", ("Red",)),), variants=(new,))
    emanage = replace(agreed, updated_at=None)
    plan = plan_product(
        agreed=agreed,
        variant_links=(VariantLink("gid://shopify/ProductVariant/1", "e1", "MUG", ()),),
        shopify=shopify,
        emanage=emanage,
    )
    assert plan.relinks == (
        Relink("gid://shopify/ProductVariant/1", "gid://shopify/ProductVariant/2", "e1"),
    )
    assert not any(isinstance(w, CreateVariants | RemoveVariants) for w in plan.writes)
    assert all(w.side is Side.EMANAGE for w in plan.writes)
    updates = [w for w in plan.writes if isinstance(w, UpdateVariants)]
    assert updates[0].changes[0][0].emanage_id == "e1"
    assert plan.variant_links == (
        VariantLink("gid://shopify/ProductVariant/2", "e1", "MUG", ("Red",)),
    )


@given(
    sku=st.none() | st.just("MUG"),
    price=st.decimals(min_value=0, max_value=999, places=2),
    values=st.lists(st.sampled_from(["Red", "Blue", "Green"]), min_size=1, max_size=3, unique=True),
    extra=st.booleans(),
)
def test_the_standalone_variants_replacement_takes_its_link_with_or_without_a_sku(
    sku: str | None, price: Decimal, values: list[str], extra: bool
) -> None:
    """productOptionsCreate replaces the standalone variant by one with a new id, its SKU (or
    none) and the first value (``extra``: productVariantsBulkCreate's further variants, without
    a SKU, come after it): the replacement takes the link by SKU, else by position; the other
    variants are new. Never a remove of the linked eManageCRM variant."""
    old = Variant(sku=sku, options=(), price=price, shopify_id="gid://shopify/ProductVariant/1")
    agreed = Product(
        title="Mug",
        variants=(replace(old, emanage_id="e1"),),
        shopify_id="gid://shopify/Product/1",
        emanage_id="p1",
    )
    replacement = replace(old, options=(values[0],), shopify_id="gid://shopify/ProductVariant/9")
    others = tuple(
        Variant(sku=None, options=(v,), price=price, shopify_id=f"gid://shopify/ProductVariant/{n}")
        for n, v in enumerate(values[1:], start=10)
        if extra
    )
    options = (Option("Color", (values[0], *(o.options[0] for o in others))),)
    shopify = replace(agreed, options=options, variants=(replacement, *others))
    plan = plan_product(
        agreed=agreed,
        variant_links=(VariantLink(old.shopify_id, "e1", sku, ()),),
        shopify=shopify,
        emanage=replace(agreed, updated_at=None),
    )
    assert plan.relinks == (Relink(old.shopify_id, "gid://shopify/ProductVariant/9", "e1"),)
    assert not any(isinstance(w, RemoveVariants) for w in plan.writes)
    creates = [v for w in plan.writes if isinstance(w, CreateVariants) for v in w.variants]
    assert {v.shopify_id for v in creates} == {v.shopify_id for v in others}
    linked = {link.shopify_id: link.emanage_id for link in plan.variant_links}
    assert linked["gid://shopify/ProductVariant/9"] == "e1"


def test_a_new_variant_with_another_sku_does_not_take_the_standalones_link() -> None:
    """The standalone variant deleted and a variant with a different SKU made: no re-link (the
    SKU says it is another variant), the old one is removed and the new one created."""
    old = Variant(sku="MUG", options=(), price=Decimal(5), shopify_id="s1", emanage_id="e1")
    agreed = Product(title="Mug", variants=(old,), shopify_id="sp", emanage_id="ep")
    other = Variant(sku="CUP", options=("Red",), price=Decimal(5), shopify_id="s2")
    shopify = replace(agreed, options=(Option("Color", ("Red",)),), variants=(other,))
    plan = plan_product(
        agreed=agreed,
        variant_links=(VariantLink("s1", "e1", "MUG", ()),),
        shopify=shopify,
        emanage=agreed,
    )
    assert plan.relinks == ()
    assert {type(w) for w in plan.writes if w.side is Side.EMANAGE} >= {
        CreateVariants,
        RemoveVariants,
    }


@given(products())
def test_a_sku_shared_by_two_variants_is_a_conflict_not_a_merge(product: Product) -> None:
    """Two Shopify variants with one SKU: a SharedSku conflict and no write."""
    opts = (Option("Size", ("S", "M")),)
    v = Variant(
        sku="DUP", options=("S",), price=Decimal(1), shopify_id="gid://shopify/ProductVariant/1"
    )
    w = replace(v, options=("M",), shopify_id="gid://shopify/ProductVariant/2")
    shopify = replace(product, options=opts, variants=(v, w))
    plan = plan_product(agreed=None, shopify=shopify, emanage=product)
    assert plan.writes == ()
    assert plan.shared_skus == (
        SharedSku(
            Side.SHOPIFY,
            "DUP",
            ("gid://shopify/ProductVariant/1", "gid://shopify/ProductVariant/2"),
        ),
    )


def test_changes_on_both_sides_to_different_fields_reach_each_other() -> None:
    """Shopify changed the title, eManageCRM a price: each side gets the other's change."""
    v = Variant(sku="A", options=(), price=Decimal("10"), shopify_id="s1", emanage_id="e1")
    agreed = Product(title="T", variants=(v,), shopify_id="sp", emanage_id="ep")
    shopify = replace(agreed, title="T2")
    emanage = replace(agreed, variants=(replace(v, price=Decimal("12.5")),))
    plan = plan_product(
        agreed=agreed, variant_links=links_of(agreed), shopify=shopify, emanage=emanage
    )
    assert plan.conflicts == ()
    by_side = {(w.side, type(w)) for w in plan.writes}
    assert by_side == {(Side.SHOPIFY, UpdateVariants), (Side.EMANAGE, UpdateProduct)}


def test_a_conflicting_price_is_settled_by_the_newest_edit_and_recorded() -> None:
    """Both changed one price: the newer eManageCRM value goes to Shopify, the conflict is kept."""
    v = Variant(sku="A", options=(), price=Decimal("10"), shopify_id="s1", emanage_id="e1")
    agreed = Product(title="T", variants=(v,))
    from datetime import UTC, datetime

    t = datetime(2026, 12, 7, tzinfo=UTC)
    shopify = replace(agreed, variants=(replace(v, price=Decimal("11")),), updated_at=t)
    emanage = replace(
        agreed, variants=(replace(v, price=Decimal("12")),), updated_at=t + timedelta(seconds=5)
    )
    plan = plan_product(
        agreed=agreed, variant_links=links_of(agreed), shopify=shopify, emanage=emanage
    )
    (conflict,) = plan.conflicts
    assert conflict.winner is Side.EMANAGE
    assert (conflict.shopify_value, conflict.emanage_value) == (
        "11.00",
        "12.00",
    )
    (write,) = plan.writes
    assert isinstance(write, UpdateVariants)
    assert write.side is Side.SHOPIFY
    assert write.changes[0][0].shopify_id == "s1"
    assert write.changes[0][0].price == Decimal("12")
