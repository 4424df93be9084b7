"""The shared forecast cache: one request per key and TTL for every process on one Redis."""

from __future__ import annotations

from collections.abc import AsyncIterator
from datetime import timedelta

import anyio
import pytest
import redis

from ecoasync import ForecastUnavailable
from ecoasync._provider import HistoryNowait
from ecoasync.fleet import SharedCacheProvider
from ecoasync.providers import HistoryProvider, synthetic_day
from ecoasync.providers._static import StaticForecastProvider
from tests.fleet_util import T0, CountingProvider, unique
from tests.servers import RedisServer

DAY = synthetic_day(T0.replace(hour=0), days=3)


@pytest.fixture
def anyio_backend() -> str:
    return "asyncio"


class Ticks:
    def __init__(self) -> None:
        self.now = 1000.0

    def __call__(self) -> float:
        return self.now


@pytest.fixture
async def fleet(
    redis_server: RedisServer,
) -> AsyncIterator[tuple[CountingProvider, list[SharedCacheProvider], Ticks]]:
    """Three "processes" (cache wrappers that share nothing but Redis) around one provider."""
    inner = CountingProvider(DAY)
    ticks = Ticks()
    namespace = unique()
    caches = [
        SharedCacheProvider(inner, redis=redis_server.url, namespace=namespace, monotonic=ticks)
        for _ in range(3)
    ]
    yield inner, caches, ticks
    for cache in caches:
        await cache.aclose()


async def test_the_fleet_makes_one_request_per_key_and_ttl(
    fleet: tuple[CountingProvider, list[SharedCacheProvider], Ticks],
) -> None:
    inner, caches, ticks = fleet
    end = T0 + timedelta(hours=5)
    inner.gate = anyio.Event()
    results = []

    async def ask(cache: SharedCacheProvider, minutes: int) -> None:
        start = T0 + timedelta(minutes=minutes)
        got = await cache.forecast(start, start + timedelta(hours=5))
        results.append(got)
        assert got.slots == DAY.between(start, start + timedelta(hours=5)).slots

    async with anyio.create_task_group() as tg:
        for i in range(30):
            tg.start_soon(ask, caches[i % 3], i % 25)
        with anyio.fail_after(5):
            while not inner.calls:  # (waiting on real I/O: Redis answers the first reader)
                await anyio.sleep(0.01)
        await anyio.sleep(0.1)  # the others reach Redis and wait on the channel meanwhile
        inner.gate.set()
    assert len(inner.calls) == 1
    assert inner.calls[0][1:] == (T0, T0 + timedelta(hours=48))  # widened to the whole window
    assert all(r.start == T0 and r.end is not None and r.end >= end for r in results)

    # in memory now: no await, the same object for the same slice
    a = caches[1].forecast_nowait(T0, T0 + timedelta(hours=5))
    b = caches[1].forecast_nowait(T0, T0 + timedelta(hours=5))
    assert a is not None and a is b
    assert (
        caches[0].name == "counting" and caches[0].zone == "GB" and caches[0].signal == DAY.signal
    )

    ticks.now += 1800.0  # the TTL has passed in every process... and in Redis?
    assert caches[1].forecast_nowait(T0, T0 + timedelta(hours=5)) is None


async def test_the_answer_lives_in_redis_for_the_ttl(redis_server: RedisServer) -> None:
    inner = CountingProvider(DAY)
    namespace = unique()
    first = SharedCacheProvider(inner, redis=redis_server.url, namespace=namespace, ttl=0.2)
    try:
        await first.forecast(T0, T0 + timedelta(hours=1))
        later = SharedCacheProvider(inner, redis=redis_server.url, namespace=namespace, ttl=0.2)
        try:
            got = await later.forecast(T0, T0 + timedelta(hours=1))
            assert len(inner.calls) == 1 and later.fetches == {} and got
            key = later._names(later._forecast_key(T0, T0))[0]
            with anyio.fail_after(5), redis.Redis.from_url(redis_server.url) as admin:
                while admin.exists(key):
                    await anyio.sleep(0.05)  # (Redis's own clock expires the key)
            later._memory.clear()
            await later.forecast(T0, T0 + timedelta(hours=1))
            assert len(inner.calls) == 2
        finally:
            await later.aclose()
    finally:
        await first.aclose()


async def test_a_failure_is_shared_for_a_few_seconds(
    fleet: tuple[CountingProvider, list[SharedCacheProvider], Ticks],
) -> None:
    inner, caches, _ = fleet
    inner.fail = "HTTP 503"
    for cache in caches:
        with pytest.raises(ForecastUnavailable, match="HTTP 503"):
            await cache.forecast(T0, T0 + timedelta(hours=1))
    assert len(inner.calls) == 1


async def test_a_cancelled_leader_lets_another_lead_at_once(
    fleet: tuple[CountingProvider, list[SharedCacheProvider], Ticks],
) -> None:
    inner, caches, _ = fleet
    inner.gate = anyio.Event()
    with anyio.move_on_after(0.05):
        await caches[0].forecast(T0, T0 + timedelta(hours=1))
    inner.gate.set()
    with anyio.fail_after(2):  # not the lock's 20 s
        got = await caches[1].forecast(T0, T0 + timedelta(hours=1))
    assert got and len(inner.calls) == 2


async def test_history_is_shared_only_when_the_provider_has_one(redis_server: RedisServer) -> None:
    inner = CountingProvider(DAY)
    cache = SharedCacheProvider(inner, redis=redis_server.url, namespace=unique())
    plain = SharedCacheProvider(
        StaticForecastProvider(DAY), redis=redis_server.url, namespace=unique()
    )
    no_history = SharedCacheProvider(_NoHistory(), redis=redis_server.url, namespace=unique())
    try:
        assert isinstance(cache, HistoryProvider) and isinstance(plain, HistoryProvider)
        assert isinstance(cache, HistoryNowait)
        assert not isinstance(no_history, HistoryProvider | HistoryNowait)
        past = await cache.history(T0 - timedelta(hours=24), T0 + timedelta(minutes=10))
        assert past and all(s.actual is not None for s in past)
        assert inner.calls[-1] == ("history", T0 - timedelta(hours=24), T0 + timedelta(minutes=30))
        again = cache.history_nowait(T0 - timedelta(hours=24), T0 + timedelta(minutes=10))
        assert again is not None
    finally:
        for c in (cache, plain, no_history):
            await c.aclose()


async def test_redis_down_the_provider_answers(redis_server: RedisServer) -> None:
    inner = CountingProvider(DAY)
    with RedisServer() as gone:
        url = gone.url
    cache = SharedCacheProvider(inner, redis=url, namespace=unique())
    try:
        got = await cache.forecast(T0, T0 + timedelta(hours=1))
        assert got and cache.guard.outages == 1 and len(inner.calls) == 1
    finally:
        await cache.aclose()


class _NoHistory:
    name = "bare"
    zone = "GB"

    async def forecast(self, start, end):  # type: ignore[no-untyped-def]
        return DAY.between(start, end)
