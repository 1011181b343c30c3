"""What every resolver is given: the shop, the open transaction, and per-request caches."""

from __future__ import annotations

import sqlite3
from collections.abc import Callable
from dataclasses import dataclass, field
from typing import Any

from syncapp.sandbox.shopify.shops import Shop
from syncapp.sandbox.shopify.state import SandboxState


@dataclass
class Context:
    """One execution of one document for one shop.

    ``bulk`` is set while a bulk operation runs its inner query: connections then need no
    ``first``/``last`` (Shopify fetches them whole). ``after_commit`` holds work that must
    only start once the transaction is committed (a bulk operation's runner thread).
    """

    state: SandboxState
    conn: sqlite3.Connection
    shop: Shop
    bulk: bool = False
    cache: dict[tuple[Any, ...], Any] = field(default_factory=dict)
    search_warnings: list[dict[str, Any]] = field(default_factory=list)
    after_commit: list[Callable[[], None]] = field(default_factory=list)
    # The @idempotent(key:) of the root mutation field being resolved, if it has one.
    idempotency_key: str | None = None

    def cached(self, key: tuple[Any, ...], load: Callable[[], Any]) -> Any:
        if key not in self.cache:
            self.cache[key] = load()
        return self.cache[key]

    def forget(self, *prefixes: str) -> None:
        """Drop cached loads after a write, so the payload shows the new state."""
        for key in [k for k in self.cache if k and k[0] in prefixes]:
            del self.cache[key]
