"""The Billing API of the Admin schema: ``appSubscriptionCreate``, ``appSubscriptionCancel``,
``appUsageRecordCreate``, ``currentAppInstallation`` and ``node(id:)`` for subscriptions and
usage records, over the rows of :mod:`billing_store`.

Inputs are checked as Shopify checks them and refused with ``userErrors``; what the sandbox
does not model (discounts, deferred replacement) is refused with ``NotImplementedInSandbox``.
The merchant's side — approving or declining at ``confirmationUrl`` — is the sandbox's
confirmation page (:mod:`syncapp.sandbox.shopify.embedded`).

The sandbox's shops are paid stores (``plan.partnerDevelopment`` is false), so a charge with
``test: false`` is accepted and recorded as a real charge, as Shopify would on such a store.
"""

from __future__ import annotations

import hashlib
from collections.abc import Callable
from decimal import Decimal
from typing import Any
from urllib.parse import urlparse

from syncapp.sandbox.shopify import oauth
from syncapp.sandbox.shopify.app_identity import app_identity
from syncapp.sandbox.shopify.graphql_api import billing_store
from syncapp.sandbox.shopify.graphql_api.context import Context
from syncapp.sandbox.shopify.graphql_api.errors import NotImplementedInSandbox
from syncapp.sandbox.shopify.graphql_api.ids import gid, legacy_id
from syncapp.sandbox.shopify.graphql_api.mutations import Errors, parse_money, savepoint
from syncapp.sandbox.shopify.graphql_api.pagination import PageArgs, connection, fetch_page

Resolver = Callable[[Any, Context, dict[str, Any]], Any]

MAX_IDEMPOTENCY_KEY = 255

# ---- values ----------------------------------------------------------------------------------


def _money(amount: Decimal | str, currency: str) -> dict[str, Any]:
    return {
        "__typename": "MoneyV2",
        "amount": billing_store.decimal_text(Decimal(amount)),
        "currencyCode": currency,
    }


def line_item_gid(item: dict[str, Any]) -> str:
    # Shopify's line item ids carry a version and index query; clients treat them as opaque.
    return f"{gid('AppSubscriptionLineItem', item['id'])}?v=1&index={item['position']}"


def line_item_node(ctx: Context, item: dict[str, Any], currency: str) -> dict[str, Any]:
    if item["kind"] == "RECURRING":
        details: dict[str, Any] = {
            "__typename": "AppRecurringPricing",
            "interval": item["interval"],
            "price": _money(item["price"], currency),
            "discount": None,
            "planHandle": None,
        }
    else:
        details = {
            "__typename": "AppUsagePricing",
            "interval": item["interval"],
            "cappedAmount": _money(item["capped_amount"], currency),
            "balanceUsed": _money(billing_store.balance_used(ctx.conn, item["id"]), currency),
            "terms": item["terms"],
        }
    return {
        "__typename": "AppSubscriptionLineItem",
        "_pk": item["id"],
        "_currency": currency,
        "id": line_item_gid(item),
        "plan": {"__typename": "AppPlanV2", "pricingDetails": details},
    }


def subscription_node(ctx: Context, row: dict[str, Any]) -> dict[str, Any]:
    items = billing_store.line_items_of(ctx.conn, row["id"])
    return {
        "__typename": "AppSubscription",
        "_pk": row["id"],
        "id": gid("AppSubscription", row["id"]),
        "name": row["name"],
        "status": row["status"],
        "test": bool(row["test"]),
        "trialDays": row["trial_days"],
        "returnUrl": row["return_url"],
        "createdAt": row["created_at"],
        "currentPeriodEnd": row["current_period_end"] if row["status"] == "ACTIVE" else None,
        "lineItems": [line_item_node(ctx, item, row["currency"]) for item in items],
    }


def usage_record_node(row: dict[str, Any], currency: str) -> dict[str, Any]:
    return {
        "__typename": "AppUsageRecord",
        "_line_item_id": row["line_item_id"],
        "id": gid("AppUsageRecord", row["id"]),
        "createdAt": row["created_at"],
        "description": row["description"],
        "idempotencyKey": row["idempotency_key"],
        "price": _money(row["price"], currency),
    }


def _app_node(ctx: Context) -> dict[str, Any]:
    config = ctx.state.config
    identity = app_identity(config)
    # A stable number for the one app the sandbox knows, derived from its client id.
    number = int(hashlib.sha256(config.client_id.encode()).hexdigest()[:10], 16)
    return {
        "__typename": "App",
        "id": gid("App", number),
        "apiKey": config.client_id,
        "handle": identity.handle,
        "title": identity.name,
        "embedded": True,
        "launchUrl": _launch_url(ctx),
    }


def _launch_url(ctx: Context) -> str:
    shop_handle = ctx.shop.domain.removesuffix(".myshopify.com")
    handle = app_identity(ctx.state.config).handle
    return f"{ctx.state.config.public_url.rstrip('/')}/store/{shop_handle}/apps/{handle}"


def installation_node(ctx: Context) -> dict[str, Any]:
    scopes = [s for s in oauth.granted_scopes(ctx.state.config).split(",") if s]
    return {
        "__typename": "AppInstallation",
        "id": gid("AppInstallation", ctx.shop.id),
        "app": _app_node(ctx),
        "launchUrl": _launch_url(ctx),
        "uninstallUrl": None,
        "accessScopes": [
            {"__typename": "AccessScope", "handle": s, "description": s.replace("_", " ")}
            for s in scopes
        ],
    }


def subscription_by_gid(ctx: Context, value: str) -> dict[str, Any] | None:
    number = legacy_id(value, "AppSubscription")
    row = billing_store.get_subscription(ctx.conn, ctx.shop.domain, number) if number else None
    return subscription_node(ctx, row) if row else None


def usage_record_by_gid(ctx: Context, value: str) -> dict[str, Any] | None:
    number = legacy_id(value, "AppUsageRecord")
    row = billing_store.get_usage_record(ctx.conn, ctx.shop.domain, number) if number else None
    if row is None:
        return None
    item = billing_store.get_line_item(ctx.conn, ctx.shop.domain, row["line_item_id"])
    assert item is not None
    subscription = billing_store.get_subscription(
        ctx.conn, ctx.shop.domain, item["subscription_id"]
    )
    assert subscription is not None
    return usage_record_node(row, subscription["currency"])


# ---- query resolvers -------------------------------------------------------------------------


def current_app_installation(_: Any, ctx: Context, args: dict[str, Any]) -> dict[str, Any]:
    return installation_node(ctx)


def active_subscriptions(_: Any, ctx: Context, args: dict[str, Any]) -> list[dict[str, Any]]:
    rows = billing_store.subscriptions_with_status(ctx.conn, ctx.shop.domain, ("ACTIVE",))
    return [subscription_node(ctx, row) for row in rows]


def all_subscriptions(_: Any, ctx: Context, args: dict[str, Any]) -> dict[str, Any]:
    page = fetch_page(
        ctx.conn,
        table="sb_app_subscriptions s",
        where="s.shop_domain = ?",
        params=[ctx.shop.domain],
        sort_expr="s.created_at" if (args.get("sortKey") or "ID") == "CREATED_AT" else "s.id",
        id_expr="s.id",
        page=PageArgs.from_args(args, unbounded=ctx.bulk),
        select="s.*",
    )
    return connection("AppSubscription", page, [subscription_node(ctx, r) for r in page.rows])


def usage_records(src: dict[str, Any], ctx: Context, args: dict[str, Any]) -> dict[str, Any]:
    page = fetch_page(
        ctx.conn,
        table="sb_app_usage_records r",
        where="r.line_item_id = ?",
        params=[src["_pk"]],
        sort_expr="r.created_at"
        if (args.get("sortKey") or "CREATED_AT") == "CREATED_AT"
        else "r.id",
        id_expr="r.id",
        page=PageArgs.from_args(args, unbounded=ctx.bulk),
        select="r.*",
    )
    built = [usage_record_node(r, src["_currency"]) for r in page.rows]
    return connection("AppUsageRecord", page, built)


def usage_record_line_item(src: dict[str, Any], ctx: Context, args: dict[str, Any]) -> Any:
    item = billing_store.get_line_item(ctx.conn, ctx.shop.domain, src["_line_item_id"])
    assert item is not None
    subscription = billing_store.get_subscription(
        ctx.conn, ctx.shop.domain, item["subscription_id"]
    )
    assert subscription is not None
    return line_item_node(ctx, item, subscription["currency"])


# ---- appSubscriptionCreate -------------------------------------------------------------------


def _parse_line_items(
    ctx: Context, inputs: list[dict[str, Any]], errors: Errors
) -> tuple[list[billing_store.LineItemSpec], str | None]:
    """Validated line items and their one currency (None when there is nothing valid)."""
    specs: list[billing_store.LineItemSpec] = []
    currencies: set[str] = set()
    if not inputs:
        errors.add(["lineItems"], "Line items can't be blank")
    if len(inputs) > 2:
        errors.add(["lineItems"], "A subscription can have at most 2 line items")
    for index, entry in enumerate(inputs):
        plan = entry.get("plan") or {}
        path = ["lineItems", str(index), "plan"]
        recurring, usage = (
            plan.get("appRecurringPricingDetails"),
            plan.get("appUsagePricingDetails"),
        )
        if (recurring is None) == (usage is None):
            errors.add(path, "Each line item needs exactly one of recurring or usage pricing")
            continue
        if recurring is not None:
            if recurring.get("discount") is not None:
                raise NotImplementedInSandbox("Input field 'AppRecurringPricingInput.discount'")
            amount = parse_money(recurring["price"]["amount"])
            if amount is None or amount <= 0:
                errors.add(
                    [*path, "appRecurringPricingDetails", "price"], "Price must be greater than 0"
                )
                continue
            currencies.add(recurring["price"]["currencyCode"])
            interval = recurring.get("interval") or "EVERY_30_DAYS"
            specs.append(billing_store.LineItemSpec("RECURRING", interval, price=amount))
        else:
            assert usage is not None
            cap = parse_money(usage["cappedAmount"]["amount"])
            terms = (usage.get("terms") or "").strip()
            details_path = [*path, "appUsagePricingDetails"]
            if cap is None or cap <= 0:
                errors.add([*details_path, "cappedAmount"], "Capped amount must be greater than 0")
                continue
            if not terms:
                errors.add([*details_path, "terms"], "Terms can't be blank")
                continue
            currencies.add(usage["cappedAmount"]["currencyCode"])
            # Usage is capped per billing period, which the recurring item (if any) sets.
            specs.append(
                billing_store.LineItemSpec("USAGE", "EVERY_30_DAYS", capped_amount=cap, terms=terms)
            )
    kinds = [s.kind for s in specs]
    if len(kinds) != len(set(kinds)):
        errors.add(
            ["lineItems"],
            "A subscription can have at most one recurring and one usage line item",
        )
    recurring_specs = [s for s in specs if s.kind == "RECURRING"]
    if recurring_specs:
        # The usage cap applies per period of the recurring item.
        specs = [
            billing_store.LineItemSpec(
                s.kind, recurring_specs[0].interval, s.price, s.capped_amount, s.terms
            )
            if s.kind == "USAGE"
            else s
            for s in specs
        ]
    if len(currencies) > 1:
        errors.add(["lineItems"], "All line items must use the same currency")
        return specs, None
    currency = next(iter(currencies), None)
    if currency is not None and currency not in ("USD", ctx.shop.currency_code):
        errors.add(
            ["lineItems"],
            f"Currency must be USD or the shop's billing currency ({ctx.shop.currency_code})",
        )
    return specs, currency


def _reject_deferred_replacement(
    ctx: Context, behavior: str, specs: list[billing_store.LineItemSpec], currency: str
) -> None:
    """Deferring a replacement to the next billing cycle is not modelled: say so loudly."""
    if behavior == "APPLY_ON_NEXT_BILLING_CYCLE":
        raise NotImplementedInSandbox("replacementBehavior APPLY_ON_NEXT_BILLING_CYCLE")
    if behavior != "STANDARD":
        return
    new = next((s for s in specs if s.kind == "RECURRING"), None)
    if new is None:
        return
    for current in billing_store.subscriptions_with_status(
        ctx.conn, ctx.shop.domain, billing_store.BILLING_STATUSES
    ):
        old = next(
            (
                i
                for i in billing_store.line_items_of(ctx.conn, current["id"])
                if i["kind"] == "RECURRING"
            ),
            None,
        )
        if old is None or old["interval"] != "ANNUAL" or current["currency"] != currency:
            continue
        cheaper_annual = (
            new.interval == "ANNUAL" and new.price is not None and new.price < Decimal(old["price"])
        )
        if cheaper_annual or new.interval == "EVERY_30_DAYS":
            raise NotImplementedInSandbox(
                "replacementBehavior STANDARD replacing an annual subscription (Shopify defers"
                " it to the next billing cycle); use APPLY_IMMEDIATELY"
            )


def _create_payload(
    subscription: dict[str, Any] | None, url: str | None, errors: Errors
) -> dict[str, Any]:
    return {
        "__typename": "AppSubscriptionCreatePayload",
        "appSubscription": subscription,
        "confirmationUrl": url,
        "userErrors": errors.items,
    }


def confirmation_url(ctx: Context, subscription_id: int) -> str:
    shop_handle = ctx.shop.domain.removesuffix(".myshopify.com")
    base = ctx.state.config.public_url.rstrip("/")
    return f"{base}/store/{shop_handle}/charges/{subscription_id}/confirm"


def app_subscription_create(_: Any, ctx: Context, args: dict[str, Any]) -> dict[str, Any]:
    errors = Errors("UserError")
    name = (args.get("name") or "").strip()
    if not name:
        errors.add(["name"], "Name can't be blank")
    elif len(name) > 255:
        errors.add(["name"], "Name is too long (maximum is 255 characters)")
    return_url = str(args.get("returnUrl") or "")
    if urlparse(return_url).scheme not in ("http", "https") or not urlparse(return_url).netloc:
        errors.add(["returnUrl"], "Return URL must be an absolute http or https URL")
    trial_days = args.get("trialDays") or 0
    if trial_days < 0:
        errors.add(["trialDays"], "Trial days must be greater than or equal to 0")
    specs, currency = _parse_line_items(ctx, list(args.get("lineItems") or []), errors)
    if errors or currency is None:
        return _create_payload(None, None, errors)
    behavior = args.get("replacementBehavior") or "STANDARD"
    _reject_deferred_replacement(ctx, behavior, specs, currency)
    with savepoint(ctx.conn):
        subscription_id = billing_store.create_subscription(
            ctx.conn,
            shop_domain=ctx.shop.domain,
            name=name,
            return_url=return_url,
            test=bool(args.get("test")),
            trial_days=trial_days,
            replacement_behavior=behavior,
            currency=currency,
            line_items=specs,
        )
    row = billing_store.get_subscription(ctx.conn, ctx.shop.domain, subscription_id)
    assert row is not None
    return _create_payload(
        subscription_node(ctx, row), confirmation_url(ctx, subscription_id), errors
    )


# ---- appSubscriptionCancel -------------------------------------------------------------------


def app_subscription_cancel(_: Any, ctx: Context, args: dict[str, Any]) -> dict[str, Any]:
    errors = Errors("UserError")
    number = legacy_id(args["id"], "AppSubscription")
    row = billing_store.get_subscription(ctx.conn, ctx.shop.domain, number) if number else None
    if row is None:
        errors.add(["id"], "Subscription not found")
        return {
            "__typename": "AppSubscriptionCancelPayload",
            "appSubscription": None,
            "userErrors": errors.items,
        }
    # prorate only changes what Shopify credits on the next invoice; the sandbox has no invoices.
    try:
        with savepoint(ctx.conn):
            row = billing_store.cancel(ctx.conn, row)
    except billing_store.BillingStateError as exc:
        errors.add(["id"], str(exc).capitalize())
    return {
        "__typename": "AppSubscriptionCancelPayload",
        "appSubscription": subscription_node(ctx, row),
        "userErrors": errors.items,
    }


# ---- appUsageRecordCreate --------------------------------------------------------------------


def _usage_payload(record: dict[str, Any] | None, errors: Errors) -> dict[str, Any]:
    return {
        "__typename": "AppUsageRecordCreatePayload",
        "appUsageRecord": record,
        "userErrors": errors.items,
    }


def app_usage_record_create(_: Any, ctx: Context, args: dict[str, Any]) -> dict[str, Any]:
    errors = Errors("UserError")
    number = legacy_id(args["subscriptionLineItemId"], "AppSubscriptionLineItem")
    item = billing_store.get_line_item(ctx.conn, ctx.shop.domain, number) if number else None
    subscription = (
        billing_store.get_subscription(ctx.conn, ctx.shop.domain, item["subscription_id"])
        if item
        else None
    )
    if item is None or subscription is None:
        errors.add(["subscriptionLineItemId"], "Subscription line item not found")
        return _usage_payload(None, errors)
    if item["kind"] != "USAGE":
        errors.add(
            ["subscriptionLineItemId"], "Usage records can only be created on a usage line item"
        )
    if subscription["status"] != "ACTIVE":
        errors.add(
            ["subscriptionLineItemId"],
            f"The subscription is {subscription['status'].lower()}; usage can only be charged"
            " to an active subscription",
        )
    description = (args.get("description") or "").strip()
    if not description:
        errors.add(["description"], "Description can't be blank")
    key = args.get("idempotencyKey")
    if key is not None and len(key) > MAX_IDEMPOTENCY_KEY:
        errors.add(
            ["idempotencyKey"],
            f"Idempotency key is too long (maximum is {MAX_IDEMPOTENCY_KEY} characters)",
        )
    price = parse_money(args["price"]["amount"])
    if price is None or price <= 0:
        errors.add(["price"], "Price must be greater than 0")
    elif args["price"]["currencyCode"] != subscription["currency"]:
        errors.add(
            ["price", "currencyCode"],
            f"Currency must match the subscription's currency ({subscription['currency']})",
        )
    if errors or price is None:
        return _usage_payload(None, errors)
    if key is not None:
        existing = billing_store.find_usage_record_by_key(ctx.conn, item["id"], key)
        if existing is not None:
            # The same key is the same charge: answer with it, charge nothing more.
            return _usage_payload(usage_record_node(existing, subscription["currency"]), errors)
    remaining = Decimal(item["capped_amount"]) - billing_store.balance_used(ctx.conn, item["id"])
    if price > remaining:
        errors.add(["price"], "Total price exceeds balance remaining")
        return _usage_payload(None, errors)
    with savepoint(ctx.conn):
        record_id = billing_store.create_usage_record(
            ctx.conn,
            shop_domain=ctx.shop.domain,
            line_item=item,
            price=price,
            description=description,
            idempotency_key=key,
        )
    record = billing_store.get_usage_record(ctx.conn, ctx.shop.domain, record_id)
    assert record is not None
    return _usage_payload(usage_record_node(record, subscription["currency"]), errors)


QUERIES: dict[str, Resolver] = {"currentAppInstallation": current_app_installation}

FIELDS: dict[str, dict[str, Resolver]] = {
    "AppInstallation": {
        "activeSubscriptions": active_subscriptions,
        "allSubscriptions": all_subscriptions,
    },
    "AppSubscriptionLineItem": {"usageRecords": usage_records},
    "AppUsageRecord": {"subscriptionLineItem": usage_record_line_item},
}

MUTATIONS: dict[str, Resolver] = {
    "appSubscriptionCreate": app_subscription_create,
    "appSubscriptionCancel": app_subscription_cancel,
    "appUsageRecordCreate": app_usage_record_create,
}
