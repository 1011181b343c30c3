"""eManageCRM: the client of its IAM, admin and Web Sales APIs (contract:
docs/contracts/emanage.openapi.yaml), its models and its error tree.

  client.py   EmanageClient (async, injected httpx.AsyncClient; token cache per process)
  models.py   Account, User, SsoLink, PaymentProvider, Mid, CampaignSettings, CampaignPrices,
              EmanageProduct, ProductPage, ...
  errors.py   the error tree (what is retryable) and the pure response → error mapping
"""

from syncapp.connectors.emanage.client import DEFAULT_SCOPES, EmanageClient
from syncapp.connectors.emanage.errors import (
    EmanageAuthError,
    EmanageConflict,
    EmanageError,
    EmanageForbidden,
    EmanageIdempotencyMismatch,
    EmanageNotFound,
    EmanagePermanentError,
    EmanageProtocolError,
    EmanageRateLimited,
    EmanageTokenRejected,
    EmanageTransientError,
    EmanageValidationError,
    EmanageVersionConflict,
    is_transient,
    merchant_message,
)
from syncapp.connectors.emanage.models import (
    Account,
    BatchResult,
    BatchWrite,
    CampaignPrices,
    CampaignSettings,
    EmanageProduct,
    Location,
    Mid,
    PaymentProvider,
    PriceValue,
    ProductPage,
    ProductPrice,
    Shipping,
    SsoLink,
    User,
)

__all__ = [
    "DEFAULT_SCOPES",
    "Account",
    "BatchResult",
    "BatchWrite",
    "CampaignPrices",
    "CampaignSettings",
    "EmanageAuthError",
    "EmanageClient",
    "EmanageConflict",
    "EmanageError",
    "EmanageForbidden",
    "EmanageIdempotencyMismatch",
    "EmanageNotFound",
    "EmanagePermanentError",
    "EmanageProduct",
    "EmanageProtocolError",
    "EmanageRateLimited",
    "EmanageTokenRejected",
    "EmanageTransientError",
    "EmanageValidationError",
    "EmanageVersionConflict",
    "Location",
    "Mid",
    "PaymentProvider",
    "PriceValue",
    "ProductPage",
    "ProductPrice",
    "Shipping",
    "SsoLink",
    "User",
    "is_transient",
    "merchant_message",
]
