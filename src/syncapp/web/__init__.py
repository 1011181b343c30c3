"""The ASGI app: Shopify webhook ingest, health, metrics (and, in later issues, App Home, the
Sync API and CRM notifications). Request handlers verify, record and answer; they never do the
sync work themselves."""
