"""The App Home's cache of eManageCRM answers: reuse while young, one fetch per miss."""

from __future__ import annotations

import anyio
import pytest

from syncapp.web.app_home.cache import TtlCache

pytestmark = pytest.mark.anyio


@pytest.fixture
def anyio_backend() -> str:
    return "asyncio"


class Clock:
    def __init__(self) -> None:
        self.now = 0.0

    def __call__(self) -> float:
        return self.now


async def test_a_value_is_reused_until_older_than_max_age() -> None:
    clock = Clock()
    cache: TtlCache[int] = TtlCache(clock=clock)
    calls = []

    async def fetch() -> int:
        calls.append(clock.now)
        return len(calls)

    assert await cache.get("a", fetch, max_age=10) == (1, False)
    clock.now = 9.9
    assert await cache.get("a", fetch, max_age=10) == (1, True)
    assert await cache.get("a", fetch, max_age=2) == (2, False)  # a fresher read asked for
    clock.now = 30
    assert await cache.get("a", fetch, max_age=10) == (3, False)
    assert await cache.get("b", fetch, max_age=10) == (4, False)


async def test_concurrent_misses_make_one_fetch() -> None:
    cache: TtlCache[str] = TtlCache()
    started = anyio.Event()
    release = anyio.Event()
    calls = 0
    results: list[tuple[str, bool]] = []

    async def fetch() -> str:
        nonlocal calls
        calls += 1
        started.set()
        await release.wait()
        return "providers"

    async def read() -> None:
        results.append(await cache.get("acct", fetch, max_age=15))

    async with anyio.create_task_group() as tg:
        for _ in range(5):
            tg.start_soon(read)
        await started.wait()
        release.set()
    assert calls == 1
    assert sorted(results) == [("providers", False)] + [("providers", True)] * 4


async def test_the_oldest_key_goes_when_full() -> None:
    clock = Clock()
    cache: TtlCache[str] = TtlCache(max_keys=2, clock=clock)

    async def value() -> str:
        return f"v{clock.now}"

    for key in ("a", "b", "c"):
        clock.now += 1
        await cache.get(key, value, max_age=100)
    assert (await cache.get("b", value, max_age=100))[1] is True
    assert (await cache.get("a", value, max_age=100))[1] is False
