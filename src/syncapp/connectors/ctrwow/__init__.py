"""CTRwow: the only code that knows CTRwow's contract (``docs/contracts/ctrwow.openapi.yaml``).

Layout:
  client.py  CtrwowClient: one async method per operation, over an injected httpx client
  oauth.py   pure helpers: PKCE S256, the authorization URL, parsing answers into models
  models.py  TokenPair, ClientToken, Account, Template
  errors.py  the error tree (which failures are retryable) and the pure HTTP → error mapping
"""

from syncapp.connectors.ctrwow.client import DEFAULT_SCOPES, CtrwowClient
from syncapp.connectors.ctrwow.errors import (
    CtrwowAuthError,
    CtrwowConflict,
    CtrwowError,
    CtrwowInsufficientScope,
    CtrwowInvalidClient,
    CtrwowInvalidGrant,
    CtrwowInvalidToken,
    CtrwowPermanentError,
    CtrwowRateLimited,
    CtrwowTransientError,
)
from syncapp.connectors.ctrwow.models import Account, ClientToken, Template, TokenPair
from syncapp.connectors.ctrwow.oauth import code_challenge, new_code_verifier

__all__ = [
    "DEFAULT_SCOPES",
    "Account",
    "ClientToken",
    "CtrwowAuthError",
    "CtrwowClient",
    "CtrwowConflict",
    "CtrwowError",
    "CtrwowInsufficientScope",
    "CtrwowInvalidClient",
    "CtrwowInvalidGrant",
    "CtrwowInvalidToken",
    "CtrwowPermanentError",
    "CtrwowRateLimited",
    "CtrwowTransientError",
    "Template",
    "TokenPair",
    "code_challenge",
    "new_code_verifier",
]
