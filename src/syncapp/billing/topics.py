"""The billing domain's topic table for the bus: ``app_subscriptions/update``, and what an
uninstall changes in billing (:data:`UNINSTALL_HOOKS`)."""

from __future__ import annotations

from syncapp.billing.service import cancel_on_uninstall, handle_subscription_update
from syncapp.bus.interface import TopicTable
from syncapp.shops.runtime import ShopsRuntime
from syncapp.shops.topics import TransactionalHandler, in_one_write
from syncapp.shops.uninstall import UninstallHook

UNINSTALL_HOOKS: tuple[UninstallHook, ...] = (cancel_on_uninstall,)

HANDLERS: dict[str, TransactionalHandler] = {
    "app_subscriptions/update": handle_subscription_update,
}


def topics(runtime: ShopsRuntime) -> TopicTable:
    return {("shopify", t): in_one_write(h, runtime) for t, h in HANDLERS.items()}
