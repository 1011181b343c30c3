"""Matching an unlinked product to the other side's by SKU: pure, the engine does the lookups.

A product with no link is matched first by external reference (the engine reads the product
the reference names) and then by SKU (``creates are idempotent``, issue 10, pitfall 18). For
the SKU match the engine looks every SKU of the product up on the other side and hands the
variants found to :func:`match_by_sku` as :class:`Candidate` rows, each marked ``taken`` when its
product already belongs to another pair (a link holds it, or its external reference / the
engine's metafield names another product). The rules:

- a taken candidate is another pair's: never matched, never in the way;
- a SKU that two or more free variants share is a :class:`SharedSku` conflict: the engine
  records it and writes nothing, since either choice could link the wrong variants, and a
  create would add a third variant with that SKU;
- the free candidates all in one product: that product is the match;
- free candidates spread over several products (SKU A in one, SKU B in another): ambiguous,
  recorded and nothing written, for the same reason;
- no free candidate: no match (the product is created on the other side).

Shopify's search may match more loosely than equality, so the lookup keeps only variants whose
SKU is exactly the one asked for (``ProductsClient.variants_by_sku``).
"""

from __future__ import annotations

from collections.abc import Iterable, Sequence
from dataclasses import dataclass

from syncapp.sync.merge import Side
from syncapp.sync.plan import SharedSku

__all__ = ["Candidate", "Match", "match_by_sku"]


@dataclass(frozen=True, slots=True)
class Candidate:
    """A variant of the other side that has one of the product's SKUs."""

    sku: str
    product_id: str
    variant_id: str | None
    taken: bool = False


@dataclass(frozen=True, slots=True)
class Match:
    """``product_id``: the matched product; ``shared``/``ambiguous``: why there is none, to be
    recorded as conflicts (both empty and no product: nothing to match, create)."""

    product_id: str | None = None
    shared: tuple[SharedSku, ...] = ()
    ambiguous: tuple[str, ...] = ()

    @property
    def refused(self) -> bool:
        return bool(self.shared or self.ambiguous)


def match_by_sku(skus: Sequence[str], candidates: Iterable[Candidate], *, side: Side) -> Match:
    """The match of a product whose SKUs are ``skus`` among ``candidates`` of ``side``."""
    wanted = set(skus)
    free: dict[str, set[tuple[str, str | None]]] = {}
    for c in candidates:
        if c.taken or c.sku not in wanted:
            continue
        free.setdefault(c.sku, set()).add((c.product_id, c.variant_id))
    shared = tuple(
        SharedSku(side, sku, tuple(v for _, v in sorted(found, key=_order)))
        for sku, found in sorted(free.items())
        if len(found) > 1
    )
    if shared:
        return Match(shared=shared)
    products = sorted({p for found in free.values() for p, _ in found})
    if len(products) > 1:
        return Match(ambiguous=tuple(products))
    return Match(product_id=products[0] if products else None)


def _order(item: tuple[str, str | None]) -> tuple[str, str]:
    return item[0], item[1] or ""
