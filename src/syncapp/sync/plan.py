"""The plan of writes for one synced product: what to create, update, archive, re-link or
refuse, given its link (the last agreed state) and both sides' current states.

Pure: the engine fetches the states, calls :func:`plan_product` and applies the plan. Rules:

- a SKU shared by two variants on one side is a :class:`SharedSku` conflict and nothing is
  written: matching on it could link the wrong variants (pitfall 18);
- no link: the side that has the product gets it created on the other; both having it (the
  caller matched it by external reference, then SKU) merges against an empty base;
- a product gone from one side (deleted) is archived on the other, never deleted;
- variants pair through their links by id; a Shopify variant whose id no link knows takes over
  the link whose variant vanished and has its SKU and option values, else its SKU alone (Shopify
  replaced the standalone variant by adding the first option), else, for a standalone variant
  without a SKU, by position (the first SKU-less variant with option values): a
  :class:`Relink`, not a duplicate (pitfall 14); unlinked variants on both sides pair by SKU
  and options;
- partial changes are :class:`UpdateProduct` / :class:`UpdateVariants` of the changed fields
  only; a change of the options needs Shopify's ``productSet``: :class:`ReplaceProduct`.
"""

from __future__ import annotations

from collections import Counter
from collections.abc import Mapping, Sequence
from dataclasses import dataclass, field, replace
from typing import Any, TypeAlias

from syncapp.sync.catalog import (
    Option,
    Product,
    ProductStatus,
    Variant,
    WeightUnit,
    money,
)
from syncapp.sync.merge import Conflict, MergePolicy, Side, flatten, merge

__all__ = [
    "Archive",
    "Create",
    "CreateVariants",
    "Plan",
    "Relink",
    "RemoveVariants",
    "ReplaceProduct",
    "SharedSku",
    "UpdateProduct",
    "UpdateVariants",
    "VariantLink",
    "plan_product",
    "shared_skus",
]

_PRODUCT_FIELDS = ("title", "status", "description", "vendor", "product_type", "options", "image")


@dataclass(frozen=True, slots=True)
class VariantLink:
    """A linked variant pair as the link table holds it."""

    shopify_id: str | None
    emanage_id: str | None
    sku: str | None
    options: tuple[str, ...]


@dataclass(frozen=True, slots=True)
class Create:
    side: Side
    product: Product


@dataclass(frozen=True, slots=True)
class Archive:
    side: Side


@dataclass(frozen=True, slots=True)
class UpdateProduct:
    side: Side
    fields: frozenset[str]
    product: Product


@dataclass(frozen=True, slots=True)
class ReplaceProduct:
    """The whole product must be written (options changed): Shopify's ``productSet``."""

    side: Side
    product: Product


@dataclass(frozen=True, slots=True)
class UpdateVariants:
    side: Side
    changes: tuple[tuple[Variant, frozenset[str]], ...]


@dataclass(frozen=True, slots=True)
class CreateVariants:
    side: Side
    variants: tuple[Variant, ...]


@dataclass(frozen=True, slots=True)
class RemoveVariants:
    side: Side
    variants: tuple[Variant, ...]


@dataclass(frozen=True, slots=True)
class Relink:
    """Shopify replaced a linked variant's id: the link now names ``new_shopify_id``."""

    old_shopify_id: str | None
    new_shopify_id: str
    emanage_id: str | None


@dataclass(frozen=True, slots=True)
class SharedSku:
    """A SKU two or more variants of one side share: recorded, never merged automatically."""

    side: Side
    sku: str
    variant_ids: tuple[str | None, ...]


Action: TypeAlias = (
    Create
    | Archive
    | UpdateProduct
    | ReplaceProduct
    | UpdateVariants
    | CreateVariants
    | RemoveVariants
)


@dataclass(frozen=True, slots=True)
class Plan:
    """``agreed`` is the state both sides hold once ``writes`` are applied (None: no link)."""

    writes: tuple[Action, ...] = ()
    relinks: tuple[Relink, ...] = ()
    conflicts: tuple[Conflict, ...] = ()
    shared_skus: tuple[SharedSku, ...] = ()
    agreed: Product | None = None
    variant_links: tuple[VariantLink, ...] = field(default=())

    @property
    def is_noop(self) -> bool:
        return not (self.writes or self.relinks or self.shared_skus)


def shared_skus(product: Product, side: Side) -> tuple[SharedSku, ...]:
    """The SKUs shared by more than one variant of ``product``, as conflicts."""
    counts = Counter(v.sku for v in product.variants if v.sku)
    return tuple(
        SharedSku(
            side,
            sku,
            tuple(
                v.shopify_id if side is Side.SHOPIFY else v.emanage_id
                for v in product.variants
                if v.sku == sku
            ),
        )
        for sku, n in sorted(counts.items())
        if n > 1
    )


def _key(v: Variant) -> str:
    return "new:" + "|".join((v.sku or "", *v.options))


def _pair_keys(
    links: Sequence[VariantLink], shopify: Product, emanage: Product
) -> tuple[dict[int, str], dict[int, str], list[Relink]]:
    """Pair keys for each side's variants (by index), and the re-links found on the way."""
    by_shopify = {link.shopify_id: i for i, link in enumerate(links) if link.shopify_id}
    by_emanage = {link.emanage_id: i for i, link in enumerate(links) if link.emanage_id}
    s_keys: dict[int, str] = {}
    e_keys: dict[int, str] = {}
    for i, v in enumerate(emanage.variants):
        if v.emanage_id in by_emanage:
            e_keys[i] = f"link:{by_emanage[v.emanage_id]}"
    unmatched: list[int] = []
    for i, v in enumerate(shopify.variants):
        if v.shopify_id in by_shopify:
            s_keys[i] = f"link:{by_shopify[v.shopify_id]}"
        else:
            unmatched.append(i)
    present = {v.shopify_id for v in shopify.variants}
    orphans = [j for j, link in enumerate(links) if link.shopify_id not in present]
    relinks: list[Relink] = []
    for i in unmatched:
        v = shopify.variants[i]
        match = _orphan_for(v, links, orphans)
        if match is None or v.shopify_id is None:
            s_keys[i] = _key(v)
            continue
        orphans.remove(match)
        s_keys[i] = f"link:{match}"
        relinks.append(Relink(links[match].shopify_id, v.shopify_id, links[match].emanage_id))
    for i, v in enumerate(emanage.variants):
        e_keys.setdefault(i, _key(v))
    return s_keys, e_keys, relinks


def _orphan_for(v: Variant, links: Sequence[VariantLink], orphans: Sequence[int]) -> int | None:
    """The orphaned link (its Shopify variant is gone) that the new Shopify variant ``v``
    replaces: the one with v's SKU and option values; else the one with v's SKU; else, when
    Shopify replaced the standalone variant (the link of a product without options, and v now
    has option values) and neither has a SKU, the standalone's link. Shopify lists variants
    by position, and the caller offers them in that order, so the standalone's replacement
    (productOptionsCreate puts it first) is the first SKU-less variant to ask: by position."""
    exact = [j for j in orphans if (links[j].sku, links[j].options) == v.key]
    if len(exact) == 1:
        return exact[0]
    by_sku = [j for j in orphans if v.sku and links[j].sku == v.sku]
    if len(by_sku) == 1:
        return by_sku[0]
    if v.sku or not v.options:
        return None
    standalone = [j for j in orphans if not links[j].options and not links[j].sku]
    return standalone[0] if len(standalone) == 1 and len(links) == 1 else None


def _base_keys(links: Sequence[VariantLink], base: Product) -> dict[int, str]:
    by_shopify = {link.shopify_id: i for i, link in enumerate(links) if link.shopify_id}
    by_emanage = {link.emanage_id: i for i, link in enumerate(links) if link.emanage_id}
    keys: dict[int, str] = {}
    for i, v in enumerate(base.variants):
        j = by_shopify.get(v.shopify_id) if v.shopify_id else None
        if j is None and v.emanage_id:
            j = by_emanage.get(v.emanage_id)
        keys[i] = f"link:{j}" if j is not None else _key(v)
    return keys


def _unflatten(
    flat: Mapping[str, Any],
    s_ids: Mapping[str, Variant],
    e_ids: Mapping[str, Variant],
    template: Product,
) -> tuple[Product, dict[str, Variant]]:
    variants: dict[str, dict[str, Any]] = {}
    for path, value in flat.items():
        if path.startswith("variant/"):
            key, name = path.removeprefix("variant/").rsplit("/", 1)
            variants.setdefault(key, {})[name] = value
    built: dict[str, Variant] = {}
    for key in sorted(variants):
        f = variants[key]
        if "price" not in f:
            continue
        s, e = s_ids.get(key), e_ids.get(key)
        built[key] = Variant(
            sku=f.get("sku") or None,
            options=tuple(f.get("options") or ()),
            price=money(f["price"]),
            compare_at_price=(
                None if f.get("compare_at_price") is None else money(f["compare_at_price"])
            ),
            weight=None if f.get("weight") is None else money(f["weight"]),
            weight_unit=WeightUnit(f.get("weight_unit") or WeightUnit.KILOGRAMS),
            shopify_id=s.shopify_id if s else None,
            emanage_id=e.emanage_id if e else None,
        )
    product = Product(
        title=str(flat.get("title", "")),
        status=ProductStatus(flat.get("status", ProductStatus.ACTIVE)),
        description=str(flat.get("description", "")),
        vendor=str(flat.get("vendor", "")),
        product_type=str(flat.get("product_type", "")),
        options=tuple(
            Option(str(o["name"]), tuple(o["values"])) for o in flat.get("options") or ()
        ),
        image=flat.get("image"),
        variants=tuple(built.values()),
        shopify_id=template.shopify_id,
        emanage_id=template.emanage_id,
    )
    return product, built


def _writes_for(
    side: Side,
    paths: frozenset[str],
    merged: Product,
    keyed: Mapping[str, Variant],
    current: Mapping[str, Variant],
) -> list[Action]:
    product_fields = frozenset(p for p in paths if p in _PRODUCT_FIELDS)
    if "options" in product_fields and side is Side.SHOPIFY:
        return [ReplaceProduct(side, merged)]
    writes: list[Action] = []
    if product_fields:
        writes.append(UpdateProduct(side, product_fields, merged))
    changed: dict[str, set[str]] = {}
    for path in paths:
        if path.startswith("variant/"):
            key, name = path.removeprefix("variant/").rsplit("/", 1)
            changed.setdefault(key, set()).add(name)
    updates, creates, removes = [], [], []
    for key in sorted(changed):
        if key in keyed and key in current:
            updates.append((_with_ids(keyed[key], current[key]), frozenset(changed[key])))
        elif key in keyed:
            creates.append(keyed[key])
        elif key in current:
            removes.append(current[key])
    if updates:
        writes.append(UpdateVariants(side, tuple(updates)))
    if creates:
        writes.append(CreateVariants(side, tuple(creates)))
    if removes:
        writes.append(RemoveVariants(side, tuple(removes)))
    return writes


def _with_ids(merged: Variant, current: Variant) -> Variant:
    return replace(
        merged,
        shopify_id=current.shopify_id or merged.shopify_id,
        emanage_id=current.emanage_id or merged.emanage_id,
    )


def plan_product(
    *,
    agreed: Product | None,
    variant_links: Sequence[VariantLink] = (),
    shopify: Product | None,
    emanage: Product | None,
    policy: MergePolicy | None = None,
) -> Plan:
    """The writes that bring both sides to the merged state of ``shopify`` and ``emanage``.

    ``agreed`` and ``variant_links`` are the link's (None and empty for an unlinked product);
    ``shopify`` / ``emanage`` are the fetched states (None: the product does not exist there).
    """
    refused = (shared_skus(shopify, Side.SHOPIFY) if shopify else ()) + (
        shared_skus(emanage, Side.EMANAGE) if emanage else ()
    )
    if refused:
        return Plan(shared_skus=refused, agreed=agreed, variant_links=tuple(variant_links))
    if shopify is None and emanage is None:
        return Plan(agreed=agreed, variant_links=tuple(variant_links))
    if shopify is None or emanage is None:
        # ``side`` is the one the product is missing from.
        present, side = (emanage, Side.SHOPIFY) if shopify is None else (shopify, Side.EMANAGE)
        assert present is not None
        if agreed is None:
            return Plan(writes=(Create(side, present),), agreed=present)
        if present.status is ProductStatus.ARCHIVED:
            return Plan(agreed=agreed, variant_links=tuple(variant_links))
        return Plan(
            writes=(Archive(Side.EMANAGE if side is Side.SHOPIFY else Side.SHOPIFY),),
            agreed=replace(present, status=ProductStatus.ARCHIVED),
            variant_links=tuple(variant_links),
        )
    s_keys, e_keys, relinks = _pair_keys(variant_links, shopify, emanage)
    base_flat = flatten(agreed, _base_keys(variant_links, agreed)) if agreed else {}
    result = merge(
        base_flat,
        flatten(shopify, s_keys),
        flatten(emanage, e_keys),
        shopify_updated_at=shopify.updated_at,
        emanage_updated_at=emanage.updated_at,
        policy=policy,
    )
    s_by_key = {s_keys[i]: v for i, v in enumerate(shopify.variants)}
    e_by_key = {e_keys[i]: v for i, v in enumerate(emanage.variants)}
    template = replace(shopify, emanage_id=emanage.emanage_id)
    merged, m_by_key = _unflatten(result.merged, s_by_key, e_by_key, template)
    writes = _writes_for(Side.SHOPIFY, result.to_shopify, merged, m_by_key, s_by_key)
    writes += _writes_for(Side.EMANAGE, result.to_emanage, merged, m_by_key, e_by_key)
    links = tuple(
        VariantLink(
            s_by_key[k].shopify_id if k in s_by_key else None,
            e_by_key[k].emanage_id if k in e_by_key else None,
            v.sku,
            v.options,
        )
        for k, v in sorted(m_by_key.items())
    )
    return Plan(
        writes=tuple(writes),
        relinks=tuple(relinks),
        conflicts=result.conflicts,
        agreed=merged,
        variant_links=links,
    )
