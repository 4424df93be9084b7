"""A shared store that is down, slow or wiped never holds a session past its bound: the
process's own ledger answers, the outage is said once and counted, and the store is used again
once it is back."""

from __future__ import annotations

from collections.abc import Iterator, MutableMapping
from datetime import timedelta
from typing import Any

import anyio
import pytest

import ecoasync
import ecoasync.testing
from ecoasync import Forecast, Slot, SlotLedger
from ecoasync._ledger import Claim
from ecoasync.fleet import PostgresLedger, RedisLedger, StoreGuard
from ecoasync.providers import StaticForecastProvider
from tests.fleet_util import T0, choice, unique
from tests.servers import RedisServer

LEASE = timedelta(hours=2)
HALF = timedelta(minutes=30)
CHOICES = [choice(0, 100.0), choice(30, 101.0)]


@pytest.fixture
def anyio_backend() -> str:
    return "asyncio"


@pytest.fixture
def own_redis() -> Iterator[RedisServer]:
    with RedisServer() as server:
        yield server


class Ticks:
    """A monotonic clock the test moves by hand."""

    def __init__(self) -> None:
        self.now = 0.0

    def __call__(self) -> float:
        return self.now


def guarded(ledger: RedisLedger | PostgresLedger, ticks: Ticks) -> None:
    old = ledger.guard
    ledger.guard = StoreGuard(
        old.store, timeout=old.timeout, retry_after=old.retry_after, monotonic=ticks
    )


async def test_redis_killed_and_restarted_mid_run(
    own_redis: RedisServer, logs: list[MutableMapping[str, Any]]
) -> None:
    ledger = RedisLedger(own_redis.url, namespace=unique(), timeout=1.0)
    fallback = ledger.fallback  # the process's own: a SlotLedger with the same options
    assert isinstance(fallback, SlotLedger) and fallback.tolerance == ledger.tolerance
    ticks = Ticks()
    guarded(ledger, ticks)
    try:
        before = await ledger.claim("a", "GB", CHOICES, lease=LEASE, now=T0)
        assert before.ledger == "redis"

        own_redis.kill()
        during = [await ledger.claim(f"d{i}", "GB", CHOICES, lease=LEASE, now=T0) for i in range(3)]
        assert {c.ledger for c in during} == {"memory (redis unavailable)"}
        # the fallback spreads too, and counts its own claims only
        assert [c.start for c in during] == [CHOICES[0].start, CHOICES[1].start, CHOICES[0].start]
        assert "down" in repr(ledger.guard)
        assert ledger.guard.outages == 1 and ledger.guard.fallbacks == 3
        warnings = [e for e in logs if e["event"] == "ecoasync.store_unavailable"]
        assert len(warnings) == 1 and warnings[0]["store"] == "redis"

        # a fallback claim goes back to the fallback
        await ledger.release(during[0])
        assert len(fallback) == 2

        own_redis.start()  # back, and empty (no persistence)
        still = await ledger.claim("e", "GB", CHOICES, lease=LEASE, now=T0)
        assert still.ledger == "memory (redis unavailable)"  # not probed before retry_after
        ticks.now += ledger.guard.retry_after
        after = await ledger.claim("f", "GB", CHOICES, lease=LEASE, now=T0)
        assert after.ledger == "redis" and not ledger.guard.down
        assert [e["event"] for e in logs if e["event"].startswith("ecoasync.store_")] == [
            "ecoasync.store_unavailable",
            "ecoasync.store_recovered",
        ]
        await ledger.release(before)  # claimed before the crash, gone with it: a no-op
        assert await ledger.loads("GB", T0, T0 + LEASE, now=T0) == {after.slot: 1}
    finally:
        await ledger.aclose()


async def test_a_slow_store_is_left_at_the_timeout(own_redis: RedisServer) -> None:
    ledger = RedisLedger(own_redis.url, namespace=unique(), timeout=0.05)
    try:
        await ledger.claim("warm", "GB", CHOICES, lease=LEASE, now=T0)  # connected
        own_redis.pause()
        try:
            claim = await ledger.claim("a", "GB", CHOICES, lease=LEASE, now=T0)
        finally:
            own_redis.resume()
        assert claim.ledger == "memory (redis unavailable)"
        assert ledger.guard.outages == 1
    finally:
        await ledger.aclose()


async def test_a_wiped_store_starts_again_from_nothing(own_redis: RedisServer) -> None:
    import redis

    ledger = RedisLedger(own_redis.url, namespace=unique())
    try:
        first = await ledger.claim("a", "GB", CHOICES, lease=LEASE, now=T0)
        with redis.Redis.from_url(own_redis.url) as admin:
            admin.flushall()
            admin.script_flush()
        await ledger.release(first)  # nothing to release: a no-op
        again = await ledger.claim("a", "GB", CHOICES, lease=LEASE, now=T0)
        assert again.ledger == "redis" and again.start == CHOICES[0].start
        assert ledger.guard.outages == 0
    finally:
        await ledger.aclose()


async def test_postgres_unreachable_falls_back(logs: list[MutableMapping[str, Any]]) -> None:
    ledger = PostgresLedger(
        "postgresql://postgres@127.0.0.1:9/none?connect_timeout=1", capacity=1, timeout=0.05
    )
    try:
        claim = await ledger.claim("a", "GB", CHOICES, lease=LEASE, now=T0)
        assert claim.ledger == "memory (postgres unavailable)"
        assert await ledger.loads("GB", T0, T0 + LEASE, now=T0) == {claim.slot: 1}
        # the fallback keeps the capacity: the full first slot is skipped
        second = await ledger.claim("b", "GB", CHOICES, lease=LEASE, now=T0)
        assert second.start == CHOICES[1].start
        assert [e["store"] for e in logs if e["event"] == "ecoasync.store_unavailable"] == [
            "postgres"
        ]
    finally:
        await ledger.aclose()


class Granting(RedisLedger):
    """A RedisLedger that says when ``expect`` claims have been granted (by it or its fallback)."""

    def __init__(self, *args: Any, **options: Any) -> None:
        super().__init__(*args, **options)
        self.granted: list[str] = []
        self.expect = 0
        self.reached: anyio.Event | None = None

    async def claim(self, *args: Any, **options: Any) -> Claim:
        claim = await super().claim(*args, **options)
        self.granted.append(claim.ledger)
        if len(self.granted) >= self.expect and self.reached is not None:
            self.reached.set()
        return claim

    async def until(self, count: int) -> None:
        self.expect, self.reached = count, anyio.Event()
        if len(self.granted) < count:
            with anyio.fail_after(10):
                await self.reached.wait()


def green_later() -> Forecast:
    """Half-hours from T0: dirty for two hours, then a green hour of near-equal slots."""
    values = [300.0] * 4 + [100.0, 100.5, 101.0] + [300.0] * 13
    return Forecast(
        [Slot(T0 + i * HALF, T0 + (i + 1) * HALF, v) for i, v in enumerate(values)],
        provider="grid",
        zone="GB",
    )


async def test_waiting_sessions_keep_running_when_redis_dies_mid_run(
    own_redis: RedisServer, logs: list[MutableMapping[str, Any]]
) -> None:
    """Sessions under ``Policy(ledger=RedisLedger(...))``: some claim in Redis and wait, Redis
    is killed, more enter (the process's own ledger answers); all of them wait for their
    planned slot and complete, the claims made in Redis end with their leases, and the
    outage is said once for the whole process."""
    ledger = Granting(own_redis.url, namespace=unique(), timeout=1.0)
    policy = ecoasync.Policy(
        max_delay="3h",
        provider=StaticForecastProvider(green_later()),
        jitter="0m",
        strategy="lowest",
        ledger=ledger,
    )
    records: list[ecoasync.SessionRecord] = []

    async def one(i: int) -> None:
        async with ecoasync.carbon_session(policy, name=f"s{i}") as s:
            assert s.plan.start > T0
        assert s.record is not None
        records.append(s.record)

    try:
        with ecoasync.testing.VirtualClock.installed(T0, autojump=False) as clock:
            async with anyio.create_task_group() as tg:
                for i in range(4):
                    tg.start_soon(one, i)
                await ledger.until(4)  # claimed in Redis, waiting for their slots
                own_redis.kill()
                for i in range(4, 8):
                    tg.start_soon(one, i)
                await ledger.until(8)
                clock.advance(timedelta(hours=3))
    finally:
        await ledger.aclose()
    assert ledger.granted == ["redis"] * 4 + ["memory (redis unavailable)"] * 4
    assert len(records) == 8 and {r.status for r in records} == {"completed"}
    assert all(r.started_at is not None and r.started_at >= r.planned_start for r in records)
    before, during = (
        [r for r in records if int(r.name[1:]) in part] for part in (range(4), range(4, 8))
    )
    assert len({r.planned_start for r in before}) > 1  # the herd spread in Redis...
    assert len({r.planned_start for r in during}) > 1  # ...and in the fallback
    fallback = ledger.fallback
    assert isinstance(fallback, SlotLedger) and len(fallback) == 0  # claims given back
    events = [e["event"] for e in logs]
    assert events.count("ecoasync.store_unavailable") == 1 and ledger.guard.outages == 1
    assert "ecoasync.ledger_failed" not in events  # the ledger never failed a session
