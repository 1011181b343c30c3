"""Clients of the external systems: one subpackage per system, each the only code that knows
that system's contract. Connectors never import ``store`` or ``web``."""
