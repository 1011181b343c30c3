"""Run by test_tokens.py in a separate process: wait for a start time, get the shop's Admin
token (refreshing it if due), prove it works with a ShopInfo call, print the result as JSON.

Usage: python -m tests.integration.shops.refresh_child SHOP START_AT (settings in SYNCAPP_*).
"""

from __future__ import annotations

import json
import sys
import time

from syncapp.config import load_settings
from syncapp.connectors.shopify.admin import fetch_shop_info
from syncapp.shops.runtime import ShopsRuntime
from syncapp.shops.tokens import get_admin_token
from syncapp.store.db import make_engine


def main() -> None:
    shop, start_at = sys.argv[1], float(sys.argv[2])
    settings = load_settings()
    engine = make_engine(settings.database_url)
    runtime = ShopsRuntime.from_settings(settings, engine)
    time.sleep(max(0.0, start_at - time.time()))
    token = get_admin_token(runtime, shop=shop)
    with runtime.http() as http:
        info = fetch_shop_info(
            shop=shop, access_token=token, api_version=runtime.api_version, http=http
        )
    print(json.dumps({"token": token, "shop": info.myshopify_domain}))
    engine.dispose()


if __name__ == "__main__":
    main()
