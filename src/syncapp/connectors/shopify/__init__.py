"""Shopify: Admin GraphQL documents (``graphql/*.graphql``), the HTTP transport that can point
``https://<shop>.myshopify.com`` at a local sandbox, and the calls made through ``shopifyapp``."""
