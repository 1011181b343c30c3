"""The product and price sync between Shopify and eManageCRM (DESIGN §4).

It owns the sync's state (:mod:`.models`: settings, links, conflicts, cursors) and its pure
core, which does no I/O and is what the engine applies:

- :mod:`.catalog`: the neutral product model both systems are mapped onto, and money as
  :class:`~decimal.Decimal`;
- :mod:`.mapping`: Shopify ⇄ neutral ⇄ eManageCRM (docs/adr/0016 has the field table);
- :mod:`.fingerprint`: a stable hash of the synced fields per side (inventory left out);
- :mod:`.merge`: the field-level three-way merge and its conflicts, as values;
- :mod:`.plan`: which writes (create, update of changed fields, archive, re-link, conflict)
  bring the two sides to the merged state.
"""
