"""One contract, every ledger: the same tests run on real Redis and real Postgres (and the
in-process ledger), and the shared ledgers choose exactly what the in-process ledger chooses."""

from __future__ import annotations

import dataclasses
from collections.abc import AsyncIterator
from datetime import timedelta
from typing import Any

import anyio
import pytest
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

import ecoasync
from ecoasync._ledger import Choice, Claim, Ledger
from ecoasync.fleet import PostgresLedger, RedisLedger
from tests.fleet_util import HALF_HOUR, T0, bucket_start, choice, unique
from tests.servers import PostgresServer, RedisServer

LEASE = timedelta(hours=6)
KINDS = ["redis", "postgres", "memory"]
SHARED = ["redis", "postgres"]


@pytest.fixture
def anyio_backend() -> str:
    return "asyncio"  # redis-py and psycopg are asyncio libraries


@pytest.fixture(scope="module")
def database(postgres_server: PostgresServer) -> str:
    return postgres_server.create_database()


class Stores:
    """Makes fresh ledgers of each kind, each in its own namespace or table."""

    def __init__(self, redis_url: str, database: str) -> None:
        self.redis_url = redis_url
        self.database = database
        self.made: list[RedisLedger | PostgresLedger] = []
        self.kept: dict[tuple[str, float, int | None], Any] = {}

    async def make(self, kind: str, **options: Any) -> Any:
        """A fresh ledger of ``kind`` (``memory``: the in-process ``SlotLedger``)."""
        if kind == "memory":
            return ecoasync.SlotLedger(**options)
        ledger: RedisLedger | PostgresLedger
        if kind == "redis":
            ledger = RedisLedger(self.redis_url, namespace=unique("ns"), **options)
        else:
            ledger = PostgresLedger(self.database, table=unique("claims_"), **options)
            await ledger.setup()
        self.made.append(ledger)
        return ledger

    async def kept_one(self, kind: str, tolerance: float, capacity: int | None) -> Any:
        key = (kind, tolerance, capacity)
        if key not in self.kept:
            self.kept[key] = await self.make(kind, tolerance=tolerance, capacity=capacity)
        return self.kept[key]

    async def aclose(self) -> None:
        for ledger in self.made:
            await ledger.aclose()


@pytest.fixture
async def stores(redis_server: RedisServer, database: str) -> AsyncIterator[Stores]:
    made = Stores(redis_server.url, database)
    yield made
    await made.aclose()


@pytest.fixture(params=KINDS)
async def ledger(request: pytest.FixtureRequest, stores: Stores) -> Any:
    return await stores.make(str(request.param))


async def test_it_is_a_ledger(ledger: Ledger) -> None:
    assert isinstance(ledger, Ledger)
    assert ledger.bucket == HALF_HOUR


async def test_an_empty_ledger_gives_the_lowest_score_and_ties_go_to_the_earliest(
    ledger: Ledger,
) -> None:
    choices = [choice(0, 150), choice(60, 100), choice(90, 100), choice(120, 120)]
    claim = await ledger.claim("job-1", "GB", choices, lease=LEASE, now=T0)
    assert (claim.start, claim.expected) == (choices[1].start, choices[1].expected)
    assert claim.slot == bucket_start(choices[1].start)
    assert claim.expires_at == T0 + LEASE
    assert claim.job_id == "job-1" and claim.zone == "GB" and claim.ledger == ledger.name


async def test_claims_spread_by_the_tolerance_rule(ledger: Ledger) -> None:
    # 100 vs 101: one claim in the first bucket makes it 102 (2 %), so the second goes next door
    choices = [choice(0, 100.0), choice(30, 101.0)]
    got = [
        (await ledger.claim(f"j{i}", "GB", choices, lease=LEASE, now=T0)).start for i in range(4)
    ]
    assert got == [choices[0].start, choices[1].start, choices[0].start, choices[1].start]
    loads = await ledger.loads("GB", T0, T0 + timedelta(hours=1), now=T0)
    assert loads == {bucket_start(choices[0].start): 2, bucket_start(choices[1].start): 2}


async def test_a_job_that_asks_again_gets_its_claim_back_and_books_once(ledger: Ledger) -> None:
    choices = [choice(0, 100.0), choice(30, 100.5)]
    first = await ledger.claim("redelivered", "GB", choices, lease=LEASE, now=T0)
    # asked again later (a redelivery), with other choices: the same place, the lease extended
    later = T0 + timedelta(hours=1)
    again = await ledger.claim("redelivered", "GB", choices[::-1], lease=LEASE, now=later)
    assert again == dataclasses.replace(first, expires_at=later + LEASE)
    # a shorter lease never shortens it
    once_more = await ledger.claim(
        "redelivered", "GB", choices, lease=timedelta(minutes=1), now=later
    )
    assert once_more.expires_at == later + LEASE
    loads = await ledger.loads("GB", T0, T0 + timedelta(hours=2), now=later)
    assert sum(loads.values()) == 1


async def test_zones_are_apart(ledger: Ledger) -> None:
    choices = [choice(0, 100.0), choice(30, 101.0)]
    gb = await ledger.claim("a", "GB", choices, lease=LEASE, now=T0)
    de = await ledger.claim("a", "DE", choices, lease=LEASE, now=T0)
    assert gb.start == de.start == choices[0].start
    assert await ledger.loads("FR", T0, T0 + timedelta(hours=1), now=T0) == {}


async def test_every_key_of_a_zone_lies_in_one_cluster_slot(stores: Stores) -> None:
    """Redis Cluster runs a script only when all its keys hash to one slot: each zone's keys
    share a hash tag, whatever the zone's name (braces in it included)."""
    from redis.asyncio import Redis
    from redis.crc import key_slot

    ledger = await stores.make("redis")
    zones = ["GB", "US-CAL-CISO", "we{ird}", "}{", "azure:swedencentral"]
    choices = [choice(0, 100.0), choice(30, 101.0), choice(90, 99.0)]
    for zone in zones:
        for job in ("a", "b", "c"):
            await ledger.claim(job, zone, choices, lease=LEASE, now=T0)
        claim = await ledger.claim("d", zone, choices, lease=LEASE, now=T0)
        await ledger.release(claim)
    client = Redis.from_url(stores.redis_url)
    try:
        keys = [key async for key in client.scan_iter(match=f"{ledger.namespace}:*")]
    finally:
        await client.aclose()
    slots: dict[bytes, set[int]] = {}
    for key in keys:
        tag = key[key.index(b"{") + 1 : key.index(b"}")]
        slots.setdefault(tag, set()).add(key_slot(key))
    # every zone wrote its jobs, leases and at least one bucket key, all in one slot
    assert len(slots) == len(zones)
    assert all(len(found) == 1 for found in slots.values()), slots
    assert len(keys) >= 3 * len(zones)


async def test_release_gives_the_place_back_and_is_idempotent(ledger: Ledger) -> None:
    choices = [choice(0, 100.0), choice(30, 101.0)]
    claim = await ledger.claim("a", "GB", choices, lease=LEASE, now=T0)
    await ledger.release(claim)
    await ledger.release(claim)
    assert await ledger.loads("GB", T0, T0 + timedelta(hours=1), now=T0) == {}
    again = await ledger.claim("b", "GB", choices, lease=LEASE, now=T0)
    assert again.start == choices[0].start
    await ledger.release(claim)  # an old claim of another job never releases this one
    assert sum((await ledger.loads("GB", T0, T0 + timedelta(hours=1), now=T0)).values()) == 1


async def test_an_old_claim_of_the_same_job_does_not_release_its_new_one(ledger: Ledger) -> None:
    old = await ledger.claim("hop", "GB", [choice(0, 100.0)], lease=LEASE, now=T0)
    await ledger.release(old)
    new = await ledger.claim("hop", "GB", [choice(60, 90.0)], lease=LEASE, now=T0)
    await ledger.release(old)
    assert await ledger.loads("GB", T0, T0 + timedelta(hours=2), now=T0) == {new.slot: 1}


async def test_expired_claims_never_count(ledger: Ledger) -> None:
    choices = [choice(0, 100.0), choice(30, 101.0)]
    lease = timedelta(minutes=10)
    crashed = await ledger.claim("crashed", "GB", choices, lease=lease, now=T0)
    assert crashed.start == choices[0].start
    after = crashed.expires_at  # a lease that ends now has ended
    assert await ledger.loads("GB", T0, T0 + timedelta(hours=1), now=after) == {}
    fresh = await ledger.claim("next", "GB", choices, lease=lease, now=after)
    assert fresh.start == choices[0].start
    # the crashed job, asking again after its lease, books anew
    back = await ledger.claim("crashed", "GB", choices, lease=lease, now=after)
    assert back.start == choices[1].start and back.expires_at == after + lease


async def test_capacity_skips_full_buckets_until_all_are_full(stores: Stores) -> None:
    for kind in KINDS:
        ledger = await stores.make(kind, capacity=2, tolerance=0.0)
        choices = [choice(0, 100.0), choice(30, 200.0)]
        got = [
            (await ledger.claim(f"j{i}", "GB", choices, lease=LEASE, now=T0)).start
            for i in range(5)
        ]
        first, second = choices[0].start, choices[1].start
        assert got == [first, first, second, second, first], kind


async def test_concurrent_claims_lose_no_update(ledger: Ledger) -> None:
    choices = [choice(0, 100.0), choice(30, 100.0)]
    claims: list[Claim] = []

    async def one(i: int) -> None:
        claims.append(await ledger.claim(f"j{i}", "GB", choices, lease=LEASE, now=T0))

    async with anyio.create_task_group() as tg:
        for i in range(40):
            tg.start_soon(one, i)
    loads = await ledger.loads("GB", T0, T0 + timedelta(hours=1), now=T0)
    assert sorted(loads.values()) == [20, 20]


async def test_no_choice_is_refused(ledger: Ledger) -> None:
    with pytest.raises(ValueError, match="choice"):
        await ledger.claim("a", "GB", [], lease=LEASE, now=T0)


@pytest.mark.parametrize("kind", SHARED)
async def test_bad_input_is_refused_before_the_store_is_asked(kind: str, stores: Stores) -> None:
    ledger = await stores.make(kind)
    with pytest.raises(ValueError, match="lease"):
        await ledger.claim("a", "GB", [choice(0, 1.0)], lease=timedelta(0), now=T0)
    with pytest.raises(ValueError, match="job_id"):
        await ledger.claim("", "GB", [choice(0, 1.0)], lease=LEASE, now=T0)


def test_options_are_checked_at_construction() -> None:
    with pytest.raises(ValueError, match="tolerance"):
        RedisLedger("redis://127.0.0.1:1/0", tolerance=1.5)
    with pytest.raises(ValueError, match="capacity"):
        RedisLedger("redis://127.0.0.1:1/0", capacity=0)
    with pytest.raises(ValueError, match="namespace"):
        RedisLedger("redis://127.0.0.1:1/0", namespace="a{b}")
    with pytest.raises(ValueError, match="redis://"):
        RedisLedger("http://user:secret@127.0.0.1:1/0")
    with pytest.raises(ValueError, match="table"):
        PostgresLedger("postgresql://x", table="Robert'); DROP TABLE students;--")
    with pytest.raises(ValueError, match="timeout"):
        PostgresLedger("postgresql://x", timeout=0)


def test_a_password_never_shows() -> None:
    ledger = RedisLedger("redis://:hunter2-secret@127.0.0.1:1/0")
    assert "hunter2" not in repr(ledger)
    with pytest.raises(ValueError) as info:
        RedisLedger("redis+x://:hunter2-secret@127.0.0.1:1/0")
    assert "hunter2" not in str(info.value)


# --- the shared ledgers choose what the in-process ledger chooses ---------------------------

minutes = st.integers(min_value=0, max_value=4 * 60 // 5).map(lambda k: k * 5.0)
scores = st.one_of(
    st.floats(min_value=1.0, max_value=900.0, allow_nan=False, allow_infinity=False),
    st.sampled_from([100.0, 100.1, 101.99999999999999, 102.0, 98.03921568627452]),
)


@st.composite
def situations(draw: st.DrawFn) -> tuple[list[Choice], dict[int, int], float, int | None]:
    starts = draw(st.lists(minutes, min_size=1, max_size=8, unique=True))
    choices = [choice(m, draw(scores), draw(scores)) for m in sorted(starts)]
    loads = draw(st.dictionaries(st.integers(0, 8), st.integers(0, 4), max_size=6))
    tolerance = draw(st.sampled_from([0.0, 0.02, 0.333]))
    capacity = draw(st.sampled_from([None, 1, 3]))
    return choices, loads, tolerance, capacity


@pytest.mark.parametrize("kind", SHARED)
@settings(
    max_examples=40,
    deadline=None,
    suppress_health_check=[HealthCheck.function_scoped_fixture],
)
@given(situation=situations())
async def test_the_shared_choice_is_the_in_process_choice(
    kind: str, stores: Stores, situation: tuple[list[Choice], dict[int, int], float, int | None]
) -> None:
    """For the same loads, Redis and Postgres (whose rule runs in the store, in Lua and
    PL/pgSQL) grant what ``SlotLedger.choose`` takes, float for float."""
    choices, loads, tolerance, capacity = situation
    ledger = await stores.kept_one(kind, tolerance, capacity)
    own = ecoasync.SlotLedger(tolerance=tolerance, capacity=capacity)
    zone = unique("Z")
    for half_hours, count in loads.items():
        filler = choice(half_hours * 30, 1.0)
        for i in range(count):
            await ledger.claim(f"f{half_hours}-{i}", zone, [filler], lease=LEASE, now=T0)
            own.claim_nowait(f"f{half_hours}-{i}", zone, [filler], lease=LEASE, now=T0)
    expected = own.choose(zone, choices, now=T0)
    claim = await ledger.claim("the-job", zone, choices, lease=LEASE, now=T0)
    assert (claim.start, claim.expected) == (expected.start, expected.expected)
