"""A local Shopify: Admin GraphQL 2026-10 on the real schema, OAuth token exchange and refresh,
App Home ID tokens, cost-based rate limiting, bulk operations and signed webhook deliveries.

Layout:
  config.py     SandboxConfig: where state lives, which app it knows, the webhook clock
  db.py         the sandbox's SQLite state (shops, tokens, webhook outbox; products register theirs)
  events.py     record_webhook(): the outbox every state change writes in its own transaction
  app.py        create_app(): composes the routers below into one Host-routed ASGI app
  shops, tokens shops (and whether the app is installed); issued access tokens
  graphql_api   /admin/api/<version>/graphql.json: schema, resolvers, cost (cost.py) and throttle
                (throttle.py), bulk operations, Billing API
  documents     the Admin GraphQL documents the sandbox itself runs (seeding, admin page)
  oauth         /admin/oauth/access_token: token exchange and refresh; ID token minting; control
  webhooks      delivery of the outbox to the app's subscriptions, with Shopify's retries
  admin         a small product admin page for demos (/store/<shop>/products)
  embedded      the admin frame /store/<shop>/apps/<handle> with managed install, the App Bridge
                and Polaris stand-ins (static/), the billing confirmation page
  seed          demo products for make run
"""
