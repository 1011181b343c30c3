"""A small per-process cache for what the App Home reads from eManageCRM while a page is open,
so pages polling for live status do not turn into a stream of eManageCRM calls."""

from __future__ import annotations

import time
from collections.abc import Awaitable, Callable, Hashable
from typing import Generic, TypeVar

import anyio

T = TypeVar("T")


class TtlCache(Generic[T]):
    """Values per key, reused while younger than the caller's ``max_age``; concurrent misses
    of one key make one fetch (the others wait for it and take its value)."""

    def __init__(
        self, *, max_keys: int = 10_000, clock: Callable[[], float] = time.monotonic
    ) -> None:
        self._values: dict[Hashable, tuple[float, T]] = {}
        self._locks: dict[Hashable, anyio.Lock] = {}
        self._max_keys = max_keys
        self._clock = clock

    def _fresh(self, key: Hashable, max_age: float) -> T | None:
        hit = self._values.get(key)
        if hit is not None and self._clock() - hit[0] < max_age:
            return hit[1]
        return None

    async def get(
        self, key: Hashable, fetch: Callable[[], Awaitable[T]], *, max_age: float
    ) -> tuple[T, bool]:
        """The value for ``key`` and whether it came from the cache."""
        if (value := self._fresh(key, max_age)) is not None:
            return value, True
        lock = self._locks.setdefault(key, anyio.Lock())
        async with lock:
            if (value := self._fresh(key, max_age)) is not None:
                return value, True
            value = await fetch()
            if len(self._values) >= self._max_keys:
                oldest = min(self._values, key=lambda k: self._values[k][0])
                del self._values[oldest]
                self._locks.pop(oldest, None)
            self._values[key] = (self._clock(), value)
            return value, False
