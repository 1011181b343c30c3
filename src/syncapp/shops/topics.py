"""The shop domain's topic table for the bus: installation, grants and privacy webhooks.

These handlers touch only the database (the uninstall's CTRwow revocation runs after the
commit, through ``call_after_commit``), so each is one fenced write: :func:`in_one_write` runs
it in the bus's settling transaction, together with the event's completion — its effect and
the completion commit, or roll back, as one.
"""

from __future__ import annotations

from collections.abc import Callable, Sequence
from functools import partial

from sqlalchemy.orm import Session

from syncapp.bus.interface import Ack, Delivery, Handler, Outcome, TopicTable
from syncapp.shops import privacy, scopes, uninstall
from syncapp.shops.runtime import ShopsRuntime
from syncapp.store.models import InboundEvent

TransactionalHandler = Callable[[Session, ShopsRuntime, InboundEvent], str]
"""A handler that changes rows in the caller's transaction; returns what it did (logged)."""


def in_one_write(handler: TransactionalHandler, runtime: ShopsRuntime) -> Handler:
    """A bus handler that applies ``handler`` in the fenced write of the event's completion."""

    async def handle(delivery: Delivery) -> Outcome:
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


def topics(
    runtime: ShopsRuntime, *, uninstall_hooks: Sequence[uninstall.UninstallHook] = ()
) -> TopicTable:
    return {
        ("shopify", topic): in_one_write(handler, runtime)
        for topic, handler in shopify_handlers(uninstall_hooks=uninstall_hooks).items()
    }
