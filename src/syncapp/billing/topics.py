"""The billing domain's topic table for the bus: ``app_subscriptions/update``."""

from __future__ import annotations

from syncapp.billing.service import handle_subscription_update
from syncapp.bus.interface import TopicTable
from syncapp.shops.runtime import ShopsRuntime
from syncapp.shops.topics import TransactionalHandler, in_one_write

HANDLERS: dict[str, TransactionalHandler] = {
    "app_subscriptions/update": handle_subscription_update,
}


def topics(runtime: ShopsRuntime) -> TopicTable:
    return {("shopify", t): in_one_write(h, runtime) for t, h in HANDLERS.items()}
