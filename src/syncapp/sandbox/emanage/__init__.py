"""A local eManageCRM: IAM (client credentials), accounts (shared tenants or linked dedicated
subscriptions), users, one-time SSO into a small web UI where the merchant manages payment
providers and edits products, the products API the Sync App syncs with, and the public Web
Sales API reads that live pages make. The contract is
docs/contracts/emanage.openapi.yaml, served at ``/openapi.json``.

Layout:
  config.py       EmanageSandboxConfig, SystemClient: state path, public URL, registered clients
  db.py           the SQLite state (survives restarts)
  state.py        config + db + the test clock and injected faults
  common.py       error bodies, field checks, bearer principals and account access rules
  idempotency.py  Idempotency-Key replay / reuse detection for every admin write
  iam.py          POST /iam/oauth/token
  accounts.py     /admin/v1/accounts, /admin/v1/account-links, users
  sso.py          SSO links and the web sessions they start
  providers.py    payment providers and MIDs (read API + the data the UI edits)
  products.py     /admin/v1/accounts/{id}/products: versions, If-Match, keyset pages, origin
  events.py       the notification outbox, written in the change's transaction
  ui.py           /crm/ pages (dashboard, payment providers, products) with CSRF-protected forms
  websales.py     /api/campaigns/{webKey}/... with X_CID, as the public API answers
  events.py       the notification outbox, written in the change's transaction
  subscriptions.py  /admin/v1/webhook-subscriptions (partner-wide, signing secrets)
  delivery.py     the deliverer (signed, ordered, retried, durable) and /_sandbox/notifications
  faults.py       injected 429/5xx and downtime
  control.py      /_sandbox/ routes for tests and ops
  app.py          create_app()
"""

from syncapp.sandbox.emanage.app import create_app
from syncapp.sandbox.emanage.config import ALL_SCOPES, EmanageSandboxConfig, SystemClient

__all__ = ["ALL_SCOPES", "EmanageSandboxConfig", "SystemClient", "create_app"]
