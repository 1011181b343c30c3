"""The sync engine's I/O: reconcile one product pair after a notification (DESIGN §4, ADR 0020).

A notification only says *which* product changed; :func:`reconcile` makes the handler's three
moves:

1. **read** (a short transaction): the shop, its *Keep Products Synchronized* setting, its
   eManageCRM account and currency, and the pair's link (the last agreed state);
2. **network I/O, nothing held**: fetch the notifying side's current state (Shopify through the
   shop's :class:`ProductsClient` in a thread, eManageCRM through :class:`EmanageClient`). If
   its fingerprint is the link's, the notification is an echo of our own write, a duplicate,
   a stale retry or an inventory-only change: done, without a read of the other side and
   without a write. Otherwise fetch the other side (by the link, else by external reference,
   then by SKU), plan the writes with :func:`syncapp.sync.plan.plan_product` against the
   agreed state, and execute them with derived Idempotency-Keys (:mod:`syncapp.sync.links`);
3. **fenced write**: ``Ack(apply=...)`` records the new agreed state in the link (both
   fingerprints, versions, clocks), the variant links and any conflicts, in the bus's
   settling transaction; a claim lost meanwhile records nothing (the next attempt refetches).

Failures map onto the bus's one retry policy: Shopify throttling (already waited out in the
client) and transient errors of either side are ``Retry`` (with the server's Retry-After);
eManageCRM's 412 (the version moved under us) refetches and plans again; refusals that would
fail again unchanged (4xx, userErrors, unmappable products) are ``DeadLetter`` with the reason,
replayable with ``syncapp dlq replay`` once fixed. The split is read off the connectors' shared
base (``connectors.errors``), so a new connector's errors need no new case here.
"""

from __future__ import annotations

import asyncio
import enum
from collections.abc import Awaitable, Mapping, Sequence
from dataclasses import dataclass, field, replace
from datetime import UTC, datetime
from typing import Any

import structlog
from sqlalchemy import delete, or_, select
from sqlalchemy.orm import Session

from syncapp.bus.interface import Ack, DeadLetter, Outcome, Retry
from syncapp.connectors.emanage import EmanageProduct
from syncapp.connectors.emanage.errors import (
    EmanageIdempotencyMismatch,
    EmanageVersionConflict,
)
from syncapp.connectors.errors import (
    ConnectorError,
    PermanentConnectorError,
    TransientConnectorError,
)
from syncapp.onboarding.models import EmanageAccount
from syncapp.shops.errors import ShopNotInstalled
from syncapp.store.models import Shop
from syncapp.sync.catalog import Product, ProductStatus
from syncapp.sync.context import SyncContext
from syncapp.sync.events import request_resync
from syncapp.sync.fingerprint import fingerprint
from syncapp.sync.links import (
    agreed_from_json,
    agreed_to_json,
    create_key,
    fill_ids,
    same_variant_ids,
    snapshot_is_current,
    unique_skus,
    variant_links_of,
    with_shopify_refs,
    write_key,
)
from syncapp.sync.mapping import (
    UnmappableProduct,
    emanage_product,
    product_from_emanage,
    product_from_shopify,
    product_set_input,
    variant_bulk_input,
)
from syncapp.sync.matching import Candidate, Match, match_by_sku
from syncapp.sync.merge import Conflict, Side
from syncapp.sync.models import PRODUCT, VARIANT, SyncConflict, SyncLink
from syncapp.sync.plan import (
    Archive,
    Create,
    CreateVariants,
    Plan,
    RemoveVariants,
    ReplaceProduct,
    SharedSku,
    UpdateProduct,
    UpdateVariants,
    VariantLink,
    plan_product,
)
from syncapp.sync.state import keeps_products_synchronized

log = structlog.get_logger("syncapp.sync")

ORIGIN = "syncapp"
"""The origin marker of every eManageCRM write the engine makes (``last_write_origin``)."""
METAFIELD_NAMESPACE = "$app"
ORIGIN_KEY = "origin"
EMANAGE_ID_KEY = "emanage_product_id"
"""The app metafield holding a Shopify product's eManageCRM id: the ``customId`` a create in
Shopify is keyed by (a retried create finds the product it made), and how a Shopify product the
engine created is matched back when its link is not recorded yet."""
MAX_VERSION_RETRIES = 3

# Neutral product field → productSet input field (a product-level partial change).
_SHOPIFY_PRODUCT_FIELDS = {
    "title": "title",
    "status": "status",
    "description": "descriptionHtml",
    "vendor": "vendor",
    "product_type": "productType",
}


class Trigger(enum.StrEnum):
    """Which side notified: its state is fetched first and compared with the link."""

    SHOPIFY = "shopify"
    EMANAGE = "emanage"
    RESYNC = "resync"


@dataclass(frozen=True, slots=True)
class Request:
    """What one event asks: reconcile the pair of these ids, for this shop."""

    shop: str
    trigger: Trigger
    correlation_id: str
    shopify_gid: str | None = None
    emanage_id: str | None = None
    emanage_version: int | None = None
    deleted: bool = False
    snapshot: Mapping[str, Any] | None = None
    unlinked_key: bool = False
    """An eManageCRM notification stored under ``EmanageProduct/<id>`` (it named no Shopify
    product): once the pair has a Shopify product, its events run under ``Product/<gid>``."""


@dataclass(frozen=True, slots=True)
class LinkState:
    id: int
    shopify_gid: str | None
    emanage_id: str | None
    shopify_fingerprint: str | None
    emanage_fingerprint: str | None
    agreed: Product | None
    variant_links: tuple[VariantLink, ...]
    emanage_version: int | None
    shopify_updated_at: datetime | None
    archived: bool


@dataclass(frozen=True, slots=True)
class ShopState:
    shop_id: int
    keep: bool
    account_id: str | None
    currency: str
    link: LinkState | None


@dataclass(frozen=True, slots=True)
class Fetched:
    """One side's current state: ``product`` None means absent (deleted / never existed)."""

    product: Product | None
    version: int | None = None
    raw: Any = None


@dataclass
class Outcomes:
    """What the writes produced, for the fenced record."""

    shopify_gid: str | None
    emanage_id: str | None
    emanage_version: int | None
    shopify_updated_at: datetime | None
    emanage_updated_at: datetime | None
    agreed: Product | None
    writes: dict[str, int] = field(default_factory=lambda: {"shopify": 0, "emanage": 0})


class VersionMoved(Exception):
    """eManageCRM answered 412: the product changed since we read it."""


# ---------------------------------------------------------------- move 1: the short read


def _aware(value: datetime | None) -> datetime | None:
    if value is None:
        return None
    return value if value.tzinfo is not None else value.replace(tzinfo=UTC)


def _find_link(
    session: Session, shop_id: int, shopify_gid: str | None, emanage_id: str | None
) -> SyncLink | None:
    clauses = []
    if shopify_gid:
        clauses.append(SyncLink.shopify_gid == shopify_gid)
    if emanage_id:
        clauses.append(SyncLink.emanage_id == emanage_id)
    if not clauses:
        return None
    return session.scalars(
        select(SyncLink)
        .where(SyncLink.shop_id == shop_id, SyncLink.kind == PRODUCT, or_(*clauses))
        .order_by(SyncLink.id)
        .limit(1)
    ).first()


def read_state(context: SyncContext, request: Request) -> ShopState | None:
    """Move 1: the shop, its setting, account and currency, and the pair's link."""
    with context.shops.sessions() as session:
        shop = session.scalar(select(Shop).where(Shop.domain == request.shop))
        if shop is None or shop.uninstalled_at is not None:
            return None
        account = session.scalar(
            select(EmanageAccount.account_id).where(EmanageAccount.shop_id == shop.id)
        )
        row = _find_link(session, shop.id, request.shopify_gid, request.emanage_id)
        link = None
        if row is not None:
            variants = session.scalars(
                select(SyncLink).where(SyncLink.parent_id == row.id).order_by(SyncLink.id)
            ).all()
            link = LinkState(
                id=row.id,
                shopify_gid=row.shopify_gid,
                emanage_id=row.emanage_id,
                shopify_fingerprint=row.shopify_fingerprint,
                emanage_fingerprint=row.emanage_fingerprint,
                agreed=agreed_from_json(row.agreed) if row.agreed else None,
                variant_links=tuple(
                    VariantLink(v.shopify_gid, v.emanage_id, v.sku, _variant_options(v))
                    for v in variants
                ),
                emanage_version=row.emanage_version,
                shopify_updated_at=_aware(row.shopify_updated_at),
                archived=row.archived,
            )
        return ShopState(
            shop_id=shop.id,
            keep=keeps_products_synchronized(session, shop.id),
            account_id=account,
            currency=shop.currency_code or "USD",
            link=link,
        )


def _variant_options(row: SyncLink) -> tuple[str, ...]:
    options = (row.agreed or {}).get("options")
    return tuple(str(o) for o in options) if isinstance(options, list) else ()


# ---------------------------------------------------------------- move 2: fetch, plan, write


def _shopify_product(node: Mapping[str, Any], variants: Sequence[Mapping[str, Any]]) -> Product:
    return product_from_shopify(node, variants)


def _metafield(node: Mapping[str, Any], alias: str) -> str | None:
    value = (node.get(alias) or {}).get("value")
    return str(value) if value else None


async def _read_shopify(context: SyncContext, shop: str, gid: str) -> Fetched:
    def read() -> tuple[dict[str, Any], list[dict[str, Any]]] | None:
        return context.products(shop).read_product(gid)

    found = await asyncio.to_thread(read)
    if found is None:
        return Fetched(None)
    node, variants = found
    return Fetched(_shopify_product(node, variants), raw=node)


def _from_snapshot(snapshot: Mapping[str, Any]) -> Fetched:
    variants = (snapshot.get("variants") or {}).get("nodes") or []
    return Fetched(_shopify_product(snapshot, variants), raw=snapshot)


async def _read_emanage(context: SyncContext, account_id: str, product_id: str) -> Fetched:
    found = await context.emanage.get_product(account_id=account_id, product_id=product_id)
    if found is None:
        return Fetched(None)
    return Fetched(product_from_emanage(found.body), version=found.version, raw=found)


async def _match_emanage(
    context: SyncContext, shop_id: int, account_id: str, shopify: Fetched
) -> tuple[str | None, Fetched | None, Match]:
    """The eManageCRM product of an unlinked Shopify product: the id the engine stored in the
    product's metafield, else the one whose external reference names the product, else the one
    product that has its SKUs (:func:`syncapp.sync.matching.match_by_sku`: a SKU two free
    variants share, or SKUs spread over several products, is a refusal to record)."""
    product = shopify.product
    assert product is not None
    marked = _metafield(shopify.raw or {}, "emanageId")
    if marked:
        fetched = await _read_emanage(context, account_id, marked)
        if fetched.product is not None:
            return marked, fetched, Match(product_id=marked)
    page = await context.emanage.list_products(
        account_id=account_id, shopify_product_id=product.shopify_id, limit=2
    )
    if page.items:
        item = page.items[0]
        return (
            item.product_id,
            Fetched(product_from_emanage(item.body), version=item.version, raw=item),
            Match(product_id=item.product_id),
        )
    skus = unique_skus(product.variants)
    found: dict[str, Fetched] = {}
    candidates: list[Candidate] = []
    for sku in skus:
        # Two are enough to tell a match (one free product) from a shared SKU; more are read
        # only because some may be other pairs' products.
        page = await context.emanage.list_products(account_id=account_id, sku=sku, limit=10)
        for item in page.items:
            candidate = found.get(item.product_id)
            if candidate is None:
                candidate = Fetched(product_from_emanage(item.body), version=item.version, raw=item)
                found[item.product_id] = candidate
            assert candidate.product is not None
            refers = candidate.product.shopify_id
            taken = bool(refers and refers != product.shopify_id) or await asyncio.to_thread(
                _linked_elsewhere, context, shop_id, emanage_id=item.product_id
            )
            candidates += [
                Candidate(sku, item.product_id, v.emanage_id, taken)
                for v in candidate.product.variants
                if v.sku == sku
            ]
    match = match_by_sku(skus, candidates, side=Side.EMANAGE)
    if match.product_id is None:
        return None, None, match
    return match.product_id, found[match.product_id], match


async def _match_shopify(
    context: SyncContext, request: Request, shop_id: int, emanage_id: str, emanage: Fetched
) -> tuple[str | None, Fetched | None, Match]:
    """The Shopify product of an unlinked eManageCRM product without an external reference:
    the one product that has its SKUs (productVariants by ``sku:``), unless another pair holds
    it or the engine made it for another eManageCRM product; refusals as for eManageCRM."""
    product = emanage.product
    assert product is not None
    skus = unique_skus(product.variants)
    if not skus:
        return None, None, Match()
    client = await asyncio.to_thread(context.products, request.shop)
    candidates: list[Candidate] = []
    for node in await asyncio.to_thread(client.variants_by_skus, skus):
        owner = node.get("product") or {}
        gid = str(owner.get("id"))
        made_for = _metafield(owner, "emanageId")
        taken = bool(made_for and made_for != emanage_id) or await asyncio.to_thread(
            _linked_elsewhere, context, shop_id, shopify_gid=gid
        )
        candidates.append(Candidate(str(node["sku"]), gid, node.get("id"), taken))
    match = match_by_sku(skus, candidates, side=Side.SHOPIFY)
    if match.product_id is None:
        return None, None, match
    return match.product_id, await _read_shopify(context, request.shop, match.product_id), match


async def _created_for(context: SyncContext, shop: str, emanage_id: str) -> str | None:
    """The Shopify product the engine created for ``emanage_id`` (its customId), or None."""

    def find() -> str | None:
        return context.products(shop).find_by_custom_id(
            METAFIELD_NAMESPACE, EMANAGE_ID_KEY, emanage_id
        )

    return await asyncio.to_thread(find)


def _linked_elsewhere(
    context: SyncContext,
    shop_id: int,
    *,
    emanage_id: str | None = None,
    shopify_gid: str | None = None,
) -> bool:
    """Whether another pair's link already holds this product of one side (a short read; the
    caller found no link of its own pair, so any link holding it is another pair's)."""
    column = SyncLink.emanage_id if emanage_id is not None else SyncLink.shopify_gid
    with context.shops.sessions() as session:
        found = session.scalar(
            select(SyncLink.id).where(
                SyncLink.shop_id == shop_id,
                SyncLink.kind == PRODUCT,
                column == (emanage_id if emanage_id is not None else shopify_gid),
            )
        )
    return found is not None


def _echo(link: LinkState | None, fetched: Fetched, side: Side) -> bool:
    """The fetched state is the one both sides last agreed on (an echo of our own write, a
    duplicate, a stale retry, an inventory-only change)."""
    if link is None:
        return False
    if fetched.product is None:
        # Gone, and the link already records it archived: nothing new.
        return link.archived
    expected = link.shopify_fingerprint if side is Side.SHOPIFY else link.emanage_fingerprint
    return (
        expected is not None
        and fingerprint(fetched.product) == expected
        # The same fields on other variant ids: Shopify replaced the variants (a productSet
        # without their ids), which is a re-link to record, not an echo.
        and same_variant_ids(link.variant_links, fetched.product, shopify=side is Side.SHOPIFY)
    )


def _log_change(
    request: Request, *, target: Side, obj: str | None, fields: Sequence[str], action: str
) -> None:
    source = Side.EMANAGE if target is Side.SHOPIFY else Side.SHOPIFY
    log.info(
        "sync.change_applied",
        shop=request.shop,
        object=obj,
        direction=f"{source.value}->{target.value}",
        action=action,
        fields=sorted(fields),
        correlation_id=request.correlation_id,
    )


def _changed_fields(plan: Plan, side: Side) -> set[str]:
    fields: set[str] = set()
    for w in plan.writes:
        if w.side is not side:
            continue
        if isinstance(w, UpdateProduct):
            fields |= set(w.fields)
        elif isinstance(w, UpdateVariants):
            for _, names in w.changes:
                fields |= {f"variant.{n}" for n in names}
        elif isinstance(w, CreateVariants):
            fields.add("variants+")
        elif isinstance(w, RemoveVariants):
            fields.add("variants-")
        elif isinstance(w, ReplaceProduct):
            fields.add("*")
    return fields


async def _write_shopify(
    context: SyncContext,
    request: Request,
    state: ShopState,
    plan: Plan,
    merged: Product,
    gid: str | None,
    emanage_id: str | None,
) -> tuple[str | None, datetime | None, bool]:
    """Execute the plan's Shopify writes; returns the product's gid, its new updatedAt and
    whether the variants were rewritten (their ids must be read back)."""
    writes = [w for w in plan.writes if w.side is Side.SHOPIFY]
    if not writes:
        return gid, None, False
    client = await asyncio.to_thread(context.products, request.shop)
    origin = {
        "namespace": METAFIELD_NAMESPACE,
        "key": ORIGIN_KEY,
        "type": "single_line_text_field",
        "value": request.correlation_id[:255],
    }
    fields = sorted(_changed_fields(plan, Side.SHOPIFY))
    for w in writes:
        if isinstance(w, Create):
            assert emanage_id is not None
            product_input = product_set_input(replace(w.product, shopify_id=None))
            product_input["variants"] = [
                {k: v for k, v in entry.items() if k != "id"} for entry in product_input["variants"]
            ]
            # The customId's metafield listed too: productSet deletes the metafields its
            # input does not list, so a retried create (an upsert of the product the first
            # attempt made) would otherwise strip it and the next retry create a second one.
            product_input["metafields"] = [
                origin,
                {
                    "namespace": METAFIELD_NAMESPACE,
                    "key": EMANAGE_ID_KEY,
                    "type": "single_line_text_field",
                    "value": emanage_id,
                },
            ]
            identifier = {
                "customId": {
                    "namespace": METAFIELD_NAMESPACE,
                    "key": EMANAGE_ID_KEY,
                    "value": emanage_id,
                }
            }
            created = await asyncio.to_thread(
                client.set_product, product_input, identifier=identifier
            )
            _log_change(
                request, target=Side.SHOPIFY, obj=created["id"], fields=["*"], action="create"
            )
            return str(created["id"]), _parse_time(created.get("updatedAt")), True
        if isinstance(w, Archive):
            assert gid is not None
            archived = await asyncio.to_thread(client.archive_product, gid)
            _log_change(request, target=Side.SHOPIFY, obj=gid, fields=["status"], action="archive")
            return gid, _parse_time(archived.get("updatedAt")), False
    assert gid is not None
    structural = any(
        isinstance(w, ReplaceProduct | CreateVariants | RemoveVariants) for w in writes
    )
    updated_at: datetime | None = None
    if structural:
        # productSet replaces lists wholesale: the merged product carries every variant (with
        # its id where it has one), so nothing of it is lost (pitfalls 10, 11).
        # No ``metafields``: productSet deletes every metafield a listed ``metafields`` leaves
        # out (the merchant's, other apps', the eManageCRM id); without it none is touched.
        product_input = product_set_input(merged)
        result = await asyncio.to_thread(client.set_product, product_input, identifier={"id": gid})
        _log_change(request, target=Side.SHOPIFY, obj=gid, fields=fields, action="replace")
        return gid, _parse_time(result.get("updatedAt")), True
    for w in writes:
        if isinstance(w, UpdateProduct):
            product_input = {
                _SHOPIFY_PRODUCT_FIELDS[name]: _product_field(merged, name)
                for name in w.fields
                if name in _SHOPIFY_PRODUCT_FIELDS
            }
            if "image" in w.fields and merged.image:
                product_input["files"] = [{"originalSource": merged.image, "contentType": "IMAGE"}]
            if product_input:
                # No variants, no productOptions and no metafields: a product-level change
                # leaves those lists as they are (pitfall 11).
                result = await asyncio.to_thread(
                    client.set_product, product_input, identifier={"id": gid}
                )
                updated_at = _parse_time(result.get("updatedAt")) or updated_at
        elif isinstance(w, UpdateVariants):
            inputs = [variant_bulk_input(v, names) for v, names in w.changes]
            await asyncio.to_thread(client.update_variants, gid, inputs)
    _log_change(request, target=Side.SHOPIFY, obj=gid, fields=fields, action="update")
    return gid, updated_at, False


def _product_field(product: Product, name: str) -> Any:
    if name == "status":
        return product.status.value
    return getattr(product, name)


def _parse_time(value: object) -> datetime | None:
    if not isinstance(value, str) or not value:
        return None
    return datetime.fromisoformat(value.replace("Z", "+00:00"))


async def _write_emanage(
    context: SyncContext,
    request: Request,
    state: ShopState,
    plan: Plan,
    merged: Product,
    emanage: Fetched | None,
    emanage_id: str | None,
    gid: str | None,
) -> tuple[str | None, int | None, datetime | None, Product | None]:
    """Execute the plan's eManageCRM writes (one request: the resource is written whole);
    returns its id, new version, clock and the product as eManageCRM now holds it."""
    writes = [w for w in plan.writes if w.side is Side.EMANAGE]
    fetched_version = emanage.version if emanage is not None else None
    if not writes:
        return emanage_id, fetched_version, None, None
    assert state.account_id is not None
    for w in writes:
        if isinstance(w, Create):
            assert gid is not None
            body = emanage_product(replace(w.product, emanage_id=None), currency=state.currency)
            try:
                created = await context.emanage.create_product(
                    account_id=state.account_id,
                    body=body,
                    idempotency_key=create_key(shop=request.shop, target="emanage", source_id=gid),
                    origin=ORIGIN,
                )
            except EmanageIdempotencyMismatch as exc:
                # The create's key already made this product from another state (the backfill's
                # batch, which writes outside the product's partition): it exists now, so read
                # again, match it by its external reference and merge.
                raise VersionMoved(str(exc)) from exc
            _log_change(
                request, target=Side.EMANAGE, obj=created.product_id, fields=["*"], action="create"
            )
            return (
                created.product_id,
                created.version,
                _aware(created.updated_at),
                product_from_emanage(created.body),
            )
        if isinstance(w, Archive):
            assert emanage_id is not None
            assert fetched_version is not None
            version = fetched_version
            key = write_key(
                shop=request.shop,
                target="emanage",
                object_id=emanage_id,
                action="archive",
                version=version,
                fingerprint="archived",
            )
            archived = await _version_guarded(
                context.emanage.archive_product(
                    account_id=state.account_id,
                    product_id=emanage_id,
                    version=version,
                    idempotency_key=key,
                    origin=ORIGIN,
                )
            )
            _log_change(
                request, target=Side.EMANAGE, obj=emanage_id, fields=["status"], action="archive"
            )
            return emanage_id, archived.version, _aware(archived.updated_at), None
    assert emanage_id is not None
    assert fetched_version is not None
    version = fetched_version
    target = replace(merged, emanage_id=emanage_id, shopify_id=gid or merged.shopify_id)
    body = emanage_product(target, currency=state.currency)
    key = write_key(
        shop=request.shop,
        target="emanage",
        object_id=emanage_id,
        action="update",
        version=version,
        fingerprint=fingerprint(target),
    )
    updated = await _version_guarded(
        context.emanage.update_product(
            account_id=state.account_id,
            product_id=emanage_id,
            body=body,
            version=version,
            idempotency_key=key,
            origin=ORIGIN,
        )
    )
    _log_change(
        request,
        target=Side.EMANAGE,
        obj=emanage_id,
        fields=sorted(_changed_fields(plan, Side.EMANAGE)),
        action="update",
    )
    return (
        emanage_id,
        updated.version,
        _aware(updated.updated_at),
        product_from_emanage(updated.body),
    )


async def _write_refs(
    context: SyncContext,
    request: Request,
    state: ShopState,
    target: Product,
    emanage_id: str,
    version: int,
) -> EmanageProduct:
    """Write the Shopify ids as the eManageCRM product's external references: ``target`` is
    the product as eManageCRM holds it with only its references changed
    (:func:`syncapp.sync.links.with_shopify_refs`), so its notification is an echo."""
    assert state.account_id is not None
    refs = [target.shopify_id, *sorted(f"{v.emanage_id}={v.shopify_id}" for v in target.variants)]
    key = write_key(
        shop=request.shop,
        target="emanage",
        object_id=emanage_id,
        action="refs",
        version=version,
        fingerprint="|".join(str(r) for r in refs),
    )
    written = await _version_guarded(
        context.emanage.update_product(
            account_id=state.account_id,
            product_id=emanage_id,
            body=emanage_product(replace(target, emanage_id=emanage_id), currency=state.currency),
            version=version,
            idempotency_key=key,
            origin=ORIGIN,
        )
    )
    _log_change(
        request, target=Side.EMANAGE, obj=emanage_id, fields=["externalRefs"], action="link"
    )
    return written


async def _version_guarded(call: Awaitable[EmanageProduct]) -> EmanageProduct:
    try:
        return await call
    except EmanageVersionConflict as exc:
        raise VersionMoved(str(exc)) from exc


async def _run(context: SyncContext, request: Request) -> Outcome:
    state = await asyncio.to_thread(read_state, context, request)
    if state is None:
        return Ack(note="shop not installed")
    if not state.keep:
        return Ack(note="Keep Products Synchronized is off")
    if state.account_id is None:
        # The sign-up has not connected eManageCRM yet; the backfill that follows it brings
        # this product over.
        log.info(
            "sync.no_emanage_account", shop=request.shop, correlation_id=request.correlation_id
        )
        return Ack(note="no eManageCRM account yet")
    link = state.link
    account = state.account_id
    gid = request.shopify_gid or (link.shopify_gid if link else None)
    eid = request.emanage_id or (link.emanage_id if link else None)

    if (
        request.trigger is Trigger.EMANAGE
        and link is not None
        and request.emanage_version is not None
        and link.emanage_version is not None
        and request.emanage_version <= link.emanage_version
    ):
        # The link already holds this version or a newer one of the product: a stale,
        # replayed or echoed notification.
        return Ack(note="stale eManageCRM notification")

    if request.unlinked_key and eid:
        # The pair's Shopify webhooks run under Product/<gid>, this event under another key,
        # so the two could run at once (duplicate writes). Once the pair has a Shopify
        # product (linked, or created by an attempt whose record a kill prevented), hand the
        # work to a resync under the Shopify key, which runs in turn with the webhooks.
        known = gid or await _created_for(context, request.shop, eid)
        if known:
            return Ack(apply=_hand_over(request, known, eid), note="handed to Product key")

    shopify: Fetched | None = None
    emanage: Fetched | None = None
    if request.trigger is Trigger.SHOPIFY or (request.trigger is Trigger.RESYNC and gid):
        if request.snapshot is not None and _snapshot_is_current(request.snapshot, link):
            shopify = _from_snapshot(request.snapshot)
        elif gid:
            shopify = await _read_shopify(context, request.shop, gid)
        if (
            request.trigger is Trigger.SHOPIFY
            and shopify is not None
            and _echo(link, shopify, Side.SHOPIFY)
        ):
            return Ack(note="unchanged since the agreed state")
    if request.trigger is Trigger.EMANAGE or (request.trigger is Trigger.RESYNC and eid):
        emanage = await _read_emanage(context, account, eid) if eid else Fetched(None)
        if request.trigger is Trigger.EMANAGE and _echo(link, emanage, Side.EMANAGE):
            return Ack(note="unchanged since the agreed state")

    # Unlinked: matched by external reference, then by SKU (creates are idempotent).
    match, matched_on = Match(), Side.SHOPIFY
    if shopify is None:
        if not gid and emanage is not None and emanage.product is not None:
            gid = emanage.product.shopify_id
        if not gid and link is None and eid and emanage is not None and emanage.product:
            # An eManageCRM product not linked yet: the product an earlier attempt created
            # (a kill before its record, a retry) is found by the id it was created with.
            gid = await _created_for(context, request.shop, eid)
        if gid:
            shopify = await _read_shopify(context, request.shop, gid)
        elif link is None and eid and emanage is not None and emanage.product is not None:
            gid, found, match = await _match_shopify(context, request, state.shop_id, eid, emanage)
            shopify = found or Fetched(None)
        else:
            shopify = Fetched(None)
    if emanage is None:
        if eid:
            emanage = await _read_emanage(context, account, eid)
        elif shopify.product is not None:
            eid, emanage, match = await _match_emanage(context, state.shop_id, account, shopify)
            matched_on = Side.EMANAGE
        emanage = emanage or Fetched(None)
    if match.refused:
        return Ack(
            apply=_record_refusal(
                state, link, match.shared, gid, eid, ambiguous=match.ambiguous, side=matched_on
            ),
            note="SKU match refused: recorded, nothing written",
        )
    if link is None and emanage.product is not None and emanage.product.shopify_id and not gid:
        gid = emanage.product.shopify_id

    plan = plan_product(
        agreed=link.agreed if link else _made_by_us(shopify, emanage),
        variant_links=link.variant_links if link else (),
        shopify=shopify.product,
        emanage=emanage.product,
        policy=context.policy,
    )
    if plan.shared_skus:
        return Ack(
            apply=_record_refusal(state, link, plan.shared_skus, gid, eid),
            note="shared SKU: recorded, nothing written",
        )
    if plan.agreed is None:
        return Ack(note="absent on both sides")
    if link is None and not plan.writes and shopify.product is None and emanage.product is None:
        return Ack(note="absent on both sides")

    merged = plan.agreed
    for relink in plan.relinks:
        # Shopify replaced a linked variant (the first option added): the link follows it.
        log.info(
            "sync.variant_relinked",
            shop=request.shop,
            old_variant=relink.old_shopify_id,
            new_variant=relink.new_shopify_id,
            emanage_variant=relink.emanage_id,
            correlation_id=request.correlation_id,
        )
    s_gid, s_updated, reread = await _write_shopify(context, request, state, plan, merged, gid, eid)
    # A product created in Shopify gets its eManageCRM counterpart's id through the link.
    e_id, e_version, e_updated, e_after = await _write_emanage(
        context, request, state, plan, merged, emanage, eid, s_gid
    )
    shopify_after: Product | None = shopify.product
    if reread and s_gid:
        shopify_after = (await _read_shopify(context, request.shop, s_gid)).product
    agreed = fill_ids(
        merged,
        shopify=shopify_after,
        emanage=e_after or emanage.product,
    )
    held = e_after or emanage.product
    archiving = any(isinstance(w, Archive) and w.side is Side.EMANAGE for w in plan.writes)
    if (
        e_id
        and held is not None
        and e_version is not None
        and not archiving
        and held.status is not ProductStatus.ARCHIVED
    ):
        referenced = with_shopify_refs(held, agreed)
        if referenced != held:
            written = await _write_refs(context, request, state, referenced, e_id, e_version)
            e_version, e_updated = written.version, _aware(written.updated_at)
    archived = agreed.status is ProductStatus.ARCHIVED and (
        shopify.product is None
        or emanage.product is None
        or any(isinstance(w, Archive) for w in plan.writes)
    )
    result = Outcomes(
        shopify_gid=s_gid,
        emanage_id=e_id,
        emanage_version=e_version,
        shopify_updated_at=s_updated or (shopify.product.updated_at if shopify.product else None),
        emanage_updated_at=e_updated or (emanage.product.updated_at if emanage.product else None),
        agreed=agreed,
    )
    note = f"{len(plan.writes)} writes" if plan.writes else "in agreement"
    return Ack(
        apply=_record(state, link, result, plan.conflicts, archived, request.correlation_id),
        note=note,
    )


def _hand_over(request: Request, gid: str, eid: str) -> Any:
    def apply(session: Session) -> None:
        request_resync(
            session,
            shop_domain=request.shop,
            reason=f"eManageCRM notification {request.correlation_id[:64]} of a linked pair",
            shopify_gid=gid,
            emanage_id=eid,
        )

    return apply


def _made_by_us(shopify: Fetched, emanage: Fetched) -> Product | None:
    """For a pair with no link: the side the engine itself wrote last, as the base of the
    merge. Its state is what the engine wrote (the create or write whose record a killed or
    retried handler never made), so a change made since on the other side is a change, not a
    conflict with an empty base (which the tie rule could settle for the stale side).

    A Shopify product is the engine's when it carries the eManageCRM id it was created with
    (the productSet customId); an eManageCRM product when its last write has our origin."""
    if shopify.product is not None and _metafield(shopify.raw or {}, "emanageId"):
        return shopify.product
    raw = emanage.raw
    if (
        emanage.product is not None
        and isinstance(raw, EmanageProduct)
        and raw.last_write_origin == ORIGIN
    ):
        return emanage.product
    return None


def _snapshot_is_current(snapshot: Mapping[str, Any], link: LinkState | None) -> bool:
    """A bulk snapshot stands in for a read unless the link holds a newer Shopify state (a
    webhook processed after the export began): then the snapshot is stale and is not used."""
    return snapshot_is_current(
        _parse_time(snapshot.get("updatedAt")), link.shopify_updated_at if link else None
    )


# ---------------------------------------------------------------- move 3: the fenced record


def _link_row(
    session: Session, state: ShopState, link: LinkState | None, gid: str | None, eid: str | None
) -> SyncLink:
    row = session.get(SyncLink, link.id) if link is not None else None
    if row is None:
        # Another event of the pair (the other side's notification, keyed differently while
        # unlinked) may have recorded the link meanwhile: join it rather than collide.
        row = _find_link(session, state.shop_id, gid, eid)
    if row is None:
        row = SyncLink(shop_id=state.shop_id, kind=PRODUCT)
        session.add(row)
    if gid:
        row.shopify_gid = gid
    if eid:
        row.emanage_id = eid
    return row


def link_columns(result: Outcomes, *, archived: bool, operation: str) -> dict[str, Any]:
    """What a product link records of an agreed outcome (column → value; a None clock or
    version keeps what the link had). Pure: the engine's fenced record and the backfill's
    bulk insert both take their values from here."""
    agreed = result.agreed
    assert agreed is not None
    fp = fingerprint(agreed)
    columns: dict[str, Any] = {
        "shopify_fingerprint": fp,
        "emanage_fingerprint": fp,
        "agreed": agreed_to_json(agreed),
        "sku": next((v.sku for v in agreed.variants if v.sku), None),
        "archived": archived,
        "last_operation": operation[:64],
        "updated_at": datetime.now(UTC),
    }
    if result.emanage_version is not None:
        columns["emanage_version"] = result.emanage_version
    if result.shopify_updated_at is not None:
        columns["shopify_updated_at"] = result.shopify_updated_at
    if result.emanage_updated_at is not None:
        columns["emanage_updated_at"] = result.emanage_updated_at
    return columns


def variant_link_columns(agreed: Product) -> list[dict[str, Any]]:
    """The variant links of an agreed product (without ``shop_id`` and ``parent_id``)."""
    return [
        {
            "kind": VARIANT,
            "shopify_gid": v.shopify_id,
            "emanage_id": v.emanage_id,
            "sku": v.sku,
            "agreed": {"options": list(v.options)},
        }
        for v in variant_links_of(agreed)
    ]


def _record(
    state: ShopState,
    link: LinkState | None,
    result: Outcomes,
    conflicts: Sequence[Conflict],
    archived: bool,
    operation: str,
) -> Any:
    def apply(session: Session) -> None:
        row = _link_row(session, state, link, result.shopify_gid, result.emanage_id)
        assert result.agreed is not None
        for name, value in link_columns(result, archived=archived, operation=operation).items():
            setattr(row, name, value)
        session.flush()
        session.execute(delete(SyncLink).where(SyncLink.parent_id == row.id))
        for columns in variant_link_columns(result.agreed):
            session.add(SyncLink(shop_id=state.shop_id, parent_id=row.id, **columns))
        for c in conflicts:
            session.add(
                SyncConflict(
                    shop_id=state.shop_id,
                    link_id=row.id,
                    kind="field",
                    field=c.field[:64],
                    shopify_value=c.shopify_value,
                    emanage_value=c.emanage_value,
                    winner=c.winner.value,
                    reason=c.reason,
                )
            )

    return apply


def _record_refusal(
    state: ShopState,
    link: LinkState | None,
    refused: Sequence[SharedSku],
    gid: str | None,
    eid: str | None,
    *,
    ambiguous: Sequence[str] = (),
    side: Side = Side.SHOPIFY,
) -> Any:
    def apply(session: Session) -> None:
        link_id = link.id if link is not None else None
        open_ = {
            (c.field, c.reason)
            for c in session.scalars(
                select(SyncConflict).where(
                    SyncConflict.shop_id == state.shop_id,
                    SyncConflict.kind.in_(("shared_sku", "ambiguous_match")),
                    SyncConflict.resolved_at.is_(None),
                )
            )
        }
        for s in refused:
            reason = (
                f"SKU {s.sku!r} is shared by {len(s.variant_ids)} variants in {s.side.value}"
                f" (product {gid or eid}): not linked automatically"
            )
            if (s.sku[:64], reason) in open_:
                continue  # the same refusal is recorded once while it is open
            ids = list(s.variant_ids)
            session.add(
                SyncConflict(
                    shop_id=state.shop_id,
                    link_id=link_id,
                    kind="shared_sku",
                    field=s.sku[:64],
                    shopify_value=ids if s.side is Side.SHOPIFY else None,
                    emanage_value=ids if s.side is Side.EMANAGE else None,
                    winner=None,
                    reason=reason,
                )
            )
        if ambiguous:
            reason = (
                f"the SKUs of product {gid or eid} match {len(ambiguous)} products in"
                f" {side.value}: not linked automatically"
            )
            if (None, reason) not in open_:
                ids = list(ambiguous)
                session.add(
                    SyncConflict(
                        shop_id=state.shop_id,
                        link_id=link_id,
                        kind="ambiguous_match",
                        field=None,
                        shopify_value=ids if side is Side.SHOPIFY else None,
                        emanage_value=ids if side is Side.EMANAGE else None,
                        winner=None,
                        reason=reason,
                    )
                )

    return apply


# ---------------------------------------------------------------- errors → outcomes


async def reconcile(context: SyncContext, request: Request) -> Outcome:
    """Reconcile the pair ``request`` names; the bus outcome (see the module docstring)."""
    for attempt in range(1, MAX_VERSION_RETRIES + 1):
        try:
            return await _run(context, request)
        except VersionMoved as exc:
            # The product changed between our read and our write: read it again and plan
            # against what it is now.
            log.info(
                "sync.version_moved",
                shop=request.shop,
                attempt=attempt,
                correlation_id=request.correlation_id,
            )
            last = exc
        except ShopNotInstalled:
            return Ack(note="shop not installed")
        except UnmappableProduct as exc:
            return DeadLetter(f"unmappable product: {exc}")
        except TransientConnectorError as exc:
            return Retry(f"{exc.system}: {exc}", after=exc.retry_after)
        except PermanentConnectorError as exc:
            return DeadLetter(f"{exc.system} refused: {exc}")
        except ConnectorError as exc:
            # Neither transient nor permanent: refused credentials (a revoked Shopify token, an
            # eManageCRM client whose secret changed). Fixing them is configuration, after
            # which the same event succeeds, so it waits in retries rather than dead letters.
            return Retry(f"{exc.system} sign-in: {exc}")
    return Retry(f"eManageCRM product kept changing under the write: {last}")
