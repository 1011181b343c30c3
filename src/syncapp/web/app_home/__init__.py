"""The App Home: pages and JSON the merchant's browser loads inside the Shopify admin.

Every request is verified with shopifyapp's ``verify_app_home_req`` and the shop comes from
the verified ID token only — never from a query parameter or a body. The one exception is
CTRwow's OAuth callback (a top-level redirect outside the admin), authenticated by its
single-use ``state`` instead. See :mod:`.views`.
"""

from syncapp.web.app_home.views import (
    BILLING_RETURN_PATH,
    PATCH_ID_TOKEN_PATH,
    ROUTE_PATHS,
    AppHome,
    app_home,
)

__all__ = ["BILLING_RETURN_PATH", "PATCH_ID_TOKEN_PATH", "ROUTE_PATHS", "AppHome", "app_home"]
