"""The ``app_subscriptions/update`` payload, typed, and the shop it names.

The payload is the subscription as the REST webhook carries it; ``admin_graphql_api_shop_id``
names the shop. A body of another topic lacks ``app_subscription``; one of another shop names
another shop id, or a subscription this shop does not own (see
:mod:`syncapp.shops.payloads` for why the header alone is not trusted).
"""

from __future__ import annotations

from typing import Annotated

from pydantic import StringConstraints

from syncapp.shops.payloads import Payload

SubscriptionGid = Annotated[str, StringConstraints(pattern=r"^gid://shopify/AppSubscription/\d+$")]
ShopGid = Annotated[str, StringConstraints(pattern=r"^gid://shopify/Shop/\d+$")]


class SubscriptionChange(Payload):
    admin_graphql_api_id: SubscriptionGid
    status: Annotated[str, StringConstraints(min_length=1, max_length=32)]
    admin_graphql_api_shop_id: ShopGid | None = None
    updated_at: str | None = None


class SubscriptionUpdate(Payload):
    """``app_subscriptions/update``."""

    app_subscription: SubscriptionChange
