"""The field-level three-way merge of one synced pair, and its conflicts as values.

Inputs are flat mappings of field paths to JSON-able values (:func:`flatten`): the base (the
last agreed state, stored in the link), Shopify's current state and eManageCRM's. A path absent
from a mapping is :data:`MISSING` there (a variant added or removed).

The policy, per field (docs/adr/0016):

1. both sides equal → that value (even if both made the same change: no conflict);
2. only one side differs from the base → that side's value;
3. both changed, differently → a :class:`Conflict`: the field's **owner** wins when the policy
   names one (``MergePolicy.owners``, keyed by the last path segment, e.g. ``price``); else the
   side whose ``updated_at`` is **newest** wins; on a tie (same second, or a clock unknown)
   Shopify wins, the side merchants edit and customers see.

Every conflict is returned with both values, the winner and the reason; the engine records it.
"""

from __future__ import annotations

import enum
from collections.abc import Mapping
from dataclasses import dataclass, field
from datetime import datetime
from typing import Any, Final

from syncapp.sync.catalog import Product, Variant
from syncapp.sync.fingerprint import canonical, variant_canonical

__all__ = [
    "MISSING",
    "Conflict",
    "MergePolicy",
    "MergeResult",
    "Side",
    "flatten",
    "merge",
]


class _Missing(enum.Enum):
    MISSING = "MISSING"

    def __repr__(self) -> str:
        return "MISSING"


MISSING: Final = _Missing.MISSING
"""The value of a path a state does not have."""


class Side(enum.StrEnum):
    SHOPIFY = "shopify"
    EMANAGE = "emanage"


@dataclass(frozen=True, slots=True)
class MergePolicy:
    """``owners``: field name → the side that always wins a conflict on it."""

    owners: Mapping[str, Side] = field(default_factory=dict)
    tie_winner: Side = Side.SHOPIFY


@dataclass(frozen=True, slots=True)
class Conflict:
    """A field both sides changed since the base, differently, and how it was settled."""

    field: str
    shopify_value: Any
    emanage_value: Any
    winner: Side
    reason: str


@dataclass(frozen=True, slots=True)
class MergeResult:
    """``merged``: the new agreed state; ``to_shopify`` / ``to_emanage``: the paths whose merged
    value differs from that side's current value (what must be written there)."""

    merged: dict[str, Any]
    conflicts: tuple[Conflict, ...]
    to_shopify: frozenset[str]
    to_emanage: frozenset[str]


def flatten(product: Product, variant_key: Mapping[int, str] | None = None) -> dict[str, Any]:
    """Field paths of a product: ``title``, ``options``, ``variant/<key>/price``...

    ``variant_key`` maps a variant's index to the pair key the two sides share (its link);
    by default a variant is keyed by its SKU and option values.
    """
    flat = {k: v for k, v in canonical(product).items() if k != "variants"}
    for index, variant in enumerate(product.variants):
        key = (variant_key or {}).get(index) or _default_key(variant)
        for name, value in variant_canonical(variant).items():
            flat[f"variant/{key}/{name}"] = value
    return flat


def _default_key(variant: Variant) -> str:
    return "|".join((variant.sku or "", *variant.options))


def _field_name(path: str) -> str:
    return path.rsplit("/", 1)[-1]


def merge(
    base: Mapping[str, Any],
    shopify: Mapping[str, Any],
    emanage: Mapping[str, Any],
    *,
    shopify_updated_at: datetime | None = None,
    emanage_updated_at: datetime | None = None,
    policy: MergePolicy | None = None,
) -> MergeResult:
    """Merge ``shopify`` and ``emanage`` against ``base``; see the module docstring."""
    policy = policy or MergePolicy()
    merged: dict[str, Any] = {}
    conflicts: list[Conflict] = []
    for path in sorted(set(base) | set(shopify) | set(emanage)):
        b = base.get(path, MISSING)
        s = shopify.get(path, MISSING)
        e = emanage.get(path, MISSING)
        if s == e or e == b:
            value = s
        elif s == b:
            value = e
        else:
            winner, reason = _settle(
                _field_name(path), shopify_updated_at, emanage_updated_at, policy
            )
            value = s if winner is Side.SHOPIFY else e
            conflicts.append(Conflict(path, _json(s), _json(e), winner, reason))
        if value is not MISSING:
            merged[path] = value
    to_shopify = frozenset(
        p
        for p in merged.keys() | shopify.keys()
        if shopify.get(p, MISSING) != merged.get(p, MISSING)
    )
    to_emanage = frozenset(
        p
        for p in merged.keys() | emanage.keys()
        if emanage.get(p, MISSING) != merged.get(p, MISSING)
    )
    return MergeResult(merged, tuple(conflicts), to_shopify, to_emanage)


def _json(value: Any) -> Any:
    return None if value is MISSING else value


def _settle(
    name: str,
    shopify_at: datetime | None,
    emanage_at: datetime | None,
    policy: MergePolicy,
) -> tuple[Side, str]:
    owner = policy.owners.get(name)
    if owner is not None:
        return owner, f"{owner.value} owns {name}"
    if shopify_at is not None and emanage_at is not None and shopify_at != emanage_at:
        newest = Side.SHOPIFY if shopify_at > emanage_at else Side.EMANAGE
        return newest, f"newest change wins ({newest.value})"
    return policy.tie_winner, f"same or unknown change time: {policy.tie_winner.value} wins ties"
