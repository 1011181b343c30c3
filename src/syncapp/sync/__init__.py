"""The product and price sync between Shopify and eManageCRM (DESIGN §4): its state
(:mod:`.models`: settings, links, conflicts, cursors)."""
