"""Matching an unlinked product by SKU, the external references eManageCRM gets, and the
replaced-variant check of the echo test (pitfalls 14, 18; issue 10 "creates are idempotent")."""

from __future__ import annotations

from collections import Counter
from dataclasses import replace

from hypothesis import given, settings
from hypothesis import strategies as st

from syncapp.connectors.shopify.products import sku_search
from syncapp.sandbox.shopify.graphql_api.search import Term, parse_search
from syncapp.sync.catalog import Product
from syncapp.sync.fingerprint import fingerprint
from syncapp.sync.links import same_variant_ids, variant_links_of, with_shopify_refs
from syncapp.sync.matching import Candidate, Match, match_by_sku
from syncapp.sync.merge import Side
from syncapp.sync.plan import SharedSku
from tests.unit.sync.strategies import products

skus = st.sampled_from(["A", "B", "C", "D"])
candidates = st.lists(
    st.builds(
        Candidate,
        sku=skus,
        product_id=st.sampled_from(["p1", "p2", "p3"]),
        variant_id=st.sampled_from(["v1", "v2", "v3", "v4", "v5"]),
        taken=st.booleans(),
    ),
    max_size=8,
)


@given(st.lists(skus, min_size=1, max_size=4, unique=True), candidates, st.randoms())
def test_a_match_is_one_free_product_and_a_shared_sku_is_never_merged(
    wanted: list[str], found: list[Candidate], rnd: object
) -> None:
    """The match is the only product the free candidates name; a SKU two free variants share
    is refused; taken products never match; the order of the lookups does not matter."""
    match = match_by_sku(wanted, found, side=Side.EMANAGE)
    free = [c for c in found if not c.taken and c.sku in wanted]
    per_sku = {
        sku: {(c.product_id, c.variant_id) for c in free if c.sku == sku}
        for sku in {c.sku for c in free}
    }
    shared = sorted(sku for sku, seen in per_sku.items() if len(seen) > 1)
    assert [s.sku for s in match.shared] == shared
    assert all(s.side is Side.EMANAGE for s in match.shared)
    if shared:
        assert match.product_id is None
        assert match.refused
    elif len({c.product_id for c in free}) > 1:
        assert match == Match(ambiguous=tuple(sorted({c.product_id for c in free})))
    elif free:
        assert match == Match(product_id=free[0].product_id)
        # Never a product only taken candidates name.
        assert any(not c.taken and c.product_id == match.product_id for c in found)
    else:
        assert match == Match()
    shuffled = list(found)
    rnd.shuffle(shuffled)  # type: ignore[attr-defined]
    assert match_by_sku(list(reversed(wanted)), shuffled, side=Side.EMANAGE) == match


def test_the_shared_sku_names_both_variants() -> None:
    """Two eManageCRM products with TEE-S: the refusal lists both variants; a taken third
    product is not in the way of a match and not part of a refusal."""
    found = [
        Candidate("TEE-S", "p1", "v1"),
        Candidate("TEE-S", "p2", "v7"),
        Candidate("TEE-S", "p3", "v9", taken=True),
    ]
    assert match_by_sku(["TEE-S"], found, side=Side.SHOPIFY) == Match(
        shared=(SharedSku(Side.SHOPIFY, "TEE-S", ("v1", "v7")),)
    )
    assert match_by_sku(["TEE-S"], found[1:], side=Side.SHOPIFY) == Match(product_id="p2")


@given(st.text(min_size=1, max_size=30))
def test_a_sku_search_finds_exactly_that_sku(sku: str) -> None:
    """Whatever the SKU holds (spaces, quotes, colons, backslashes), the query is one sku term
    with that value, as Shopify's search syntax reads it."""
    query = parse_search(sku_search(sku))
    assert query.groups == ((Term("sku", ":", sku),),)


def _renumbered(product: Product, prefix: str) -> Product:
    return replace(
        product,
        shopify_id=f"gid://shopify/Product/{prefix}",
        variants=tuple(
            replace(v, shopify_id=f"gid://shopify/ProductVariant/{prefix}{i}")
            for i, v in enumerate(product.variants)
        ),
    )


@settings(max_examples=40)
@given(products(), st.booleans())
def test_external_references_are_written_once_and_change_nothing_else(
    product: Product, stale: bool
) -> None:
    """eManageCRM's product takes the agreed Shopify ids; a second time there is nothing to
    write; only ids change, so the fingerprint (what the write's echo is compared on) stays."""
    agreed = _renumbered(product, "9")
    held = replace(product, shopify_id=None) if stale else agreed
    referenced = with_shopify_refs(held, agreed)
    assert referenced.shopify_id == agreed.shopify_id
    assert [v.shopify_id for v in referenced.variants] == [v.shopify_id for v in agreed.variants]
    assert (referenced != held) == (stale or held != agreed)
    assert with_shopify_refs(referenced, agreed) == referenced
    assert fingerprint(referenced) == fingerprint(held)
    assert [v.emanage_id for v in referenced.variants] == [v.emanage_id for v in held.variants]


@settings(max_examples=40)
@given(products())
def test_a_variant_the_link_does_not_know_keeps_its_reference(product: Product) -> None:
    """An eManageCRM variant without a counterpart in the agreed state is left as it is."""
    agreed = replace(_renumbered(product, "9"), variants=product.variants[1:])
    referenced = with_shopify_refs(product, agreed)
    assert referenced.variants[0] == product.variants[0]


@settings(max_examples=40)
@given(products())
def test_equal_fields_on_new_variant_ids_are_not_an_echo(product: Product) -> None:
    """The same product with its Shopify variants renumbered: same fingerprint, other ids."""
    links = variant_links_of(product)
    assert same_variant_ids(links, product, shopify=True)
    assert same_variant_ids(links, product, shopify=False)
    renumbered = _renumbered(product, "7")
    assert fingerprint(renumbered) == fingerprint(product)
    assert not same_variant_ids(links, renumbered, shopify=True)
    assert same_variant_ids(links, renumbered, shopify=False)
    assert Counter(v.emanage_id for v in renumbered.variants) == Counter(
        link.emanage_id for link in links
    )
