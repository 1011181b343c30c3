"""A local CTRwow: the OAuth 2.0 authorization server (code + PKCE S256, rotating refresh
tokens with reuse detection, revocation), partner account provisioning, the account and the
templates catalogue, exactly as ``docs/contracts/ctrwow.openapi.yaml`` defines them.

Layout:
  config.py    CtrwowSandboxConfig and the registered clients
  db.py        the sandbox's SQLite state (modules register their tables)
  state.py     what handlers share: config, database, clock, injected faults
  accounts.py  accounts, passwords, partner links
  tokens.py    authorization codes, grants (token families), access and refresh tokens
  idempotency.py  stored responses of writes, by client and Idempotency-Key
  catalog.py   the seeded templates catalogue
  oauth.py     /.well-known/oauth-authorization-server, /oauth/authorize|token|revoke
  api.py       /v1/me, /v1/templates, /partner/v1/accounts, template previews
  control.py   /_sandbox/ routes for tests and ops (accounts, tokens, faults, clock)
  app.py       create_app(): all of the above, /openapi.json, /healthz, fault injection
"""

from syncapp.sandbox.ctrwow.app import create_app
from syncapp.sandbox.ctrwow.config import CtrwowClientRegistration, CtrwowSandboxConfig

__all__ = ["CtrwowClientRegistration", "CtrwowSandboxConfig", "create_app"]
