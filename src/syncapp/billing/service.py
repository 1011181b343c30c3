"""Billing through Shopify's Billing API: choosing a plan, reading back what Shopify bills,
keeping it current from ``app_subscriptions/update`` webhooks, and billing usage.

Flow: :func:`choose_plan` creates a PENDING subscription (``appSubscriptionCreate``) and
returns its ``confirmationUrl``; the merchant approves on Shopify's page, which sends the admin
to ``returnUrl`` (an App Home route) where :func:`refresh_from_shopify` reads
``currentAppInstallation`` and records the active plan. :func:`handle_subscription_update`
(the worker's handler) applies every later status change. Choosing the free plan cancels the
paid subscription (``appSubscriptionCancel``).

Functions that call Shopify take the :class:`~syncapp.shops.runtime.ShopsRuntime` and open
their own short transactions (never one held across an HTTP call); the webhook handler runs in
the worker's transaction.
"""

from __future__ import annotations

from dataclasses import dataclass
from datetime import datetime
from decimal import Decimal
from typing import Any

import structlog
from sqlalchemy import select
from sqlalchemy.orm import Session

from syncapp.billing.models import AppSubscription
from syncapp.billing.payloads import SubscriptionUpdate
from syncapp.billing.plans import Catalog, Features, Plan, features_for, line_items
from syncapp.bus.models import InboundEvent
from syncapp.connectors.shopify.admin import run_document
from syncapp.errors import SyncAppError
from syncapp.shops.errors import ShopNotInstalled
from syncapp.shops.payloads import check_shop, parse, shop_gid_id
from syncapp.shops.runtime import ShopsRuntime, utc
from syncapp.shops.tokens import get_admin_token
from syncapp.store.models import Shop

__all__ = [
    "BillingError",
    "PlanState",
    "choose_plan",
    "handle_subscription_update",
    "plan_state",
    "record_usage",
    "refresh_from_shopify",
]

log = structlog.get_logger("syncapp.billing")

ACTIVE = "ACTIVE"
PENDING = "PENDING"
# A subscription in one of these states will never bill again.
TERMINAL = frozenset({"CANCELLED", "DECLINED", "EXPIRED"})
# Still the shop's subscription (FROZEN: Shopify suspended billing; the plan's features are off
# until it is ACTIVE again) — cancelled when the merchant moves to the free plan.
CANCELLABLE = frozenset({ACTIVE, "FROZEN", "ACCEPTED"})


class BillingError(SyncAppError):
    """A plan change cannot be made as asked; the message tells the merchant why."""


class ConfirmationNeeded(BillingError):
    """The change cancels a paid plan: it is made only when sent again with ``confirmed``.
    The message says what the merchant loses."""


class AlreadyOnPlan(BillingError):
    """The shop is on the asked plan already, and it is active: nothing to change (a 409, the
    state conflicts with the request, unlike an unknown plan)."""


@dataclass(frozen=True, slots=True)
class PlanState:
    """The shop's plan as the App Home shows it."""

    plan: Plan
    features: Features
    status: str | None  # of the subscription behind a paid plan; None on the free plan
    subscription_gid: str | None
    test: bool
    frozen_plan: Plan | None  # a paid plan whose billing Shopify has frozen
    pending_plan: Plan | None  # a plan waiting for the merchant's approval
    declined_plan: Plan | None = None  # the newest charge, which the merchant declined


def _shop_id(session: Session, shop: str) -> int:
    shop_id = session.scalar(select(Shop.id).where(Shop.domain == shop))
    if shop_id is None:
        raise ShopNotInstalled(f"{shop} is not installed", shop=shop)
    return shop_id


def plan_state(session: Session, *, shop_id: int, catalog: Catalog) -> PlanState:
    """The shop's current plan: that of its newest ACTIVE subscription, else the free plan."""
    rows = session.scalars(
        select(AppSubscription)
        .where(AppSubscription.shop_id == shop_id)
        .order_by(AppSubscription.id.desc())
    ).all()
    active = next((r for r in rows if r.status == ACTIVE and catalog.get(r.plan)), None)
    frozen = next((r for r in rows if r.status == "FROZEN" and catalog.get(r.plan)), None)
    newest = rows[0] if rows else None
    pending = catalog.get(newest.plan) if newest is not None and newest.status == PENDING else None
    declined = (
        catalog.get(newest.plan) if newest is not None and newest.status == "DECLINED" else None
    )
    plan = catalog.get(active.plan) if active else None
    plan = plan or catalog.free
    return PlanState(
        plan=plan,
        features=features_for(plan),
        status=active.status if active else (frozen.status if frozen else None),
        subscription_gid=active.subscription_gid if active else None,
        test=active.test if active else False,
        frozen_plan=catalog.get(frozen.plan) if frozen and not active else None,
        pending_plan=pending,
        declined_plan=declined,
    )


def charge_outcome(
    session: Session, *, shop_id: int, charge_id: str, catalog: Catalog
) -> tuple[str, Plan] | None:
    """The recorded status and plan of the charge the billing return names (``charge_id``,
    the subscription's numeric id), or None when it is not this shop's."""
    if not charge_id.isdigit():
        return None
    row = session.scalar(
        select(AppSubscription).where(
            AppSubscription.shop_id == shop_id,
            AppSubscription.subscription_gid == f"gid://shopify/AppSubscription/{charge_id}",
        )
    )
    plan = catalog.get(row.plan) if row is not None else None
    return (row.status, plan) if row is not None and plan is not None else None


def _user_errors(payload: dict[str, Any], what: str) -> None:
    errors = payload.get("userErrors") or []
    if errors:
        messages = "; ".join(str(e.get("message")) for e in errors)
        raise BillingError(f"Shopify refused to {what}: {messages}")


def _admin(runtime: ShopsRuntime, shop: str, name: str, variables: dict[str, Any]) -> Any:
    token = get_admin_token(runtime, shop=shop)
    with runtime.http() as http:
        return run_document(
            name,
            variables,
            shop=shop,
            access_token=token,
            api_version=runtime.api_version,
            http=http,
        )


def choose_plan(
    runtime: ShopsRuntime,
    *,
    shop: str,
    plan_handle: str,
    catalog: Catalog,
    return_url: str,
    test: bool,
    confirmed: bool = False,
) -> str | None:
    """Move ``shop`` to ``plan_handle``: the confirmation URL the merchant must approve for a
    paid plan, or None when the change is done (the free plan: the paid one is cancelled).

    Cancelling a paid plan raises ConfirmationNeeded unless ``confirmed``."""
    plan = catalog.get(plan_handle)
    if plan is None:
        choices = ", ".join(p.handle for p in catalog.plans)
        raise BillingError(f"There is no plan {plan_handle!r}; choose one of {choices}.")
    with runtime.sessions() as session:
        shop_id = _shop_id(session, shop)
        current = plan_state(session, shop_id=shop_id, catalog=catalog)
        live = session.scalars(
            select(AppSubscription).where(
                AppSubscription.shop_id == shop_id, AppSubscription.status.in_(CANCELLABLE)
            )
        ).all()
        live_gids = [r.subscription_gid for r in live]
    if plan.is_free and live_gids and not confirmed:
        raise ConfirmationNeeded(
            f"Moving to {plan.name} cancels the {current.plan.name} plan now: Shopify stops "
            "billing it (prorated) and its features end"
            + (
                ", including your own eManageCRM subscription and order sync."
                if current.features.dedicated_emanage or current.features.order_sync
                else "."
            )
        )
    if plan.is_free:
        for gid in live_gids:
            data = _admin(runtime, shop, "app_subscription_cancel", {"id": gid, "prorate": True})
            payload = data["appSubscriptionCancel"]
            _user_errors(payload, "cancel the subscription")
            _set_status(runtime, shop_id, gid, str(payload["appSubscription"]["status"]))
        log.info("billing.downgraded", shop=shop, cancelled=len(live_gids))
        return None
    if current.plan.handle == plan.handle and current.status == ACTIVE:
        raise AlreadyOnPlan(f"This store is already on the {plan.name} plan.")
    data = _admin(
        runtime,
        shop,
        "app_subscription_create",
        {
            "name": plan.subscription_name,
            "returnUrl": return_url,
            "lineItems": line_items(plan),
            "test": test,
            # The new plan replaces the old one as soon as the merchant approves it.
            "replacementBehavior": "APPLY_IMMEDIATELY",
        },
    )
    payload = data["appSubscriptionCreate"]
    _user_errors(payload, f"create the {plan.name} subscription")
    created = payload["appSubscription"]
    with runtime.sessions() as session, session.begin():
        session.add(
            AppSubscription(
                shop_id=shop_id,
                subscription_gid=str(created["id"]),
                plan=plan.handle,
                name=str(created["name"]),
                status=str(created["status"]),
                test=bool(created["test"]),
            )
        )
    log.info("billing.subscription_created", shop=shop, plan=plan.handle, gid=created["id"])
    return str(payload["confirmationUrl"])


def _set_status(runtime: ShopsRuntime, shop_id: int, gid: str, status: str) -> None:
    with runtime.sessions() as session, session.begin():
        row = session.scalar(
            select(AppSubscription).where(
                AppSubscription.shop_id == shop_id, AppSubscription.subscription_gid == gid
            )
        )
        if row is not None:
            row.status = status


def refresh_from_shopify(runtime: ShopsRuntime, *, shop: str, catalog: Catalog) -> PlanState:
    """Read what Shopify bills the shop for now and record it; the shop's plan afterwards.

    Subscriptions the app did not record (its process died between asking Shopify and
    writing the row) are adopted when their name is one of the catalog's plans.
    """
    data = _admin(runtime, shop, "current_app_installation", {})
    installation = data["currentAppInstallation"]
    seen: dict[str, dict[str, Any]] = {}
    for node in installation["allSubscriptions"]["nodes"]:
        seen[str(node["id"])] = node
    for node in installation["activeSubscriptions"]:
        seen[str(node["id"])] = node
    with runtime.sessions() as session, session.begin():
        shop_id = _shop_id(session, shop)
        rows = {
            r.subscription_gid: r
            for r in session.scalars(
                select(AppSubscription).where(AppSubscription.shop_id == shop_id)
            )
        }
        for gid, node in seen.items():
            row = rows.get(gid)
            if row is None:
                plan = catalog.by_subscription_name(str(node["name"]))
                if plan is None:
                    continue
                row = AppSubscription(
                    shop_id=shop_id,
                    subscription_gid=gid,
                    plan=plan.handle,
                    name=str(node["name"]),
                    test=bool(node["test"]),
                )
                session.add(row)
            row.status = str(node["status"])
        session.flush()
        state = plan_state(session, shop_id=shop_id, catalog=catalog)
    log.info("billing.refreshed", shop=shop, plan=state.plan.handle, status=state.status)
    return state


def cancel_on_uninstall(session: Session, shop: Shop) -> None:
    """Uninstall hook: the shop's live subscriptions are CANCELLED, as Shopify cancels an
    app's charges when it is uninstalled — and sends no ``app_subscriptions/update`` for them
    (the app's webhooks go with it). Without this a reinstalled shop showed its old paid plan
    as active. Runs in the uninstall handler's transaction."""
    rows = session.scalars(
        select(AppSubscription).where(
            AppSubscription.shop_id == shop.id, AppSubscription.status.in_(CANCELLABLE)
        )
    ).all()
    for row in rows:
        row.status = "CANCELLED"
    if rows:
        log.info("billing.cancelled_by_uninstall", shop=shop.domain, subscriptions=len(rows))


def _parse_time(value: Any) -> datetime | None:
    if not isinstance(value, str) or not value:
        return None
    try:
        return utc(datetime.fromisoformat(value.replace("Z", "+00:00")))
    except ValueError:
        return None


def handle_subscription_update(session: Session, runtime: ShopsRuntime, event: InboundEvent) -> str:
    """The worker's ``app_subscriptions/update`` handler: record the subscription's status.

    Returns ``updated``, ``unchanged`` (the change already recorded), ``stale`` (an older
    change than the one recorded), ``unknown`` (a subscription of another shop or one the app
    never asked for) or ``no_shop`` (uninstalled and redacted since). A payload of another
    topic, or naming another shop, is refused (:mod:`syncapp.billing.payloads`).
    """
    sub = parse(SubscriptionUpdate, event, runtime.payload_of(event)).app_subscription
    shop = session.scalar(select(Shop).where(Shop.domain == event.shop_domain))
    if sub.admin_graphql_api_shop_id is not None:
        check_shop(
            event,
            named_domain=event.shop_domain,
            named_id=shop_gid_id(sub.admin_graphql_api_shop_id),
            shop=shop,
        )
    if shop is None:
        return "no_shop"
    shop_id = shop.id
    row = session.scalar(
        select(AppSubscription).where(
            AppSubscription.shop_id == shop_id,
            AppSubscription.subscription_gid == sub.admin_graphql_api_id,
        )
    )
    if row is None:
        # Another shop's subscription (a replayed body) or one the app never asked for.
        log.warning("billing.unknown_subscription", gid=sub.admin_graphql_api_id)
        return "unknown"
    status = sub.status.upper()
    changed_at = _parse_time(sub.updated_at)
    recorded = utc(row.shopify_updated_at) if row.shopify_updated_at else None
    if status == row.status and changed_at in (None, recorded):
        return "unchanged"  # a redelivery or a replay of the change already recorded
    if recorded is not None and changed_at is not None:
        older = changed_at < recorded
        # Within one second: a terminal status wins, since nothing follows it.
        tie_lost = changed_at == recorded and status not in TERMINAL
        if older or tie_lost:
            return "stale"
    row.status = status
    row.shopify_updated_at = changed_at or row.shopify_updated_at
    log.info("billing.status", gid=row.subscription_gid, plan=row.plan, status=status)
    return "updated"


def record_usage(
    runtime: ShopsRuntime,
    *,
    shop: str,
    catalog: Catalog,
    description: str,
    idempotency_key: str,
    quantity: int = 1,
) -> str:
    """Bill ``quantity`` units of the active plan's usage line (e.g. funnel orders); the
    usage record's GID. The same ``idempotency_key`` bills once however often it is sent."""
    if quantity < 1:
        raise ValueError("quantity must be at least 1")
    data = _admin(runtime, shop, "current_app_installation", {})
    for sub in data["currentAppInstallation"]["activeSubscriptions"]:
        plan = catalog.by_subscription_name(str(sub["name"]))
        if plan is None or plan.usage_price is None:
            continue
        for item in sub["lineItems"]:
            details = item["plan"]["pricingDetails"]
            if details["__typename"] != "AppUsagePricing":
                continue
            price = plan.usage_price * Decimal(quantity)
            created = _admin(
                runtime,
                shop,
                "app_usage_record_create",
                {
                    "subscriptionLineItemId": item["id"],
                    "price": {"amount": str(price), "currencyCode": plan.currency},
                    "description": description,
                    "idempotencyKey": idempotency_key,
                },
            )["appUsageRecordCreate"]
            _user_errors(created, "record the usage charge")
            return str(created["appUsageRecord"]["id"])
    raise BillingError("The store's plan has no usage charges; nothing was billed.")
