"""The shop domain's topic table for the bus: installation, grants and privacy webhooks.

These handlers touch only the database (the uninstall's CTRwow revocation runs after the
commit, through ``call_after_commit``), so each is one fenced write: :func:`in_one_write` runs
it in the bus's settling transaction, together with the event's completion — its effect and
the completion commit, or roll back, as one.
"""

from __future__ import annotations

import asyncio
from collections.abc import Callable, Sequence
from functools import partial

from sqlalchemy.orm import Session

from syncapp.bus.interface import Ack, Delivery, Handler, Outcome, TopicTable
from syncapp.bus.models import InboundEvent
from syncapp.shops import privacy, scopes, uninstall
from syncapp.shops.runtime import ShopsRuntime

TransactionalHandler = Callable[[Session, ShopsRuntime, InboundEvent], str]
"""A handler that changes rows in the caller's transaction; returns what it did (logged)."""
Precheck = Callable[[ShopsRuntime, InboundEvent], None]
"""Runs before a topic's handler with no transaction open (it may ask Shopify); raises
RefusedEvent to refuse the event, anything else to retry it."""


def in_one_write(
    handler: TransactionalHandler, runtime: ShopsRuntime, precheck: Precheck | None = None
) -> Handler:
    """A bus handler in three moves: read the event (short read), run ``precheck`` (network
    I/O, nothing held, in a thread: it is synchronous), then apply ``handler`` in the fenced
    write of the event's completion."""

    async def handle(delivery: Delivery) -> Outcome:
        if precheck is not None:
            with runtime.sessions() as session:
                event = session.get(InboundEvent, delivery.id)
            if event is None:
                return Ack(note="gone")
            await asyncio.to_thread(precheck, runtime, event)

        def apply(session: Session) -> None:
            event = session.get(InboundEvent, delivery.id)
            if event is not None:  # a shop/redact of the shop may have removed it meanwhile
                handler(session, runtime, event)

        return Ack(apply=apply)

    return handle


def shopify_handlers(
    *, uninstall_hooks: Sequence[uninstall.UninstallHook] = ()
) -> dict[str, TransactionalHandler]:
    """The Shopify topics of the shop domain and their handlers."""
    return {
        "app/uninstalled": partial(uninstall.handle_app_uninstalled, hooks=uninstall_hooks),
        "app/scopes_update": scopes.handle_scopes_update,
        "shop/redact": privacy.handle_shop_redact,
        "customers/redact": privacy.handle_customers_redact,
        "customers/data_request": privacy.handle_customers_data_request,
    }


def prechecks() -> dict[str, Precheck]:
    """Confirmations some topics need from Shopify before their handler may run."""
    return {
        "app/uninstalled": uninstall.confirm_uninstalled,
        "app/scopes_update": scopes.confirm_scopes,
        "shop/redact": privacy.confirm_shop_redact,
    }


def topics(
    runtime: ShopsRuntime, *, uninstall_hooks: Sequence[uninstall.UninstallHook] = ()
) -> TopicTable:
    checks = prechecks()
    return {
        ("shopify", topic): in_one_write(handler, runtime, checks.get(topic))
        for topic, handler in shopify_handlers(uninstall_hooks=uninstall_hooks).items()
    }
